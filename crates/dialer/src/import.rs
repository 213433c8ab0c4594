//! Leads as they arrive: CSV with a header row, or JSON `{ "leads": [...] }`. Every row
//! is checked on its own; a bad row is reported with its row number and reason and never
//! stops the others.
//!
//! Row numbers: in CSV, the line the record starts on (the header is row 1, so the first
//! lead is row 2, as a spreadsheet shows it); in JSON, the lead's position in `leads`
//! counting from 1. A client that uploads a large file in chunks passes `row_offset` so
//! that the numbers are those of the whole file.

use crate::phone;
use callgate_store::NewLead;
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Map, Value};

/// What a row is read against.
#[derive(Clone, Debug)]
pub struct ImportContext {
    /// The zone of a lead whose number says none.
    pub default_tz: Tz,
    /// The country of numbers written without a country code (`US`), unless a row says.
    pub default_region: Option<String>,
    /// Added to every row number.
    pub row_offset: u64,
}

/// A row that was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Its row number.
    pub row: u64,
    /// The lead.
    pub lead: NewLead,
}

/// A row that was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = RejectedRow)]
pub struct Rejected {
    /// Its row number.
    pub row: u64,
    /// Why.
    pub reason: String,
}

/// A row that was skipped as a duplicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = SkippedRow)]
pub struct Skipped {
    /// Its row number.
    pub row: u64,
    /// The number, normalised.
    pub phone: String,
    /// Why (`already in the campaign`, `the same number as row 4`).
    pub reason: String,
}

/// Everything read from one upload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// Good rows, in order.
    pub rows: Vec<Row>,
    /// Refused rows.
    pub rejected: Vec<Rejected>,
}

/// Custom variables of one lead, at most this large as JSON (they travel with every call).
const MAX_VARS_BYTES: usize = 8 * 1024;

const PHONE: &[&str] = &["phone", "phone_number", "phonenumber", "number", "mobile", "telephone", "tel", "msisdn"];
const NAME: &[&str] = &["name", "full_name", "fullname"];
const FIRST: &[&str] = &["first_name", "firstname", "given_name"];
const LAST: &[&str] = &["last_name", "lastname", "surname", "family_name"];
const TZ: &[&str] = &["timezone", "time_zone", "tz"];
const SCORE: &[&str] = &["score"];
const COUNTRY: &[&str] = &["country", "country_code", "region"];

/// Reads a CSV upload. Fails as a whole when it has no usable header, or when a quoted
/// field never closes (see [`unclosed_quote`]).
pub fn parse_csv(bytes: &[u8], ctx: &ImportContext) -> Result<Parsed, String> {
    if let Some(row) = unclosed_quote(bytes) {
        return Err(unclosed_quote_message(row + ctx.row_offset));
    }
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("cannot read the header row: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase().replace([' ', '-'], "_"))
        .collect();
    let find = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let phone_col = find(PHONE).ok_or_else(|| {
        format!("the header row has no phone column (one of: {}); it has: {}", PHONE.join(", "), headers.join(", "))
    })?;
    let (name_col, first_col, last_col) = (find(NAME), find(FIRST), find(LAST));
    let (tz_col, score_col, country_col) = (find(TZ), find(SCORE), find(COUNTRY));
    let known = [Some(phone_col), name_col, first_col, last_col, tz_col, score_col, country_col];
    let mut out = Parsed::default();
    let mut record = csv::StringRecord::new();
    let lines = LineIndex::new(bytes);
    loop {
        let at = lines.line(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let row = e.position().map_or(at, |p| lines.line(p.byte())) + ctx.row_offset;
                // A broken record (bad quoting, invalid UTF-8): report it and go on if the
                // reader can; a reader that cannot move on ends the upload here.
                let before = reader.position().byte();
                out.rejected.push(Rejected { row, reason: format!("unreadable row: {e}") });
                if reader.position().byte() == before {
                    break;
                }
                continue;
            }
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let row = record.position().map_or(at, |p| lines.line(p.byte())) + ctx.row_offset;
        let get = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|v| !v.is_empty());
        let name = match get(name_col) {
            Some(n) => Some(n.to_string()),
            None => {
                let parts: Vec<&str> = [get(first_col), get(last_col)].into_iter().flatten().collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }
        };
        let mut vars = Map::new();
        for (i, h) in headers.iter().enumerate() {
            if known.contains(&Some(i)) || h.is_empty() {
                continue;
            }
            if let Some(v) = record.get(i).filter(|v| !v.is_empty()) {
                vars.insert(h.clone(), Value::String(v.to_string()));
            }
        }
        let fields = Fields {
            phone: get(Some(phone_col)).unwrap_or(""),
            name,
            timezone: get(tz_col),
            score: match get(score_col) {
                None => Ok(0.0),
                Some(s) => s.parse::<f64>().map_err(|_| format!("score `{s}` is not a number")),
            },
            country: get(country_col),
            vars,
        };
        match lead_of(fields, ctx) {
            Ok(lead) => out.rows.push(Row { row, lead }),
            Err(reason) => out.rejected.push(Rejected { row, reason }),
        }
    }
    Ok(out)
}

