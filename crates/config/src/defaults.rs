//! What callgate runs with when it is given no file, and the commented example config.

use crate::{
    AuthConfig, ClassConfig, Config, FlowConfig, FlowPool, Overflow, OverflowAction, PoolConfig, QueueConfig,
    ServerConfig,
};
use std::time::Duration;

/// The commented example config that `callgate config example` prints. A test parses
/// and validates it, so it cannot drift from the code.
pub const EXAMPLE: &str = include_str!("example.toml");

impl Config {
    /// What `callgate serve` runs with when given no file: a Vapi account with its
    /// default limit of 10 concurrent calls.
    ///
    /// - classes `inbound` (50), `callback` (30), `outbound` (10);
    /// - pool `vapi`, limit 10, `reserve = { inbound = 2 }`: outbound and callbacks never
    ///   take the last two lines, so a caller can always get through;
    /// - flow `inbound`: waits up to 60 s (at most 20 callers), then voicemail;
    /// - flows `outbound` and `callback`: no waiting room, a refused call is `busy` (the
    ///   dialer retries it later);
    /// - every lease lives 2 h unless renewed or released.
    pub fn builtin_default() -> Config {
        let vapi = "vapi";
        let flow = |name: &str, class: &str| FlowConfig {
            name: name.to_owned(),
            pools: vec![FlowPool::one(vapi)],
            class: class.to_owned(),
            lease_ttl: crate::flow::default_lease_ttl(),
            queue: None,
            overflow: vec![Overflow::new(OverflowAction::Busy)],
            matches: Vec::new(),
            vapi: None,
            twilio: None,
            depends_on: Vec::new(),
            fallback: Vec::new(),
            transfer_to: None,
            route: Vec::new(),
        };
        let mut pool = PoolConfig::new(vapi, 10);
        pool.reserve.insert("inbound".to_owned(), 2);
        Config {
            server: ServerConfig::default(),
            auth: AuthConfig::default(),
            classes: ClassConfig::defaults(),
            pools: vec![pool],
            flows: vec![
                FlowConfig {
                    // A minute is about as long as callers hold on to an AI line
                    // before they hang up; 20 waiting is two full turns of 10 lines.
                    queue: Some(QueueConfig { max_wait: Duration::from_secs(60), max_len: Some(20) }),
                    overflow: vec![Overflow::new(OverflowAction::Voicemail).with_message(
                        "All our lines are busy right now. Please leave a message after the \
                         tone and we will call you back.",
                    )],
                    ..flow("inbound", "inbound")
                },
                flow("outbound", "outbound"),
                flow("callback", "callback"),
            ],
            providers: Vec::new(),
            menus: Vec::new(),
            campaigns: Vec::new(),
            breakers: Vec::new(),
            alerts: Vec::new(),
            schedules: Vec::new(),
            telemetry: Default::default(),
            compliance: Default::default(),
            calling_rules: Vec::new(),
            caller_lists: Vec::new(),
            storage: Default::default(),
            prewarm: Vec::new(),
            pricing: None,
        }
    }
}
