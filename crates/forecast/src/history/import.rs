//! Reading calls of the past from a file: a CSV with a header, or a Vapi or Twilio export.
//!
//! - **CSV**: a header row naming the columns; `started_at` (RFC 3339) is required,
//!   `ended_at` (RFC 3339), `flow`, `number`, `outcome` and `id` are optional, other columns
//!   are ignored (exports carry many). Rows are numbered as the file's lines.
//! - **Vapi**: what `GET /call` answers, a bare JSON array of calls (the documented shape):
//!   `id`, `startedAt` (else `createdAt`), `endedAt`, `endedReason`, `customer.number`.
//!   Assumed beyond the document: the call's `type`; a call of type `outboundPhoneCall` is
//!   not inbound demand and is skipped.
//! - **Twilio**: one page of `GET …/Calls.json`, `{ "calls": [ … ] }`. Assumed from Twilio's
//!   public REST reference (not in our provider notes): `sid`, `start_time` (else
//!   `date_created`) and `end_time` in RFC 2822, `status`, `to`, `direction`; calls whose
//!   direction starts with `outbound` are skipped.
//!
//! A file is taken whole or not at all: one bad row and nothing is imported; the errors
//! (the first [`MAX_ERRORS`], each with its row) say what to fix.

use super::{Call, MAX_FIELD};
use crate::ForecastError;
use chrono::{DateTime, FixedOffset};
use std::io::Read;
use std::path::Path;

/// The most errors listed (the rest are counted).
pub const MAX_ERRORS: usize = 100;
/// The most calls one file may hold.
pub const MAX_ROWS: u64 = 5_000_000;
/// The largest file read (JSON exports are read whole).
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// The longest call believed (a longer one is a wrong `ended_at`).
const MAX_CALL_MS: u64 = 24 * 3600 * 1000;
/// Times before 2000 or after 2200 are typos, not history.
const EARLIEST_MS: i64 = 946_684_800_000;
const LATEST_MS: i64 = 7_258_118_400_000;

/// The shape of an import file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A CSV file with a header row.
    Csv,
    /// A Vapi `GET /call` answer (JSON array).
    Vapi,
    /// A Twilio `Calls.json` page (JSON object with `calls`).
    Twilio,
}

impl Format {
    /// The name used in messages and in the history's `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Vapi => "vapi",
            Format::Twilio => "twilio",
        }
    }
}

/// One refused row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// The row: the file's line for a CSV, the call's place (1-based) in a JSON export.
    pub row: u64,
    /// What is wrong with it.
    pub message: String,
}

/// A file read.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// The calls, when no row was refused.
    pub calls: Vec<Call>,
    /// The first [`MAX_ERRORS`] refused rows.
    pub errors: Vec<RowError>,
    /// Every refused row, also those not listed.
    pub refused: u64,
    /// Outbound calls skipped (not inbound demand).
    pub skipped: u64,
    /// Rows read.
    pub rows: u64,
}

impl Parsed {
    fn refuse(&mut self, row: u64, message: String) {
        self.refused += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(RowError { row, message });
        }
    }
}

/// Reads `path` as `format` (by default: `.json` files by their first character, `[` Vapi
/// and `{` Twilio, anything else CSV). Calls without a flow of their own get
/// `default_flow`. `tick` is called once per row read (for a progress bar).
pub fn parse_file(
    path: &Path,
    format: Option<Format>,
    default_flow: Option<&str>,
    mut tick: impl FnMut(),
) -> Result<(Format, Parsed), ForecastError> {
    let cannot = |e: std::io::Error| ForecastError::io(format!("cannot read {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ForecastError::input(format!(
            "{} is {} bytes, more than the {MAX_FILE_BYTES} an import takes: split it",
            path.display(),
            meta.len()
        )));
    }
    if let Some(flow) = default_flow {
        check_field("--flow", flow).map_err(ForecastError::input)?;
    }
    let format = match format {
        Some(f) => f,
        None => detect(path).map_err(cannot)?,
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let parsed = match format {
        Format::Csv => parse_csv(file, default_flow, &mut tick)?,
        Format::Vapi | Format::Twilio => {
            let mut text = String::new();
            file.take(MAX_FILE_BYTES).read_to_string(&mut text).map_err(cannot)?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ForecastError::input(format!("{}: not JSON (line {}): {e}", path.display(), e.line())))?;
            if format == Format::Vapi {
                parse_vapi(&value, default_flow, &mut tick)?
            } else {
                parse_twilio(&value, default_flow, &mut tick)?
            }
        }
    };
    Ok((format, parsed))
}

