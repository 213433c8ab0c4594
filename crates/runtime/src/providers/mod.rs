//! The voice platforms callgate fronts: their settings with secrets resolved, and the
//! reconciliation that repairs ghost calls (the API clients that list live calls are in
//! `callgate-providers`).
//!
//! The providers in force are one [`ProviderSet`], a handle the webhooks, the
//! reconcilers and the dialer share and read per use; a configuration reload swaps the
//! whole set at once, so a webhook is checked against the new secret from the moment the
//! reload answers, while one already being answered finishes under the set it began with.

pub mod forward;

use callgate_config::{Config, ConfigError, Env, ProviderConfig, ProviderKind, WebhookAuth, VAPI_SERVER_TIMEOUT_SECS};
use forward::Forwarder;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Twilio: the SharedKey secret of `X-Twilio-Webhooks-Signature-Settings` webhooks
    /// (`None`: they are checked with the auth token).
    pub shared_key: Option<Secret>,
    /// Vapi: how webhooks are authenticated, the proxy's upstreams and what callgate's
    /// replies ask of Vapi.
    pub vapi: Option<Arc<VapiSettings>>,
    /// Twilio: the `public_url` this provider had before a reload changed it. Calls in
    /// progress were handed URLs under it (a waiting caller's wait and queue URLs), and
    /// Twilio signs what it requests, so signatures over it are still accepted. One only:
    /// the one before that is forgotten.
    pub former_public_url: Option<String>,
}

/// Where callgate passes Vapi messages on: the customer's own server URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The URL.
    pub url: String,
    /// The header that carries the secret (`Authorization` carries `Bearer <secret>`).
    pub header: String,
    /// The secret, if any.
    pub secret: Option<Secret>,
}

impl Upstream {
    /// The credential header's value.
    pub fn header_value(&self) -> Option<String> {
        let secret = self.secret.as_ref()?.expose();
        Some(if self.header.eq_ignore_ascii_case("authorization") {
            format!("Bearer {secret}")
        } else {
            secret.to_owned()
        })
    }
}

/// The message types Vapi sends to callgate when a provider does not list its own: the
/// ones a proxied assistant commonly relies on, with the two callgate frees lines by.
pub const DEFAULT_SERVER_MESSAGES: &[&str] = &[
    "conversation-update",
    "end-of-call-report",
    "function-call",
    "hang",
    "speech-update",
    "status-update",
    "tool-calls",
    "transfer-destination-request",
    "user-interrupted",
];

/// A Vapi provider's edge settings, secrets resolved.
#[derive(Debug)]
pub struct VapiSettings {
    /// The credential plan (`None`: the secret in `X-Vapi-Secret` or `Authorization`).
    pub auth: Option<WebhookAuth>,
    /// The base URL Vapi reaches callgate at, without a trailing `/`.
    pub public_url: Option<String>,
    /// The provider's upstream.
    pub upstream: Option<Upstream>,
    /// Flows' own upstreams, by flow name.
    pub flow_upstreams: HashMap<String, Upstream>,
    /// How long an answer from an upstream is awaited.
    pub forward_timeout: Duration,
    /// `assistantOverrides.serverMessages` (always with `status-update` and
    /// `end-of-call-report`).
    pub server_messages: Vec<String>,
    /// Sends messages upstream.
    pub forwarder: Arc<Forwarder>,
}

impl VapiSettings {
    /// Whether `other` says the same (the forwarder, which holds no settings, aside).
    fn same_as(&self, other: &VapiSettings) -> bool {
        (
            &self.auth,
            &self.public_url,
            &self.upstream,
            &self.flow_upstreams,
            &self.forward_timeout,
            &self.server_messages,
        ) == (
            &other.auth,
            &other.public_url,
            &other.upstream,
            &other.flow_upstreams,
            &other.forward_timeout,
            &other.server_messages,
        )
    }

    /// The upstream for a call of `flow` (the flow's own, else the provider's).
    pub fn upstream_for(&self, flow: Option<&str>) -> Option<&Upstream> {
        flow.and_then(|f| self.flow_upstreams.get(f)).or(self.upstream.as_ref())
    }

