//! What each waiting caller was last told, so the wait URL announces a position when it
//! changes (or every half minute) instead of on every request. In memory only: after a
//! restart a caller hears their position once more, nothing worse.

use rustc_hash::FxHashMap;
use std::sync::Mutex;

/// Repeat the position this often even when it has not changed, so a caller on hold
/// knows they are still in line.
const REPEAT_MS: u64 = 30_000;
/// Entries of callers whose end was never seen are dropped after this long.
const FORGET_MS: u64 = 24 * 3600 * 1000;
/// Beyond this many entries, old ones are swept on the next announcement.
const SWEEP_AT: usize = 10_000;

/// The waiting room's memory of announcements, by `CallSid`.
#[derive(Debug, Default)]
pub struct WaitingRoom {
    /// Call → (position announced, when).
    announced: Mutex<FxHashMap<String, (u32, u64)>>,
}

impl WaitingRoom {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, (u32, u64)>> {
        self.announced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the caller should hear their position now.
    pub fn due(&self, call: &str, position: u32, now: u64) -> bool {
        match self.lock().get(call) {
            Some(&(p, at)) => p != position || now.saturating_sub(at) >= REPEAT_MS,
            None => true,
        }
    }

    /// Notes that the caller was just told `position`.
    pub fn announced(&self, call: &str, position: u32, now: u64) {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, &mut (_, at)| now.saturating_sub(at) < FORGET_MS);
        }
        map.insert(call.to_owned(), (position, now));
    }

    /// The caller left the waiting room.
    pub fn forget(&self, call: &str) {
        self.lock().remove(call);
    }
}
