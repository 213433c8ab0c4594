//! The suppression lists the dialer honours: a copy in memory for the check before each
//! dial (O(1), see [`callgate_dialer::dnc`]), kept coherent with a durable store behind
//! [`DncLists`]: `dnc.db` under the data directory on one node, PostgreSQL shared by every
//! node with `[storage] database`.
//!
//! **Coherence.** Every change in the store takes the next *position*, and changes commit
//! in position order (see [`callgate_backend::dnc`]). The copy remembers the position it
//! has caught up to. [`Suppressions::catch_up`] reads the store's position (one small
//! read: a local SQLite row, or one round trip to PostgreSQL) and, when it moved, applies
//! the changes after the copy's, in order. The dialer catches up right before its last
//! check of a number, so a number any node added before that check began (its add was
//! acknowledged) is never dialed. Callers that arrive while a catch-up runs wait for it and
//! are covered by it only if it began after they arrived (else one more runs), so a burst
//! of dials costs one read, not one each. Chosen over LISTEN/NOTIFY: a notification comes
//! some time after the commit, and a check in between would use a stale list; a version
//! read before the check closes that gap for the price of one small read per dial, which
//! is cheap beside placing a call.
//!
//! A number is added to memory first and to the store second: once `add` is called, the
//! next check on this node sees it, even while the write is on its way; if the write fails
//! the caller hears so, and the number stays suppressed in this node's memory until its
//! next restart (erring towards not calling). Every other change of the copy comes from the
//! store, in the store's order.

use crate::clock::Clock;
use callgate_backend::dnc::{AuditRow, DncEntry, DncLists};
use callgate_dialer::dnc::{self, Hit, Lists};
use callgate_governor::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

// The store and the copy refuse the same one list too many.
const _: () = assert!(callgate_backend::dnc::MAX_LISTS == dnc::MAX_LISTS);

/// Changes read per page while catching up (a large import elsewhere comes in pages).
const PAGE: usize = 50_000;

/// Every suppression list.
pub struct Suppressions {
    lists: Arc<RwLock<Lists>>,
    /// `None`: kept in memory only (tests, tools).
    store: Option<Arc<dyn DncLists>>,
    clock: Arc<dyn Clock>,
    /// Where the copy stands; held by the one catch-up that runs.
    sync: tokio::sync::Mutex<Synced>,
    /// Catch-ups asked for: each caller takes the next number.
    asked: AtomicU64,
    /// The highest number a finished catch-up covers (it began after that caller asked).
    covered: AtomicU64,
}

/// How far the copy has caught up with the store.
#[derive(Clone, Copy, Debug, Default)]
struct Synced {
    /// The last change applied (position, number).
    at: (u64, u64),
    /// The store's position read at the start of the last catch-up that finished: every
    /// change up to it is in the copy.
    position: u64,
}

impl std::fmt::Debug for Suppressions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppressions").finish_non_exhaustive()
    }
}

fn write(lists: &RwLock<Lists>) -> std::sync::RwLockWriteGuard<'_, Lists> {
    lists.write().unwrap_or_else(|p| p.into_inner())
}

/// Applies the store's changes after `synced` to `lists` (blocking); how many.
fn catch_up_with(store: &dyn DncLists, synced: &mut Synced, lists: &RwLock<Lists>) -> Result<usize, Error> {
    let position = store.position()?;
    if position == synced.position {
        return Ok(0);
    }
    let mut applied = 0;
    loop {
        let page = store.changes(synced.at, PAGE)?;
        {
            let mut l = write(lists);
            // Runs of additions to one list go in at once.
            let mut run: Vec<u64> = Vec::new();
            let mut run_list: Option<&str> = None;
            for c in &page {
                if run_list.is_some_and(|n| n != c.list) || !c.listed {
                    if let Some(name) = run_list.take() {
                        if let Err(e) = l.add(name, run.drain(..)) {
                            tracing::error!(list = name, error = %e, "A suppression list of the store has no room here");
                        }
                    }
                }
                if c.listed {
                    run_list = Some(&c.list);
                    run.push(c.number);
                } else {
                    l.remove(&c.list, c.number);
                }
            }
            if let Some(name) = run_list {
                if let Err(e) = l.add(name, run) {
                    tracing::error!(list = name, error = %e, "A suppression list of the store has no room here");
                }
            }
        }
        applied += page.len();
        if let Some(last) = page.last() {
            synced.at = (last.seq, last.number);
        }
        if page.len() < PAGE {
            break;
        }
    }
    let versions = store.versions()?;
    write(lists).set_versions(versions);
    synced.position = position.max(synced.at.0);
    Ok(applied)
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("cannot write the suppression list durably: {e}"))
}

impl Suppressions {
    /// The lists of `store`, loaded into memory (blocking: every number is read).
    pub fn open(store: Arc<dyn DncLists>, clock: Arc<dyn Clock>) -> Result<Suppressions, String> {
        let lists = Arc::new(RwLock::new(Lists::new()));
        let mut synced = Synced::default();
        let loaded = catch_up_with(&*store, &mut synced, &lists).map_err(|e| e.message)?;
        if loaded > 0 {
            let numbers: usize = write(&lists).summary().iter().map(|(_, n, _)| n).sum();
            tracing::info!(numbers, "Suppression lists loaded");
        }
        Ok(Suppressions {
            lists,
            store: Some(store),
            clock,
            sync: tokio::sync::Mutex::new(synced),
            asked: AtomicU64::new(0),
            covered: AtomicU64::new(0),
        })
    }

