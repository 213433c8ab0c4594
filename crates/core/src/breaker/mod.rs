//! Circuit breakers per dependency (a provider account, a model endpoint, a transcription
//! or voice service): closed, open, half-open, from the error rate and the slow-call
//! rate over a sliding time window.
//!
//! # States
//! - **Closed**: calls go through and their outcomes are counted over the last `window`
//!   ms. After a recorded call, if the window holds at least `min_calls` calls and
//!   `failed / calls >= error_rate`, or (with `slow_call_ms` set) `slow / calls >=
//!   slow_rate`, the breaker opens. A call is slow when its latency is strictly above
//!   `slow_call_ms`; slow calls count whether they failed or not (as in resilience4j).
//! - **Open** until `opened_at + open_for`: no call goes through ([`Breaker::allow`] says
//!   no; flows use their fallback, campaigns pause). Outcomes reported meanwhile are of
//!   calls admitted before it opened and are ignored.
//! - **Half-open**: up to `half_open_probes` calls go through as probes. A probe that
//!   fails opens the breaker again at once; probes that are slow open it again as soon as
//!   `slow / half_open_probes >= slow_rate`; when all `half_open_probes` probes have
//!   succeeded it closes, with an empty window.
//!
//! # Probes, compared with resilience4j
//! resilience4j's `permittedNumberOfCallsInHalfOpenState` (default 10) lets that many
//! calls through, waits for all of them, and compares their failure and slow rates with
//! the thresholds. Here the default is 5 probes and one failure is enough to reopen:
//! every probe is a real caller put through a dependency that was just failing, so the
//! round is kept short and stopped at the first sign that nothing has changed. A caller
//! that receives a probe and never reports back would otherwise hold the half-open state
//! forever (resilience4j issue #903); here a probe not reported within `open_for` of the
//! last admission is written off and its place is given to a new probe. An outcome that
//! arrives in half-open while no probe is outstanding comes from a call admitted before
//! the breaker opened, and is ignored.
//!
//! # Window
//! A ring of `ceil(window / bucket)` time buckets (1 s by default), each counting calls,
//! failures and slow calls, with running totals: recording is O(1) (amortized; a jump
//! of the clock clears at most every bucket once). A call counts for between
//! `window - bucket` and `window` ms, depending on where in its bucket it fell.
//!
//! # Time and events
//! Nothing here reads a clock: every method takes `now`. A method that changes the state
//! returns the [`Transition`], so the caller can emit a "breaker changed" event. Opening
//! to half-open is due at `until`; it happens in the first call made at or after it
//! (call [`Breaker::advance`] from a periodic tick to emit it on time).

#[cfg(test)]
mod tests;

use crate::ids::Millis;
use crate::spec::SpecError;

/// A breaker's settings (`[[breakers]]` in the config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSpec {
    /// Open when at least this share of the window's calls failed, in `(0, 1]`. Default 0.5.
    pub error_rate: f64,
    /// A call slower than this (milliseconds) is slow; `None` (the default) counts no call
    /// as slow.
    pub slow_call_ms: Option<u64>,
    /// Open when at least this share of the window's calls were slow, in `(0, 1]`.
    /// Default 0.5.
    pub slow_rate: f64,
    /// Length of the sliding window in milliseconds. Default 30 000.
    pub window_ms: u64,
    /// Granularity of the window in milliseconds. Default 1000.
    pub bucket_ms: u64,
    /// Fewer calls than this in the window never open the breaker. Default 20.
    pub min_calls: u32,
    /// How long it stays open before probing, in milliseconds. Default 30 000.
    pub open_for_ms: u64,
    /// Probe calls let through in half-open; all must succeed to close. Default 5.
    pub half_open_probes: u32,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        BreakerSpec {
            error_rate: 0.5,
            slow_call_ms: None,
            slow_rate: 0.5,
            window_ms: 30_000,
            bucket_ms: 1_000,
            min_calls: 20,
            open_for_ms: 30_000,
            half_open_probes: 5,
        }
    }
}

