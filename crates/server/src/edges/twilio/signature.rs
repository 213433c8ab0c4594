//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + every POST parameter, sorted by
//! name, each name immediately followed by its value)). A name sent several times counts
//! once per distinct value, values sorted.
//!
//! Twilio's helper libraries accept a signature computed with or without the default port
//! in the URL (`https://host/…` and `https://host:443/…`), since what Twilio signed
//! depends on how the URL was written in its console; so does this.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The signature Twilio sends for a request to `url` with these form parameters.
pub(crate) fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // By name, a repeated name's values sorted and each distinct value once, as Twilio's
    // libraries compute it.
    sorted.sort();
    sorted.dedup();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        // HMAC takes a key of any length; this cannot happen.
        return String::new();
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// True when `given` is the signature of this request. Every URL form is compared in
/// constant time.
pub(crate) fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: Option<&[u8]>) -> bool {
    let Some(given) = given else { return false };
    let mut ok = false;
    for candidate in url_forms(url) {
        ok |= crate::edges::api::constant_time_eq(signature(auth_token, &candidate, params).as_bytes(), given);
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
