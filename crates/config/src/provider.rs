// Long file: one provider section's fields and their checks, which read best together.
//! `[[providers]]`: the voice platforms whose webhooks callgate answers (Vapi, Twilio), their
//! credentials, the pool that mirrors each account's concurrency, and how often callgate
//! compares its own count with the platform's.

use crate::env::Env;
use crate::error::ConfigError;
use crate::problem::{list, Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One `[[providers]]` table. One struct for every kind, so that a field of the wrong kind
/// gets a message that says so (`account_sid` applies only to kind = "twilio") rather
/// than a bare "unknown field".
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique, non-empty name; it is part of the webhook URLs (`/webhooks/vapi/{name}`),
    /// so it may only hold letters, digits, `-` and `_`.
    pub name: String,
    /// Which platform.
    pub kind: ProviderKind,
    /// The platform's API (default `https://api.vapi.ai` or `https://api.twilio.com`;
    /// tests point it at a fake). Used to list live calls for reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The pool that mirrors this account's concurrency: calls the platform has and
    /// callgate did not know about are counted here ("adopted").
    pub pool: String,
    /// `vapi`: the private API key (`Authorization: Bearer …`), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// `vapi`: the environment variable that holds it. Without an API key there is no
    /// reconciliation (webhooks still work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// `vapi`: the secret Vapi sends with every webhook, in `X-Vapi-Secret` (the phone
    /// number's or assistant's "server URL secret") or as `Authorization: Bearer …`.
    /// Required (inline or from the environment): an unauthenticated webhook could free
    /// capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// `vapi`: the environment variable that holds the webhook secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_env: Option<String>,
    /// `twilio`: the account SID (`AC…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    /// `twilio`: the auth token, which signs every webhook (`X-Twilio-Signature`) and
    /// authenticates API calls; or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// `twilio`: the environment variable that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_env: Option<String>,
    /// `vapi`: how webhooks are authenticated: `{ type = "bearer", … }`, `{ type =
    /// "secret" }` (the legacy `X-Vapi-Secret` only) or `{ type = "hmac", … }`, with the
    /// secret of `webhook_secret`. Left out: the secret in `X-Vapi-Secret` or as
    /// `Authorization: Bearer <secret>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_auth: Option<WebhookAuth>,
    /// `twilio`: the SharedKey secret that signs webhooks announced by
    /// `X-Twilio-Webhooks-Signature-Settings` (HMAC-SHA256); left out, such webhooks are
    /// checked with the auth token. Or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key: Option<String>,
    /// `twilio`: the environment variable that holds the SharedKey secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key_env: Option<String>,
    /// The base URL the platform reaches callgate at (`https://callgate.example.com`).
    /// `twilio` (required): exactly as Twilio requests it: signatures cover the full URL,
    /// and the TwiML names its wait, action and gather URLs under it. `vapi` (optional):
    /// callgate's replies point each call's server URL at `PUBLIC/webhooks/vapi/NAME`
    /// (`assistantOverrides.server`), so it sees every status update and report even when
    /// the assistant has its own server URL. Include any path prefix a proxy strips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// `vapi`: the customer's own server URL. Every webhook callgate receives is passed on
    /// to it; for messages that expect an answer (`tool-calls`,
    /// `transfer-destination-request`, …) its answer is relayed to Vapi unchanged. A flow
    /// may name its own (`vapi.forward_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_url: Option<String>,
    /// `vapi`: the secret sent to `forward_url` (in `forward_header`), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_secret: Option<String>,
    /// `vapi`: the environment variable that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_secret_env: Option<String>,
    /// `vapi`: the header that carries `forward_secret` (default `Authorization`, as
    /// `Bearer <secret>`; any other header, e.g. `X-Vapi-Secret`, carries the bare secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_header: Option<String>,
    /// `vapi`: how long callgate waits for `forward_url`'s answer to a message that expects
    /// one (default `"10s"`, at most `"19s"`: below the 20 s callgate asks Vapi to wait,
    /// so a slow upstream gets a clear error answer rather than Vapi's timeout).
    #[serde(default = "default_forward_timeout", with = "crate::serde_duration")]
    pub forward_timeout: Duration,
    /// `vapi`: the message types Vapi sends to callgate for calls it answers
    /// (`assistantOverrides.serverMessages`; default: the types a proxied assistant
    /// commonly needs). `status-update` and `end-of-call-report` are always added: callgate
    /// frees lines by them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_messages: Option<Vec<String>>,
    /// How often callgate lists the platform's live calls to release leases of calls that
    /// ended unreported and to count calls it did not know about (default `"60s"`).
    #[serde(default = "default_reconcile_every", with = "crate::serde_duration")]
    pub reconcile_every: Duration,
    /// Whether live platform calls that callgate did not know about take a lease in
    /// `pool` (default true), so callgate's count matches the platform's. Turn it off when
    /// the same calls are already counted through another provider (e.g. Twilio calls
    /// forwarded to Vapi over SIP, with both providers configured).
    #[serde(default = "yes")]
    pub adopt: bool,
}

