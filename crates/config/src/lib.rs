//! Reads, validates and explains callgate's TOML configuration.
//!
//! [`Config::from_path`] and [`Config::from_toml_str`] parse a file, then
//! [`Config::validate`] it; every problem comes back as a [`ConfigError`] naming the
//! file, the 1-based line and the dotted field (`pools[0].reserve.inbound`), displayed
//! as `FILE:LINE: FIELD: MESSAGE`. Parsing stops at the first syntax or type error (the
//! parser cannot go on); validation collects every problem.
//!
//! The file has one module per section (`server`, `auth`, `class`, `pool`, `flow`),
//! each holding the section's types and its `validate` step. A new section is a new
//! field of [`Config`] and one more entry in the list of steps in `config.rs`.
//!
//! Decisions worth knowing:
//! - a file without `[[classes]]` gets [`ClassConfig::defaults`] (inbound 50, callback
//!   30, outbound 10); `classes = []` is refused;
//! - a pool's `reserve` is kept sorted by class name (its order means nothing);
//! - a flow's `overflow` is always a chain (`Vec`); one table in the file is a chain
//!   of one;
//! - durations are strings in the file and [`std::time::Duration`] here; the ledger
//!   spec gets whole milliseconds.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod auth;
mod class;
mod config;
mod defaults;
mod error;
mod flow;
mod ledger;
mod load;
mod locate;
mod overflow;
mod pool;
mod problem;
mod serde_duration;
mod server;

pub use auth::{ApiKey, AuthConfig, Role};
pub use class::ClassConfig;
pub use config::{Config, Summary};
pub use defaults::EXAMPLE;
pub use error::{ConfigError, ConfigErrors};
pub use flow::{FlowConfig, FlowPool, QueueConfig};
pub use load::check_file;
pub use overflow::{Overflow, OverflowAction};
pub use pool::PoolConfig;
pub use server::ServerConfig;

#[cfg(test)]
mod tests;