    /// `assistantOverrides` that point a call's server URL at callgate (`public_url`
    /// set), with callgate's own credential and the message types it needs; `None`
    /// without `public_url`.
    pub fn overrides(&self, provider: &str, secret: &Secret) -> Option<Value> {
        let base = self.public_url.as_deref()?;
        let mut server = json!({
            "url": format!("{base}/webhooks/vapi/{provider}"),
            "timeoutSeconds": VAPI_SERVER_TIMEOUT_SECS,
        });
        let secret = secret.expose();
        match &self.auth {
            None => server["headers"] = json!({ "Authorization": format!("Bearer {secret}") }),
            Some(WebhookAuth::Bearer { header, prefix }) => {
                let header = header.as_deref().unwrap_or("Authorization");
                let value = if *prefix == Some(false) { secret.to_owned() } else { format!("Bearer {secret}") };
                server["headers"] = json!({ header: value });
            }
            Some(WebhookAuth::Secret {}) => server["headers"] = json!({ "X-Vapi-Secret": secret }),
            // Vapi signs with a credential it holds; callgate names it.
            Some(WebhookAuth::Hmac(h)) => {
                if let Some(id) = &h.credential_id {
                    server["credentialId"] = json!(id);
                }
            }
        }
        Some(json!({ "server": server, "serverMessages": self.server_messages }))
    }
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
        let vapi = match p.kind {
            ProviderKind::Vapi => {
                let header = p.forward_header.clone().unwrap_or_else(|| "Authorization".into());
                let upstream = p.forward_url.as_ref().map(|url| -> Result<Upstream, ConfigError> {
                    Ok(Upstream {
                        url: url.clone(),
                        header: header.clone(),
                        secret: p.forward_secret(env)?.map(Secret),
                    })
                });
                let mut server_messages: Vec<String> = match &p.server_messages {
                    Some(list) => list.clone(),
                    None => DEFAULT_SERVER_MESSAGES.iter().map(|s| (*s).to_owned()).collect(),
                };
                for needed in ["status-update", "end-of-call-report"] {
                    if !server_messages.iter().any(|m| m == needed) {
                        server_messages.push(needed.to_owned());
                    }
                }
                Some(Arc::new(VapiSettings {
                    auth: p.webhook_auth.clone(),
                    public_url: p.public_url().map(str::to_owned),
                    upstream: upstream.transpose()?,
                    flow_upstreams: HashMap::new(),
                    forward_timeout: p.forward_timeout,
                    server_messages,
                    forwarder: Arc::new(Forwarder::new()),
                }))
            }
            ProviderKind::Twilio => None,
        };
        Ok(Provider {
            name: p.name.as_str().into(),
            pool: p.pool.as_str().into(),
            base_url: p.base_url().to_owned(),
            reconcile_every: p.reconcile_every,
            adopt: p.adopt,
            credentials,
            shared_key: match p.kind {
                ProviderKind::Twilio => p.shared_key(env)?.map(Secret),
                ProviderKind::Vapi => None,
            },
            vapi,
            former_public_url: None,
        })
    }

    /// Whether `other` has the same settings: the same account, credentials, pool,
    /// reconciliation and edge settings (a reload restarts what depends on a provider only
    /// when this is false).
    pub fn same_settings(&self, other: &Provider) -> bool {
        let vapi = match (&self.vapi, &other.vapi) {
            (Some(a), Some(b)) => a.same_as(b),
            (None, None) => true,
            _ => false,
        };
        vapi && (&self.name, &self.pool, &self.base_url, self.reconcile_every, self.adopt)
            == (&other.name, &other.pool, &other.base_url, other.reconcile_every, other.adopt)
            && self.credentials == other.credentials
            && self.shared_key == other.shared_key
    }

    /// Whether a dialer built for `other` places calls as one built for `self` would: the
    /// same account, credentials, pool and polling, and the same overrides for Vapi calls.
    pub fn dials_alike(&self, other: &Provider) -> bool {
        (&self.pool, &self.base_url, self.reconcile_every) == (&other.pool, &other.base_url, other.reconcile_every)
            && self.credentials == other.credentials
            && self.vapi_overrides() == other.vapi_overrides()
    }

    /// Twilio: the base URL Twilio requests, and the former one (see
    /// [`Provider::former_public_url`]).
    pub fn public_urls(&self) -> impl Iterator<Item = &str> {
        let current = match &self.credentials {
            Credentials::Twilio { public_url, .. } => Some(public_url.as_str()),
            Credentials::Vapi { .. } => None,
        };
        current.into_iter().chain(self.former_public_url.as_deref())
    }

    /// Vapi: the `assistantOverrides` that point a call's server URL at callgate
    /// (`server`, `serverMessages`), for replies and for calls the dialer places; `None`
    /// without a `public_url` (or for Twilio).
    pub fn vapi_overrides(&self) -> Option<Value> {
        let Credentials::Vapi { webhook_secret, .. } = &self.credentials else { return None };
        self.vapi.as_ref()?.overrides(&self.name, webhook_secret)
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
        let mut list = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            let mut provider = Provider::from_config(p, env)?;
            if let Some(settings) = provider.vapi.as_mut().and_then(Arc::get_mut) {
                settings.flow_upstreams = flow_upstreams(config, p, settings.upstream.as_ref(), env)?;
            }
            list.push(Arc::new(provider));
        }
        Ok(Providers { list })
    }

    /// `config`'s providers, for a reload of a server whose providers were `old`: as
    /// [`Providers::from_config`], and a provider that keeps its name keeps what is not a
    /// setting (a Vapi provider its forwarder, with the notifications in flight and their
    /// budget; a Twilio provider whose `public_url` changed the former one, see
    /// [`Provider::former_public_url`]).
    pub fn reloaded(config: &Config, env: &dyn Env, old: &Providers) -> Result<Providers, ConfigError> {
        let mut new = Providers::from_config(config, env)?;
        for provider in &mut new.list {
            let Some(before) = old.list.iter().find(|o| o.name == provider.name && o.kind() == provider.kind()) else {
                continue;
            };
            let Some(p) = Arc::get_mut(provider) else { continue };
            if let (Some(settings), Some(kept)) = (p.vapi.as_mut().and_then(Arc::get_mut), &before.vapi) {
                settings.forwarder = kept.forwarder.clone();
            }
            let (now, then) = (p.public_urls().next().map(str::to_owned), before.public_urls().next());
            p.former_public_url = match (now, then) {
                (Some(now), Some(then)) if now != then => Some(then.to_owned()),
                _ => before.former_public_url.clone(),
            };
        }
        Ok(new)
    }

    /// The provider named `name`, if it is of `kind`.
    pub fn get(&self, name: &str, kind: ProviderKind) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| &*p.name == name && p.kind() == kind)
    }

    /// Every provider.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.list.iter()
    }

    /// The provider named `name`, of any kind.
    pub fn named(&self, name: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| &*p.name == name)
    }

    /// The names of the providers that are in one set and not the other, or that are not
    /// `alike` in both (e.g. [`Provider::same_settings`]), `self`'s order first.
    pub fn changed_from(&self, old: &Providers, alike: impl Fn(&Provider, &Provider) -> bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .list
            .iter()
            .filter(|p| old.named(&p.name).is_none_or(|o| !alike(o, p)))
            .map(|p| p.name.to_string())
            .collect();
        out.extend(old.list.iter().filter(|o| self.named(&o.name).is_none()).map(|o| o.name.to_string()));
        out
    }
}

