// Long file: the campaign section's many fields (windows, retries, pacing, callbacks) and their checks.
//! `[[campaigns]]`: outbound campaigns. Leads in, calls out, paced to the budget: the
//! flow (pools and class) every call acquires through, the campaign's own cap, calls per
//! second, calling hours in the lead's time zone, scheduled batches, retries per outcome.
//!
//! The same table is what `POST /v1/campaigns` takes as JSON. The calendar types
//! ([`ClockTime`], [`Weekday`], [`BatchWindow`]) are parsed here, once, so that the server
//! never meets a window it cannot read.

use crate::problem::{list, Field, Problems};
use crate::provider::ProviderKind;
use crate::{Config, ConfigError};
use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// One `[[campaigns]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Unique, non-empty name; part of the API paths (`/v1/campaigns/{name}`), so letters,
    /// digits, `-`, `_` and `.` only.
    pub name: String,
    /// The `[[providers]]` entry whose account places the calls. Give `provider`,
    /// `providers` (several accounts: each call goes to the one with the most free
    /// capacity) or `simulate` (the built-in simulated provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Several `[[providers]]` (sharding over accounts, each with its own pool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// The flow whose pools and class every call acquires through. With several
    /// providers, a call holds the flow's pools with the chosen provider's pool in place
    /// of the other providers' pools.
    pub flow: String,
    /// The class callbacks are dialed in (default `callback` when such a class exists,
    /// else the flow's class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_class: Option<String>,
    /// Whether this campaign also returns the callbacks that inbound overflow booked on
    /// its providers (dialed first, in `callback_class`, at the promised time).
    #[serde(default, skip_serializing_if = "is_false")]
    pub callbacks: bool,
    /// Vapi: the assistant and the caller-id number(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vapi: Option<CampaignVapi>,
    /// Twilio: the caller-id number(s) and the TwiML that connects an answered call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<CampaignTwilio>,
    /// The built-in simulated provider (demo, tests, dry runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<SimulateConfig>,
    /// The most calls of this campaign live at once (default: no cap of its own, only the
    /// pools'). Counted by the dialer, which never queues, so one campaign at its cap
    /// never blocks another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Calls placed per second at most (a token bucket; default 1, the carriers' usual
    /// limit per number). Fractions are allowed (0.5 = one call every 2 s).
    #[serde(default = "one_per_second")]
    pub calls_per_second: Real,
    /// The calling window in the lead's local time (default 08:00–21:00, every day).
    #[serde(default)]
    pub window: WindowConfig,
    /// Scheduled batches: the campaign dials only inside one of them (default: none, no
    /// restriction beyond the window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<BatchWindow>,
    /// The time zone of a lead whose zone is neither given nor derivable from its number
    /// (default `UTC`), and of batch times written without an offset.
    #[serde(default = "utc")]
    pub default_timezone: String,
    /// Retries per outcome, attempt caps.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Among campaigns that could dial at the same moment, the higher priority goes first
    /// (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Start dialing as soon as the server runs (default false: a campaign starts paused).
    #[serde(default)]
    pub start: bool,
    /// How long the campaign stops dialing through a provider after it refused a call for
    /// concurrency (default "30s"). The provider's pool, when it is not adaptive, is also
    /// capped at what is in use for as long (or until reconciliation finds the account
    /// with room); an adaptive pool takes the refusal as a drop instead.
    #[serde(default = "default_cooldown", with = "crate::serde_duration")]
    pub cooldown: Duration,
    /// The suppression (do-not-call) lists this campaign honours, by name (default: every
    /// list the server keeps, `internal` included). A lead on one of them is reported and
    /// left out at import, and checked again just before each dial: it ends `suppressed`.
    /// An empty list honours none, which only a campaign that must not check (a test line)
    /// should say. At most 64 names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnc_lists: Option<Vec<String>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn one_per_second() -> Real {
    Real(1.0)
}

fn utc() -> String {
    "UTC".into()
}

/// 30 s: long enough for a few calls to end on the account, short enough that a
/// campaign is back soon after a one-off refusal.
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// A real number that compares by value (configs are `Eq`; NaN is refused by validation).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Real(pub f64);