fn yes() -> bool {
    true
}

/// The default wait for an upstream answer: well inside Vapi's time for a tool call.
pub(crate) fn default_forward_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How long callgate asks Vapi to wait for its answers (`server.timeoutSeconds`);
/// `forward_timeout` must stay below it.
pub const VAPI_SERVER_TIMEOUT_SECS: u64 = 20;

/// How Vapi webhooks prove they come from Vapi (the credential of the server URL), with
/// the secret of `webhook_secret`. Plans as Vapi documents them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum WebhookAuth {
    /// `BearerAuthenticationPlan`: the secret in a header.
    Bearer {
        /// The header (default `Authorization`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// `true`: `Bearer <secret>` (scheme case-insensitive); `false`: the bare secret;
        /// left out: either.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<bool>,
    },
    /// The legacy `X-Vapi-Secret: <secret>` header, and nothing else.
    Secret {},
    /// `HmacAuthenticationPlan`: a signature over the request.
    Hmac(HmacAuth),
}

/// The HMAC plan's settings; the defaults are Vapi's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacAuth {
    /// `sha256` (default), `sha512` or `sha1`.
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// The header holding the signature (default `x-signature`).
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// The header holding the signing time (default `x-timestamp`), in Unix seconds or
    /// milliseconds.
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    /// Whether the request carries a timestamp that is signed and checked against
    /// `max_skew` (default true).
    #[serde(default = "yes")]
    pub include_timestamp: bool,
    /// What is signed: a template over `{body}`, `{timestamp}`, `{method}`, `{url}` (the
    /// full URL, needs `public_url`), `{path}` and `{messageId}` (default
    /// `"{timestamp}.{body}"`, or `"{body}"` without a timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<String>,
    /// Text before the signature in its header, e.g. `"sha256="` (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_prefix: Option<String>,
    /// `hex` (default) or `base64`.
    #[serde(default)]
    pub signature_encoding: SignatureEncoding,
    /// Whether `webhook_secret` is written in base64 (the key is its decoded bytes).
    #[serde(default)]
    pub secret_is_base64: bool,
    /// The header holding a message id, for `{messageId}` (default `x-message-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id_header: Option<String>,
    /// How far a timestamp may be from callgate's clock (default `"5m"`): older or newer
    /// requests are refused as replays.
    #[serde(default = "default_max_skew", with = "crate::serde_duration")]
    pub max_skew: Duration,
    /// The id of the Vapi credential that holds this plan, so that callgate's replies can
    /// attach it to the server URL they set (`server.credentialId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

fn default_signature_header() -> String {
    "x-signature".into()
}

fn default_timestamp_header() -> String {
    "x-timestamp".into()
}

/// Five minutes: a clock-skew allowance that still makes a captured request useless soon.
fn default_max_skew() -> Duration {
    Duration::from_secs(300)
}

/// An HMAC plan's hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// SHA-256.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
    /// SHA-1.
    Sha1,
}