/// Buckets above this would be a configuration mistake (e.g. a day's window in 1 ms
/// buckets), not a wish.
const MAX_BUCKETS: u64 = 100_000;

impl BreakerSpec {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        let rate = |name: &str, x: f64| {
            if x > 0.0 && x <= 1.0 {
                Ok(())
            } else {
                Err(SpecError(format!("breaker `{name}` must be in (0, 1], got {x}")))
            }
        };
        rate("error_rate", self.error_rate)?;
        rate("slow_rate", self.slow_rate)?;
        if self.slow_call_ms == Some(0) {
            return Err(SpecError("breaker `slow_call_ms` must be at least 1".into()));
        }
        if self.bucket_ms == 0 {
            return Err(SpecError("breaker `bucket` must be at least 1 ms".into()));
        }
        if self.window_ms < self.bucket_ms {
            return Err(SpecError(format!(
                "breaker `window` ({} ms) must be at least one bucket ({} ms)",
                self.window_ms, self.bucket_ms
            )));
        }
        if self.window_ms.div_ceil(self.bucket_ms) > MAX_BUCKETS {
            return Err(SpecError(format!(
                "breaker `window` ({} ms) holds more than {MAX_BUCKETS} buckets of {} ms",
                self.window_ms, self.bucket_ms
            )));
        }
        if self.min_calls == 0 {
            return Err(SpecError("breaker `min_calls` must be at least 1".into()));
        }
        if self.open_for_ms == 0 {
            return Err(SpecError("breaker `open_for` must be at least 1 ms".into()));
        }
        if self.half_open_probes == 0 {
            return Err(SpecError("breaker `half_open_probes` must be at least 1".into()));
        }
        Ok(())
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// No call goes through before `until`.
    Open {
        /// When it turns half-open.
        until: Millis,
    },
    /// Probe calls only.
    HalfOpen,
}

impl BreakerState {
    /// The metric and wire name: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Why the state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Closed → open: too many failures in the window.
    ErrorRate {
        /// Failed calls in the window.
        failed: u32,
        /// Calls in the window.
        calls: u32,
    },
    /// Closed → open: too many slow calls in the window.
    SlowRate {
        /// Slow calls in the window.
        slow: u32,
        /// Calls in the window.
        calls: u32,
    },
    /// Open → half-open: `open_for` elapsed.
    OpenElapsed,
    /// Half-open → open: a probe failed.
    ProbeFailed,
    /// Half-open → open: too many probes were slow.
    SlowProbes {
        /// Slow probes so far.
        slow: u32,
    },
    /// Half-open → closed: every probe succeeded.
    ProbesSucceeded,
}

/// A state change, for the "breaker changed" event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// When it took effect (for open → half-open, the end of the open time, which may be
    /// earlier than the call that noticed it).
    pub at: Millis,
    /// Why.
    pub cause: Cause,
}

/// The answer to [`Breaker::allow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Admission {
    /// The call may go to the dependency.
    pub allowed: bool,
    /// It goes as a half-open probe; report its outcome with [`Breaker::record`].
    pub probe: bool,
    /// The state changed while answering (open → half-open).
    pub transition: Option<Transition>,
}

/// Outcomes counted in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Calls recorded.
    pub calls: u32,
    /// Of which failed.
    pub failed: u32,
    /// Of which slower than `slow_call_ms` (failed or not).
    pub slow: u32,
}

impl WindowCounts {
    fn add(&mut self, o: WindowCounts) {
        self.calls += o.calls;
        self.failed += o.failed;
        self.slow += o.slow;
    }