impl PartialEq for Real {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Real {}

/// A campaign's Vapi settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignVapi {
    /// The assistant that talks to the lead (`assistantId`).
    pub assistant_id: String,
    /// The caller-id number (`phoneNumberId`), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    /// several, used in turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_number_ids: Vec<String>,
}

impl CampaignVapi {
    /// Every caller-id number id, in turn order.
    pub fn numbers(&self) -> Vec<String> {
        self.phone_number_id.iter().chain(&self.phone_number_ids).cloned().collect()
    }
}

/// A campaign's Twilio settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignTwilio {
    /// The caller-id number(s) in E.164, used in turn (`From`).
    pub from: Vec<String>,
    /// The TwiML URL Twilio fetches when the lead answers (`Url`), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// inline TwiML (`Twiml`), e.g. `<Response><Connect><Stream url="wss://…"/></Connect></Response>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twiml: Option<String>,
    /// Answering machine detection (`MachineDetection`): `"off"`, `"Enable"` (Twilio
    /// answers as soon as it can tell) or `"DetectMessageEnd"` (waits for the greeting to
    /// end, to leave a message). Default: `Enable` when the retry policy dials a lead
    /// again after voicemail (`retry.max_attempts` above 1), since only then does telling
    /// voicemail from a conversation change what happens to the lead; else off. Twilio
    /// bills detection per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_detection: Option<MachineDetection>,
    /// Detect in the background (`AsyncAmd`): the answered call connects at once and the
    /// verdict comes to callgate's status URL later (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub async_amd: bool,
}

/// Twilio's `MachineDetection`, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MachineDetection {
    /// No detection.
    #[serde(rename = "off")]
    Off,
    /// `Enable`: the verdict as soon as the answerer is identified.
    Enable,
    /// `DetectMessageEnd`: for a machine, after its greeting (and beep) ends.
    DetectMessageEnd,
}

impl MachineDetection {
    /// The value Twilio takes (`off` is sent as nothing).
    pub fn as_str(self) -> &'static str {
        match self {
            MachineDetection::Off => "off",
            MachineDetection::Enable => "Enable",
            MachineDetection::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

impl CampaignConfig {
    /// The answering machine detection a Twilio campaign's calls ask for (`None`: off).
    /// See [`CampaignTwilio::machine_detection`] for the default.
    pub fn machine_detection(&self) -> Option<MachineDetection> {
        let t = self.twilio.as_ref()?;
        match t.machine_detection {
            Some(MachineDetection::Off) => None,
            Some(m) => Some(m),
            None => (self.retry.max_attempts > 1).then_some(MachineDetection::Enable),
        }
    }
}

/// The simulated provider: every call is decided by a seeded random draw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    /// Share of calls the lead answers (default 0.6).
    #[serde(default = "sim_answer")]
    pub answer_rate: Real,
    /// Share of calls that find the line busy (default 0.1).
    #[serde(default = "sim_busy")]
    pub busy_rate: Real,
    /// Share of calls that reach voicemail (default 0.1).
    #[serde(default = "sim_voicemail")]
    pub voicemail_rate: Real,
    /// Share of calls that fail (carrier or platform error; default 0.02). The rest is not
    /// answered.
    #[serde(default = "sim_failure")]
    pub failure_rate: Real,
    /// How long a call rings before it is answered or given up (default "5s").
    #[serde(default = "sim_ring", with = "crate::serde_duration")]
    pub ring_time: Duration,
    /// Talk time of an answered call: at least `talk_min`, on average `talk_mean`, at most
    /// `talk_max` (defaults "20s", "90s", "10m"; a shifted exponential, cut at the max).
    #[serde(default = "sim_talk_min", with = "crate::serde_duration")]
    pub talk_min: Duration,
    /// See `talk_min`.
    #[serde(default = "sim_talk_mean", with = "crate::serde_duration")]
    pub talk_mean: Duration,
    /// See `talk_min`.
    #[serde(default = "sim_talk_max", with = "crate::serde_duration")]
    pub talk_max: Duration,
    /// The platform's own concurrency limit: a call placed while this many are live is
    /// refused, as Vapi refuses one (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Cost per minute of talk, USD (default 0.10).
    #[serde(default = "sim_cost")]
    pub cost_per_minute: Real,
    /// The random seed (default 1): the same seed gives the same outcomes.
    #[serde(default = "sim_seed")]
    pub seed: u64,
}

fn sim_answer() -> Real {
    Real(0.6)
}
fn sim_busy() -> Real {
    Real(0.1)
}
fn sim_voicemail() -> Real {
    Real(0.1)
}
fn sim_failure() -> Real {
    Real(0.02)
}
fn sim_ring() -> Duration {
    Duration::from_secs(5)
}
fn sim_talk_min() -> Duration {
    Duration::from_secs(20)
}
fn sim_talk_mean() -> Duration {
    Duration::from_secs(90)
}
fn sim_talk_max() -> Duration {
    Duration::from_secs(600)
}
fn sim_cost() -> Real {
    Real(0.10)
}
fn sim_seed() -> u64 {
    1
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            answer_rate: sim_answer(),
            busy_rate: sim_busy(),
            voicemail_rate: sim_voicemail(),
            failure_rate: sim_failure(),
            ring_time: sim_ring(),
            talk_min: sim_talk_min(),
            talk_mean: sim_talk_mean(),
            talk_max: sim_talk_max(),
            limit: None,
            cost_per_minute: sim_cost(),
            seed: sim_seed(),
        }
    }
}

