//! The callee's region from the number (its country; for US and Canadian numbers, the
//! state or province of the area code), and what the `[[calling_rules]]` of that region
//! allow: when a call may start, and how many attempts in 24 hours.
//!
//! An area code names where the number was issued, not where its owner is now (a Miami
//! number may ring in New York): the rules of the number's region are what callgate can
//! check, and a campaign whose leads say better can name a stricter window of its own.
//! Area codes shared by several states or provinces (902: Nova Scotia and Prince Edward
//! Island; 867: the territories) name no state: only the country's rules apply there.

use crate::phone::Normalized;
use crate::window::Calendar;
use callgate_config::CallingRule;
use chrono_tz::Tz;

/// NANP area codes by US state (and DC, PR) or Canadian province, as assigned by NANPA.
const AREA_STATES: &[(&str, &[u16])] = &[
    ("US-AL", &[205, 251, 256, 334, 483, 659, 938]),
    ("US-AK", &[907]),
    ("US-AZ", &[480, 520, 602, 623, 928]),
    ("US-AR", &[327, 479, 501, 870]),
    (
        "US-CA",
        &[
            209, 213, 279, 310, 323, 341, 350, 357, 369, 408, 415, 424, 442, 510, 530, 559, 562, 619, 626, 628, 650,
            657, 661, 669, 707, 714, 738, 747, 760, 805, 818, 820, 831, 837, 840, 858, 909, 916, 925, 949, 951,
        ],
    ),
    ("US-CO", &[303, 719, 720, 970, 983]),
    ("US-CT", &[203, 475, 860, 959]),
    ("US-DE", &[302]),
    ("US-DC", &[202, 771]),
    (
        "US-FL",
        &[
            239, 305, 321, 324, 352, 386, 407, 448, 561, 645, 656, 689, 727, 728, 754, 772, 786, 813, 850, 863, 904,
            941, 954,
        ],
    ),
    ("US-GA", &[229, 404, 470, 478, 678, 706, 762, 770, 912, 943]),
    ("US-HI", &[808]),
    ("US-ID", &[208, 986]),
    ("US-IL", &[217, 224, 309, 312, 331, 447, 464, 618, 630, 708, 730, 773, 779, 815, 847, 861, 872]),
    ("US-IN", &[219, 260, 317, 463, 574, 765, 812, 930]),
    ("US-IA", &[319, 515, 563, 641, 712]),
    ("US-KS", &[316, 620, 785, 913]),
    ("US-KY", &[270, 364, 502, 606, 859]),
    ("US-LA", &[225, 318, 337, 457, 504, 985]),
    ("US-ME", &[207]),
    ("US-MD", &[227, 240, 301, 410, 443, 667]),
    ("US-MA", &[339, 351, 413, 508, 617, 774, 781, 857, 978]),
    ("US-MI", &[231, 248, 269, 313, 517, 586, 616, 679, 734, 810, 906, 947, 989]),
    ("US-MN", &[218, 320, 507, 612, 651, 763, 924, 952]),
    ("US-MS", &[228, 601, 662, 769]),
    ("US-MO", &[235, 314, 417, 557, 573, 636, 660, 816, 975]),
    ("US-MT", &[406]),
    ("US-NE", &[308, 402, 531]),
    ("US-NV", &[702, 725, 775]),
    ("US-NH", &[603]),
    ("US-NJ", &[201, 551, 609, 640, 732, 848, 856, 862, 908, 973]),
    ("US-NM", &[505, 575]),
    (
        "US-NY",
        &[212, 315, 329, 332, 347, 363, 516, 518, 585, 607, 624, 631, 646, 680, 716, 718, 838, 845, 914, 917, 929, 934],
    ),
    ("US-NC", &[252, 336, 472, 704, 743, 828, 910, 919, 980, 984]),
    ("US-ND", &[701]),
    ("US-OH", &[216, 220, 234, 283, 326, 330, 380, 419, 436, 440, 513, 567, 614, 740, 937]),
    ("US-OK", &[405, 539, 572, 580, 918]),
    ("US-OR", &[458, 503, 541, 971]),
    ("US-PA", &[215, 223, 267, 272, 412, 445, 484, 570, 582, 610, 717, 724, 814, 835, 878]),
    ("US-RI", &[401]),
    ("US-SC", &[803, 839, 843, 854, 864]),
    ("US-SD", &[605]),
    ("US-TN", &[423, 615, 629, 731, 865, 901, 931]),
    (
        "US-TX",
        &[
            210, 214, 254, 281, 325, 346, 361, 409, 430, 432, 469, 512, 682, 713, 726, 737, 806, 817, 830, 832, 903,
            915, 936, 940, 945, 956, 972, 979,
        ],
    ),
    ("US-UT", &[385, 435, 801]),
    ("US-VT", &[802]),
    ("US-VA", &[276, 434, 540, 571, 686, 703, 757, 804, 826, 948]),
    ("US-WA", &[206, 253, 360, 425, 509, 564]),
    ("US-WV", &[304, 681]),
    ("US-WI", &[262, 274, 353, 414, 534, 608, 715, 920]),
    ("US-WY", &[307]),
    ("US-PR", &[787, 939]),
    // Canada
    ("CA-ON", &[226, 249, 289, 343, 365, 382, 416, 437, 519, 548, 613, 647, 683, 705, 742, 753, 807, 905, 942]),
    ("CA-QC", &[263, 354, 367, 418, 438, 450, 468, 514, 579, 581, 819, 873]),
    ("CA-NB", &[428, 506]),
    ("CA-NL", &[709, 879]),
    ("CA-MB", &[204, 431, 584]),
    ("CA-SK", &[306, 474, 639]),
    ("CA-AB", &[368, 403, 587, 780, 825]),
    ("CA-BC", &[236, 250, 257, 604, 672, 778]),
];