    fn sub(&mut self, o: WindowCounts) {
        self.calls -= o.calls;
        self.failed -= o.failed;
        self.slow -= o.slow;
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// `time / bucket_ms` of the calls counted here; meaningless while `counts` is zero.
    epoch: u64,
    counts: WindowCounts,
}

/// The sliding window: a ring of time buckets with running totals.
#[derive(Clone, Debug)]
struct CallWindow {
    bucket_ms: u64,
    buckets: Box<[Bucket]>,
    /// The newest epoch seen. Every bucket with non-zero counts holds an epoch in
    /// `(head - len, head]`, and `totals` is their sum.
    head: Option<u64>,
    totals: WindowCounts,
}

impl CallWindow {
    fn new(window_ms: u64, bucket_ms: u64) -> CallWindow {
        let len = window_ms.div_ceil(bucket_ms) as usize;
        CallWindow {
            bucket_ms,
            buckets: vec![Bucket::default(); len].into_boxed_slice(),
            head: None,
            totals: WindowCounts::default(),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// Moves the head to `epoch`, clearing the buckets of the epochs that fall out.
    fn advance(&mut self, epoch: u64) {
        let n = self.len();
        match self.head {
            None => self.head = Some(epoch),
            Some(h) if epoch > h => {
                let steps = (epoch - h).min(n);
                for e in (epoch + 1 - steps)..=epoch {
                    let b = &mut self.buckets[(e % n) as usize];
                    self.totals.sub(b.counts);
                    *b = Bucket { epoch: e, counts: WindowCounts::default() };
                }
                self.head = Some(epoch);
            }
            Some(_) => {}
        }
    }

    fn add(&mut self, now: Millis, call: WindowCounts) {
        let epoch = now / self.bucket_ms;
        self.advance(epoch);
        let n = self.len();
        let head = self.head.unwrap_or(epoch);
        if epoch + n <= head {
            // Older than the window (a late report from a clock behind ours).
            return;
        }
        let b = &mut self.buckets[(epoch % n) as usize];
        if b.epoch != epoch {
            debug_assert_eq!(b.counts, WindowCounts::default());
            b.epoch = epoch;
        }
        b.counts.add(call);
        self.totals.add(call);
    }

    /// The counts as of `now`, without changing anything.
    fn counts_at(&self, now: Millis) -> WindowCounts {
        let Some(head) = self.head else {
            return WindowCounts::default();
        };
        let head = head.max(now / self.bucket_ms);
        let mut sum = WindowCounts::default();
        for b in self.buckets.iter().filter(|b| b.epoch + self.len() > head) {
            sum.add(b.counts);
        }
        sum
    }

    fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
        self.head = None;
        self.totals = WindowCounts::default();
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    Open {
        until: Millis,
    },
    HalfOpen {
        /// Probes let through in this round (minus those written off).
        admitted: u32,
        /// Probes that reported success (slow ones included).
        succeeded: u32,
        /// Of the successes, the slow ones.
        slow: u32,
        /// When the latest probe was let through.
        last_admit: Millis,
    },
}

/// A circuit breaker for one dependency.
#[derive(Clone, Debug)]
pub struct Breaker {
    spec: BreakerSpec,
    phase: Phase,
    /// Fed only while closed; emptied on every change of state.
    window: CallWindow,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(spec: BreakerSpec) -> Result<Breaker, SpecError> {
        spec.validate()?;
        Ok(Breaker { spec, phase: Phase::Closed, window: CallWindow::new(spec.window_ms, spec.bucket_ms) })
    }

    /// The settings.
    pub fn spec(&self) -> &BreakerSpec {
        &self.spec
    }

    /// The state at `now` (an open breaker whose time is up reads as half-open).
    pub fn state(&self, now: Millis) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open { until },
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The window's counts at `now` (empty unless closed: the window restarts on every
    /// change of state).
    pub fn counts(&self, now: Millis) -> WindowCounts {
        self.window.counts_at(now)
    }

    /// Applies what time alone changes (open → half-open at `until`).
    pub fn advance(&mut self, now: Millis) -> Option<Transition> {
        match self.phase {
            Phase::Open { until } if now >= until => {
                self.phase = Phase::HalfOpen { admitted: 0, succeeded: 0, slow: 0, last_admit: until };
                Some(Transition {
                    from: BreakerState::Open { until },
                    to: BreakerState::HalfOpen,
                    at: until,
                    cause: Cause::OpenElapsed,
                })
            }
            _ => None,
        }
    }

    /// May a call go to the dependency now? Closed: yes. Open: no. Half-open: yes while
    /// probes are left in the round (the call is then a probe), otherwise no.
    pub fn allow(&mut self, now: Millis) -> Admission {
        let transition = self.advance(now);
        let open_for = self.spec.open_for_ms;
        let probes = self.spec.half_open_probes;
        let (allowed, probe) = match &mut self.phase {
            Phase::Closed => (true, false),
            Phase::Open { .. } => (false, false),
            Phase::HalfOpen { admitted, succeeded, last_admit, .. } => {
                if *admitted >= probes && *admitted > *succeeded && now >= last_admit.saturating_add(open_for) {
                    // The outstanding probes never reported: write them off.
                    *admitted = *succeeded;
                }
                if *admitted < probes {
                    *admitted += 1;
                    *last_admit = now;
                    (true, true)
                } else {
                    (false, false)
                }
            }
        };
        Admission { allowed, probe, transition }
    }

    /// Records the outcome of a call: `ok` or failed, and its latency if known.
    pub fn record(&mut self, now: Millis, ok: bool, latency_ms: Option<u64>) -> Option<Transition> {
        if let Some(t) = self.advance(now) {
            // Just turned half-open: no probe is out yet, so this outcome is from a call
            // admitted before the breaker opened, and does not count.
            return Some(t);
        }
        let slow = matches!((self.spec.slow_call_ms, latency_ms), (Some(limit), Some(l)) if l > limit);
        match &mut self.phase {
            Phase::Open { .. } => None,
            Phase::Closed => {
                let call = WindowCounts { calls: 1, failed: u32::from(!ok), slow: u32::from(slow) };
                self.window.add(now, call);
                let c = self.window.totals;
                if c.calls < self.spec.min_calls {
                    return None;
                }
                let ratio = |n: u32| f64::from(n) / f64::from(c.calls);
                let cause = if ratio(c.failed) >= self.spec.error_rate {
                    Cause::ErrorRate { failed: c.failed, calls: c.calls }
                } else if self.spec.slow_call_ms.is_some() && ratio(c.slow) >= self.spec.slow_rate {
                    Cause::SlowRate { slow: c.slow, calls: c.calls }
                } else {
                    return None;
                };
                Some(self.open(now, BreakerState::Closed, cause))
            }
            Phase::HalfOpen { admitted, succeeded, slow: slow_probes, .. } => {
                if *admitted <= *succeeded {
                    return None;
                }
                if !ok {
                    return Some(self.open(now, BreakerState::HalfOpen, Cause::ProbeFailed));
                }
                *succeeded += 1;
                *slow_probes += u32::from(slow);
                let (succeeded, slow_probes) = (*succeeded, *slow_probes);
                let probes = self.spec.half_open_probes;
                if slow && f64::from(slow_probes) / f64::from(probes) >= self.spec.slow_rate {
                    return Some(self.open(now, BreakerState::HalfOpen, Cause::SlowProbes { slow: slow_probes }));
                }
                if succeeded >= probes {
                    self.phase = Phase::Closed;
                    self.window.clear();
                    return Some(Transition {
                        from: BreakerState::HalfOpen,
                        to: BreakerState::Closed,
                        at: now,
                        cause: Cause::ProbesSucceeded,
                    });
                }
                None
            }
        }
    }

    fn open(&mut self, now: Millis, from: BreakerState, cause: Cause) -> Transition {
        let until = now.saturating_add(self.spec.open_for_ms);
        self.phase = Phase::Open { until };
        self.window.clear();
        Transition { from, to: BreakerState::Open { until }, at: now, cause }
    }
}