/// The calling window in the lead's local time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// First minute calls may start, local time (default "08:00").
    #[serde(default = "window_start")]
    pub start: ClockTime,
    /// Calls start before this, local time (default "21:00"). An end before the start
    /// spans midnight.
    #[serde(default = "window_end")]
    pub end: ClockTime,
    /// The days calls may start on, local time (default every day).
    #[serde(default = "every_day")]
    pub days: Vec<Weekday>,
}

fn window_start() -> ClockTime {
    ClockTime(8 * 60)
}
fn window_end() -> ClockTime {
    ClockTime(21 * 60)
}
fn every_day() -> Vec<Weekday> {
    Weekday::ALL.to_vec()
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { start: window_start(), end: window_end(), days: every_day() }
    }
}

/// A time of day, `"HH:MM"` (00:00 to 24:00), kept as minutes after midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime(pub u16);

impl ClockTime {
    /// Reads `"HH:MM"`.
    pub fn parse(s: &str) -> Option<ClockTime> {
        let (h, m) = s.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(ClockTime(h * 60 + m))
    }

    /// Minutes after midnight.
    pub fn minutes(self) -> u32 {
        u32::from(self.0)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClockTime::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a time of day (write e.g. \"08:00\")")))
    }
}

/// A day of the week, written `mon` … `sun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday to Sunday.
    pub const ALL: [Weekday; 7] =
        [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

    /// The same day in chrono's terms.
    pub fn chrono(self) -> chrono::Weekday {
        match self {
            Weekday::Mon => chrono::Weekday::Mon,
            Weekday::Tue => chrono::Weekday::Tue,
            Weekday::Wed => chrono::Weekday::Wed,
            Weekday::Thu => chrono::Weekday::Thu,
            Weekday::Fri => chrono::Weekday::Fri,
            Weekday::Sat => chrono::Weekday::Sat,
            Weekday::Sun => chrono::Weekday::Sun,
        }
    }
}

/// A scheduled batch: the campaign dials from `start` until `end`. Written as RFC 3339
/// (`"2026-03-02T09:00:00-05:00"`) or without offset (`"2026-03-02 09:00"`), which is read
/// in the campaign's `default_timezone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchWindow {
    /// When the batch opens.
    pub start: String,
    /// When it closes.
    pub end: String,
}

impl BatchWindow {
    /// `(start, end)` in Unix milliseconds, with `tz` for times without an offset.
    pub fn resolve(&self, tz: Tz) -> Result<(u64, u64), String> {
        Ok((parse_datetime(&self.start, tz)?, parse_datetime(&self.end, tz)?))
    }
}

/// Reads a date-time as Unix milliseconds: RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` (also with
/// a `T`) in `tz`.
pub fn parse_datetime(s: &str, tz: Tz) -> Result<u64, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a date-time (write e.g. \"2026-03-02T09:00:00-05:00\" or \"2026-03-02 09:00\")");
    let ms = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else {
        let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .ok_or_else(bad)?;
        // A time skipped by a DST change does not exist; an ambiguous one takes the first.
        tz.from_local_datetime(&naive)
            .earliest()
            .ok_or_else(|| format!("`{s}` does not exist in {tz} (a daylight-saving change skips it)"))?
            .timestamp_millis()
    };
    u64::try_from(ms).map_err(|_| bad())
}

