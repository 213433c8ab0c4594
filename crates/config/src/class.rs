//! `[[classes]]`: traffic classes and their priorities.

use crate::problem::{Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};

/// One `[[classes]]` table: a traffic class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// Unique, non-empty name (e.g. `inbound`), referenced by reserves and flows.
    pub name: String,
    /// Higher is served first; equal priorities share one tier, first come first served.
    pub priority: i32,
}

impl ClassConfig {
    /// A class named `name` with `priority`.
    pub fn new(name: &str, priority: i32) -> Self {
        ClassConfig { name: name.to_owned(), priority }
    }

    /// The classes used when a file has no `[[classes]]` table: `inbound` (50),
    /// `callback` (30) and `outbound` (10), so callers on the phone come before the
    /// calls we place, and promised callbacks before cold outbound dialing.
    pub fn defaults() -> Vec<ClassConfig> {
        vec![ClassConfig::new("inbound", 50), ClassConfig::new("callback", 30), ClassConfig::new("outbound", 10)]
    }
}

/// Checks `[[classes]]`: at least one, names present and unique.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let field = Field::top("classes");
    if config.classes.is_empty() {
        out.push(
            field.clone(),
            "at least one class is needed; leave out `classes` to get the defaults \
             (inbound, callback, outbound)",
        );
    }
    // Class ids are 16 bits in the ledger.
    if config.classes.len() > usize::from(u16::MAX) {
        out.push(field.clone(), format!("too many classes (at most {})", u16::MAX));
    }
    out.names("class", config.classes.iter().map(|c| c.name.as_str()), |i| field.index(i).key("name"));
}
