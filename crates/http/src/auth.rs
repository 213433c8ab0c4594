//! Bearer API keys with roles. Without configured keys (loopback only) every caller is
//! an admin.

use crate::error::{ApiError, ErrorKind};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use callgate_config::Role;
use hmac::{Hmac, Mac};
use std::sync::Arc;

type Digest = [u8; 20];

type KeyList = Arc<[(Arc<str>, Digest, Role)]>;

/// The configured keys, each kept as a keyed digest of its token.
#[derive(Debug, Default)]
pub struct Keys {
    /// A key chosen at start, never written anywhere: a token's digest says nothing
    /// outside this process.
    secret: [u8; 32],
    /// Replaced as a whole by a configuration reload; each request reads one list.
    keys: std::sync::RwLock<KeyList>,
}

impl Keys {
    /// From `(name, token, role)`.
    pub fn new(keys: impl IntoIterator<Item = (String, String, Role)>) -> Self {
        let secret = process_secret();
        let keys = std::sync::RwLock::new(Self::digested(&secret, keys));
        Keys { secret, keys }
    }

    fn digested(secret: &[u8], keys: impl IntoIterator<Item = (String, String, Role)>) -> KeyList {
        keys.into_iter().map(|(n, t, r)| (Arc::from(n), digest(secret, t.as_bytes()), r)).collect()
    }

    /// The keys from now on (a configuration reload): requests that already passed keep
    /// the role they were given.
    pub(crate) fn replace(&self, keys: impl IntoIterator<Item = (String, String, Role)>) {
        let list = Self::digested(&self.secret, keys);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = list;
    }

    fn list(&self) -> KeyList {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True when no key is configured (loopback only: everyone is an admin).
    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    /// The name and role of a presented token. Both sides are digested first, so the
    /// comparison runs over equal lengths whatever the token's length; every key is
    /// compared, each in constant time, so the answer's timing says nothing about which
    /// key matched, how much of one, or how long any is.
    pub(crate) fn role_of(&self, token: &[u8]) -> Option<(Arc<str>, Role)> {
        let given = digest(&self.secret, token);
        let mut found = None;
        for (name, d, role) in self.list().iter() {
            if constant_time_eq(d, &given) {
                found = Some((name.clone(), *role));
            }
        }
        found
    }
}

fn digest(secret: &[u8], token: &[u8]) -> Digest {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; 20],
    };
    mac.update(token);
    mac.finalize().into_bytes().into()
}

/// 32 bytes no one outside this process can guess: std's `RandomState` is seeded from the
/// operating system's random source.
fn process_secret() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

pub use callgate_providers::constant_time_eq;

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Its role.
    pub role: Role,
    /// The name of its key; `None` when no keys are configured (everyone is an admin).
    pub name: Option<Arc<str>>,
}

impl Caller {
    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::Forbidden,
                "forbidden",
                format!(
                    "this needs a key with role `{}` or above (this key is `{}`)",
                    role.as_str(),
                    self.role.as_str()
                ),
            ))
        }
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(Role::Admin)
    }

    /// The owner to check a lease or ticket against: `None` for an admin (may act on
    /// anyone's) and, when no keys are configured, for everyone.
    pub fn owner_check(&self) -> Option<&str> {
        match self.role {
            Role::Admin => None,
            _ => self.name.as_deref(),
        }
    }
}

/// The token of an `Authorization` header: the scheme is case-insensitive (RFC 9110),
/// one or more spaces follow it.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let scheme = header.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = header[7..].trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

/// A state that holds the API keys: what the extractors below read.
pub trait HasKeys {
    /// The keys callers present.
    fn keys(&self) -> &Keys;
}

impl<S: HasKeys + Send + Sync> FromRequestParts<Arc<S>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<S>) -> Result<Self, ApiError> {
        if app.keys().is_empty() {
            return Ok(Caller { role: Role::Admin, name: None });
        }
        let unauthorized = |m: &str| ApiError::new(ErrorKind::Unauthorized, "unauthorized", m);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <token>"))?;
        let token = bearer(header.as_bytes())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        match app.keys().role_of(token) {
            Some((name, role)) => Ok(Caller { role, name: Some(name) }),
            None => Err(unauthorized("unknown token")),
        }
    }
}

/// The caller of `GET /v1/events`, which may also give its token as `?token=…`: a
/// browser's `EventSource` cannot set headers. Only this endpoint reads a token from the
/// URL (URLs end up in logs and history), and the header wins when both are given.
#[derive(Clone, Debug)]
pub struct EventsCaller(pub Caller);

impl<S: HasKeys + Send + Sync> FromRequestParts<Arc<S>> for EventsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<S>) -> Result<Self, ApiError> {
        if app.keys().is_empty() || parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Caller::from_request_parts(parts, app).await.map(EventsCaller);
        }
        let token = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
        });
        let unauthorized = |m: &str| ApiError::new(ErrorKind::Unauthorized, "unauthorized", m);
        let token = token.ok_or_else(|| unauthorized("missing Authorization: Bearer <token> (or ?token=…)"))?;
        match app.keys().role_of(token.as_bytes()) {
            Some((name, role)) => Ok(EventsCaller(Caller { role, name: Some(name) })),
            None => Err(unauthorized("unknown token")),
        }
    }
}

/// The API keys with their tokens (`token`, or the variable `token_env` names), each
/// token once.
#[doc(hidden)]
pub fn auth_keys(
    cfg: &callgate_config::Config,
    env: &dyn callgate_config::Env,
) -> Result<Vec<(String, String, Role)>, String> {
    let mut keys: Vec<(String, String, Role)> = Vec::with_capacity(cfg.auth.keys.len());
    for k in &cfg.auth.keys {
        let token = k.resolve_token(env)?;
        if let Some((other, _, _)) = keys.iter().find(|(_, t, _)| *t == token) {
            return Err(format!("auth keys `{other}` and `{}` have the same token", k.name));
        }
        keys.push((k.name.clone(), token, k.role));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER  abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
    }

    #[test]
    fn tokens_of_any_length_are_compared_as_digests() {
        let keys = Keys::new([("ops".to_string(), "s3cret".to_string(), Role::Admin)]);
        assert_eq!(keys.role_of(b"s3cret").map(|(n, r)| (n.to_string(), r)), Some(("ops".to_string(), Role::Admin)));
        assert!(keys.role_of(b"s3cre").is_none());
        assert!(keys.role_of(b"s3cret-and-more").is_none());
        assert!(keys.role_of(b"").is_none());
    }
}
