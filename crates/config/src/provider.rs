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
    /// `twilio`: the base URL Twilio reaches callgate at (`https://callgate.example.com`),
    /// exactly as Twilio requests it: signatures cover the full URL, and the TwiML names
    /// its wait, action and gather URLs under it. Include any path prefix a proxy strips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
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
            .field("public_url", &self.public_url)
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

    /// The public URL (Twilio), without a trailing `/`.
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
                let t = ProviderKind::Twilio;
                foreign(out, p.account_sid.is_some(), "account_sid", t);
                foreign(out, p.auth_token.is_some(), "auth_token", t);
                foreign(out, p.auth_token_env.is_some(), "auth_token_env", t);
                foreign(out, p.public_url.is_some(), "public_url", t);
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
                let v = ProviderKind::Vapi;
                foreign(out, p.api_key.is_some(), "api_key", v);
                foreign(out, p.api_key_env.is_some(), "api_key_env", v);
                foreign(out, p.webhook_secret.is_some(), "webhook_secret", v);
                foreign(out, p.webhook_secret_env.is_some(), "webhook_secret_env", v);
            }
        }
    }
}

/// `http://` or `https://` and a host.
pub(crate) fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}
