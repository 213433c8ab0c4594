//! Where a phone number is: the IANA time zone of a North American area code, or of a
//! country that keeps one time zone.
//!
//! An area code that spans two zones maps to the zone most of its people live in (850:
//! Pensacola and Panama City on Central time outnumber Tallahassee on Eastern). Toll-free
//! codes (800, 888, …) and non-geographic numbers have no zone: the lead then takes its
//! campaign's `default_timezone`, or a `timezone` column that says better. Countries that
//! span several zones (Australia, Brazil, Mexico, Russia, Indonesia, …) are left out for
//! the same reason: a wrong guess would call people at night.

/// NANP area codes by time zone.
const AREA_CODES: &[(&str, &[u16])] = &[
    (
        "America/New_York",
        &[
            // CT, DE, DC, FL (peninsula), GA, KY (east), ME, MD, MA, MI (Detroit below), NH, NJ,
            // NY, NC, OH, PA, RI, SC, TN (east), VT, VA, WV
            203, 475, 860, 959, 302, 202, 771, 239, 305, 321, 324, 352, 386, 407, 561, 645, 656, 689, 727, 728, 754,
            772, 786, 813, 863, 904, 941, 954, 229, 404, 470, 478, 678, 706, 762, 770, 912, 943, 502, 606, 859, 207,
            227, 240, 301, 410, 443, 667, 339, 351, 413, 508, 617, 774, 781, 857, 978, 603, 201, 551, 609, 640, 732,
            848, 856, 862, 908, 973, 212, 315, 329, 332, 347, 363, 516, 518, 585, 607, 624, 631, 646, 680, 716, 718,
            838, 845, 914, 917, 929, 934, 252, 336, 472, 704, 743, 828, 910, 919, 980, 984, 216, 220, 234, 283, 326,
            330, 380, 419, 436, 440, 513, 567, 614, 740, 937, 215, 223, 267, 272, 412, 445, 484, 570, 582, 610, 717,
            724, 814, 835, 878, 401, 803, 839, 843, 854, 864, 423, 865, 802, 276, 434, 540, 571, 686, 703, 757, 804,
            826, 948, 304, 681,
        ],
    ),
    ("America/Detroit", &[231, 248, 269, 313, 517, 586, 616, 679, 734, 810, 906, 947, 989]),
    ("America/Indiana/Indianapolis", &[260, 317, 463, 574, 765, 812, 930]),
    (
        "America/Chicago",
        &[
            // AL, AR, FL (panhandle), IL, IN (northwest), IA, KS, KY (west), LA, MN, MS, MO,
            // NE, ND, OK, SD, TN (middle, west), TX, WI
            205, 251, 256, 334, 483, 659, 938, 327, 479, 501, 870, 448, 850, 217, 224, 309, 312, 331, 447, 464, 618,
            630, 708, 730, 773, 779, 815, 847, 861, 872, 219, 319, 515, 563, 641, 712, 316, 620, 785, 913, 270, 364,
            225, 318, 337, 457, 504, 985, 218, 320, 507, 612, 651, 763, 924, 952, 228, 601, 662, 769, 235, 314, 417,
            557, 573, 636, 660, 816, 975, 308, 402, 531, 701, 405, 539, 572, 580, 918, 605, 615, 629, 731, 901, 931,
            210, 214, 254, 281, 325, 346, 361, 409, 430, 432, 469, 512, 682, 713, 726, 737, 806, 817, 830, 832, 903,
            936, 940, 945, 956, 972, 979, 262, 274, 353, 414, 534, 608, 715, 920,
        ],
    ),
    // CO, MT, NM, UT, WY, TX (El Paso)
    ("America/Denver", &[303, 719, 720, 970, 983, 406, 505, 575, 385, 435, 801, 307, 915]),
    ("America/Boise", &[208, 986]),
    ("America/Phoenix", &[480, 520, 602, 623, 928]),
    (
        "America/Los_Angeles",
        &[
            // CA, NV, OR, WA
            209, 213, 279, 310, 323, 341, 350, 357, 369, 408, 415, 424, 442, 510, 530, 559, 562, 619, 626, 628, 650,
            657, 661, 669, 707, 714, 738, 747, 760, 805, 818, 820, 831, 837, 840, 858, 909, 916, 925, 949, 951, 702,
            725, 775, 458, 503, 541, 971, 206, 253, 360, 425, 509, 564,
        ],
    ),
    ("America/Anchorage", &[907]),
    ("Pacific/Honolulu", &[808]),
    // Canada
    (
        "America/Toronto",
        &[
            226, 249, 289, 343, 365, 382, 416, 437, 519, 548, 613, 647, 683, 705, 742, 753, 807, 905, 942, 263, 354,
            367, 418, 438, 450, 468, 514, 579, 581, 819, 873,
        ],
    ),
    ("America/Halifax", &[782, 902, 428, 506]),
    ("America/St_Johns", &[709, 879]),
    ("America/Winnipeg", &[204, 431, 584]),
    ("America/Regina", &[306, 474, 639]),
    ("America/Edmonton", &[368, 403, 587, 780, 825, 867]),
    ("America/Vancouver", &[236, 250, 257, 604, 672, 778]),
    // US territories
    ("America/Puerto_Rico", &[787, 939]),
    ("America/St_Thomas", &[340]),
    ("Pacific/Guam", &[671]),
    ("Pacific/Saipan", &[670]),
    ("Pacific/Pago_Pago", &[684]),
    // The Caribbean and Bermuda
    ("America/Nassau", &[242]),
    ("America/Barbados", &[246]),
    ("America/Anguilla", &[264]),
    ("America/Antigua", &[268]),
    ("America/Tortola", &[284]),
    ("America/Cayman", &[345]),
    ("Atlantic/Bermuda", &[441]),
    ("America/Grenada", &[473]),
    ("America/Grand_Turk", &[649]),
    ("America/Jamaica", &[658, 876]),
    ("America/Montserrat", &[664]),
    ("America/Lower_Princes", &[721]),
    ("America/St_Lucia", &[758]),
    ("America/Dominica", &[767]),
    ("America/St_Vincent", &[784]),
    ("America/Santo_Domingo", &[809, 829, 849]),
    ("America/Port_of_Spain", &[868]),
    ("America/St_Kitts", &[869]),
];