/// Numbers read for a suppression list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedNumbers {
    /// Good numbers as [`crate::dnc::key`]s, in order (duplicates kept: the list drops them).
    pub numbers: Vec<u64>,
    /// Refused rows.
    pub rejected: Vec<Rejected>,
}

/// Reads a suppression list: CSV with a header row that names a phone column (as a lead
/// upload), or, when the first row is itself a number, a bare column of numbers. Numbers
/// are validated and normalised as leads are (plain North American digits by their
/// structure, [`crate::dnc::fast_nanp`]); a row's `country` column, else
/// `default_region`, reads a number written without a country code. Other columns are
/// ignored.
pub fn parse_numbers_csv(bytes: &[u8], default_region: Option<&str>, row_offset: u64) -> Result<ParsedNumbers, String> {
    if let Some(row) = unclosed_quote(bytes) {
        return Err(unclosed_quote_message(row + row_offset));
    }
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).has_headers(false).trim(csv::Trim::All).from_reader(bytes);
    let mut out = ParsedNumbers::default();
    let mut record = csv::StringRecord::new();
    let lines = LineIndex::new(bytes);
    let mut columns: Option<(usize, Option<usize>)> = None;
    loop {
        let at = lines.line(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let row = e.position().map_or(at, |p| lines.line(p.byte())) + row_offset;
                let before = reader.position().byte();
                out.rejected.push(Rejected { row, reason: format!("unreadable row: {e}") });
                if reader.position().byte() == before {
                    break;
                }
                continue;
            }
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let row = record.position().map_or(at, |p| lines.line(p.byte())) + row_offset;
        let (phone_col, country_col) = match columns {
            Some(c) => c,
            None => {
                let headers: Vec<String> = record
                    .iter()
                    .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase().replace([' ', '-'], "_"))
                    .collect();
                let find = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
                match find(PHONE) {
                    Some(p) => {
                        columns = Some((p, find(COUNTRY)));
                        continue;
                    }
                    // No header: a bare list of numbers, this row the first.
                    None if headers.len() == 1 && headers[0].bytes().any(|b| b.is_ascii_digit()) => {
                        columns = Some((0, None));
                        (0, None)
                    }
                    None => {
                        return Err(format!(
                            "the header row has no phone column (one of: {}); it has: {}",
                            PHONE.join(", "),
                            headers.join(", ")
                        ))
                    }
                }
            }
        };
        let phone = record.get(phone_col).unwrap_or("");
        let region = country_col.and_then(|c| record.get(c)).filter(|c| !c.is_empty()).or(default_region);
        if let Some(k) = crate::dnc::fast_nanp(phone, region) {
            out.numbers.push(k);
            continue;
        }
        match phone::normalize(phone, region).map(|n| crate::dnc::key(&n.e164)) {
            Ok(Some(k)) => out.numbers.push(k),
            Ok(None) => out.rejected.push(Rejected { row, reason: format!("`{phone}` is not an E.164 number") }),
            Err(e) => out.rejected.push(Rejected { row, reason: e }),
        }
    }
    Ok(out)
}