/// How a signature is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Lowercase hexadecimal (uppercase is accepted).
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// The default reconciliation period, 60 s: a ghost call holds its line for at most about
/// a minute, at one listing request per minute.
pub(crate) fn default_reconcile_every() -> Duration {
    Duration::from_secs(60)
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("pool", &self.pool)
            .field("api_key", &hidden(&self.api_key))
            .field("api_key_env", &self.api_key_env)
            .field("webhook_secret", &hidden(&self.webhook_secret))
            .field("webhook_secret_env", &self.webhook_secret_env)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &hidden(&self.auth_token))
            .field("auth_token_env", &self.auth_token_env)
            .field("webhook_auth", &self.webhook_auth)
            .field("shared_key", &hidden(&self.shared_key))
            .field("shared_key_env", &self.shared_key_env)
            .field("public_url", &self.public_url)
            .field("forward_url", &self.forward_url)
            .field("forward_secret", &hidden(&self.forward_secret))
            .field("forward_secret_env", &self.forward_secret_env)
            .field("forward_header", &self.forward_header)
            .field("forward_timeout", &self.forward_timeout)
            .field("server_messages", &self.server_messages)
            .field("reconcile_every", &self.reconcile_every)
            .field("adopt", &self.adopt)
            .finish()
    }
}

/// The platforms callgate speaks to. Written in lowercase in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Vapi: server-URL webhooks (`assistant-request`, `status-update`,
    /// `end-of-call-report`) and `GET /call`.
    Vapi,
    /// Twilio Programmable Voice: TwiML webhooks and `Calls.json`.
    Twilio,
}

impl ProviderKind {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Vapi => "vapi",
            ProviderKind::Twilio => "twilio",
        }
    }

    /// The platform's public API.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Vapi => "https://api.vapi.ai",
            ProviderKind::Twilio => "https://api.twilio.com",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ProviderConfig {
    /// The API base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(self.kind.default_base_url()).trim_end_matches('/')
    }

    /// The public URL, without a trailing `/`.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }

    /// The Vapi API key, from the file or the environment (`None` when neither is set).
    pub fn api_key(&self, env: &dyn Env) -> Result<Option<String>, ConfigError> {
        self.secret(&self.api_key, &self.api_key_env, "api_key_env", env)
    }

    /// The Vapi webhook secret, from the file or the environment.
    pub fn webhook_secret(&self, env: &dyn Env) -> Result<Option<String>, ConfigError> {
        self.secret(&self.webhook_secret, &self.webhook_secret_env, "webhook_secret_env", env)
    }

    /// The Twilio SharedKey secret, from the file or the environment.
    pub fn shared_key(&self, env: &dyn Env) -> Result<Option<String>, ConfigError> {
        self.secret(&self.shared_key, &self.shared_key_env, "shared_key_env", env)
    }

    /// The secret sent to the Vapi `forward_url`, from the file or the environment.
    pub fn forward_secret(&self, env: &dyn Env) -> Result<Option<String>, ConfigError> {
        self.secret(&self.forward_secret, &self.forward_secret_env, "forward_secret_env", env)
    }

    /// The Twilio auth token, from the file or the environment.
    pub fn auth_token(&self, env: &dyn Env) -> Result<Option<String>, ConfigError> {
        self.secret(&self.auth_token, &self.auth_token_env, "auth_token_env", env)
    }

    /// A secret written inline, or read from the variable named by `env_field`; a named
    /// variable that is not set (or empty) is an error naming the field, never a silent
    /// "no secret".
    fn secret(
        &self,
        inline: &Option<String>,
        var: &Option<String>,
        env_field: &str,
        env: &dyn Env,
    ) -> Result<Option<String>, ConfigError> {
        if let Some(value) = inline {
            return Ok(Some(value.clone()));
        }
        let Some(var) = var else { return Ok(None) };
        match env.var(var) {
            Some(value) if !value.trim().is_empty() => Ok(Some(value)),
            _ => Err(ConfigError {
                file: None,
                line: None,
                field: format!("providers.{}.{env_field}", self.name),
                message: format!("provider `{}`: the environment variable `{var}` is not set (or empty)", self.name),
            }),
        }
    }
}

