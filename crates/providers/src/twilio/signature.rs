//! `X-Twilio-Signature`: base64(HMAC(key, URL + every POST parameter, sorted by name, each
//! name immediately followed by its value)). A name sent several times counts once per
//! distinct value, values sorted.
//!
//! Two schemes, as the official `RequestValidator` implements them:
//! - classic: HMAC-SHA1 keyed with the account's auth token;
//! - SharedKey: announced by `X-Twilio-Webhooks-Signature-Settings:
//!   key=<shared key id>,algorithm=HMAC_SHA256`, an HMAC with the named algorithm keyed
//!   with the SharedKey secret (the provider's `shared_key`; without one, the auth token).
//!   A header without `algorithm=` means the classic scheme; an algorithm callgate does
//!   not know fails the check.
//!
//! Twilio's helper libraries accept a signature computed with or without the port in the
//! URL (`https://host/…` and `https://host:443/…`), since what Twilio signed depends on
//! how the URL was written in its console; so does this.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// The header that announces the SharedKey scheme.
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";

/// A signing algorithm Twilio names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `HMAC_SHA1`, the classic scheme.
    Sha1,
    /// `HMAC_SHA256`, the SharedKey scheme.
    Sha256,
}

impl Algorithm {
    /// The algorithm a request's settings header names: `None` for one callgate does not
    /// know; the classic scheme when the header is absent or names none.
    pub fn from_settings(header: Option<&[u8]>) -> Option<Algorithm> {
        let text = match header {
            None => return Some(Algorithm::Sha1),
            Some(h) => std::str::from_utf8(h).ok()?,
        };
        let named = text.split(',').find_map(|part| {
            let (name, value) = part.split_once('=')?;
            (name.trim() == "algorithm" && !value.trim().is_empty()).then(|| value.trim())
        });
        match named.map(str::to_ascii_uppercase).as_deref() {
            None | Some("HMAC_SHA1") => Some(Algorithm::Sha1),
            Some("HMAC_SHA256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
/// The classic signature Twilio sends for a request to `url` with these form parameters.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    signature_with(Algorithm::Sha1, auth_token, url, params)
}

/// The signature of a request with `algorithm` and `key`.
pub fn signature_with(algorithm: Algorithm, key: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // By name, a repeated name's values sorted and each distinct value once, as Twilio's
    // libraries compute it.
    sorted.sort();
    sorted.dedup();
    let feed = |mac: &mut dyn FnMut(&[u8])| {
        mac(url.as_bytes());
        for (name, value) in &sorted {
            mac(name.as_bytes());
            mac(value.as_bytes());
        }
    };
    let bytes = match algorithm {
        Algorithm::Sha1 => {
            // HMAC takes a key of any length: `new_from_slice` cannot fail.
            let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key.as_bytes()) else { return String::new() };
            feed(&mut |b| mac.update(b));
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha256 => {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else { return String::new() };
            feed(&mut |b| mac.update(b));
            mac.finalize().into_bytes().to_vec()
        }
    };
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
/// True when `given` is the classic signature of this request.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: Option<&[u8]>) -> bool {
    verify_with(Algorithm::Sha1, auth_token, url, params, given)
}

/// True when `given` is the signature of this request with `algorithm` and `key`. Every
/// URL form is compared in constant time.
pub fn verify_with(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    params: &[(String, String)],
    given: Option<&[u8]>,
) -> bool {
    let Some(given) = given else { return false };
    let mut ok = false;
    for candidate in url_forms(url) {
        let expected = signature_with(algorithm, key, &candidate, params);
        ok |= crate::constant_time_eq(expected.as_bytes(), given);
    }
    ok
}

/// The URL as given, and the same with the scheme's default port added (when it has no
/// port) or with its port removed (when it has one), as Twilio's libraries compare.
fn url_forms(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else { return out };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (userinfo, hostport) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
    let at = if userinfo.is_empty() { String::new() } else { format!("{userinfo}@") };
    // An IPv6 host holds colons of its own; its port follows the `]`.
    let port_sep = if hostport.starts_with('[') { hostport.rfind("]:").map(|i| i + 1) } else { hostport.rfind(':') };
    match port_sep {
        Some(i) => out.push(format!("{scheme}://{at}{}{path}", &hostport[..i])),
        None => out.push(format!("{scheme}://{at}{hostport}:{default_port}{path}")),
    }
    out
}