/// Line numbers from byte offsets. The CSV reader's own count misses blank lines, and a
/// record's position is where the reader started, before the blank lines it skipped.
pub struct LineIndex<'a> {
    bytes: &'a [u8],
    starts: Vec<u64>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the line starts of `bytes`.
    pub fn new(bytes: &'a [u8]) -> LineIndex<'a> {
        let mut starts = vec![0u64];
        starts.extend(bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i as u64 + 1));
        LineIndex { bytes, starts }
    }

    /// The 1-based line on which the record read from byte `offset` starts.
    pub fn line(&self, offset: u64) -> u64 {
        let skipped = self
            .bytes
            .get(offset as usize..)
            .map_or(0, |rest| rest.iter().take_while(|b| matches!(b, b'\n' | b'\r')).count());
        let offset = offset + skipped as u64;
        self.starts.partition_point(|&s| s <= offset) as u64
    }

    /// The byte offset at which the record read from `offset` starts (after blank lines).
    pub fn record_start(&self, offset: u64) -> u64 {
        offset
            + self
                .bytes
                .get(offset as usize..)
                .map_or(0, |rest| rest.iter().take_while(|b| matches!(b, b'\n' | b'\r')).count()) as u64
    }
}

/// The row (the line its record starts on) of a quoted field that is still open at the
/// end of the upload, if any. The CSV reader takes everything after such a quote, to the
/// end, as one field: the rows after it would vanish into one broken row, so the upload
/// is refused instead. Follows the reader's dialect: a `"` opens a quoted field only as
/// the first byte of a field, `""` inside one is a literal quote, and a quote in the
/// middle of an unquoted field is a literal.
pub fn unclosed_quote(bytes: &[u8]) -> Option<u64> {
    #[derive(Clone, Copy)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        /// A `"` inside a quoted field: the field's end, or the first half of `""`.
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let (mut line, mut record_line, mut opened_in) = (1u64, 1u64, 1u64);
    let mut between_records = true;
    for &b in bytes {
        let newline = matches!(b, b'\n' | b'\r');
        if between_records && !newline {
            between_records = false;
            record_line = line;
        }
        state = match (state, b) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::FieldStart, b'"') => {
                opened_in = record_line;
                State::Quoted
            }
            (_, b',') => State::FieldStart,
            (_, _) if newline => {
                between_records = true;
                State::FieldStart
            }
            _ => State::Unquoted,
        };
        if b == b'\n' {
            line += 1;
        }
    }
    matches!(state, State::Quoted).then_some(opened_in)
}

/// Why an upload with an unclosed quote is refused, naming its row.
pub fn unclosed_quote_message(row: u64) -> String {
    format!(
        "row {row} opens a quoted field (\") that never closes, so every row after it would be read as part \
         of it; close the quote (a quote inside a quoted field is written twice: \"\")"
    )
}

/// Reads a JSON upload: `{ "leads": [{ "phone", "timezone", "name", "score", "vars",
/// "country" }] }`. Fails as a whole only when the shape is wrong.
pub fn parse_json(bytes: &[u8], ctx: &ImportContext) -> Result<Parsed, String> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON body: {e}"))?;
    let Some(obj) = body.as_object() else { return Err("the body must be an object: { \"leads\": [...] }".into()) };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "leads") {
        return Err(format!("unknown field `{k}` (the body is {{ \"leads\": [...] }})"));
    }
    let Some(leads) = obj.get("leads").and_then(Value::as_array) else {
        return Err("`leads` must be an array of leads".into());
    };
    let mut out = Parsed::default();
    for (i, item) in leads.iter().enumerate() {
        let row = i as u64 + 1 + ctx.row_offset;
        match json_lead(item, ctx) {
            Ok(lead) => out.rows.push(Row { row, lead }),
            Err(reason) => out.rejected.push(Rejected { row, reason }),
        }
    }
    Ok(out)
}