/// Checks `[[providers]]`: names fit in a URL and are unique, the pool exists, each kind
/// has its credentials and no field of the other kind.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let providers = Field::top("providers");
    out.names("provider", config.providers.iter().map(|p| p.name.as_str()), |i| providers.index(i).key("name"));
    for (i, p) in config.providers.iter().enumerate() {
        let field = providers.index(i);
        if !p.name.is_empty() && !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            out.push(
                field.key("name"),
                format!(
                    "provider name `{}` is part of the webhook URLs: use only letters, digits, `-` and `_`",
                    p.name
                ),
            );
        }
        if config.pool(&p.pool).is_none() {
            out.push(
                field.key("pool"),
                format!(
                    "provider `{}` names unknown pool `{}` (pools: {})",
                    p.name,
                    p.pool,
                    list(config.pools.iter().map(|p| p.name.as_str()))
                ),
            );
        }
        if let Some(url) = &p.base_url {
            if !is_http_url(url) {
                out.push(field.key("base_url"), format!("`{url}` is not an http:// or https:// URL"));
            }
        }
        if p.reconcile_every.as_millis() == 0 {
            out.push(field.key("reconcile_every"), "reconcile_every must be at least 1ms (the default is \"60s\")");
        }
        let secret_pair = |out: &mut Problems, inline: &Option<String>, var: &Option<String>, name: &str| {
            if inline.is_some() && var.is_some() {
                out.push(field.key(name), format!("give either `{name}` or `{name}_env`, not both"));
            }
            if inline.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push(field.key(name), format!("`{name}` must not be empty"));
            }
            if var.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push(field.key(&format!("{name}_env")), format!("`{name}_env` must name an environment variable"));
            }
        };
        let foreign = |out: &mut Problems, present: bool, name: &str, kind: ProviderKind| {
            if present {
                out.push(field.key(name), format!("`{name}` applies only to kind = \"{kind}\", not \"{}\"", p.kind));
            }
        };
        match p.kind {
            ProviderKind::Vapi => {
                secret_pair(out, &p.api_key, &p.api_key_env, "api_key");
                secret_pair(out, &p.webhook_secret, &p.webhook_secret_env, "webhook_secret");
                if p.webhook_secret.is_none() && p.webhook_secret_env.is_none() {
                    out.push(
                        field.clone(),
                        format!(
                            "vapi provider `{}` needs `webhook_secret` (or `webhook_secret_env`): \
                             the server URL secret set in Vapi, so that nobody else can end calls",
                            p.name
                        ),
                    );
                }
                secret_pair(out, &p.forward_secret, &p.forward_secret_env, "forward_secret");
                validate_vapi(p, &field, out);
                let t = ProviderKind::Twilio;
                foreign(out, p.account_sid.is_some(), "account_sid", t);
                foreign(out, p.auth_token.is_some(), "auth_token", t);
                foreign(out, p.auth_token_env.is_some(), "auth_token_env", t);
                foreign(out, p.shared_key.is_some(), "shared_key", t);
                foreign(out, p.shared_key_env.is_some(), "shared_key_env", t);
            }
            ProviderKind::Twilio => {
                secret_pair(out, &p.auth_token, &p.auth_token_env, "auth_token");
                if p.auth_token.is_none() && p.auth_token_env.is_none() {
                    out.push(
                        field.clone(),
                        format!(
                            "twilio provider `{}` needs `auth_token` (or `auth_token_env`): it \
                             checks the signature of every webhook",
                            p.name
                        ),
                    );
                }
                match &p.account_sid {
                    None => {
                        out.push(field.clone(), format!("twilio provider `{}` needs `account_sid` (\"AC…\")", p.name))
                    }
                    Some(sid)
                        if !(sid.starts_with("AC")
                            && sid.len() > 2
                            && sid.chars().all(|c| c.is_ascii_alphanumeric())) =>
                    {
                        out.push(
                            field.key("account_sid"),
                            format!("`{sid}` is not a Twilio account SID (\"AC\" and letters or digits)"),
                        )
                    }
                    Some(_) => {}
                }
                match &p.public_url {
                    None => out.push(
                        field.clone(),
                        format!(
                            "twilio provider `{}` needs `public_url`: the base URL Twilio reaches \
                             callgate at (it is part of every signature)",
                            p.name
                        ),
                    ),
                    Some(url) if !is_http_url(url) || url.contains(['?', '#']) => out.push(
                        field.key("public_url"),
                        format!("`{url}` is not an http:// or https:// URL without query or fragment"),
                    ),
                    Some(_) => {}
                }
                secret_pair(out, &p.shared_key, &p.shared_key_env, "shared_key");
                let v = ProviderKind::Vapi;
                foreign(out, p.webhook_auth.is_some(), "webhook_auth", v);
                foreign(out, p.forward_url.is_some(), "forward_url", v);
                foreign(out, p.forward_secret.is_some(), "forward_secret", v);
                foreign(out, p.forward_secret_env.is_some(), "forward_secret_env", v);
                foreign(out, p.forward_header.is_some(), "forward_header", v);
                foreign(out, p.server_messages.is_some(), "server_messages", v);
                foreign(out, p.forward_timeout != default_forward_timeout(), "forward_timeout", v);
                foreign(out, p.api_key.is_some(), "api_key", v);
                foreign(out, p.api_key_env.is_some(), "api_key_env", v);
                foreign(out, p.webhook_secret.is_some(), "webhook_secret", v);
                foreign(out, p.webhook_secret_env.is_some(), "webhook_secret_env", v);
            }
        }
    }
}

