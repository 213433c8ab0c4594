//! Bearer API keys with roles. Without configured keys (loopback only) every caller is
//! an admin.

use super::App;
use crate::error::{ApiError, ErrorKind};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use callgate_config::Role;
use std::sync::Arc;

/// The configured keys.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    keys: Vec<(String, Vec<u8>, Role)>,
}

impl Keys {
    /// From `(name, token, role)`.
    pub fn new(keys: impl IntoIterator<Item = (String, String, Role)>) -> Self {
        Keys { keys: keys.into_iter().map(|(n, t, r)| (n, t.into_bytes(), r)).collect() }
    }

    /// The role of a presented token. Every key is compared, each in constant time, so
    /// the answer's timing says nothing about which key or how much of one matched.
    pub(crate) fn role_of(&self, token: &[u8]) -> Option<(&str, Role)> {
        let mut found = None;
        for (name, t, role) in &self.keys {
            if constant_time_eq(t, token) {
                found = Some((name.as_str(), *role));
            }
        }
        found
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who is calling.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::new(ErrorKind::Forbidden, "forbidden", "this needs an admin key")),
        }
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if app.keys.keys.is_empty() {
            return Ok(Caller { role: Role::Admin });
        }
        let unauthorized = |m: &str| ApiError::new(ErrorKind::Unauthorized, "unauthorized", m);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        match app.keys.role_of(token) {
            Some((_, role)) => Ok(Caller { role }),
            None => Err(unauthorized("unknown token")),
        }
    }
}

/// The caller of `GET /v1/events`, which may also give its token as `?token=…`: a
/// browser's `EventSource` cannot set headers. Only this endpoint reads a token from the
/// URL (URLs end up in logs and history), and the header wins when both are given.
#[derive(Clone, Copy, Debug)]
pub struct EventsCaller(pub Caller);

impl FromRequestParts<Arc<App>> for EventsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if app.keys.keys.is_empty() || parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Caller::from_request_parts(parts, app).await.map(EventsCaller);
        }
        let token = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
        });
        let unauthorized = |m: &str| ApiError::new(ErrorKind::Unauthorized, "unauthorized", m);
        let token = token.ok_or_else(|| unauthorized("missing Authorization: Bearer <token> (or ?token=…)"))?;
        match app.keys.role_of(token.as_bytes()) {
            Some((_, role)) => Ok(EventsCaller(Caller { role })),
            None => Err(unauthorized("unknown token")),
        }
    }
}
