//! Live events: every committed event as one JSON line for `/v1/events` subscribers, each
//! with an id, and a bounded backlog so a client that reconnects with `Last-Event-ID`
//! gets what it missed.
//!
//! Ids are one sequence per process, made unique across restarts by starting it at the
//! process's start time in microseconds: a restarted server's ids are all above the ones
//! its predecessor handed out, as long as that one published less than one event per
//! microsecond on average (a thousand times the busiest account we know). The journal's
//! commit sequence cannot serve: ops events (breakers, alerts) and reconciliations are
//! live events that never go to the journal. An id from before this process (or one it
//! never gave) is answered with a `missed` event, so the client reloads its state.

use crate::views::event_json;
use callgate_backend::Names;
use callgate_core::Event;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::broadcast;

/// Subscribers that fall this many events behind lose the oldest and are told so.
const CHANNEL: usize = 4096;

/// One published event: its id and its JSON.
///
/// A ledger event is kept as the event itself and written as JSON the first time a
/// subscriber reads it (then shared by every reader): publishing runs on the journal's
/// writer thread before answers are released, so it only numbers and keeps events, and
/// a server nobody watches never writes the JSON at all.
#[derive(Clone, Debug)]
pub struct LiveEvent {
    /// The event's id (`id:` of the SSE stream).
    pub id: u64,
    body: Arc<Body>,
}

#[derive(Debug)]
struct Body {
    json: OnceLock<Box<str>>,
    /// What the JSON is written from, when it has not been written yet.
    event: Option<(Event, Arc<Names>)>,
}

impl LiveEvent {
    fn ledger(id: u64, event: Event, names: Arc<Names>) -> LiveEvent {
        LiveEvent { id, body: Arc::new(Body { json: OnceLock::new(), event: Some((event, names)) }) }
    }

    fn json_text(id: u64, json: String) -> LiveEvent {
        LiveEvent { id, body: Arc::new(Body { json: OnceLock::from(json.into_boxed_str()), event: None }) }
    }

    /// The event as one line of JSON.
    pub fn json(&self) -> &str {
        self.body.json.get_or_init(|| match &self.body.event {
            Some((e, names)) => event_json(e, names).to_string().into_boxed_str(),
            None => Box::from("{}"),
        })
    }
}

/// The fan-out of committed events to live subscribers.
#[derive(Clone, Debug)]
pub struct Live {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: broadcast::Sender<LiveEvent>,
    /// Held while an event is numbered, kept and sent, so that a subscriber sees every
    /// event exactly once: in its replay or on its channel.
    backlog: Mutex<Backlog>,
}

#[derive(Debug)]
struct Backlog {
    /// The id of the next event.
    next: u64,
    /// The newest events, oldest first, at most `cap`.
    events: VecDeque<LiveEvent>,
    cap: usize,
    /// The names ledger events are written with: those of the first batch, then each
    /// reload's (see [`Live::rename`]).
    names: Option<Arc<Names>>,
}

/// Where a resuming subscriber starts.
#[derive(Debug)]
pub enum Resume {
    /// The events after the client's last one, oldest first.
    Replay(Vec<LiveEvent>),
    /// The client's last event is no longer kept (or was never ours): it must reload its
    /// state. `latest` is the id of the newest event, from which it resumes.
    Missed {
        /// The id the client gave.
        last: u64,
        /// The newest id published so far (the client's new position).
        latest: u64,
    },
}

impl Default for Live {
    fn default() -> Self {
        Live::new(1, 4096)
    }
}

impl Live {
    /// Ids start at `first_id` (use [`Live::first_id`] with the start time); the newest
    /// `backlog` events are kept for clients that resume.
    pub fn new(first_id: u64, backlog: usize) -> Live {
        let first_id = first_id.max(1);
        Live {
            inner: Arc::new(Inner {
                tx: broadcast::channel(CHANNEL).0,
                backlog: Mutex::new(Backlog {
                    next: first_id,
                    events: VecDeque::with_capacity(backlog.min(CHANNEL)),
                    cap: backlog,
                    names: None,
                }),
            }),
        }
    }

    /// The first id of a process started at `now_ms` (Unix ms): its start in microseconds.
    pub fn first_id(now_ms: u64) -> u64 {
        now_ms.saturating_mul(1000).max(1)
    }

