//! Commands submitted at once, as a busy node submits them: a backend may run them
//! together (the Redis backend batches them into one script call), and each must still
//! get the answer and events the reference gives running them one by one, in order.

use super::differential::{differential_spec, random_step, reference_state, state, Step};
use super::{Harness, Rng, T0};
use crate::{Command, LedgerBackend};
use callgate_core::clock::{Clock, ManualClock};
use callgate_core::{Event, LeaseId, Ledger, TicketId};
use std::future::Future;

/// Runs `rounds` rounds from `seed`: in each, up to 40 random request-path commands (acquire,
/// release, renew, cancel, a call's end) are submitted at once, in order, through
/// `execute_async`, as a busy node submits them (a backend may run them together: the
/// Redis backend batches them into one script call); the reference then runs them one by
/// one in the same order. Every answer, every command's events and the state after each
/// round must be the same. Panics at the first disagreement, naming the seed and the round.
pub fn differential_at_once<H: Harness>(h: &mut H, seed: u64, rounds: usize) {
    let spec = differential_spec();
    let clock = ManualClock::at(T0);
    let b = h.open(&spec, clock.clone());
    let mut reference = Ledger::new(&spec).expect("the differential spec is valid");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for round in 0..rounds {
        let live: Vec<LeaseId> = reference.leases().map(|l| l.id).collect();
        let tickets: Vec<TicketId> = reference.tickets().map(|t| t.id).collect();
        let width = 1 + rng.below(40) as usize;
        let cmds: Vec<Command> = (0..width)
            .filter_map(|_| match random_step(&mut rng, &live, &tickets) {
                Step::Run(
                    cmd @ (Command::Acquire(_)
                    | Command::Release { .. }
                    | Command::Renew { .. }
                    | Command::Cancel(_)
                    | Command::EndCall(_)),
                ) => Some(cmd),
                _ => None,
            })
            .collect();
        let now = clock.now_ms();
        let got = h.block_on(InOrder::new(cmds.iter().map(|c| b.execute_async(c.clone())).collect()));
        for (i, (cmd, got)) in cmds.into_iter().zip(got).enumerate() {
            let at = format!("seed {seed}, round {round}, command {i} of {width}: {cmd:?}");
            let want = crate::reference::apply(&mut reference, cmd, now);
            let want_events: Vec<Event> = reference.drain_events().collect();
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(got.outcome, want, "{at}");
                    assert_eq!(got.events, want_events, "the events of {at}");
                }
                (Err(got), Err(want)) => assert_eq!(got.kind, want.kind, "{at}"),
                (got, want) => panic!("{at}: backend {got:?}, reference {want:?}"),
            }
        }
        assert_eq!(state(&b), reference_state(&reference), "seed {seed}, after round {round}");
        clock.advance(rng.below(1_500));
    }
}

/// Futures polled in the order given (so each is submitted in that order), their outputs
/// in the same order.
struct InOrder<'a, T> {
    futures: Vec<Option<crate::BoxFuture<'a, T>>>,
    outputs: Vec<Option<T>>,
}

impl<'a, T> InOrder<'a, T> {
    fn new(futures: Vec<crate::BoxFuture<'a, T>>) -> Self {
        let outputs = futures.iter().map(|_| None).collect();
        InOrder { futures: futures.into_iter().map(Some).collect(), outputs }
    }
}

// Nothing is pinned in place: each future is boxed, and the outputs are only moved.
impl<T> Unpin for InOrder<'_, T> {}

impl<T> Future for InOrder<'_, T> {
    type Output = Vec<T>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Vec<T>> {
        let this = &mut *self;
        for (slot, out) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if let Some(f) = slot {
                if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                    *out = Some(v);
                    *slot = None;
                }
            }
        }
        if this.futures.iter().any(Option::is_some) {
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
    }
}