fn json_lead(item: &Value, ctx: &ImportContext) -> Result<NewLead, String> {
    let obj = item.as_object().ok_or("a lead must be an object")?;
    const FIELDS: [&str; 6] = ["phone", "timezone", "name", "score", "vars", "country"];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field `{k}` (fields: {})", FIELDS.join(", ")));
    }
    let text = |k: &str| -> Result<Option<&str>, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.trim().is_empty())),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    let vars = match obj.get("vars") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("`vars` must be an object".into()),
    };
    let fields = Fields {
        phone: text("phone")?.unwrap_or(""),
        name: text("name")?.map(str::to_string),
        timezone: text("timezone")?,
        score: match obj.get("score") {
            None | Some(Value::Null) => Ok(0.0),
            Some(v) => v.as_f64().ok_or_else(|| "`score` must be a number".to_string()),
        },
        country: text("country")?,
        vars,
    };
    lead_of(fields, ctx)
}

struct Fields<'a> {
    phone: &'a str,
    name: Option<String>,
    timezone: Option<&'a str>,
    score: Result<f64, String>,
    country: Option<&'a str>,
    vars: Map<String, Value>,
}

fn lead_of(f: Fields<'_>, ctx: &ImportContext) -> Result<NewLead, String> {
    if f.phone.trim().is_empty() {
        return Err("no phone number".into());
    }
    let region = f.country.or(ctx.default_region.as_deref());
    let number = phone::normalize(f.phone, region)?;
    let tz: Tz = match f.timezone {
        Some(t) => t.trim().parse().map_err(|_| format!("`{t}` is not an IANA time zone (e.g. America/Chicago)"))?,
        None => phone::zone_of(&number).unwrap_or(ctx.default_tz),
    };
    let score = f.score?;
    if !score.is_finite() {
        return Err("score must be a finite number".into());
    }
    let name = f.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > 200) {
        return Err("name is longer than 200 bytes".into());
    }
    let vars = if f.vars.is_empty() {
        None
    } else {
        let text = Value::Object(f.vars).to_string();
        if text.len() > MAX_VARS_BYTES {
            return Err(format!("vars are larger than {MAX_VARS_BYTES} bytes"));
        }
        Some(text)
    };
    Ok(NewLead { phone: number.e164, name, timezone: tz.name().to_string(), score, vars })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_lists_read_numbers_with_row_numbers() {
        let p =
            parse_numbers_csv(b"name,phone\nA,+1 212 555 0123\nB,nope\n\nC,(415) 555-0123\n", Some("US"), 0).unwrap();
        assert_eq!(p.numbers, vec![12_125_550_123, 14_155_550_123]);
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].row, 3);
        let p = parse_numbers_csv(b"+12125550123\n+14155550123\n", None, 10).unwrap();
        assert_eq!(p.numbers.len(), 2, "a bare column");
        let p = parse_numbers_csv(b"2125550123\n", None, 10).unwrap();
        assert_eq!(p.rejected[0].row, 11, "no country: refused with its row");
        assert!(parse_numbers_csv(b"name,email\nA,a@b\n", None, 0).unwrap_err().contains("no phone column"));
    }

    fn ctx() -> ImportContext {
        ImportContext { default_tz: chrono_tz::UTC, default_region: None, row_offset: 0 }
    }

    #[test]
    fn csv_rows_are_read_with_their_line_numbers() {
        let csv = "Phone,First Name,Last Name,score,plan\n\
                   +1 212 555 0123,Ada,Lovelace,5,gold\n\
                   not a number,Bob,,1,\n\
                   \n\
                   +44 20 7946 0958,,,x,silver\n\
                   \"+1 (415) 555-0123\",\"Grace\nHopper\",,2,\n\
                   +1 312 555 0123,Zed,,3,\n";
        let p = parse_csv(csv.as_bytes(), &ctx()).unwrap();
        let rows: Vec<(u64, &str)> = p.rows.iter().map(|r| (r.row, r.lead.phone.as_str())).collect();
        assert_eq!(rows, [(2, "+12125550123"), (6, "+14155550123"), (8, "+13125550123")]);
        assert_eq!(p.rows[0].lead.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(p.rows[0].lead.timezone, "America/New_York");
        assert_eq!(p.rows[0].lead.vars.as_deref(), Some(r#"{"plan":"gold"}"#));
        assert_eq!(p.rows[1].lead.timezone, "America/Los_Angeles");
        let rejected: Vec<u64> = p.rejected.iter().map(|r| r.row).collect();
        assert_eq!(rejected, [3, 5]);
        assert!(p.rejected[1].reason.contains("score"), "{:?}", p.rejected);
    }

    #[test]
    fn a_quote_that_never_closes_refuses_the_upload_with_its_row() {
        let csv = "phone,name\n\
                   +1 212 555 0123,Ada\n\
                   +1 415 555 0123,\"Bob\n\
                   +1 312 555 0123,Cy\n\
                   +1 646 555 0123,Dee\n";
        let e = parse_csv(csv.as_bytes(), &ctx()).unwrap_err();
        assert!(e.starts_with("row 3 opens a quoted field"), "{e}");
        // In a chunk of a larger file, the row is the file's.
        let e = parse_csv(csv.as_bytes(), &ImportContext { row_offset: 1000, ..ctx() }).unwrap_err();
        assert!(e.starts_with("row 1003 "), "{e}");
        // A record that starts on row 3 with a closed multi-line field, then opens another.
        assert_eq!(unclosed_quote(b"phone,name\n1,a\n\"2\n\",\"b\n3,c\n"), Some(3));
    }

    #[test]
    fn quotes_that_close_or_are_literal_are_not_taken_for_an_open_one() {
        for csv in [
            "phone,name\n1,\"Ada \"\"the\"\" Countess\"\n2,Bob\n",
            "phone,name\n1,\"Grace\nHopper\"\n",
            "phone,name\n1,5\" screen\n2,Bob\n",
            "phone,name\r\n1,\"Ada\"\r\n",
            "phone,name\n1,\"\"\n",
        ] {
            assert_eq!(unclosed_quote(csv.as_bytes()), None, "{csv:?}");
            assert!(parse_csv(csv.as_bytes(), &ctx()).is_ok(), "{csv:?}");
        }
    }

    #[test]
    fn a_csv_without_a_phone_column_is_refused_whole() {
        assert!(parse_csv(b"name,email\nAda,a@b.c\n", &ctx()).unwrap_err().contains("phone"));
    }

    #[test]
    fn json_leads_are_checked_one_by_one() {
        let body = br#"{ "leads": [
            { "phone": "+12125550123", "timezone": "America/Chicago", "name": "Ada", "score": 3, "vars": { "plan": "gold" } },
            { "phone": "+12125550124", "timezone": "Mars/Olympus" },
            { "phone": 5 },
            { "phone": "2125550125", "country": "US" },
            { "phone": "+12125550126", "colour": "red" }
        ] }"#;
        let p = parse_json(body, &ImportContext { row_offset: 10, ..ctx() }).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].lead.timezone, "America/Chicago", "the column wins over the area code");
        assert_eq!(p.rows[1].lead.phone, "+12125550125");
        let rejected: Vec<u64> = p.rejected.iter().map(|r| r.row).collect();
        assert_eq!(rejected, [12, 13, 15]);
        assert!(parse_json(b"[]", &ctx()).is_err());
        assert!(parse_json(b"{\"leads\": 1}", &ctx()).is_err());
    }

    #[test]
    fn national_numbers_need_a_country() {
        let p = parse_csv(b"phone\n2125550123\n", &ctx()).unwrap();
        assert!(p.rejected[0].reason.contains("country code"));
        let p =
            parse_csv(b"phone\n2125550123\n", &ImportContext { default_region: Some("US".into()), ..ctx() }).unwrap();
        assert_eq!(p.rows[0].lead.phone, "+12125550123");
    }
}