    fn backlog(&self) -> MutexGuard<'_, Backlog> {
        self.inner.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, b: &mut Backlog, make: impl FnOnce(u64) -> LiveEvent) {
        let event = make(b.next);
        b.next += 1;
        if b.cap > 0 {
            if b.events.len() == b.cap {
                b.events.pop_front();
            }
            b.events.push_back(event.clone());
        }
        let _ = self.inner.tx.send(event);
    }

    /// Publishes committed ledger events, named with `names` (or with the names of the
    /// last [`Live::rename`], which the bus calls whenever they change).
    pub fn publish(&self, events: &[Event], names: &Names) {
        let mut b = self.backlog();
        if b.cap == 0 && self.inner.tx.receiver_count() == 0 {
            // Nobody listens and nothing is kept: only the ids move on.
            b.next += events.len() as u64;
            return;
        }
        let names = b.names.get_or_insert_with(|| Arc::new(names.clone())).clone();
        for e in events {
            self.push(&mut b, |id| LiveEvent::ledger(id, e.clone(), names.clone()));
        }
    }

    /// The ledger's names changed (a reload): later events are written with these.
    pub fn rename(&self, names: &Names) {
        self.backlog().names = Some(Arc::new(names.clone()));
    }

    /// Publishes one event that is not a ledger event (a reconciliation, a booked
    /// callback), once what it reports is durable.
    pub fn publish_json(&self, event: &serde_json::Value) {
        let mut b = self.backlog();
        let json = event.to_string();
        self.push(&mut b, |id| LiveEvent::json_text(id, json));
    }

    /// A new subscription from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        let _b = self.backlog();
        self.inner.tx.subscribe()
    }

    /// A new subscription for a client whose last event was `last`: what it missed, and
    /// the channel of what comes next (no event in both, none lost between them).
    pub fn resume(&self, last: u64) -> (Resume, broadcast::Receiver<LiveEvent>) {
        let b = self.backlog();
        let rx = self.inner.tx.subscribe();
        let latest = b.next - 1;
        // The oldest id the client may have seen and still be served without a gap.
        let oldest_kept = b.events.front().map_or(b.next, |e| e.id);
        let resume = if last > latest || last + 1 < oldest_kept {
            Resume::Missed { last, latest }
        } else {
            Resume::Replay(b.events.iter().filter(|e| e.id > last).cloned().collect())
        };
        (resume, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(r: &Resume) -> Vec<u64> {
        match r {
            Resume::Replay(list) => list.iter().map(|e| e.id).collect(),
            Resume::Missed { .. } => panic!("expected a replay, got {r:?}"),
        }
    }

    #[test]
    fn a_client_resumes_after_its_last_event_while_the_backlog_holds_it() {
        let live = Live::new(100, 3);
        for n in 0..5 {
            live.publish_json(&json!({ "n": n }));
        }
        // Kept: 102, 103, 104.
        assert_eq!(ids(&live.resume(101).0), [102, 103, 104]);
        assert_eq!(ids(&live.resume(103).0), [104]);
        assert_eq!(ids(&live.resume(104).0), Vec::<u64>::new());
        assert!(matches!(live.resume(100).0, Resume::Missed { last: 100, latest: 104 }));
        // An id this process never gave (a future one, or from another server).
        assert!(matches!(live.resume(105).0, Resume::Missed { latest: 104, .. }));
        assert!(matches!(live.resume(7).0, Resume::Missed { .. }));
    }

    #[test]
    fn without_a_backlog_only_an_up_to_date_client_resumes() {
        let live = Live::new(10, 0);
        live.publish_json(&json!({}));
        assert_eq!(ids(&live.resume(10).0), Vec::<u64>::new());
        assert!(matches!(live.resume(9).0, Resume::Missed { .. }));
    }

    #[test]
    fn events_after_a_resume_come_on_the_channel_once() {
        let live = Live::new(1, 10);
        live.publish_json(&json!({ "n": 1 }));
        let (resume, mut rx) = live.resume(0);
        live.publish_json(&json!({ "n": 2 }));
        assert_eq!(ids(&resume), [1]);
        assert_eq!(rx.try_recv().unwrap().id, 2);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_later_process_numbers_above_an_earlier_one() {
        assert!(Live::first_id(1_700_000_000_001) > Live::first_id(1_700_000_000_000) + 999);
    }
}
