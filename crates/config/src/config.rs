//! The whole configuration, its validation, and lookups by name.

use crate::adaptive;
use crate::alert::{self, AlertConfig};
use crate::auth::{self, AuthConfig};
use crate::breaker::{self, BreakerConfig};
use crate::caller::{self, CallerListConfig};
use crate::campaign::{self, CampaignConfig};
use crate::class::{self, ClassConfig};
use crate::compliance::{self, CallingRule, ComplianceConfig};
use crate::error::{ConfigError, ConfigErrors};
use crate::flow::{self, FlowConfig};
use crate::menu::{self, MenuConfig};
use crate::pool::{self, PoolConfig};
use crate::prewarm::{self, PrewarmConfig};
use crate::pricing::{self, Pricing};
use crate::problem::{Problem, Problems};
use crate::provider::{self, ProviderConfig};
use crate::schedule::{self, ScheduleConfig};
use crate::server::{self, ServerConfig};
use crate::storage::{self, StorageConfig};
use crate::telemetry::{self, TelemetryConfig};
use callgate_core::FlowId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A callgate configuration file. Every section may be left out.
///
/// Adding a section means adding a field here (with `#[serde(default)]` when it is
/// optional) and its check to `STEPS` in `config.rs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listen address, data directory, request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[auth]`: API keys (default: none, loopback only).
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[[classes]]`, in file order. A file without any gets
    /// [`ClassConfig::defaults`] (inbound 50, callback 30, outbound 10); an explicit
    /// `classes = []` is refused.
    #[serde(default = "ClassConfig::defaults")]
    pub classes: Vec<ClassConfig>,
    /// `[[pools]]`, in file order (default: none).
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    /// `[[flows]]`, in file order (default: none). `FlowId(i)` in the ledger is
    /// `flows[i]`.
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
    /// `[[providers]]`: the voice platforms whose webhooks callgate answers (default:
    /// none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderConfig>,
    /// `[[menus]]`: DTMF menus that `ivr` overflow steps send callers to (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub menus: Vec<MenuConfig>,
    /// `[[campaigns]]`: outbound campaigns (default: none). More can be created through
    /// `POST /v1/campaigns`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<CampaignConfig>,
    /// `[[breakers]]`: circuit breakers per dependency (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerConfig>,
    /// `[[alerts]]`: conditions that fire, act and resolve (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertConfig>,
    /// `[[schedules]]`: policy that changes by the hour (default: none). See
    /// [`Config::active_schedules`] and [`Config::scheduled`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleConfig>,
    /// `[telemetry]`: where traces go (default: nowhere).
    #[serde(default, skip_serializing_if = "TelemetryConfig::is_empty")]
    pub telemetry: TelemetryConfig,
    /// `[compliance]`: where opt-outs come from (default: the API only).
    #[serde(default, skip_serializing_if = "is_default_compliance")]
    pub compliance: ComplianceConfig,
    /// `[[calling_rules]]`: windows and caps by the callee's region (default: none; see
    /// `[compliance] default_calling_rules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calling_rules: Vec<CallingRule>,
    /// `[[caller_lists]]`: named lists of callers that `match` and `route` rules select
    /// on (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caller_lists: Vec<CallerListConfig>,
    /// `[storage]`: where the ledger and the durable records live (default: the embedded
    /// store under `[server] data_dir`; a Redis URL for cluster mode).
    #[serde(default, skip_serializing_if = "is_default_storage")]
    pub storage: StorageConfig,
    /// `[[prewarm]]`: URLs called a lead time before the inbound forecast rises
    /// (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prewarm: Vec<PrewarmConfig>,
    /// `[pricing]`: what lines, minutes and lost callers cost, for the forecast's cost of
    /// a shortfall (`GET /v1/forecast?pool=`). Default: none (shortfalls are not priced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
}

fn is_default_storage(s: &StorageConfig) -> bool {
    *s == StorageConfig::default()
}

fn is_default_compliance(c: &ComplianceConfig) -> bool {
    *c == ComplianceConfig::default()
}

/// The checks of every section, run in this order. Each reads the whole config, since
/// sections refer to each other (flows name classes and pools).
const STEPS: &[fn(&Config, &mut Problems)] = &[
    server::validate,
    auth::validate,
    class::validate,
    pool::validate,
    provider::validate,
    caller::validate,
    flow::validate,
    menu::validate,
    campaign::validate,
    adaptive::validate,
    breaker::validate,
    alert::validate,
    telemetry::validate,
    compliance::validate,
    storage::validate,
    prewarm::validate,
    pricing::validate,
];