/// Countries (ISO 3166 alpha-2) that keep one time zone.
const COUNTRIES: &[(&str, &str)] = &[
    ("GB", "Europe/London"),
    ("IE", "Europe/Dublin"),
    ("FR", "Europe/Paris"),
    ("DE", "Europe/Berlin"),
    ("IT", "Europe/Rome"),
    ("NL", "Europe/Amsterdam"),
    ("BE", "Europe/Brussels"),
    ("LU", "Europe/Luxembourg"),
    ("CH", "Europe/Zurich"),
    ("AT", "Europe/Vienna"),
    ("DK", "Europe/Copenhagen"),
    ("SE", "Europe/Stockholm"),
    ("NO", "Europe/Oslo"),
    ("FI", "Europe/Helsinki"),
    ("PL", "Europe/Warsaw"),
    ("CZ", "Europe/Prague"),
    ("SK", "Europe/Bratislava"),
    ("HU", "Europe/Budapest"),
    ("RO", "Europe/Bucharest"),
    ("BG", "Europe/Sofia"),
    ("GR", "Europe/Athens"),
    ("HR", "Europe/Zagreb"),
    ("SI", "Europe/Ljubljana"),
    ("RS", "Europe/Belgrade"),
    ("EE", "Europe/Tallinn"),
    ("LV", "Europe/Riga"),
    ("LT", "Europe/Vilnius"),
    ("IS", "Atlantic/Reykjavik"),
    ("TR", "Europe/Istanbul"),
    ("IL", "Asia/Jerusalem"),
    ("AE", "Asia/Dubai"),
    ("SA", "Asia/Riyadh"),
    ("QA", "Asia/Qatar"),
    ("IN", "Asia/Kolkata"),
    ("PK", "Asia/Karachi"),
    ("BD", "Asia/Dhaka"),
    ("LK", "Asia/Colombo"),
    ("NP", "Asia/Kathmandu"),
    ("SG", "Asia/Singapore"),
    ("MY", "Asia/Kuala_Lumpur"),
    ("TH", "Asia/Bangkok"),
    ("VN", "Asia/Ho_Chi_Minh"),
    ("PH", "Asia/Manila"),
    ("JP", "Asia/Tokyo"),
    ("KR", "Asia/Seoul"),
    ("CN", "Asia/Shanghai"),
    ("HK", "Asia/Hong_Kong"),
    ("TW", "Asia/Taipei"),
    ("NZ", "Pacific/Auckland"),
    ("ZA", "Africa/Johannesburg"),
    ("NG", "Africa/Lagos"),
    ("KE", "Africa/Nairobi"),
    ("EG", "Africa/Cairo"),
    ("MA", "Africa/Casablanca"),
    ("GH", "Africa/Accra"),
    ("AR", "America/Argentina/Buenos_Aires"),
    ("CL", "America/Santiago"),
    ("CO", "America/Bogota"),
    ("PE", "America/Lima"),
    ("VE", "America/Caracas"),
    ("UY", "America/Montevideo"),
    ("PY", "America/Asuncion"),
    ("BO", "America/La_Paz"),
    ("CR", "America/Costa_Rica"),
    ("PA", "America/Panama"),
    ("GT", "America/Guatemala"),
    ("SV", "America/El_Salvador"),
    ("HN", "America/Tegucigalpa"),
    ("NI", "America/Managua"),
];

