//! Validation problems, each tied to the dotted path of the field it concerns.

use std::fmt;

/// One step of a field path: a key of a table or an index into an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A key of a table.
    Key(String),
    /// An index into an array (of values or of tables), from 0.
    Index(usize),
}

/// Where a field lives in the file, e.g. `pools[0].reserve.inbound`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Field(pub(crate) Vec<Seg>);

impl Field {
    /// The path of a top-level key.
    pub(crate) fn top(key: &str) -> Field {
        Field(vec![Seg::Key(key.to_owned())])
    }

    /// The path of `key` inside this table.
    pub(crate) fn key(&self, key: &str) -> Field {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        Field(segs)
    }

    /// The path of element `index` of this array.
    pub(crate) fn index(&self, index: usize) -> Field {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Field(segs)
    }

    /// The steps of the path.
    pub(crate) fn segs(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write_key(f, key)?;
                }
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Writes a key as TOML would: bare when it can be, quoted otherwise.
fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        f.write_str(key)
    } else {
        write!(f, "{key:?}")
    }
}

/// A problem found by validation, before it is placed on a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The field at fault.
    pub(crate) field: Field,
    /// What is wrong.
    pub(crate) message: String,
}

/// Collects every problem, so that one run of `config check` reports all of them.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    /// Records a problem with `field`.
    pub(crate) fn push(&mut self, field: Field, message: impl Into<String>) {
        self.0.push(Problem { field, message: message.into() });
    }

    /// Records a problem for each name that is empty or used before, with `what` naming
    /// the kind of thing ("class", "pool", …) and `field(i)` the path of the i-th name.
    pub(crate) fn names<'a>(
        &mut self,
        what: &str,
        names: impl Iterator<Item = &'a str>,
        field: impl Fn(usize) -> Field,
    ) {
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, name) in names.enumerate() {
            if name.trim().is_empty() {
                self.push(field(i), format!("a {what} needs a non-empty name"));
            } else if let Some(&first) = seen.get(name) {
                let first = field(first);
                self.push(field(i), format!("{what} `{name}` is defined twice (first at {first})"));
            } else {
                seen.insert(name, i);
            }
        }
    }
}

/// Lists names for a message: `` `a`, `b`, `c` `` (or `none`).
pub(crate) fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let out: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}
