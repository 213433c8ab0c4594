//! The MessagePack the ledger script writes (`cmsgpack.pack`: a change's outcome and events,
//! a batch's answers, the event stream's entries), read into [`Item`]s: strings borrowed from
//! the packed bytes, lists kept in one arena per answer, so that reading an answer allocates
//! once. `wire` reads them, as it reads Redis's own values, into ledger values.

use crate::wire::Node;
use bumpalo::Bump;
use callgate_backend::Error;
use redis::Value;

/// One value of the script's MessagePack, its strings borrowed from the packed bytes and its
/// lists from an arena (one per answer read, dropped as a whole once the answer is read).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    Int(i64),
    Nil,
    Str(&'a [u8]),
    List(&'a [Item<'a>]),
}

impl std::fmt::Debug for Item<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Int(i) => write!(f, "{i}"),
            Item::Nil => f.write_str("nil"),
            Item::Str(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Item::List(items) => f.debug_list().entries(items.iter()).finish(),
        }
    }
}

impl Node for Item<'_> {
    fn as_int(&self) -> Option<i64> {
        match self {
            Item::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn is_nil(&self) -> bool {
        matches!(self, Item::Nil)
    }
    fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Item::Str(b) => Some(b),
            _ => None,
        }
    }
    fn as_items(&self) -> Option<&[Self]> {
        match self {
            Item::List(items) => Some(items),
            _ => None,
        }
    }
}

impl Item<'_> {
    /// The same value as Redis would have answered it unpacked.
    pub(crate) fn to_value(self) -> Value {
        match self {
            Item::Int(i) => Value::Int(i),
            Item::Nil => Value::Nil,
            Item::Str(b) => Value::BulkString(b.to_vec()),
            Item::List(items) => Value::Array(items.iter().copied().map(Item::to_value).collect()),
        }
    }
}

/// Nested arrays may go this deep in an event (an event holds a lease, which holds its
/// pools): deeper is not something the script wrote.
const MAX_DEPTH: usize = 8;

/// Decodes the MessagePack the script's `cmsgpack.pack` writes (for a command's outcome and
/// events, a batch's answers and the event stream: arrays, strings, integers, nil and
/// booleans; no maps) into [`Item`]s in the shape its plain answers have, so that one reader
/// reads both. A number that is not whole reads as Redis would have returned it from Lua:
/// truncated to an integer.
/// (The error says nothing more than that the bytes are broken: it stays as small as the
/// items, where a full [`Error`] would be copied out of every call.)
fn unpack<'a>(bytes: &'a [u8], at: &mut usize, depth: usize, arena: &'a Bump) -> Result<Item<'a>, Broken> {
    let mut take = |n: usize| -> Result<&'a [u8], Broken> {
        let end = at.checked_add(n).filter(|e| *e <= bytes.len()).ok_or(Broken)?;
        let out = &bytes[*at..end];
        *at = end;
        Ok(out)
    };
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let tag = take(1)?[0];
    let (len, list) = match tag {
        0x00..=0x7f => return Ok(Item::Int(i64::from(tag))),
        0xe0..=0xff => return Ok(Item::Int(i64::from(tag as i8))),
        0xc0 | 0xc2 => return Ok(Item::Nil),
        0xc3 => return Ok(Item::Int(1)),
        0xcc..=0xcf => {
            let n = be(take(1 << (tag - 0xcc))?);
            return i64::try_from(n).map(Item::Int).map_err(|_| Broken);
        }
        0xca => {
            let raw = take(4)?;
            let f = f32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            return Ok(Item::Int(f as i64));
        }
        0xcb => {
            let f = f64::from_bits(be(take(8)?));
            return Ok(Item::Int(f as i64));
        }
        0xd0..=0xd3 => {
            let width = 1usize << (tag - 0xd0);
            let raw = be(take(width)?);
            let shift = 64 - 8 * width as u32;
            return Ok(Item::Int(((raw << shift) as i64) >> shift));
        }
        0x90..=0x9f => (usize::from(tag & 0x0f), true),
        0xdc => (be(take(2)?) as usize, true),
        0xdd => (be(take(4)?) as usize, true),
        0xa0..=0xbf => (usize::from(tag & 0x1f), false),
        0xd9 | 0xc4 => (be(take(1)?) as usize, false),
        0xda | 0xc5 => (be(take(2)?) as usize, false),
        0xdb | 0xc6 => (be(take(4)?) as usize, false),
        _ => return Err(Broken),
    };
    if !list {
        return Ok(Item::Str(take(len)?));
    }
    // Every item takes at least a byte: a longer list than the bytes left is not one.
    if depth >= MAX_DEPTH || len > bytes.len() - *at {
        return Err(Broken);
    }
    let mut broke = false;
    let items = arena.alloc_slice_fill_with(len, |_| {
        if broke {
            return Item::Nil;
        }
        unpack(bytes, at, depth + 1, arena).unwrap_or_else(|Broken| {
            broke = true;
            Item::Nil
        })
    });
    if broke {
        return Err(Broken);
    }
    Ok(Item::List(items))
}