/// The zone of a NANP area code (`212` → `America/New_York`).
pub fn area_code_zone(area_code: u16) -> Option<&'static str> {
    AREA_CODES.iter().find(|(_, codes)| codes.contains(&area_code)).map(|(zone, _)| *zone)
}

/// The zone of a country that keeps one (`GB` → `Europe/London`).
pub fn country_zone(region: &str) -> Option<&'static str> {
    COUNTRIES.iter().find(|(c, _)| c.eq_ignore_ascii_case(region)).map(|(_, zone)| *zone)
}

/// The country a zone belongs to, for reading numbers written without a country code
/// (`America/Chicago` → `US`). Only zones of the tables above are known.
pub fn zone_country(zone: &str) -> Option<&'static str> {
    if let Some((c, _)) = COUNTRIES.iter().find(|(_, z)| *z == zone) {
        return Some(c);
    }
    const CANADA: &[&str] = &[
        "America/Toronto",
        "America/Halifax",
        "America/St_Johns",
        "America/Winnipeg",
        "America/Regina",
        "America/Edmonton",
        "America/Vancouver",
    ];
    const US: &[&str] = &[
        "America/New_York",
        "America/Detroit",
        "America/Indiana/Indianapolis",
        "America/Chicago",
        "America/Denver",
        "America/Boise",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
    ];
    if CANADA.contains(&zone) {
        Some("CA")
    } else if US.contains(&zone) {
        Some("US")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_is_real_and_every_code_appears_once() {
        let mut seen = std::collections::HashSet::new();
        for (zone, codes) in AREA_CODES {
            assert!(zone.parse::<chrono_tz::Tz>().is_ok(), "{zone}");
            for c in *codes {
                assert!((200..1000).contains(c), "{c}");
                assert!(seen.insert(*c), "area code {c} appears twice");
            }
        }
        for (_, zone) in COUNTRIES {
            assert!(zone.parse::<chrono_tz::Tz>().is_ok(), "{zone}");
        }
        assert!(seen.len() > 380, "{} area codes", seen.len());
    }

    #[test]
    fn known_codes_map_to_their_zones() {
        assert_eq!(area_code_zone(212), Some("America/New_York"));
        assert_eq!(area_code_zone(415), Some("America/Los_Angeles"));
        assert_eq!(area_code_zone(312), Some("America/Chicago"));
        assert_eq!(area_code_zone(602), Some("America/Phoenix"));
        assert_eq!(area_code_zone(416), Some("America/Toronto"));
        assert_eq!(area_code_zone(800), None, "toll-free has no place");
        assert_eq!(country_zone("gb"), Some("Europe/London"));
        assert_eq!(zone_country("America/Chicago"), Some("US"));
    }
}
