//! `[telemetry]`: where traces go. Off unless an OTLP endpoint is given.

use crate::problem::{Field, Problems};
use crate::provider::is_http_url;
use crate::Config;
use serde::{Deserialize, Serialize};

/// The `[telemetry]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector, e.g. `"http://127.0.0.1:4318"`: spans are posted as JSON
    /// to `ENDPOINT/v1/traces` (default: none, no traces leave the process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of the spans (default "callgate").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl TelemetryConfig {
    /// The service name spans carry.
    pub fn service(&self) -> &str {
        self.service_name.as_deref().unwrap_or("callgate")
    }

    /// Whether `telemetry` says anything (so an empty section is not written back).
    pub fn is_empty(&self) -> bool {
        self == &TelemetryConfig::default()
    }
}

/// Checks `[telemetry]`.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let field = Field::top("telemetry");
    if let Some(url) = &config.telemetry.otlp_endpoint {
        if !is_http_url(url) {
            out.push(
                field.key("otlp_endpoint"),
                format!("`{url}` is not an http:// or https:// URL (write e.g. \"http://127.0.0.1:4318\")"),
            );
        }
    }
    if config.telemetry.service_name.as_deref().is_some_and(|s| s.trim().is_empty()) {
        out.push(field.key("service_name"), "service_name must not be empty");
    }
}
