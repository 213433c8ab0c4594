//! What becomes of a lead after an attempt: done, failed, exhausted, or pending again
//! after the outcome's delay, grown by the backoff for every attempt already made.

use crate::dial::Outcome;
use callgate_config::RetryConfig;
use std::time::Duration;

/// A lead's next state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Reached: nothing more to do.
    Done,
    /// The number itself is refused: nothing more to do.
    Failed,
    /// Out of attempts.
    Exhausted,
    /// On a suppression list: never dialed again.
    Suppressed,
    /// Dial again, not before this instant (Unix ms).
    RetryAt(u64),
}

impl Next {
    /// The lead state stored for it.
    pub fn state(self) -> &'static str {
        match self {
            Next::Done => "done",
            Next::Failed => "failed",
            Next::Exhausted => "exhausted",
            Next::Suppressed => "suppressed",
            Next::RetryAt(_) => "pending",
        }
    }
}

/// The delay before attempt `attempts + 1` after `outcome`: the outcome's delay times
/// `backoff^(attempts - 1)`, at most `max_delay`.
pub fn delay(retry: &RetryConfig, outcome: Outcome, attempts: u32) -> Duration {
    let base = match outcome {
        Outcome::Busy => retry.busy,
        Outcome::NoAnswer => retry.no_answer,
        Outcome::Voicemail => retry.voicemail,
        _ => retry.failed,
    };
    retry.delay(base, attempts)
}

/// Where a lead goes after its `attempts`-th attempt ended with `outcome` at `now`.
pub fn next(retry: &RetryConfig, outcome: Outcome, attempts: u32, now: u64) -> Next {
    match outcome {
        Outcome::Completed => Next::Done,
        Outcome::Invalid => Next::Failed,
        Outcome::Suppressed => Next::Suppressed,
        _ if attempts >= retry.max_attempts => Next::Exhausted,
        _ => Next::RetryAt(now.saturating_add(delay(retry, outcome, attempts).as_millis() as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_config::Real;

    #[test]
    fn retries_back_off_per_outcome_up_to_the_caps() {
        let r = RetryConfig {
            busy: Duration::from_secs(600),
            no_answer: Duration::from_secs(3600),
            backoff: Real(2.0),
            max_delay: Duration::from_secs(3 * 3600),
            max_attempts: 4,
            ..RetryConfig::default()
        };
        assert_eq!(next(&r, Outcome::Busy, 1, 0), Next::RetryAt(600_000));
        assert_eq!(next(&r, Outcome::Busy, 2, 0), Next::RetryAt(1_200_000));
        assert_eq!(next(&r, Outcome::NoAnswer, 3, 0), Next::RetryAt(3 * 3600 * 1000), "capped at max_delay");
        assert_eq!(next(&r, Outcome::NoAnswer, 4, 0), Next::Exhausted);
        assert_eq!(next(&r, Outcome::Completed, 1, 0), Next::Done);
        assert_eq!(next(&r, Outcome::Invalid, 1, 0), Next::Failed);
        assert_eq!(next(&r, Outcome::Interrupted, 1, 5), Next::RetryAt(5 + 1_800_000));
    }
}
