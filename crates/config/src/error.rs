//! What goes wrong in a config file, said with the file, the line and the field.

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// One problem in a config file.
///
/// Displays as `FILE:LINE: FIELD: MESSAGE` (`<config>` when the text came from no file;
/// the line or the field is left out when it is not known).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// The file the text came from, if any.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key or value; `None` when it cannot be placed (a
    /// file that cannot be read, a config built in code).
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `pools[0].reserve.inbound` or `flows[1].class`
    /// (indexes count the tables of one kind in file order, from 0). Empty when the
    /// problem concerns no single field.
    pub field: String,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("<config>")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file, in file order (problems without a line last).
///
/// Displays one problem per line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ConfigErrors {
    /// The problems; never empty when returned by this crate.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps one problem.
    pub fn one(error: ConfigError) -> Self {
        ConfigErrors { errors: vec![error] }
    }

    /// The problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