impl Config {
    /// Every problem in the config, with its field; empty when it is valid.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        let names: Vec<&str> = self.campaigns.iter().map(|c| c.name.as_str()).collect();
        self.problems_with(&names)
    }

    /// [`Config::problems`], with `campaigns` the names that `[[schedules]]` may change.
    pub(crate) fn problems_with(&self, campaigns: &[&str]) -> Vec<Problem> {
        let mut out = Problems::default();
        for step in STEPS {
            step(self, &mut out);
        }
        schedule::validate_with(self, campaigns, &mut out);
        out.0
    }

    /// Checks names, references, reserves, waiting rooms, overflow steps and the listen
    /// address, and reports every problem found. The loaders run this and add the line
    /// of each problem; called on a config built in code, the errors have no file and
    /// no line.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let errors: Vec<ConfigError> = self
            .problems()
            .into_iter()
            .map(|p| ConfigError { file: None, line: None, field: p.field.to_string(), message: p.message })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors { errors })
        }
    }

    /// The calling rules in force: the file's, then (with `[compliance]
    /// default_calling_rules`) the shipped ones for the regions the file does not name.
    pub fn calling_rules(&self) -> Vec<CallingRule> {
        let mut rules = self.calling_rules.clone();
        if self.compliance.default_calling_rules {
            let named: Vec<String> = rules.iter().map(|r| r.region.clone()).collect();
            rules.extend(compliance::default_calling_rules().into_iter().filter(|r| !named.contains(&r.region)));
        }
        rules
    }

    /// The class named `name`.
    pub fn class(&self, name: &str) -> Option<&ClassConfig> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// Whether the server records its own calls into the call history (`[server]
    /// record_history`; by default when a pool's reserve follows the forecast).
    pub fn records_history(&self) -> bool {
        self.server.record_history.unwrap_or_else(|| self.pools.iter().any(|p| p.forecast_class().is_some()))
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The flow named `name` (e.g. for its overflow chain).
    pub fn flow(&self, name: &str) -> Option<&FlowConfig> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The menu named `name`.
    pub fn menu(&self, name: &str) -> Option<&MenuConfig> {
        self.menus.iter().find(|m| m.name == name)
    }

    /// The flow that serves a call of `provider` to `number`: the flow that matches the
    /// number exactly, else the provider's default flow (a match without `number`).
    pub fn flow_for(&self, provider: &str, number: Option<&str>) -> Option<&FlowConfig> {
        self.flow_for_caller(provider, number, None, None)
    }

    /// [`Config::flow_for`] for a caller: with `caller` (the caller's number, if given)
    /// and `now_ms` (when the call arrived), a match whose `caller` selector takes the
    /// caller wins over the matches without one, in file order: first on the number
    /// called, then among the provider's defaults. Without `now_ms`, selectors are not
    /// tried.
    pub fn flow_for_caller(
        &self,
        provider: &str,
        number: Option<&str>,
        caller: Option<&str>,
        now_ms: Option<u64>,
    ) -> Option<&FlowConfig> {
        let selected = |m: &crate::FlowMatch| match (&m.caller, now_ms) {
            (None, _) => None,
            (Some(sel), Some(now)) => Some(sel.selects(caller, now, &self.caller_lists)),
            (Some(_), None) => Some(false),
        };
        let pick = |on_number: Option<&str>| {
            let serves = |m: &crate::FlowMatch| m.provider == provider && m.number.as_deref() == on_number;
            self.flows
                .iter()
                .find(|f| f.matches.iter().any(|m| serves(m) && selected(m) == Some(true)))
                .or_else(|| self.flows.iter().find(|f| f.matches.iter().any(|m| serves(m) && selected(m).is_none())))
        };
        number.and_then(|n| pick(Some(n))).or_else(|| pick(None))
    }

    /// Whether some flow answers calls of `provider` to `number` (for some caller).
    pub fn serves(&self, provider: &str, number: &str) -> bool {
        self.flows.iter().any(|f| {
            f.matches.iter().any(|m| m.provider == provider && m.number.as_deref().is_none_or(|n| n == number))
        })
    }

    /// The flow the ledger knows as `id` (ledger flow ids are positions in `flows`).
    pub fn flow_by_id(&self, id: FlowId) -> Option<&FlowConfig> {
        self.flows.get(id.index())
    }

    /// Counts of what the config defines, for `callgate config check`.
    pub fn summary(&self) -> Summary {
        Summary {
            classes: self.classes.len(),
            pools: self.pools.len(),
            flows: self.flows.len(),
            keys: self.auth.keys.len(),
            providers: self.providers.len(),
        }
    }
}

/// What a valid config defines. Displays as `ok: 3 classes, 1 pool, 2 flows` (and
/// `, 2 auth keys` when there are keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Number of classes (the defaults count when the file defines none).
    pub classes: usize,
    /// Number of pools.
    pub pools: usize,
    /// Number of flows.
    pub flows: usize,
    /// Number of API keys.
    pub keys: usize,
    /// Number of providers.
    pub providers: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn count(n: usize, one: &str, many: &str) -> String {
            format!("{n} {}", if n == 1 { one } else { many })
        }
        write!(
            f,
            "ok: {}, {}, {}",
            count(self.classes, "class", "classes"),
            count(self.pools, "pool", "pools"),
            count(self.flows, "flow", "flows")
        )?;
        if self.keys > 0 {
            write!(f, ", {}", count(self.keys, "auth key", "auth keys"))?;
        }
        if self.providers > 0 {
            write!(f, ", {}", count(self.providers, "provider", "providers"))?;
        }
        Ok(())
    }
}