/// Reads an instant as Unix milliseconds: RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in UTC.
pub fn parse_instant(s: &str) -> Result<u64, String> {
    parse_datetime(s, Tz::UTC)
}

/// An instant (Unix ms) as `2026-03-02T15:00:00Z`.
pub fn format_instant(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .map_or_else(|| format!("{unix_ms} ms"), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Retries per outcome, with backoff, and caps on attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay before calling again after a busy line (default "10m").
    #[serde(default = "retry_busy", with = "crate::serde_duration")]
    pub busy: Duration,
    /// After no answer (default "1h").
    #[serde(default = "retry_no_answer", with = "crate::serde_duration")]
    pub no_answer: Duration,
    /// After reaching voicemail (default "4h").
    #[serde(default = "retry_voicemail", with = "crate::serde_duration")]
    pub voicemail: Duration,
    /// After a failed call (carrier or platform error; default "30m").
    #[serde(default = "retry_failed", with = "crate::serde_duration")]
    pub failed: Duration,
    /// Each further retry waits this many times longer than the one before (default 2;
    /// 1 = no backoff).
    #[serde(default = "retry_backoff")]
    pub backoff: Real,
    /// No retry waits longer than this (default "24h").
    #[serde(default = "retry_max_delay", with = "crate::serde_duration")]
    pub max_delay: Duration,
    /// Attempts per lead in all (default 3).
    #[serde(default = "retry_max_attempts")]
    pub max_attempts: u32,
    /// Attempts per lead in any 7 days (default 7).
    #[serde(default = "retry_max_per_week")]
    pub max_per_week: u32,
}

fn retry_busy() -> Duration {
    Duration::from_secs(600)
}
fn retry_no_answer() -> Duration {
    Duration::from_secs(3600)
}
fn retry_voicemail() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn retry_failed() -> Duration {
    Duration::from_secs(1800)
}
fn retry_backoff() -> Real {
    Real(2.0)
}
fn retry_max_delay() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn retry_max_attempts() -> u32 {
    3
}
fn retry_max_per_week() -> u32 {
    7
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            busy: retry_busy(),
            no_answer: retry_no_answer(),
            voicemail: retry_voicemail(),
            failed: retry_failed(),
            backoff: retry_backoff(),
            max_delay: retry_max_delay(),
            max_attempts: retry_max_attempts(),
            max_per_week: retry_max_per_week(),
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `attempts + 1` after an outcome whose delay is `base`:
    /// `base * backoff^(attempts - 1)`, at most `max_delay`. The dialer and the simulator
    /// both wait by this.
    pub fn delay(&self, base: Duration, attempts: u32) -> Duration {
        let factor = self.backoff.0.max(1.0).powi(attempts.saturating_sub(1).min(64) as i32);
        let secs = (base.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
    }
}

impl CampaignConfig {
    /// Every provider named, `provider` first.
    pub fn provider_names(&self) -> Vec<&str> {
        self.provider.iter().chain(&self.providers).map(String::as_str).collect()
    }

    /// The default time zone (UTC when it does not parse; validation refuses that).
    pub fn timezone(&self) -> Tz {
        self.default_timezone.parse().unwrap_or(Tz::UTC)
    }
}

/// Checks `[[campaigns]]`.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let campaigns = Field::top("campaigns");
    out.names("campaign", config.campaigns.iter().map(|c| c.name.as_str()), |i| campaigns.index(i).key("name"));
    for (i, c) in config.campaigns.iter().enumerate() {
        validate_one(config, c, &campaigns.index(i), out);
    }
}

impl Config {
    /// The problems of one campaign checked against this configuration (for campaigns
    /// created through the API); empty when it is valid. Fields are named from the
    /// campaign itself (`retry.busy`).
    pub fn campaign_problems(&self, campaign: &CampaignConfig) -> Vec<ConfigError> {
        let mut out = Problems::default();
        validate_one(self, campaign, &Field::default(), &mut out);
        out.0
            .into_iter()
            .map(|p| ConfigError { file: None, line: None, field: p.field.to_string(), message: p.message })
            .collect()
    }

    /// The campaign named `name`.
    pub fn campaign(&self, name: &str) -> Option<&CampaignConfig> {
        self.campaigns.iter().find(|c| c.name == name)
    }
}

fn validate_one(config: &Config, c: &CampaignConfig, field: &Field, out: &mut Problems) {
    let at = |k: &str| if field.segs().is_empty() { Field::top(k) } else { field.key(k) };
    if c.name.trim().is_empty() {
        out.push(at("name"), "a campaign needs a non-empty name");
    } else if c.name.len() > 100 || !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
        out.push(
            at("name"),
            format!(
                "campaign name `{}` is part of API paths: use at most 100 letters, digits, `-`, `_` and `.`",
                c.name
            ),
        );
    }
    if let Some(lists) = &c.dnc_lists {
        if lists.len() > 64 {
            out.push(at("dnc_lists"), format!("at most 64 suppression lists, not {}", lists.len()));
        }
        for (i, l) in lists.iter().enumerate() {
            if l.is_empty() || l.len() > 64 || !l.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                out.push(
                    at("dnc_lists").index(i),
                    format!(
                        "list name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                        l.chars().take(80).collect::<String>()
                    ),
                );
            }
        }
    }
    let flow = config.flow(&c.flow);
    if flow.is_none() {
        out.push(
            at("flow"),
            format!(
                "campaign `{}` names unknown flow `{}` (flows: {})",
                c.name,
                c.flow,
                list(config.flows.iter().map(|f| f.name.as_str()))
            ),
        );
    }
    if let Some(class) = &c.callback_class {
        if config.class(class).is_none() {
            out.push(
                at("callback_class"),
                format!("unknown class `{class}` (classes: {})", list(config.classes.iter().map(|c| c.name.as_str()))),
            );
        }
    }
    // Where calls go: providers, or the simulator.
    let names = c.provider_names();
    if c.provider.is_some() && !c.providers.is_empty() {
        out.push(at("providers"), "give either `provider` or `providers`, not both");
    }
    match (names.is_empty(), c.simulate.is_some()) {
        (true, false) => out.push(
            field.clone(),
            format!(
                "campaign `{}` needs `provider` (or `providers`, or `simulate` for the built-in simulated provider)",
                c.name
            ),
        ),
        (false, true) => out.push(at("simulate"), "a simulated campaign places no real calls: leave out `provider`"),
        _ => {}
    }
    let mut seen = Vec::new();
    let mut kinds = Vec::new();
    for (j, name) in names.iter().enumerate() {
        let pf = if c.provider.is_some() { at("provider") } else { at("providers").index(j) };
        if seen.contains(name) {
            out.push(pf.clone(), format!("provider `{name}` is named twice"));
        }
        seen.push(name);
        match config.provider(name) {
            None => out.push(
                pf,
                format!(
                    "campaign `{}` names unknown provider `{name}` (providers: {})",
                    c.name,
                    list(config.providers.iter().map(|p| p.name.as_str()))
                ),
            ),
            Some(p) => {
                kinds.push(p.kind);
                if let Some(flow) = flow {
                    // A call holds the flow's pools; several accounts swap their own pool in.
                    if names.len() == 1 && !flow.pools.iter().any(|fp| fp.pool == p.pool) {
                        out.push(
                            at("flow"),
                            format!(
                                "flow `{}` does not hold pool `{}` of provider `{name}`: the campaign's calls would \
                                 not count against the account",
                                flow.name, p.pool
                            ),
                        );
                    }
                }
            }
        }
    }
    if kinds.contains(&ProviderKind::Vapi) {
        match &c.vapi {
            None => out.push(
                field.clone(),
                "a campaign on a Vapi provider needs vapi = { assistant_id = \"…\", phone_number_id = \"…\" }",
            ),
            Some(v) => {
                if v.assistant_id.trim().is_empty() {
                    out.push(at("vapi").key("assistant_id"), "assistant_id must not be empty");
                }
                if v.numbers().is_empty() || v.numbers().iter().any(|n| n.trim().is_empty()) {
                    out.push(at("vapi"), "give the caller-id: phone_number_id = \"…\" (or phone_number_ids = [\"…\"])");
                }
            }
        }
    }
    if kinds.contains(&ProviderKind::Twilio) {
        match &c.twilio {
            None => out.push(
                field.clone(),
                "a campaign on a Twilio provider needs twilio = { from = [\"+1…\"], url = \"https://…\" }",
            ),
            Some(t) => {
                if t.from.is_empty() {
                    out.push(at("twilio").key("from"), "give at least one caller-id number");
                }
                for (k, n) in t.from.iter().enumerate() {
                    if !is_e164(n) {
                        out.push(
                            at("twilio").key("from").index(k),
                            format!("`{n}` is not an E.164 number (+ and digits)"),
                        );
                    }
                }
                if t.url.is_some() == t.twiml.is_some() {
                    out.push(at("twilio"), "give exactly one of `url` (a TwiML URL) or `twiml`");
                }
                if t.async_amd && c.machine_detection().is_none() {
                    out.push(
                        at("twilio").key("async_amd"),
                        "async_amd needs machine_detection = \"Enable\" or \"DetectMessageEnd\"",
                    );
                }
            }
        }
    }
    if c.max_concurrency == Some(0) {
        out.push(at("max_concurrency"), "max_concurrency must be at least 1 (leave it out for no cap of its own)");
    }
    let cps = c.calls_per_second.0;
    if !(cps.is_finite() && cps > 0.0 && cps <= 1000.0) {
        out.push(at("calls_per_second"), "calls_per_second must be above 0 and at most 1000");
    }
    let w = at("window");
    if c.window.start == c.window.end {
        out.push(w.key("end"), "the window is empty: end equals start");
    }
    if c.window.days.is_empty() {
        out.push(w.key("days"), "name at least one day (mon, tue, wed, thu, fri, sat, sun)");
    }
    for (k, d) in c.window.days.iter().enumerate() {
        if c.window.days[..k].contains(d) {
            out.push(w.key("days").index(k), "a day is named twice");
        }
    }
    let tz = match c.default_timezone.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            out.push(
                at("default_timezone"),
                format!("`{}` is not an IANA time zone (e.g. \"America/New_York\")", c.default_timezone),
            );
            None
        }
    };
    for (k, b) in c.batches.iter().enumerate() {
        let bf = at("batches").index(k);
        let Some(tz) = tz else { break };
        match (parse_datetime(&b.start, tz), parse_datetime(&b.end, tz)) {
            (Err(e), _) => out.push(bf.key("start"), e),
            (_, Err(e)) => out.push(bf.key("end"), e),
            (Ok(s), Ok(e)) if e <= s => out.push(bf.key("end"), "a batch must end after it starts"),
            _ => {}
        }
    }
    let r = at("retry");
    let b = c.retry.backoff.0;
    if !(b.is_finite() && (1.0..=100.0).contains(&b)) {
        out.push(r.key("backoff"), "backoff must be between 1 (no backoff) and 100");
    }
    if c.retry.max_attempts == 0 {
        out.push(r.key("max_attempts"), "max_attempts must be at least 1");
    }
    if c.retry.max_per_week == 0 {
        out.push(r.key("max_per_week"), "max_per_week must be at least 1");
    }
    if c.cooldown.as_millis() == 0 {
        out.push(at("cooldown"), "cooldown must be at least 1ms");
    }
    if let Some(s) = &c.simulate {
        let sf = at("simulate");
        let rates = [
            ("answer_rate", s.answer_rate),
            ("busy_rate", s.busy_rate),
            ("voicemail_rate", s.voicemail_rate),
            ("failure_rate", s.failure_rate),
        ];
        let mut sum = 0.0;
        for (name, r) in rates {
            if !(r.0.is_finite() && (0.0..=1.0).contains(&r.0)) {
                out.push(sf.key(name), format!("{name} must be between 0 and 1"));
            } else {
                sum += r.0;
            }
        }
        if sum > 1.0 + 1e-9 {
            out.push(sf.clone(), "answer_rate + busy_rate + voicemail_rate + failure_rate must be at most 1");
        }
        if !(s.talk_min <= s.talk_mean && s.talk_mean <= s.talk_max) {
            out.push(sf.key("talk_mean"), "talk times must satisfy talk_min <= talk_mean <= talk_max");
        }
        if s.limit == Some(0) {
            out.push(sf.key("limit"), "limit must be at least 1 (leave it out for no limit)");
        }
        if !(s.cost_per_minute.0.is_finite() && s.cost_per_minute.0 >= 0.0) {
            out.push(sf.key("cost_per_minute"), "cost_per_minute must be 0 or more");
        }
    }
}

