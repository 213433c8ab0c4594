//! Webhook credentials, as Vapi attaches them to a server URL (shared/providers/vapi.md):
//!
//! - no plan configured: the secret in the legacy `X-Vapi-Secret`, or in `Authorization`
//!   as `Bearer <secret>` (the scheme in any case), as callgate always accepted;
//! - `bearer`: the secret in a configurable header, with the prefix, without it, or
//!   either;
//! - `secret`: only the legacy `X-Vapi-Secret`;
//! - `hmac`: a signature (`sha256`, `sha512`, `sha1`; hex or base64; an optional prefix)
//!   over a `payload_format` template, with a timestamp that must lie within `max_skew`
//!   of callgate's clock, so a captured request cannot be replayed later.
//!
//! Every comparison hashes both sides first and compares the digests in constant time,
//! so neither the content nor the length of the secret shows in the timing.

use crate::constant_time_eq;
use base64::Engine as _;
use callgate_config::{HmacAlgorithm, HmacAuth, SignatureEncoding, WebhookAuth};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256, Sha512};

/// What the headers alone say.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Authenticated.
    Pass,
    /// Refused: the message names what was wrong.
    Fail(&'static str),
    /// The plan signs the body: decide with [`check_hmac`] once it is read.
    NeedsBody,
}

/// True when `a` and `b` are equal, in time that depends on neither content nor length.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    constant_time_eq(&Sha256::digest(a), &Sha256::digest(b))
}

/// `value` without a leading `Bearer ` (any case), if it has one.
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
}

/// `header` carries the secret: bare (`bare`), after `Bearer ` (`prefixed`), or either.
fn carries(headers: &HeaderMap, header: &str, secret: &[u8], bare: bool, prefixed: bool) -> bool {
    let Some(value) = headers.get(header).map(|v| v.as_bytes()) else { return false };
    // Both forms are compared whichever is allowed, so the timing tells nothing.
    let as_bare = same(value, secret);
    let as_prefixed = strip_bearer(value).is_some_and(|v| same(v, secret));
    (bare && as_bare) | (prefixed && as_prefixed)
}

/// Checks what the headers can prove.
pub fn check_headers(plan: Option<&WebhookAuth>, secret: &[u8], headers: &HeaderMap) -> Check {
    let ok = match plan {
        None => {
            let legacy = carries(headers, "x-vapi-secret", secret, true, false);
            let bearer = carries(headers, "authorization", secret, false, true);
            legacy | bearer
        }
        Some(WebhookAuth::Bearer { header, prefix }) => {
            let header = header.as_deref().unwrap_or("authorization");
            let (bare, prefixed) = match prefix {
                None => (true, true),
                Some(true) => (false, true),
                Some(false) => (true, false),
            };
            carries(headers, header, secret, bare, prefixed)
        }
        Some(WebhookAuth::Secret {}) => carries(headers, "x-vapi-secret", secret, true, false),
        Some(WebhookAuth::Hmac(_)) => return Check::NeedsBody,
    };
    if ok {
        Check::Pass
    } else {
        Check::Fail(match plan {
            None => "missing or wrong webhook secret (X-Vapi-Secret or Authorization: Bearer)",
            Some(WebhookAuth::Bearer { .. }) => "missing or wrong bearer token",
            _ => "missing or wrong X-Vapi-Secret",
        })
    }
}

/// The request as signed: what `payload_format` may name.
pub struct Signed<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The path and query Vapi requested.
    pub path_and_query: &'a str,
    /// The provider's `public_url`, for `{url}`.
    pub public_url: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// The bytes signed: `format` with each known `{name}` replaced.