fn detect(path: &Path) -> std::io::Result<Format> {
    let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if !json {
        return Ok(Format::Csv);
    }
    let mut head = [0u8; 4096];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    Ok(match head[..n].iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Format::Twilio,
        _ => Format::Vapi,
    })
}

/// Parses a CSV file with a header row (see the module's doc).
pub(crate) fn parse_csv(
    reader: impl Read,
    default_flow: Option<&str>,
    tick: &mut dyn FnMut(),
) -> Result<Parsed, ForecastError> {
    let mut rdr = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(reader);
    let headers = rdr.headers().map_err(|e| ForecastError::input(format!("the header row: {e}")))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(started) = column("started_at") else {
        return Err(ForecastError::input(format!(
            "line 1: the header has no `started_at` column (columns: {}); \
             expected started_at, and optionally ended_at, flow, number, outcome, id",
            headers.iter().collect::<Vec<_>>().join(", ")
        )));
    };
    let (ended, flow, number, outcome, id) =
        (column("ended_at"), column("flow"), column("number"), column("outcome"), column("id"));
    let mut out = Parsed::default();
    let mut record = csv::StringRecord::new();
    loop {
        let line = rdr.position().line() + 1;
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                out.refuse(line, format!("not a CSV row: {e}"));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        out.rows += 1;
        tick();
        if out.rows > MAX_ROWS {
            return Err(ForecastError::input(format!("more than {MAX_ROWS} rows: split the file")));
        }
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let call = (|| {
            let started_at_ms = time(get(Some(started)).ok_or("`started_at` is empty")?, "started_at")?;
            let ended_at_ms = get(ended).map(|v| time(v, "ended_at")).transpose()?;
            let flow = get(flow).or(default_flow);
            let number = get(number);
            let outcome = get(outcome);
            for (what, v) in [("flow", flow), ("number", number), ("outcome", outcome), ("id", get(id))] {
                if let Some(v) = v {
                    check_field(what, v)?;
                }
            }
            let key = match get(id) {
                Some(id) => format!("csv:{id}"),
                None => format!(
                    "csv:{started_at_ms}:{}:{}:{}",
                    flow.unwrap_or(""),
                    number.unwrap_or(""),
                    ended_at_ms.map_or(String::new(), |e| e.to_string())
                ),
            };
            call(key, flow, number, started_at_ms, ended_at_ms, outcome)
        })();
        match call {
            Ok(c) => out.calls.push(c),
            Err(why) => out.refuse(line, why),
        }
    }
    if out.refused > 0 {
        out.calls.clear();
    }
    Ok(out)
}

fn parse_vapi(
    value: &serde_json::Value,
    default_flow: Option<&str>,
    tick: &mut dyn FnMut(),
) -> Result<Parsed, ForecastError> {
    let calls = value.as_array().ok_or_else(|| {
        ForecastError::input("a Vapi export is the JSON array that `GET /call` answers; this file is not an array")
    })?;
    parse_export(calls, tick, |c| {
        let s = |k: &str| c.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
        if s("type") == Some("outboundPhoneCall") {
            return None;
        }
        Some((|| {
            let id = s("id").ok_or("no `id`")?;
            let start = s("startedAt").map(|v| (v, "startedAt")).or(s("createdAt").map(|v| (v, "createdAt")));
            let (start, field) = start.ok_or("neither `startedAt` nor `createdAt`")?;
            let started_at_ms = time(start, field)?;
            let ended_at_ms = s("endedAt").map(|v| time(v, "endedAt")).transpose()?;
            let number = c.pointer("/customer/number").and_then(|v| v.as_str());
            check_field("id", id)?;
            for (what, v) in [("customer.number", number), ("endedReason", s("endedReason"))] {
                if let Some(v) = v {
                    check_field(what, v)?;
                }
            }
            call(format!("vapi:{id}"), default_flow, number, started_at_ms, ended_at_ms, s("endedReason"))
        })())
    })
}

