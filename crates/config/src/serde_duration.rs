//! Durations written as strings (`"250ms"`, `"60s"`, `"4m"`, `"2h"`), kept as
//! [`Duration`] once read.

use callgate_core::duration::{format_duration, parse_duration};
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;
use std::time::Duration;

/// Reads a duration string; a bad one is an error at that value (so its line and field
/// are reported).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(DurationVisitor)
}

/// Writes a duration the way [`deserialize`] reads it.
pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"250ms\", \"60s\", \"4m\" or \"2h\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
}

/// The same for an optional duration (`None` when the key is left out).
pub(crate) mod option {
    use super::DurationVisitor;
    use callgate_core::duration::format_duration;
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    /// Reads a duration string that may be left out (use with `#[serde(default)]`).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(DurationVisitor).map(Some)
    }

    /// Writes a present duration the way [`deserialize`] reads it (skip `None` with
    /// `skip_serializing_if`).
    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}