/// `+` and 8 to 15 digits.
fn is_e164(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times_parse_and_print() {
        assert_eq!(ClockTime::parse("08:00"), Some(ClockTime(480)));
        assert_eq!(ClockTime::parse("8:05"), Some(ClockTime(485)));
        assert_eq!(ClockTime::parse("24:00"), Some(ClockTime(1440)));
        for bad in ["", "8", "25:00", "12:60", "12:5", "ab:cd", "24:01"] {
            assert_eq!(ClockTime::parse(bad), None, "{bad}");
        }
        assert_eq!(ClockTime(485).to_string(), "08:05");
    }

    const BASE: &str = r#"
[[pools]]
name = "acct"
limit = 10
[[flows]]
name = "outbound"
pools = ["acct"]
class = "outbound"
"#;

    fn problems(campaign: &str) -> Vec<(String, Option<usize>, String)> {
        let text = format!("{BASE}[[campaigns]]\n{campaign}");
        match Config::from_toml_str(&text, None) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.into_iter().map(|e| (e.field, e.line, e.message)).collect(),
        }
    }

    #[test]
    fn a_simulated_campaign_with_defaults_is_valid() {
        assert!(problems("name = \"c\"\nflow = \"outbound\"\nsimulate = {}\n").is_empty());
        let c = Config::from_toml_str(
            &format!("{BASE}[[campaigns]]\nname = \"c\"\nflow = \"outbound\"\nsimulate = {{}}\n"),
            None,
        )
        .unwrap();
        let c = c.campaign("c").unwrap();
        assert_eq!((c.window.start, c.window.end, c.window.days.len()), (ClockTime(480), ClockTime(1260), 7));
        assert_eq!((c.retry.max_attempts, c.retry.max_per_week, c.calls_per_second), (3, 7, Real(1.0)));
        assert!(!c.start, "a campaign starts paused");
    }

    #[test]
    fn campaign_problems_name_their_field_and_line() {
        let p = problems("name = \"c\"\nflow = \"nope\"\nprovider = \"gone\"\n");
        let fields: Vec<&str> = p.iter().map(|(f, _, _)| f.as_str()).collect();
        assert!(fields.contains(&"campaigns[0].flow") && fields.contains(&"campaigns[0].provider"), "{p:?}");
        assert_eq!(p.iter().find(|x| x.0 == "campaigns[0].flow").unwrap().1, Some(11));
        let p =
            problems("name = \"c\"\nflow = \"outbound\"\nsimulate = {}\nretry = { backoff = 0.5, max_attempts = 0 }\n");
        let fields: Vec<&str> = p.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(fields, ["campaigns[0].retry.backoff", "campaigns[0].retry.max_attempts"]);
        let p = problems("name = \"c\"\nflow = \"outbound\"\nsimulate = {}\ndefault_timezone = \"Mars/Base\"\ncalls_per_second = 0\n");
        assert_eq!(p.len(), 2, "{p:?}");
        let p = problems("name = \"c\"\nflow = \"outbound\"\nsimulate = {}\nwindow = { start = \"25:00\" }\n");
        assert_eq!(p[0].0, "campaigns[0].window.start", "{p:?}");
        let p = problems("name = \"c\"\nflow = \"outbound\"\nsimulate = {}\ncolour = 1\n");
        assert!(p[0].2.contains("unknown field"), "{p:?}");
        let p = problems("name = \"bad name\"\nflow = \"outbound\"\n");
        assert_eq!(p.len(), 2, "a bad name and no provider: {p:?}");
    }

    #[test]
    fn date_times_read_with_or_without_offset() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let with = parse_datetime("2026-03-02T09:00:00-05:00", ny).unwrap();
        let without = parse_datetime("2026-03-02 09:00", ny).unwrap();
        assert_eq!(with, without);
        assert!(parse_datetime("yesterday", ny).is_err());
        // 02:30 on the spring-forward day does not exist in New York.
        assert!(parse_datetime("2026-03-08 02:30", ny).is_err());
    }
}
