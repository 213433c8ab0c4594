//! The built-in simulated provider: calls that ring, get answered (or busy, voicemail, no
//! answer, failed) and end after a drawn talk time, all from a seeded random stream, and
//! an optional concurrency limit that refuses calls as a platform does.
//!
//! Its calls live in this process: after a restart it knows none of them, so the dialer
//! records those attempts as interrupted (never as placed twice).

use callgate_config::SimulateConfig;
use callgate_dialer::dial::{CallEvent, CallState, DialError, Dialer, Ended, Fut, Outcome, PlaceCall, Placed};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// A seeded random stream (SplitMix64): small, fast, and the same for the same seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Ringing,
    Live,
}

#[derive(Debug, Default)]
struct Calls {
    live: HashMap<String, (u64, Phase)>,
    ended: HashMap<String, Ended>,
    next: u64,
    tasks: Vec<tokio::task::AbortHandle>,
}

/// The simulated provider of one campaign.
#[derive(Debug)]
pub struct SimDialer {
    cfg: SimulateConfig,
    rng: Mutex<Rng>,
    calls: Arc<Mutex<Calls>>,
    events: mpsc::UnboundedSender<(String, CallEvent)>,
    campaign: String,
}

impl SimDialer {
    /// A simulator whose events go to `events`, tagged with `campaign`.
    pub fn new(campaign: &str, cfg: SimulateConfig, events: mpsc::UnboundedSender<(String, CallEvent)>) -> SimDialer {
        SimDialer {
            rng: Mutex::new(Rng::new(cfg.seed)),
            cfg,
            calls: Arc::new(Mutex::new(Calls::default())),
            events,
            campaign: campaign.to_string(),
        }
    }

    /// Calls live on the simulated platform now.
    pub fn live(&self) -> usize {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).live.len()
    }

    fn draw(&self) -> (Outcome, Duration, Duration) {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let c = &self.cfg;
        let u = rng.unit();
        let ring = c.ring_time.mul_f64(0.5 + rng.unit());
        let bands = [
            (c.failure_rate.0, Outcome::Failed),
            (c.busy_rate.0, Outcome::Busy),
            (c.voicemail_rate.0, Outcome::Voicemail),
            (c.answer_rate.0, Outcome::Completed),
        ];
        let mut edge = 0.0;
        let mut outcome = Outcome::NoAnswer;
        for (rate, o) in bands {
            edge += rate;
            if u < edge {
                outcome = o;
                break;
            }
        }
        // Talk time: talk_min plus an exponential with the rest of the mean, cut at the max.
        let extra = c.talk_mean.saturating_sub(c.talk_min).as_secs_f64();
        let draw = -extra * (1.0 - rng.unit()).ln();
        let talk = (c.talk_min + Duration::from_secs_f64(draw.min(1e9))).min(c.talk_max);
        (outcome, ring, talk)
    }
}

impl Dialer for SimDialer {
    fn provider(&self) -> &str {
        "simulated"
    }

    fn place<'a>(&'a self, call: &'a PlaceCall) -> Fut<'a, Result<Placed, DialError>> {
        Box::pin(async move {
            let (outcome, ring, talk) = self.draw();
            let id = {
                let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
                if self.cfg.limit.is_some_and(|l| calls.live.len() >= l as usize) {
                    return Err(DialError::Refused("Over Concurrency Limit".into()));
                }
                calls.next += 1;
                let id = format!("sim-{}-{}", self.campaign, calls.next);
                calls.live.insert(id.clone(), (call.attempt, Phase::Ringing));
                id
            };
            let (calls, events, campaign, attempt) =
                (self.calls.clone(), self.events.clone(), self.campaign.clone(), call.attempt);
            let cost_per_minute = self.cfg.cost_per_minute.0;
            let call_id = id.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(ring).await;
                let ended = match outcome {
                    Outcome::Completed => {
                        if let Some(c) = calls.lock().unwrap_or_else(|p| p.into_inner()).live.get_mut(&call_id) {
                            c.1 = Phase::Live;
                        }
                        let _ = events.send((campaign.clone(), CallEvent::Answered { attempt }));
                        tokio::time::sleep(talk).await;
                        let talk_ms = talk.as_millis() as u64;
                        Ended {
                            outcome,
                            reason: Some("customer-ended-call".into()),
                            talk_ms: Some(talk_ms),
                            cost: Some(cost_per_minute * talk_ms as f64 / 60_000.0),
                        }
                    }
                    Outcome::Voicemail => Ended {
                        outcome,
                        reason: Some("voicemail".into()),
                        talk_ms: None,
                        cost: Some(cost_per_minute / 4.0),
                    },
                    Outcome::Busy => Ended { outcome, reason: Some("customer-busy".into()), talk_ms: None, cost: None },
                    Outcome::Failed => {
                        Ended { outcome, reason: Some("sim-carrier-error".into()), talk_ms: None, cost: None }
                    }
                    _ => Ended { outcome, reason: Some("customer-did-not-answer".into()), talk_ms: None, cost: None },
                };
                {
                    let mut c = calls.lock().unwrap_or_else(|p| p.into_inner());
                    c.live.remove(&call_id);
                    c.ended.insert(call_id.clone(), ended.clone());
                    // Ended calls are kept for polls; a simulator that runs for days keeps
                    // only the most recent ones.
                    if c.ended.len() > 100_000 {
                        c.ended.clear();
                    }
                }
                let _ = events.send((campaign, CallEvent::Ended { attempt, ended }));
            });
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls.tasks.retain(|t| !t.is_finished());
            calls.tasks.push(task.abort_handle());
            Ok(Placed { call_id: id })
        })
    }

    fn status<'a>(&'a self, call_id: &'a str) -> Fut<'a, Result<CallState, DialError>> {
        Box::pin(async move {
            let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            Ok(match (calls.live.get(call_id), calls.ended.get(call_id)) {
                (Some((_, Phase::Ringing)), _) => CallState::Ringing,
                (Some((_, Phase::Live)), _) => CallState::Live,
                (None, Some(e)) => CallState::Ended(e.clone()),
                (None, None) => CallState::Unknown,
            })
        })
    }

    fn find<'a>(&'a self, call: &'a PlaceCall, _since_ms: u64) -> Fut<'a, Result<Option<String>, DialError>> {
        Box::pin(async move {
            let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            Ok(calls.live.iter().find(|(_, (a, _))| *a == call.attempt).map(|(id, _)| id.clone()))
        })
    }

    fn poll_every(&self) -> Option<Duration> {
        None
    }

    fn shutdown(&self) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        for t in calls.tasks.drain(..) {
            t.abort();
        }
        calls.live.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_config::Real;

    #[test]
    fn outcomes_follow_the_configured_rates() {
        let cfg = SimulateConfig {
            answer_rate: Real(0.5),
            busy_rate: Real(0.2),
            voicemail_rate: Real(0.1),
            failure_rate: Real(0.1),
            ..SimulateConfig::default()
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        let sim = SimDialer::new("c", cfg, tx);
        let mut counts: HashMap<Outcome, u32> = HashMap::new();
        for _ in 0..20_000 {
            let (o, _, talk) = sim.draw();
            assert!(talk >= Duration::from_secs(20) && talk <= Duration::from_secs(600));
            *counts.entry(o).or_default() += 1;
        }
        let share = |o| f64::from(counts[&o]) / 20_000.0;
        assert!((share(Outcome::Completed) - 0.5).abs() < 0.02);
        assert!((share(Outcome::Busy) - 0.2).abs() < 0.02);
        assert!((share(Outcome::NoAnswer) - 0.1).abs() < 0.02);
    }
}