fn payload(format: &str, req: &Signed<'_>, timestamp: &[u8], message_id: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.body.len() + format.len() + 64);
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let Some(close) = after.find('}') else { break };
        out.extend_from_slice(&rest.as_bytes()[..open]);
        let name = &after[1..close];
        match name {
            "body" => out.extend_from_slice(req.body),
            "timestamp" => out.extend_from_slice(timestamp),
            "method" => out.extend_from_slice(req.method.as_bytes()),
            "url" => {
                out.extend_from_slice(req.public_url.unwrap_or("").as_bytes());
                out.extend_from_slice(req.path_and_query.as_bytes());
            }
            "path" => out.extend_from_slice(req.path_and_query.split('?').next().unwrap_or("").as_bytes()),
            "messageId" | "id" => out.extend_from_slice(message_id),
            _ => out.extend_from_slice(&after.as_bytes()[..=close]),
        }
        rest = &after[close + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

fn mac(algorithm: HmacAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    match algorithm {
        HmacAlgorithm::Sha256 => Hmac::<Sha256>::new_from_slice(key).map(|mut m| {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }),
        HmacAlgorithm::Sha512 => Hmac::<Sha512>::new_from_slice(key).map(|mut m| {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }),
        HmacAlgorithm::Sha1 => Hmac::<sha1::Sha1>::new_from_slice(key).map(|mut m| {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }),
    }
    .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A timestamp header in Unix seconds or milliseconds (fractions allowed), as ms.
fn timestamp_ms(text: &str) -> Option<u64> {
    let t: f64 = text.trim().parse().ok().filter(|t: &f64| t.is_finite() && *t >= 0.0)?;
    // Unix seconds stay below 1e11 until the year 5138; milliseconds are above it.
    let ms = if t < 1e11 { t * 1000.0 } else { t };
    (ms < 1e16).then_some(ms as u64)
}

/// Checks an HMAC-signed request at `now_ms`.
pub fn check_hmac(
    plan: &HmacAuth,
    secret: &str,
    headers: &HeaderMap,
    req: &Signed<'_>,
    now_ms: u64,
) -> Result<(), &'static str> {
    let given = headers.get(plan.signature_header.as_str()).map(|v| v.as_bytes()).ok_or("missing signature header")?;
    let given = match &plan.signature_prefix {
        Some(prefix) => given.strip_prefix(prefix.as_bytes()).ok_or("the signature lacks its prefix")?,
        None => given,
    };
    let given = given.trim_ascii();
    let mut timestamp: &[u8] = b"";
    if plan.include_timestamp {
        let raw =
            headers.get(plan.timestamp_header.as_str()).map(|v| v.as_bytes()).ok_or("missing timestamp header")?;
        let at = std::str::from_utf8(raw).ok().and_then(timestamp_ms).ok_or("the timestamp is not a number")?;
        let skew = u64::try_from(plan.max_skew.as_millis()).unwrap_or(u64::MAX);
        if at.abs_diff(now_ms) > skew {
            return Err("the timestamp is outside the replay window");
        }
        timestamp = raw;
    }
    let message_id =
        headers.get(plan.message_id_header.as_deref().unwrap_or("x-message-id")).map(|v| v.as_bytes()).unwrap_or(b"");
    let key = if plan.secret_is_base64 {
        base64::engine::general_purpose::STANDARD.decode(secret.trim()).map_err(|_| "webhook_secret is not base64")?
    } else {
        secret.as_bytes().to_vec()
    };
    let default_format = if plan.include_timestamp { "{timestamp}.{body}" } else { "{body}" };
    let data = payload(plan.payload_format.as_deref().unwrap_or(default_format), req, timestamp, message_id);
    let digest = mac(plan.algorithm, &key, &data);
    let ok = match plan.signature_encoding {
        SignatureEncoding::Hex => same(hex(&digest).as_bytes(), &given.to_ascii_lowercase()),
        SignatureEncoding::Base64 => same(base64::engine::general_purpose::STANDARD.encode(&digest).as_bytes(), given),
    };
    if ok {
        Ok(())
    } else {
        Err("wrong signature")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_known_names_and_keep_the_rest() {
        let req = Signed {
            method: "POST",
            path_and_query: "/webhooks/vapi/v?a=1",
            public_url: Some("https://cg"),
            body: b"{}",
        };
        let p = payload("{timestamp}.{method}.{url}.{path}.{messageId}.{other}.{body}.{", &req, b"17", b"m1");
        assert_eq!(p, b"17.POST.https://cg/webhooks/vapi/v?a=1./webhooks/vapi/v.m1.{other}.{}.{");
    }

    #[test]
    fn timestamps_in_seconds_or_milliseconds() {
        assert_eq!(timestamp_ms("1780000000"), Some(1_780_000_000_000));
        assert_eq!(timestamp_ms("1780000000123"), Some(1_780_000_000_123));
        assert_eq!(timestamp_ms("1780000000.5"), Some(1_780_000_000_500));
        assert_eq!(timestamp_ms("-1"), None);
        assert_eq!(timestamp_ms("soon"), None);
        assert_eq!(timestamp_ms("1e300"), None);
    }

    #[test]
    fn comparisons_hold_across_lengths() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
        assert_eq!(strip_bearer(b"bEaReR tok"), Some(&b"tok"[..]));
        assert_eq!(strip_bearer(b"Bearer"), None);
    }
}