/// The Vapi-only settings: the public URL, the forward target, the credential plan.
fn validate_vapi(p: &ProviderConfig, field: &Field, out: &mut Problems) {
    if let Some(url) = &p.public_url {
        if !is_http_url(url) || url.contains(['?', '#']) {
            out.push(
                field.key("public_url"),
                format!("`{url}` is not an http:// or https:// URL without query or fragment"),
            );
        }
    }
    if let Some(url) = &p.forward_url {
        if !is_http_url(url) {
            out.push(field.key("forward_url"), format!("`{url}` is not an http:// or https:// URL"));
        }
    }
    if let Some(h) = &p.forward_header {
        if !is_header_name(h) {
            out.push(field.key("forward_header"), format!("`{h}` is not an HTTP header name"));
        }
    }
    let limit = Duration::from_secs(VAPI_SERVER_TIMEOUT_SECS);
    if p.forward_timeout.is_zero() || p.forward_timeout >= limit {
        out.push(
            field.key("forward_timeout"),
            format!(
                "forward_timeout must be between 1ms and 19s (Vapi waits {VAPI_SERVER_TIMEOUT_SECS}s for callgate)"
            ),
        );
    }
    if let Some(types) = &p.server_messages {
        if types.len() > 64 || types.iter().any(|t| t.is_empty() || t.len() > 64 || t.contains(char::is_whitespace)) {
            out.push(
                field.key("server_messages"),
                "server_messages lists at most 64 message types such as \"tool-calls\"",
            );
        }
    }
    let at = field.key("webhook_auth");
    match &p.webhook_auth {
        Some(WebhookAuth::Bearer { header: Some(h), .. }) if !is_header_name(h) => {
            out.push(at.key("header"), format!("`{h}` is not an HTTP header name"));
        }
        Some(WebhookAuth::Hmac(h)) => {
            for (name, value) in [
                ("signature_header", Some(&h.signature_header)),
                ("timestamp_header", Some(&h.timestamp_header)),
                ("message_id_header", h.message_id_header.as_ref()),
            ] {
                if let Some(v) = value {
                    if !is_header_name(v) {
                        out.push(at.key(name), format!("`{v}` is not an HTTP header name"));
                    }
                }
            }
            if let Some(f) = &h.payload_format {
                if !f.contains("{body}") {
                    out.push(at.key("payload_format"), "payload_format must contain `{body}`: a signature that does not cover the body proves nothing about it");
                }
                if f.contains("{url}") && p.public_url.is_none() {
                    out.push(
                        at.key("payload_format"),
                        "`{url}` in payload_format needs the provider's `public_url` (the URL Vapi calls)",
                    );
                }
                if f.contains("{timestamp}") && !h.include_timestamp {
                    out.push(
                        at.key("payload_format"),
                        "`{timestamp}` in payload_format needs include_timestamp = true",
                    );
                }
            }
            if h.include_timestamp && h.max_skew.is_zero() {
                out.push(at.key("max_skew"), "max_skew must be at least 1s");
            }
            if h.secret_is_base64 {
                if let Some(secret) = &p.webhook_secret {
                    if !is_base64(secret) {
                        out.push(
                            field.key("webhook_secret"),
                            "secret_is_base64 is set but webhook_secret is not base64",
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

/// An HTTP header name (RFC 9110 token characters).
fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Standard base64 text (with or without padding).
fn is_base64(s: &str) -> bool {
    let t = s.trim().trim_end_matches('=');
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// `http://` or `https://` and a host.
pub(crate) fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}
