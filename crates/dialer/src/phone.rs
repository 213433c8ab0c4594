//! Phone numbers as leads arrive: validated and normalised to E.164 with the
//! `phonenumber` crate (libphonenumber's metadata), and placed in a time zone.

use crate::zones;
use chrono_tz::Tz;
use phonenumber::country;
use phonenumber::Mode;

/// A number that passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// `+` and digits.
    pub e164: String,
    /// The country calling code (1 for NANP).
    pub calling_code: u16,
    /// The region (`US`, `GB`, …) when the number's metadata names one.
    pub region: Option<String>,
    /// The national significant number.
    pub national: u64,
}

/// Validates and normalises `text`. A number without a leading `+` is read as a national
/// number of `default_region` (e.g. `US`); without one it is refused.
pub fn normalize(text: &str, default_region: Option<&str>) -> Result<Normalized, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("no phone number".into());
    }
    if t.len() > 64 {
        return Err("the phone number is too long".into());
    }
    let international = t.starts_with('+') || t.starts_with("00");
    let region = match default_region {
        Some(r) => {
            Some(r.trim().to_ascii_uppercase().parse::<country::Id>().map_err(|_| format!("unknown country `{r}`"))?)
        }
        None => None,
    };
    if !international && region.is_none() {
        return Err(format!(
            "`{t}` has no country code: write it as +<country code><number>, or give a country (column `country`)"
        ));
    }
    // 00 is the international prefix almost everywhere outside North America.
    let text = match t.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => t.to_string(),
    };
    let n = phonenumber::parse(region, &text).map_err(|e| format!("`{t}` is not a phone number ({e})"))?;
    if !phonenumber::is_valid(&n) {
        return Err(format!("`{t}` is not a valid number"));
    }
    let e164 = n.format().mode(Mode::E164).to_string();
    // The metadata of some countries (DE) admits longer numbers than E.164's 15 digits,
    // which no carrier can dial.
    if e164.len() > 16 {
        return Err(format!("`{t}` has more than the 15 digits a phone number can have"));
    }
    Ok(Normalized {
        calling_code: n.country().code(),
        region: n.country().id().map(|id| id.as_ref().to_string()),
        national: n.national().value(),
        e164,
    })
}

/// The time zone a number lives in: for NANP numbers (+1) the area code's, else the
/// country's when the country has one zone; `None` when the number does not tell.
pub fn zone_of(n: &Normalized) -> Option<Tz> {
    let zone = if n.calling_code == 1 {
        // NANP national numbers are NPA-NXX-XXXX: the area code is the first three digits.
        let npa = n.national / 10_000_000;
        u16::try_from(npa).ok().and_then(zones::area_code_zone)
    } else {
        n.region.as_deref().and_then(zones::country_zone)
    };
    zone.and_then(|z| z.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_to_e164() {
        let n = normalize("+1 (212) 555-0123", None).unwrap();
        assert_eq!(n.e164, "+12125550123");
        assert_eq!(zone_of(&n), Some(chrono_tz::America::New_York));
        let n = normalize("(415) 555-0123", Some("us")).unwrap();
        assert_eq!(n.e164, "+14155550123");
        assert_eq!(zone_of(&n), Some(chrono_tz::America::Los_Angeles));
        let n = normalize("020 7946 0958", Some("GB")).unwrap();
        assert_eq!(n.e164, "+442079460958");
        assert_eq!(zone_of(&n), Some(chrono_tz::Europe::London));
        let n = normalize("0044 20 7946 0958", None).unwrap();
        assert_eq!(n.e164, "+442079460958");
    }

    #[test]
    fn bad_numbers_are_refused_with_a_reason() {
        assert!(normalize("", None).is_err());
        assert!(normalize("hello", Some("US")).is_err());
        assert!(normalize("2125550123", None).unwrap_err().contains("country code"));
        assert!(normalize("+1 555 000", None).is_err());
        assert!(normalize("+1 212 555 0123", Some("ZZ")).is_err());
        assert!(normalize("030 1234561234567", Some("DE")).unwrap_err().contains("15 digits"));
    }
}
