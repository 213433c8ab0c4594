//! The voice platforms callgate fronts: their settings with secrets resolved, the API
//! clients that list live calls, and the reconciliation that repairs ghost calls.

pub mod reconcile;
pub mod time;
pub mod twilio;
pub mod vapi;

use callgate_config::{Config, ConfigError, Env, ProviderConfig, ProviderKind};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A secret (token, key). Its `Debug` output hides it, so logging a provider leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret's bytes, for constant-time comparison and signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What callgate needs to speak to one platform account.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Vapi.
    Vapi {
        /// Private API key for `GET /call` (no reconciliation without it).
        api_key: Option<Secret>,
        /// The server URL secret every webhook must carry.
        webhook_secret: Secret,
    },
    /// Twilio.
    Twilio {
        /// `AC…`.
        account_sid: String,
        /// Signs webhooks and authenticates API calls.
        auth_token: Secret,
        /// The base URL Twilio requests (and signs), without a trailing `/`.
        public_url: String,
    },
}

/// One configured provider, ready to use.
#[derive(Clone, Debug)]
pub struct Provider {
    /// Its name (part of the webhook URLs).
    pub name: Arc<str>,
    /// The pool that mirrors the account's concurrency.
    pub pool: Arc<str>,
    /// The API base URL, without a trailing `/`.
    pub base_url: String,
    /// How often to reconcile.
    pub reconcile_every: Duration,
    /// Whether unknown live calls take a lease.
    pub adopt: bool,
    /// Credentials by kind.
    pub credentials: Credentials,
}

impl Provider {
    /// Resolves a provider's secrets (inline or from the environment).
    pub fn from_config(p: &ProviderConfig, env: &dyn Env) -> Result<Provider, ConfigError> {
        let missing = |what: &str| ConfigError {
            file: None,
            line: None,
            field: format!("providers.{}", p.name),
            message: format!("provider `{}` has no {what}", p.name),
        };
        let credentials = match p.kind {
            ProviderKind::Vapi => Credentials::Vapi {
                api_key: p.api_key(env)?.map(Secret),
                webhook_secret: p.webhook_secret(env)?.map(Secret).ok_or_else(|| missing("webhook_secret"))?,
            },
            ProviderKind::Twilio => Credentials::Twilio {
                account_sid: p.account_sid.clone().ok_or_else(|| missing("account_sid"))?,
                auth_token: p.auth_token(env)?.map(Secret).ok_or_else(|| missing("auth_token"))?,
                public_url: p.public_url().ok_or_else(|| missing("public_url"))?.to_owned(),
            },
        };
        Ok(Provider {
            name: p.name.as_str().into(),
            pool: p.pool.as_str().into(),
            base_url: p.base_url().to_owned(),
            reconcile_every: p.reconcile_every,
            adopt: p.adopt,
            credentials,
        })
    }

    /// Vapi or Twilio.
    pub fn kind(&self) -> ProviderKind {
        match self.credentials {
            Credentials::Vapi { .. } => ProviderKind::Vapi,
            Credentials::Twilio { .. } => ProviderKind::Twilio,
        }
    }
}

/// Every configured provider.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    list: Vec<Arc<Provider>>,
}

impl Providers {
    /// Resolves every provider of `config`; the first missing secret stops the start.
    pub fn from_config(config: &Config, env: &dyn Env) -> Result<Providers, ConfigError> {
        let list =
            config.providers.iter().map(|p| Provider::from_config(p, env).map(Arc::new)).collect::<Result<_, _>>()?;
        Ok(Providers { list })
    }

    /// The provider named `name`, if it is of `kind`.
    pub fn get(&self, name: &str, kind: ProviderKind) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| &*p.name == name && p.kind() == kind)
    }

    /// Every provider.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.list.iter()
    }
}

/// Why a provider API call failed; it changes nothing in callgate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderError {
    /// No answer (connection, timeout).
    Unreachable(String),
    /// An HTTP status other than success (401: wrong credentials; 429: rate limited).
    Status(u16),
    /// An answer that is not what the documentation describes.
    BadResponse(String),
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::Unreachable(why) => write!(f, "unreachable: {why}"),
            ProviderError::Status(code) => write!(f, "HTTP {code}"),
            ProviderError::BadResponse(why) => write!(f, "unexpected response: {why}"),
        }
    }
}

impl std::error::Error for ProviderError {}

impl From<reqwest::Error> for ProviderError {
    fn from(e: reqwest::Error) -> Self {
        match e.status() {
            Some(s) => ProviderError::Status(s.as_u16()),
            None if e.is_decode() => ProviderError::BadResponse(e.to_string()),
            None => ProviderError::Unreachable(e.to_string()),
        }
    }
}

/// How a call stands on the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformState {
    /// Holding a line (ringing, in progress, forwarding…).
    Live,
    /// Over.
    Ended,
    /// Neither yet (e.g. a Vapi call that is only scheduled).
    Pending,
}

/// One call as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformCall {
    /// The platform's call id (the key callgate's lease has).
    pub id: String,
    /// Its state.
    pub state: PlatformState,
    /// Another id the same call is known by (Vapi: the telephony provider's call id, e.g.
    /// the Twilio `CallSid` of a forwarded call), so it is not counted twice.
    pub alias: Option<String>,
    /// Whether callgate may adopt it if it does not know it (Twilio: an inbound parent
    /// call to a number a flow serves).
    pub adoptable: bool,
    /// Placed by callgate's campaign dialer (Vapi: the call carries
    /// `assistantOverrides.metadata.callgate_attempt` or `…callgate_lease`): its lease is the
    /// dialer's (`dial:` key), so it is counted already and never adopted.
    pub dialed: bool,
}

/// What a listing found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The calls seen.
    pub calls: Vec<PlatformCall>,
    /// True when the listing holds every call that could be live, so that a call missing
    /// from it has ended. False when it was cut short (too many pages): then only calls
    /// the listing shows as ended are released.
    pub complete: bool,
}

/// An HTTP client with the timeouts every provider call uses: a listing that takes longer
/// than 10 s is abandoned (the next period tries again).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}