/// The state or province of a NANP area code (`US-FL`), if it names one.
pub fn area_code_region(npa: u16) -> Option<&'static str> {
    AREA_STATES.iter().find(|(_, codes)| codes.contains(&npa)).map(|(r, _)| *r)
}

/// The region of a number: `US-FL` (a US or Canadian area code that names its state or
/// province), else its country (`US`, `GB`), else `None`.
pub fn region_of(n: &Normalized) -> Option<String> {
    if n.calling_code == 1 {
        let npa = u16::try_from(n.national / 10_000_000).ok();
        if let Some(r) = npa.and_then(area_code_region) {
            return Some(r.to_string());
        }
    }
    n.region.clone()
}

/// The rules of `rules` that cover a number of `region`.
pub fn covering<'a>(rules: &'a [CallingRule], region: Option<&str>) -> Vec<&'a CallingRule> {
    match region {
        Some(r) => rules.iter().filter(|rule| rule.covers(r)).collect(),
        None => Vec::new(),
    }
}

/// The first instant at or after `now` at which every rule's window is open for a callee
/// in `tz` (`now` itself when they all are), or `None` when they never all are (days that
/// exclude each other).
pub fn open_at(rules: &[&CallingRule], tz: Tz, now: u64) -> Option<u64> {
    let calendars: Vec<Calendar> =
        rules.iter().filter_map(|r| r.window_config().ok()).map(|w| Calendar::from_window(&w, Vec::new())).collect();
    let mut t = now;
    // Each step moves `t` to the latest next opening; windows that overlap meet within a
    // few steps (a week of days at most), windows that never overlap never do.
    for _ in 0..64 {
        let next = calendars.iter().map(|c| c.eligible_at(tz, t)).try_fold(t, |m, e| e.map(|e| m.max(e)))?;
        if next == t {
            return Some(t);
        }
        t = next;
    }
    None
}

/// The local time at `t` (Unix ms) in `tz`, as the audit trail shows it
/// (`2026-01-15 20:30:00 EST`).
pub fn local_time(tz: Tz, t: u64) -> String {
    use chrono::TimeZone as _;
    chrono::Utc
        .timestamp_millis_opt(i64::try_from(t).unwrap_or(i64::MAX))
        .single()
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string())
        .unwrap_or_default()
}

/// The smallest cap of attempts in 24 hours among `rules`, if any has one.
pub fn max_per_day(rules: &[&CallingRule]) -> Option<u32> {
    rules.iter().filter_map(|r| r.max_per_day).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::normalize;
    use crate::zones::area_code_zone;
    use callgate_config::default_calling_rules;

    fn at(text: &str) -> u64 {
        callgate_config::parse_datetime(text, chrono_tz::UTC).unwrap()
    }

    #[test]
    fn the_area_code_names_the_state() {
        let region = |n: &str| region_of(&normalize(n, None).unwrap());
        assert_eq!(region("+13055550123").as_deref(), Some("US-FL"));
        assert_eq!(region("+12125550123").as_deref(), Some("US-NY"));
        assert_eq!(region("+15145550123").as_deref(), Some("CA-QC"));
        assert_eq!(region("+19025550123").as_deref(), Some("CA"), "902 spans two provinces");
        assert_eq!(region("+442079460958").as_deref(), Some("GB"));
    }

    #[test]
    fn every_state_area_code_has_a_zone() {
        for (state, codes) in AREA_STATES {
            for &c in *codes {
                assert!(area_code_zone(c).is_some(), "{state} {c} has no time zone");
            }
        }
    }

    #[test]
    fn a_florida_number_waits_for_the_morning_at_half_past_eight() {
        let rules = default_calling_rules();
        let ny = chrono_tz::America::New_York;
        // 20:30 in New York and Miami.
        let now = at("2026-06-10T00:30:00Z");
        let fl = covering(&rules, Some("US-FL"));
        let nyc = covering(&rules, Some("US-NY"));
        assert_eq!(fl.len(), 2, "the federal rule and Florida's");
        assert_eq!(open_at(&nyc, ny, now), Some(now));
        assert_eq!(open_at(&fl, ny, now), Some(at("2026-06-10T12:00:00Z")), "08:00 the next morning");
        assert_eq!(max_per_day(&fl), Some(3));
        assert_eq!(max_per_day(&nyc), None);
    }
}