/// The providers in force, shared by the webhooks, the reconcilers and the dialer. A
/// reload replaces the whole set at once; each reader takes one version
/// ([`ProviderSet::current`]) and keeps it for what it is doing.
#[derive(Clone, Debug, Default)]
pub struct ProviderSet(Arc<RwLock<Arc<Providers>>>);

impl ProviderSet {
    /// A handle holding `providers`.
    pub fn new(providers: Providers) -> Self {
        ProviderSet(Arc::new(RwLock::new(Arc::new(providers))))
    }

    /// The providers in force now.
    pub fn current(&self) -> Arc<Providers> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `providers` in force (a configuration reload); every holder of this handle
    /// reads them from now on.
    #[doc(hidden)]
    pub fn replace(&self, providers: Providers) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(providers);
    }
}

/// The upstreams of the flows that answer `provider`'s calls and name their own
/// `vapi.forward_url`; the secret and header default to the provider's.
fn flow_upstreams(
    config: &Config,
    provider: &ProviderConfig,
    default: Option<&Upstream>,
    env: &dyn Env,
) -> Result<HashMap<String, Upstream>, ConfigError> {
    let mut out = HashMap::new();
    for flow in &config.flows {
        let Some(vapi) = &flow.vapi else { continue };
        let Some(url) = &vapi.forward_url else { continue };
        if !flow.matches.iter().any(|m| m.provider == provider.name) {
            continue;
        }
        let secret = match &vapi.forward_secret_env {
            Some(var) => match env.var(var) {
                Some(v) if !v.trim().is_empty() => Some(Secret(v)),
                _ => {
                    return Err(ConfigError {
                        file: None,
                        line: None,
                        field: format!("flows.{}.vapi.forward_secret_env", flow.name),
                        message: format!(
                            "flow `{}`: the environment variable `{var}` is not set (or empty)",
                            flow.name
                        ),
                    })
                }
            },
            None => default.and_then(|d| d.secret.clone()),
        };
        let header = vapi
            .forward_header
            .clone()
            .or_else(|| default.map(|d| d.header.clone()))
            .unwrap_or_else(|| "Authorization".into());
        out.insert(flow.name.clone(), Upstream { url: url.clone(), header, secret });
    }
    Ok(out)
}