fn parse_twilio(
    value: &serde_json::Value,
    default_flow: Option<&str>,
    tick: &mut dyn FnMut(),
) -> Result<Parsed, ForecastError> {
    let calls = value.get("calls").and_then(|c| c.as_array()).ok_or_else(|| {
        ForecastError::input(
            "a Twilio export is a `Calls.json` page, an object with a `calls` array; this file has none",
        )
    })?;
    parse_export(calls, tick, |c| {
        let s = |k: &str| c.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
        if s("direction").is_some_and(|d| d.starts_with("outbound")) {
            return None;
        }
        Some((|| {
            let sid = s("sid").ok_or("no `sid`")?;
            let start = s("start_time").map(|v| (v, "start_time")).or(s("date_created").map(|v| (v, "date_created")));
            let (start, field) = start.ok_or("neither `start_time` nor `date_created`")?;
            let started_at_ms = rfc2822(start, field)?;
            let ended_at_ms = s("end_time").map(|v| rfc2822(v, "end_time")).transpose()?;
            check_field("sid", sid)?;
            for (what, v) in [("to", s("to")), ("status", s("status"))] {
                if let Some(v) = v {
                    check_field(what, v)?;
                }
            }
            call(format!("twilio:{sid}"), default_flow, s("to"), started_at_ms, ended_at_ms, s("status"))
        })())
    })
}

/// The calls of a provider's export, one JSON object each: `one` reads a call (`None`: an
/// outbound call, skipped); bounded by `MAX_ROWS`; all or nothing (any refused call
/// refuses the file).
fn parse_export(
    calls: &[serde_json::Value],
    tick: &mut dyn FnMut(),
    one: impl Fn(&serde_json::Value) -> Option<Result<Call, String>>,
) -> Result<Parsed, ForecastError> {
    let mut out = Parsed::default();
    for (i, c) in calls.iter().enumerate() {
        let row = i as u64 + 1;
        out.rows += 1;
        tick();
        if out.rows > MAX_ROWS {
            return Err(ForecastError::input(format!("more than {MAX_ROWS} calls: split the file")));
        }
        let parsed = if c.is_object() { one(c) } else { Some(Err("not a JSON object".to_owned())) };
        match parsed {
            None => out.skipped += 1,
            Some(Ok(call)) => out.calls.push(call),
            Some(Err(why)) => out.refuse(row, format!("call {row}: {why}")),
        }
    }
    if out.refused > 0 {
        out.calls.clear();
    }
    Ok(out)
}

fn call(
    key: String,
    flow: Option<&str>,
    number: Option<&str>,
    started_at_ms: u64,
    ended_at_ms: Option<u64>,
    outcome: Option<&str>,
) -> Result<Call, String> {
    if let Some(end) = ended_at_ms {
        if end < started_at_ms {
            return Err("it ends before it starts".to_owned());
        }
        if end - started_at_ms > MAX_CALL_MS {
            return Err("it lasts more than 24 hours: check its end".to_owned());
        }
    }
    if key.len() > MAX_FIELD * 4 {
        return Err("its key is too long".to_owned());
    }
    Ok(Call {
        key,
        flow: flow.map(str::to_owned),
        number: number.map(str::to_owned),
        started_at_ms,
        ended_at_ms,
        outcome: outcome.map(str::to_owned),
    })
}

fn check_field(what: &str, v: &str) -> Result<(), String> {
    if v.len() > MAX_FIELD {
        Err(format!("`{what}` is longer than {MAX_FIELD} bytes"))
    } else if v.chars().any(char::is_control) {
        Err(format!("`{what}` holds a control character"))
    } else {
        Ok(())
    }
}

fn in_range(t: DateTime<FixedOffset>, what: &str, v: &str) -> Result<u64, String> {
    let ms = t.timestamp_millis();
    if !(EARLIEST_MS..LATEST_MS).contains(&ms) {
        return Err(format!("`{what}` {v:?} is not between the years 2000 and 2200"));
    }
    Ok(ms as u64)
}

/// An RFC 3339 time (`2026-12-07T14:00:00Z`, `2026-12-07T15:00:00+01:00`) as Unix ms.
fn time(v: &str, what: &str) -> Result<u64, String> {
    let t = DateTime::parse_from_rfc3339(v)
        .map_err(|e| format!("`{what}` {v:?} is not an RFC 3339 time such as 2026-12-07T14:00:00Z ({e})"))?;
    in_range(t, what, v)
}

