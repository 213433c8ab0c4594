//! Suppression (do-not-call) lists in memory: a hash set of numbers per named list, so a
//! check before each dial is O(1) whatever the size of the lists.
//!
//! A number is kept as the integer of its E.164 digits (`+15551234567` → 15551234567):
//! E.164 has at most 15 digits, so it fits a `u64`, and a million numbers take a few
//! tens of megabytes instead of a `String` each. Each list carries a version, bumped by
//! every change, which the audit trail records with each dial.

use rustc_hash::FxHashSet;
use std::collections::BTreeMap;

/// The list an opt-out goes to, which every campaign honours unless it names its lists.
pub const INTERNAL: &str = "internal";

/// The most lists a server keeps (each is named in API paths and metrics).
pub const MAX_LISTS: usize = 64;

/// The longest list name.
pub const MAX_NAME: usize = 64;

/// The number of an E.164 text (`+` and 1 to 15 digits), as kept in the sets; `None` for
/// anything else.
pub fn key(e164: &str) -> Option<u64> {
    let digits = e164.strip_prefix('+')?;
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A North American number written as digits only (`+12125550123`, or `2125550123` /
/// `12125550123` when `default_region` is `US` or `CA`), checked by its structure: an
/// area code of a known zone (`crate::zones`) and an exchange that starts with 2-9 and is
/// not a service code (N11). `None` for anything else, which the caller reads with
/// libphonenumber. A million-number registry file is mostly such numbers; libphonenumber
/// takes about 20 µs for each, this a few nanoseconds.
pub fn fast_nanp(text: &str, default_region: Option<&str>) -> Option<u64> {
    let nanp_region = default_region.is_some_and(|r| r.eq_ignore_ascii_case("US") || r.eq_ignore_ascii_case("CA"));
    let national = match text.strip_prefix("+1") {
        Some(rest) => rest,
        None if nanp_region && text.len() == 11 => text.strip_prefix('1')?,
        None if nanp_region => text,
        None => return None,
    };
    if national.len() != 10 || !national.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = national.parse().ok()?;
    let (npa, nxx) = (n / 10_000_000, (n / 10_000) % 1000);
    let npa = u16::try_from(npa).ok()?;
    crate::zones::area_code_zone(npa)?;
    if nxx < 200 || nxx % 100 == 11 {
        return None;
    }
    Some(10_000_000_000 + n)
}

/// The E.164 text of a kept number.
pub fn e164(key: u64) -> String {
    format!("+{key}")
}

/// Whether `name` may name a list: 1 to [`MAX_NAME`] letters, digits, `-`, `_` or `.`.
pub fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "list name `{}` must be 1 to {MAX_NAME} letters, digits, `-`, `_` or `.`",
            name.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// One list.
#[derive(Clone, Debug, Default)]
struct List {
    numbers: FxHashSet<u64>,
    /// Bumped by every change.
    version: u64,
}

/// Why a number is suppressed: the list that has it and that list's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The list.
    pub list: String,
    /// Its version when checked.
    pub version: u64,
}

/// Every list, by name (in name order, so the same number always names the same list).
#[derive(Clone, Debug, Default)]
pub struct Lists {
    lists: BTreeMap<String, List>,
}

impl Lists {
    /// No lists.
    pub fn new() -> Lists {
        Lists::default()
    }

    /// Adds `numbers` to `list` (created when new); answers how many were new. Fails when
    /// the list would be one more than [`MAX_LISTS`].
    pub fn add(&mut self, list: &str, numbers: impl IntoIterator<Item = u64>) -> Result<usize, String> {
        if !self.lists.contains_key(list) && self.lists.len() >= MAX_LISTS {
            return Err(format!("at most {MAX_LISTS} suppression lists"));
        }
        let l = self.lists.entry(list.to_string()).or_default();
        let before = l.numbers.len();
        l.numbers.extend(numbers);
        let added = l.numbers.len() - before;
        if added > 0 {
            l.version += 1;
        }
        Ok(added)
    }

    /// Takes `number` off `list`; answers whether it was on it.
    pub fn remove(&mut self, list: &str, number: u64) -> bool {
        let Some(l) = self.lists.get_mut(list) else { return false };
        let was = l.numbers.remove(&number);
        if was {
            l.version += 1;
        }
        was
    }

    /// Sets each list's version to the one its durable store gives (a store shared by
    /// several nodes numbers the versions for all of them); a list the store has and this
    /// copy lacks is created empty, as long as there is room for it.
    pub fn set_versions(&mut self, versions: impl IntoIterator<Item = (String, u64)>) {
        for (name, version) in versions {
            let room = self.lists.len() < MAX_LISTS;
            match self.lists.get_mut(name.as_str()) {
                Some(l) => l.version = version,
                None if room => {
                    self.lists.insert(name, List { numbers: FxHashSet::default(), version });
                }
                None => {}
            }
        }
    }

    /// Whether `list` has `number`.
    pub fn contains(&self, list: &str, number: u64) -> bool {
        self.lists.get(list).is_some_and(|l| l.numbers.contains(&number))
    }

    /// The first of the lists a campaign honours (`None`: every list) that has `number`.
    pub fn check(&self, honoured: Option<&[String]>, number: u64) -> Option<Hit> {
        let hit = |(name, l): (&String, &List)| {
            l.numbers.contains(&number).then(|| Hit { list: name.clone(), version: l.version })
        };
        match honoured {
            None => self.lists.iter().find_map(hit),
            Some(names) => names.iter().find_map(|n| self.lists.get_key_value(n.as_str()).and_then(hit)),
        }
    }

    /// Each list with its size and version, by name.
    pub fn summary(&self) -> Vec<(String, usize, u64)> {
        self.lists.iter().map(|(n, l)| (n.clone(), l.numbers.len(), l.version)).collect()
    }

    /// The versions of the lists a campaign honours (`None`: every list), by name: what
    /// an audit row records.
    pub fn versions(&self, honoured: Option<&[String]>) -> Vec<(String, u64)> {
        match honoured {
            None => self.summary().into_iter().map(|(n, _, v)| (n, v)).collect(),
            Some(names) => {
                names.iter().map(|n| (n.clone(), self.lists.get(n.as_str()).map_or(0, |l| l.version))).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_kept_as_their_digits() {
        assert_eq!(key("+15551234567"), Some(15_551_234_567));
        assert_eq!(e164(15_551_234_567), "+15551234567");
        assert_eq!(key("15551234567"), None);
        assert_eq!(key("+1555x"), None);
        assert_eq!(key("+1234567890123456"), None, "16 digits");
        assert_eq!(key("+"), None);
    }

    #[test]
    fn a_campaign_checks_only_the_lists_it_honours() {
        let mut l = Lists::new();
        assert_eq!(l.add("internal", [1, 2]).unwrap(), 2);
        assert_eq!(l.add("internal", [2]).unwrap(), 0);
        l.add("national", [3]).unwrap();
        assert_eq!(l.check(None, 3), Some(Hit { list: "national".into(), version: 1 }));
        assert_eq!(l.check(Some(&["internal".to_string()]), 3), None);
        assert_eq!(l.check(Some(&["internal".to_string()]), 1), Some(Hit { list: "internal".into(), version: 1 }));
        assert!(l.remove("internal", 1));
        assert!(!l.remove("internal", 1));
        assert_eq!(l.check(None, 1), None);
        assert_eq!(l.versions(None), vec![("internal".to_string(), 2), ("national".to_string(), 1)]);
    }

    #[test]
    fn plain_north_american_numbers_take_the_fast_path_with_the_same_answer() {
        for text in ["+12125550123", "+13055550123", "+14155550123", "+15145550123"] {
            let slow = crate::phone::normalize(text, None).ok().and_then(|n| key(&n.e164));
            assert_eq!(fast_nanp(text, None), slow, "{text}");
        }
        assert_eq!(fast_nanp("2125550123", Some("us")), Some(12_125_550_123));
        assert_eq!(fast_nanp("12125550123", Some("US")), Some(12_125_550_123));
        assert_eq!(fast_nanp("2125550123", None), None, "no country: libphonenumber says why");
        assert_eq!(fast_nanp("+12121550123", None), None, "exchange 1xx");
        assert_eq!(fast_nanp("+12124110123", None), None, "N11");
        assert_eq!(fast_nanp("+18005550123", None), None, "toll-free: libphonenumber decides");
        assert_eq!(fast_nanp("+1 212 555 0123", None), None, "formatted: libphonenumber reads it");
        assert_eq!(fast_nanp("+442079460958", None), None);
    }

    #[test]
    fn lists_are_bounded() {
        let mut l = Lists::new();
        for i in 0..MAX_LISTS {
            l.add(&format!("l{i}"), [1]).unwrap();
        }
        assert!(l.add("one-more", [1]).is_err());
        assert!(l.add("l0", [2]).is_ok());
        assert!(valid_name("internal").is_ok());
        assert!(valid_name("").is_err());
        assert!(valid_name("a/b").is_err());
    }
}
