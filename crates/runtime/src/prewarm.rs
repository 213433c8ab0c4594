//! `[[prewarm]]` hooks: a POST to a URL a lead time before the inbound forecast of a pool
//! rises, so agent workers, inference slots and connection pools are warm when the calls
//! come.
//!
//! A rise is an interval whose expected concurrent calls (the forecast arrivals times the
//! handling time, over the interval) exceed the previous interval's by at least
//! `min_rise`. The hook is called once per rise, when the governor's clock passes the
//! interval's start less `lead`, and only while the interval is still ahead (after a
//! long stop the missed rises are not called late). The body:
//! `{ "hook", "pool", "at_ms", "at", "expected_sessions", "lines", "rise" }`. A failed call
//! (no answer within [`TIMEOUT`], a non-2xx answer) is logged, published
//! (`prewarm_called` with `ok: false`) and counted; it is not retried: the next rise calls
//! again.

use crate::forecast::Forecasts;
use callgate_config::Config;
use callgate_events::live::Live;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a hook may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The most calls one hook makes per look (a clock that jumped does not flood it).
const MAX_CALLS_PER_LOOK: usize = 4;

/// The hooks' state: how far the clock has been looked at, and the calls made.
#[derive(Debug)]
pub struct Prewarm {
    forecasts: Arc<Forecasts>,
    live: Live,
    http: reqwest::Client,
    /// Unix ms up to which call times have been handled; `None` before the first look.
    checked: Mutex<Option<u64>>,
    /// (hook, ok) → calls.
    calls: Arc<Mutex<BTreeMap<(String, bool), u64>>>,
}

impl Prewarm {
    /// Hooks over `forecasts`' plans, publishing on `live`.
    pub fn new(forecasts: Arc<Forecasts>, live: Live) -> Prewarm {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default();
        Prewarm { forecasts, live, http, checked: Mutex::default(), calls: Arc::default() }
    }

    /// Calls the hooks of `config` whose call time passed since the last look, up to
    /// `now_ms` (the calls go on in the background). Returns how many were started.
    pub fn look(&self, config: &Config, now_ms: u64) -> usize {
        let from = {
            let mut checked = lock(&self.checked);
            let from = checked.unwrap_or(now_ms.saturating_sub(1));
            *checked = Some(now_ms.max(from));
            from
        };
        if now_ms <= from {
            return 0;
        }
        let mut started = 0;
        for hook in &config.prewarm {
            let Some(plan) = self.forecasts.plan(&hook.pool) else { continue };
            let lead = hook.lead.as_millis() as u64;
            let due = plan.steps.windows(2).filter_map(|w| {
                let rise = w[1].sessions - w[0].sessions;
                let call_at = w[1].start_ms.saturating_sub(lead);
                (rise >= hook.min_rise.0 && call_at > from && call_at <= now_ms && w[1].start_ms > now_ms)
                    .then_some((w[1], rise))
            });
            for (step, rise) in due.take(MAX_CALLS_PER_LOOK) {
                let body = serde_json::json!({
                    "hook": hook.name, "pool": hook.pool, "at_ms": step.start_ms,
                    "at": callgate_forecast::report::rfc3339(step.start_ms),
                    "expected_sessions": (step.sessions * 100.0).round() / 100.0,
                    "lines": step.lines, "rise": (rise * 100.0).round() / 100.0,
                });
                let (http, live, calls, url, name) =
                    (self.http.clone(), self.live.clone(), self.calls.clone(), hook.url.clone(), hook.name.clone());
                started += 1;
                tokio::spawn(async move {
                    let result = http.post(&url).json(&body).send().await;
                    let (ok, status) = match &result {
                        Ok(r) => (r.status().is_success(), Some(r.status().as_u16())),
                        Err(_) => (false, None),
                    };
                    if ok {
                        tracing::info!(hook = %name, at_ms = step.start_ms, sessions = step.sessions, "Prewarm hook called");
                    } else {
                        let why = result.err().map_or_else(|| format!("status {status:?}"), |e| e.to_string());
                        tracing::warn!(hook = %name, reason = %why, "Prewarm hook failed");
                    }
                    *lock(&calls).entry((name.clone(), ok)).or_default() += 1;
                    live.publish_json(&serde_json::json!({
                        "type": "prewarm_called", "hook": name, "pool": body["pool"], "at_ms": step.start_ms,
                        "expected_sessions": body["expected_sessions"], "lines": step.lines, "ok": ok, "status": status,
                    }));
                });
            }
        }
        started
    }

    /// `callgate_prewarm_calls_total{hook,result}` (result ok | failed), one pair per
    /// configured hook.
    pub fn render_metrics(&self, config: &Config, out: &mut String) {
        if config.prewarm.is_empty() {
            return;
        }
        let calls = lock(&self.calls).clone();
        out.push_str(
            "# HELP callgate_prewarm_calls_total Calls of [[prewarm]] hooks before a forecast rise, by result.\n",
        );
        out.push_str("# TYPE callgate_prewarm_calls_total counter\n");
        for hook in &config.prewarm {
            for (ok, result) in [(true, "ok"), (false, "failed")] {
                let n = calls.get(&(hook.name.clone(), ok)).copied().unwrap_or(0);
                let _ = writeln!(out, "callgate_prewarm_calls_total{{hook=\"{}\",result=\"{result}\"}} {n}", hook.name);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
