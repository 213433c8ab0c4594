//! `[auth]`: bearer API keys and their roles.

use crate::problem::{Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The `[auth]` section. Without keys the API is open, which is only allowed on a
/// loopback address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted keys (default: none). Names and tokens are unique.
    pub keys: Vec<ApiKey>,
}

/// One API key. Its `Debug` output hides the token, so logging a config leaks no secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Unique, non-empty name, used in logs and events instead of the token.
    pub name: String,
    /// The bearer token clients send (`Authorization: Bearer <token>`); unique, non-empty.
    /// Left out (empty) when `token_env` gives it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// The environment variable that holds the token instead (read by `callgate serve`,
    /// which refuses to start when it is not set; `config check` does not read it), so
    /// the file can be shipped (a container image, a package) without secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// What the key may do.
    pub role: Role,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("token_env", &self.token_env)
            .field("role", &self.role)
            .finish()
    }
}

impl ApiKey {
    /// The token: `token`, or the value of the variable `token_env` names (not set or
    /// empty: an error naming the key and the variable).
    pub fn resolve_token(&self, env: &dyn crate::Env) -> Result<String, String> {
        match &self.token_env {
            None => Ok(self.token.clone()),
            Some(var) => env.var(var).filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                format!(
                    "auth key `{}`: the environment variable `{var}` (its token_env) is not set or empty",
                    self.name
                )
            }),
        }
    }
}

/// What a key may do. Written in lowercase in the file (`"viewer"`, `"client"`,
/// `"operator"`, `"admin"`). Each role may do everything the ones before it may (the
/// order of the variants is the order of power).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read: pools, leases, tickets, stats, events.
    Viewer,
    /// Acquire; renew, release and cancel the leases and tickets it acquired; read.
    Client,
    /// What a client may, and post samples (which move adaptive caps) and pause or resume
    /// campaigns.
    Operator,
    /// Everything: change pools and campaigns, reload, act on anyone's leases.
    Admin,
}

impl Role {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Client => "client",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Checks `[auth]`: names and tokens present and unique. Messages never repeat a token.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let keys = Field::top("auth").key("keys");
    let keys = &keys;
    let list = &config.auth.keys;
    out.names("key", list.iter().map(|k| k.name.as_str()), |i| keys.index(i).key("name"));
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, key) in list.iter().enumerate() {
        let field = keys.index(i).key("token");
        match (&key.token_env, key.token.is_empty()) {
            (Some(_), false) => {
                out.push(field, format!("key `{}` has both `token` and `token_env`; give one of them", key.name));
                continue;
            }
            (Some(var), true) if var.trim().is_empty() => {
                out.push(keys.index(i).key("token_env"), format!("key `{}` has an empty `token_env`", key.name));
                continue;
            }
            (Some(_), true) => continue,
            (None, _) => {}
        }
        if key.token.trim().is_empty() {
            out.push(field, format!("key `{}` has an empty token", key.name));
        } else if let Some(&first) = seen.get(key.token.as_str()) {
            out.push(
                field,
                format!(
                    "key `{}` has the same token as key `{}`; every key needs its own token",
                    key.name, list[first].name
                ),
            );
        } else {
            seen.insert(&key.token, i);
        }
    }
}