    /// Lists kept in memory only.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Suppressions {
        Suppressions {
            lists: Arc::default(),
            store: None,
            clock,
            sync: tokio::sync::Mutex::default(),
            asked: AtomicU64::new(0),
            covered: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Lists> {
        self.lists.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the copy up to every change committed to the store before this call (any
    /// node's): after it, a check answers for every number whose addition was
    /// acknowledged before the call. Fails (unavailable) when the store cannot be read;
    /// the copy is then as it was.
    pub async fn catch_up(&self) -> Result<(), Error> {
        let Some(store) = self.store.clone() else { return Ok(()) };
        let mine = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.sync.lock().await;
        if self.covered.load(Ordering::SeqCst) >= mine {
            return Ok(());
        }
        // Every caller up to here asked before the position below is read.
        let upto = self.asked.load(Ordering::SeqCst);
        let (mut at, lists) = (*synced, self.lists.clone());
        let (at, result) = tokio::task::spawn_blocking(move || {
            let r = catch_up_with(&*store, &mut at, &lists);
            (at, r)
        })
        .await
        .map_err(|e| Error::internal(format!("catching up with the suppression lists: {e}")))?;
        *synced = at;
        result?;
        self.covered.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }

    /// Adds `numbers` (E.164 digits, see [`dnc::key`]) to `list`, with `source`: in memory
    /// at once, then durably (off the async workers: a million numbers take seconds).
    /// Answers how many were new to the list.
    pub async fn add(&self, list: &str, numbers: Vec<u64>, source: &str) -> Result<usize, Error> {
        dnc::valid_name(list).map_err(Error::invalid)?;
        if source.len() > 200 {
            return Err(Error::invalid("a suppression entry's source is at most 200 bytes"));
        }
        let added = write(&self.lists).add(list, numbers.iter().copied()).map_err(Error::invalid)?;
        let Some(store) = self.store.clone() else { return Ok(added) };
        let (l, source, at) = (list.to_string(), source.to_string(), self.clock.now_ms());
        let added = tokio::task::spawn_blocking(move || store.add(&l, &numbers, &source, at))
            .await
            .map_err(unavailable)?
            .map_err(|e| if e.kind == callgate_backend::ErrorKind::Invalid { e } else { unavailable(e) })?;
        // The store's versions (and any other node's changes) into the copy; the numbers
        // are in it already, so a failure here only delays the versions.
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e.message, "Cannot catch up with the suppression lists after an add");
        }
        Ok(added)
    }

    /// Takes `number` off `list`; answers whether it was on it.
    pub async fn remove(&self, list: &str, number: u64) -> Result<bool, Error> {
        dnc::valid_name(list).map_err(Error::invalid)?;
        let Some(store) = self.store.clone() else { return Ok(write(&self.lists).remove(list, number)) };
        let l = list.to_string();
        let removed = tokio::task::spawn_blocking(move || store.remove(&l, number))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        // Off the copy through the store's changes, in their order; until that succeeds
        // the number stays suppressed here (erring towards not calling).
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e.message, "Cannot catch up with the suppression lists after a removal");
        }
        Ok(removed)
    }

    /// The entry of `number` on `list` (source and time as the store keeps them; `memory`
    /// for a number only this node's memory has, its write having failed).
    pub async fn entry(&self, list: &str, number: u64) -> Result<Option<DncEntry>, Error> {
        let stored = match self.store.clone() {
            Some(store) => {
                let l = list.to_string();
                tokio::task::spawn_blocking(move || store.get(&l, number))
                    .await
                    .map_err(|e| Error::internal(e.to_string()))??
            }
            None => None,
        };
        if stored.is_some() || !self.read().contains(list, number) {
            return Ok(stored);
        }
        // In the copy, not in the store: taken off through another node since the copy
        // caught up, or this node's write of it failed. After a catch-up only the latter
        // is left in the copy.
        if self.store.is_some() {
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e.message, "Cannot catch up with the suppression lists");
            }
            if !self.read().contains(list, number) {
                return Ok(None);
            }
        }
        Ok(Some(DncEntry { list: list.to_string(), number, source: "memory".into(), added_at: 0 }))
    }

    /// The first of the lists honoured (`None`: every list) that has the number `e164`,
    /// in the copy as it is (call [`Suppressions::catch_up`] first when the answer decides
    /// a dial). A number that is not E.164 is on no list.
    pub fn check(&self, honoured: Option<&[String]>, e164: &str) -> Option<Hit> {
        let key = dnc::key(e164)?;
        self.read().check(honoured, key)
    }

    /// Each list with its size and version.
    pub fn summary(&self) -> Vec<(String, usize, u64)> {
        self.read().summary()
    }

    /// The versions of the lists honoured (`None`: every list).
    pub fn versions(&self, honoured: Option<&[String]>) -> Vec<(String, u64)> {
        self.read().versions(honoured)
    }

    /// Records one dial decision in the audit trail (written in the background, in order;
    /// kept in memory only, and then not at all, without a store).
    pub fn audit(&self, row: AuditRow) {
        if let Some(store) = &self.store {
            store.audit(row);
        }
    }

    /// The audit trail of `campaign`, oldest first, from `since` (Unix ms), at most `limit`
    /// rows (after the rows written so far are stored).
    pub async fn audit_rows(&self, campaign: &str, since: u64, limit: usize) -> Result<Vec<AuditRow>, Error> {
        let Some(store) = self.store.clone() else { return Ok(Vec::new()) };
        let campaign = campaign.to_string();
        tokio::task::spawn_blocking(move || store.audit_rows(&campaign, since, limit))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| Error::unavailable(format!("cannot read the audit trail: {e}")))
    }
}
