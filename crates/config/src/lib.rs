//! Reads, validates and explains callgate's TOML configuration.
//!
//! [`Config::from_path`] and [`Config::from_toml_str`] parse a file, then
//! [`Config::validate`] it; every problem comes back as a [`ConfigError`] naming the
//! file, the 1-based line and the dotted field (`pools[0].reserve.inbound`), displayed
//! as `FILE:LINE: FIELD: MESSAGE`. Parsing stops at the first syntax or type error (the
//! parser cannot go on); validation collects every problem.
//!
//! The file has one module per section (`server`, `auth`, `class`, `pool`, `provider`,
//! `flow`, `menu`, `adaptive`, `breaker`, `alert`, `schedule`, `telemetry`, `compliance`, `storage`), each holding the section's types and its `validate` step. A new
//! section is a new field of [`Config`] and one more entry in the list of steps in
//! `config.rs`.
//!
//! Decisions worth knowing:
//! - a file without `[[classes]]` gets [`ClassConfig::defaults`] (inbound 50, callback
//!   30, outbound 10); `classes = []` is refused;
//! - a pool's `reserve` is kept sorted by class name (its order means nothing);
//! - a flow's `overflow` is always a chain (`Vec`); one table in the file is a chain
//!   of one;
//! - durations are strings in the file and [`std::time::Duration`] here; the ledger
//!   spec gets whole milliseconds;
//! - secrets may be written inline or named by an `*_env` variable; the variables are
//!   read when the server starts (through [`Env`]), not by `config check`;
//! - a flow's `match` is, like `overflow`, one table or an array of them; a match
//!   without `number` makes the flow its provider's default.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod adaptive;
mod alert;
mod auth;
mod breaker;
mod caller;
mod campaign;
mod class;
mod compliance;
mod config;
mod defaults;
mod env;
mod error;
mod flow;
#[doc(hidden)]
pub mod fuzz;
mod ledger;
mod load;
mod locate;
mod menu;
mod overflow;
mod pool;
mod prewarm;
mod pricing;
mod problem;
mod provider;
mod schedule;
mod serde_duration;
mod server;
mod spill;
mod storage;
mod telemetry;

pub use adaptive::{AdaptiveAlgorithm, AdaptiveConfig, AdaptiveSource, AdaptiveWindow, VapiMetric};
pub use alert::{AlertAction, AlertActionKind, AlertConfig, AlertMetric, AlertTarget, ResolveConfig};
pub use auth::{ApiKey, AuthConfig, Role};
pub use breaker::BreakerConfig;
pub use caller::{country_of, CallerListConfig, CallerSelector, Hours, MAX_LIST_NUMBERS};
pub use campaign::{
    format_instant, parse_datetime, parse_instant, BatchWindow, CampaignConfig, CampaignTwilio, CampaignVapi,
    ClockTime, MachineDetection, Real, RetryConfig, SimulateConfig, Weekday, WindowConfig,
};
pub use class::ClassConfig;
pub use compliance::{default_calling_rules, CallingRule, ComplianceConfig, MAX_CALLING_RULES};
pub use config::{Config, Summary};
pub use defaults::EXAMPLE;
pub use env::{Env, ProcessEnv};
pub use error::{ConfigError, ConfigErrors};
pub use flow::{
    FlowConfig, FlowMatch, FlowPool, QueueConfig, TwilioConnect, TwilioFlow, VapiFlow, VapiTarget, MAX_LEASE_TTL,
    MAX_QUEUE_WAIT,
};
pub use load::check_file;
pub use menu::MenuConfig;
pub use overflow::{Overflow, OverflowAction, DEFAULT_SPILL_WITHIN};
pub use pool::{ForecastReserve, PoolConfig};
pub use prewarm::{PrewarmConfig, MAX_PREWARM};
pub use pricing::Pricing;
pub use provider::{
    HmacAlgorithm, HmacAuth, ProviderConfig, ProviderKind, SignatureEncoding, WebhookAuth, VAPI_SERVER_TIMEOUT_SECS,
};
pub use schedule::{CampaignChange, FlowChange, PoolChange, ScheduleConfig, MAX_SCHEDULES};
pub use server::ServerConfig;
pub use spill::{RouteRule, TransferTo};
pub use storage::{valid_domain, LedgerStore, RedisUnavailable, StorageConfig};
pub use telemetry::TelemetryConfig;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_spill;
#[cfg(test)]
mod tests_storage;