/// An RFC 2822 time (`Tue, 31 Aug 2010 20:36:28 +0000`, Twilio's) as Unix ms.
fn rfc2822(v: &str, what: &str) -> Result<u64, String> {
    let t = DateTime::parse_from_rfc2822(v)
        .map_err(|e| format!("`{what}` {v:?} is not an RFC 2822 time such as Tue, 31 Aug 2010 20:36:28 +0000 ({e})"))?;
    in_range(t, what, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Parsed {
        parse_csv(text.as_bytes(), Some("support"), &mut || {}).unwrap()
    }

    #[test]
    fn csv_rows_become_calls_with_the_default_flow() {
        let p = csv("started_at,ended_at,outcome,extra\n2026-12-07T14:00:00Z,2026-12-07T14:04:00Z,completed,x\n2026-12-07T15:00:00+01:00,,,\n");
        assert_eq!(p.refused, 0, "{:?}", p.errors);
        assert_eq!(p.calls.len(), 2);
        assert_eq!(p.calls[0].flow.as_deref(), Some("support"));
        assert_eq!(p.calls[0].ended_at_ms.unwrap() - p.calls[0].started_at_ms, 240_000);
        assert_eq!(p.calls[1].started_at_ms, p.calls[0].started_at_ms, "15:00+01:00 is 14:00Z");
        assert_ne!(p.calls[0].key, p.calls[1].key, "the end is part of the key");
    }

    #[test]
    fn csv_errors_name_the_line_and_nothing_is_taken() {
        let p = csv("flow,started_at,ended_at\nsales,2026-12-07T14:00:00Z,\nsales,yesterday,\nsales,2026-12-07T14:00:00Z,2026-12-07T13:00:00Z\n");
        assert!(p.calls.is_empty());
        assert_eq!(p.refused, 2);
        assert_eq!(p.errors[0].row, 3);
        assert!(p.errors[0].message.contains("not an RFC 3339 time"), "{}", p.errors[0].message);
        assert_eq!(p.errors[1].row, 4);
        assert!(p.errors[1].message.contains("ends before it starts"));
    }

    #[test]
    fn a_csv_without_started_at_is_refused_whole() {
        let e = parse_csv("start,end\n1,2\n".as_bytes(), None, &mut || {}).unwrap_err();
        assert!(e.message.contains("no `started_at` column"), "{}", e.message);
    }

    #[test]
    fn vapi_and_twilio_exports() {
        let vapi = serde_json::json!([
            { "id": "c1", "type": "inboundPhoneCall", "startedAt": "2026-12-07T14:00:00.000Z",
              "endedAt": "2026-12-07T14:03:00.000Z", "endedReason": "customer-ended-call",
              "customer": { "number": "+15551230000" } },
            { "id": "c2", "type": "outboundPhoneCall", "startedAt": "2026-12-07T14:00:00.000Z" },
            { "id": "c3", "createdAt": "2026-12-07T14:01:00Z" }
        ]);
        let p = parse_vapi(&vapi, None, &mut || {}).unwrap();
        assert_eq!((p.calls.len(), p.skipped, p.refused), (2, 1, 0));
        assert_eq!(p.calls[0].key, "vapi:c1");
        assert_eq!(p.calls[0].ended_at_ms.unwrap() - p.calls[0].started_at_ms, 180_000);
        let bad = serde_json::json!([{ "id": "c1" }]);
        let p = parse_vapi(&bad, None, &mut || {}).unwrap();
        assert_eq!(p.errors[0].message, "call 1: neither `startedAt` nor `createdAt`");
        let p = parse_vapi(&serde_json::json!([42]), None, &mut || {}).unwrap();
        assert_eq!((p.errors[0].message.as_str(), p.calls.len()), ("call 1: not a JSON object", 0));

        let twilio = serde_json::json!({ "calls": [
            { "sid": "CA1", "direction": "inbound", "start_time": "Mon, 07 Dec 2026 14:00:00 +0000",
              "end_time": "Mon, 07 Dec 2026 14:02:00 +0000", "status": "completed", "to": "+15550001111" },
            { "sid": "CA2", "direction": "outbound-api", "start_time": "Mon, 07 Dec 2026 14:00:00 +0000" }
        ]});
        let p = parse_twilio(&twilio, Some("support"), &mut || {}).unwrap();
        assert_eq!((p.calls.len(), p.skipped), (1, 1));
        assert_eq!(p.calls[0].ended_at_ms.unwrap() - p.calls[0].started_at_ms, 120_000);
        assert_eq!(p.calls[0].flow.as_deref(), Some("support"));
    }
}
