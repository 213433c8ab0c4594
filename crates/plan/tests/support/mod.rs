//! Scenario texts shared by the simulator's unit tests (`src/sim/tests.rs` includes this
//! file with `#[path]`) and the integration tests.

/// A scenario with one class `inbound`, one pool `lines` of `limit` lines, one flow
/// `flow` on it (plus `flow_extra` lines), the `[sim]` table's `sim` lines, and arrivals
/// at `flow` (with `arrivals` lines).
pub(crate) fn one_pool(limit: u32, flow: &str, flow_extra: &str, sim: &str, arrivals: &str) -> String {
    format!(
        r#"
[[classes]]
name = "inbound"
priority = 50

[[pools]]
name = "lines"
limit = {limit}

[[flows]]
name = "{flow}"
pools = ["lines"]
class = "inbound"
{flow_extra}

[sim]
{sim}

[[arrivals]]
flow = "{flow}"
{arrivals}
"#
    )
}