/// The MessagePack holds something the script does not write.
struct Broken;

/// The one value packed in `bytes`, its lists in `arena`.
pub(crate) fn unpack_all<'a>(bytes: &'a [u8], arena: &'a Bump) -> Result<Item<'a>, Error> {
    let mut at = 0;
    let out = unpack(bytes, &mut at, 0, arena)
        .map_err(|Broken| Error::internal("the ledger script's MessagePack holds something it does not write"))?;
    if at != bytes.len() {
        return Err(Error::internal("the ledger script's MessagePack holds more than one value"));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `s` as a MessagePack fixstr.
    pub(crate) fn s(s: &str) -> Vec<u8> {
        let mut out = vec![0xa0 | s.len() as u8];
        out.extend_from_slice(s.as_bytes());
        out
    }

    /// A released lease's event, `["R", lease, at]`, as the script packs it.
    pub(crate) fn released() -> Vec<u8> {
        let mut out = vec![0x93];
        out.extend(s("R"));
        // [id, key, class, flow, pools, granted, expires, ttl, meta, owner]
        out.extend([0x9a, 0xcd, 0x01, 0x00]);
        out.extend(s("k1"));
        out.extend([0x00, 0xc0, 0x92, 0x00, 0x01, 0xce, 0x00, 0x01, 0x00, 0x00, 0xcf]);
        out.extend(70_000u64.to_be_bytes());
        out.extend([0xcd, 0x27, 0x10, 0xc0]);
        out.extend(s("node-a"));
        out.extend([0xcc, 0xc8]);
        out
    }

    #[test]
    fn every_scalar_the_script_writes_reads_as_redis_would_answer_it() {
        fn one(bytes: &[u8]) -> Value {
            unpack_all(bytes, &Bump::new()).unwrap().to_value()
        }
        assert_eq!(one(&[0x7f]), Value::Int(127));
        assert_eq!(one(&[0xff]), Value::Int(-1));
        assert_eq!(one(&[0xd0, 0x80]), Value::Int(-128));
        assert_eq!(one(&[0xd1, 0xff, 0x00]), Value::Int(-256));
        assert_eq!(one(&[0xc2]), Value::Nil);
        assert_eq!(one(&[0xc3]), Value::Int(1));
        let mut float = vec![0xcb];
        float.extend(2.75f64.to_bits().to_be_bytes());
        assert_eq!(one(&float), Value::Int(2));
        assert_eq!(one(&[0xd9, 0x01, b'x']), Value::BulkString(b"x".to_vec()));
        assert_eq!(one(&[0xdc, 0x00, 0x01, 0xc0]), Value::Array(vec![Value::Nil]));
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            one(&[0x92, 0x91, 0x01, 0xa1, b'y']),
            Value::Array(vec![Value::Array(vec![Value::Int(1)]), bulk("y")])
        );
    }

    #[test]
    fn broken_messagepack_is_an_error_and_never_a_panic() {
        let bytes = released();
        let unpack_all = |bytes: &[u8]| unpack_all(bytes, &Bump::new()).map(|_| ());
        // Every strict prefix is cut short.
        for n in 0..bytes.len() {
            assert!(unpack_all(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        // More than one value.
        assert!(unpack_all(&[0x01, 0x02]).is_err());
        // A list that claims more items than there are bytes left (no allocation for them).
        assert!(unpack_all(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        // An unsigned number beyond what Redis's integers hold.
        let mut big = vec![0xcf];
        big.extend(u64::MAX.to_be_bytes());
        assert!(unpack_all(&big).is_err());
        // A map, which the script never writes.
        assert!(unpack_all(&[0x80]).is_err());
        // Nesting deeper than an event's.
        let deep = |n: usize| [vec![0x91; n], vec![0x01]].concat();
        assert!(unpack_all(&deep(MAX_DEPTH)).is_ok());
        assert!(unpack_all(&deep(MAX_DEPTH + 1)).is_err());
    }
}
