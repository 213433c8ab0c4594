//! The suppression lists the dialer honours: in memory for the check before each dial
//! (O(1), see [`callgate_dialer::dnc`]), durable in `dnc.db` for restarts.
//!
//! A number is added to memory first and to disk second: once `add` is called, the next
//! check sees it, even while the write is on its way; if the write fails the caller hears
//! so, and the number stays suppressed in memory until the next restart (erring towards
//! not calling).

use crate::clock::Clock;
use crate::governor::Error;
use callgate_dialer::dnc::{self, Hit, Lists};
use callgate_store::{AuditRow, DncEntry, DncStore};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Every suppression list.
pub struct Suppressions {
    lists: RwLock<Lists>,
    /// `None`: kept in memory only (tests, tools).
    store: Option<Arc<DncStore>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Suppressions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppressions").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("cannot write the suppression list durably: {e}"))
}

impl Suppressions {
    /// Opens `dir/dnc.db` and loads every list into memory.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Suppressions, String> {
        let store = DncStore::open(dir).map_err(|e| e.to_string())?;
        let mut lists = Lists::new();
        let mut batch: Vec<u64> = Vec::new();
        let mut current = String::new();
        let mut failed = None;
        store
            .load(|list, n| {
                if list != current {
                    if !batch.is_empty() {
                        if let Err(e) = lists.add(&current, batch.drain(..)) {
                            failed.get_or_insert(e);
                        }
                    }
                    current = list.to_string();
                }
                batch.push(n);
            })
            .map_err(|e| e.to_string())?;
        if !batch.is_empty() {
            if let Err(e) = lists.add(&current, batch) {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return Err(format!("dnc.db: {e}"));
        }
        let loaded: usize = lists.summary().iter().map(|(_, n, _)| n).sum();
        if loaded > 0 {
            tracing::info!(numbers = loaded, "Suppression lists loaded");
        }
        Ok(Suppressions { lists: RwLock::new(lists), store: Some(Arc::new(store)), clock })
    }

    /// Lists kept in memory only.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Suppressions {
        Suppressions { lists: RwLock::new(Lists::new()), store: None, clock }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Lists> {
        self.lists.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `numbers` (E.164 digits, see [`dnc::key`]) to `list`, with `source`: in memory
    /// at once, then durably (off the async workers: a million numbers take seconds).
    /// Answers how many were new.
    pub async fn add(&self, list: &str, numbers: Vec<u64>, source: &str) -> Result<usize, Error> {
        dnc::valid_name(list).map_err(Error::invalid)?;
        if source.len() > 200 {
            return Err(Error::invalid("a suppression entry's source is at most 200 bytes"));
        }
        let added = self.lists.write().unwrap_or_else(|p| p.into_inner()).add(list, numbers.iter().copied());
        let added = added.map_err(Error::invalid)?;
        if let Some(store) = self.store.clone() {
            let (list, source, at) = (list.to_string(), source.to_string(), self.clock.now_ms());
            tokio::task::spawn_blocking(move || store.add(&list, &numbers, &source, at))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        }
        Ok(added)
    }

    /// Takes `number` off `list`; answers whether it was on it.
    pub async fn remove(&self, list: &str, number: u64) -> Result<bool, Error> {
        dnc::valid_name(list).map_err(Error::invalid)?;
        if let Some(store) = self.store.clone() {
            let l = list.to_string();
            tokio::task::spawn_blocking(move || store.remove(&l, number))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        }
        Ok(self.lists.write().unwrap_or_else(|p| p.into_inner()).remove(list, number))
    }

    /// The entry of `number` on `list` (source and time when kept durably).
    pub fn entry(&self, list: &str, number: u64) -> Result<Option<DncEntry>, Error> {
        if !self.read().contains(list, number) {
            return Ok(None);
        }
        let stored = match &self.store {
            Some(s) => s.get(list, number).map_err(|e| Error::unavailable(e.to_string()))?,
            None => None,
        };
        Ok(Some(stored.unwrap_or(DncEntry { list: list.to_string(), number, source: "memory".into(), added_at: 0 })))
    }

    /// The first of the lists honoured (`None`: every list) that has the number `e164`.
    /// A number that is not E.164 is on no list.
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
    /// kept in memory only, and then not at all, without a data directory).
    pub fn audit(&self, row: AuditRow) {
        if let Some(store) = &self.store {
            store.audit(row);
        }
    }

    /// The audit trail of `campaign`, oldest first, from `since` (Unix ms), at most `limit`
    /// rows (after the rows written so far are on disk).
    pub async fn audit_rows(&self, campaign: &str, since: u64, limit: usize) -> Result<Vec<AuditRow>, Error> {
        let Some(store) = self.store.clone() else { return Ok(Vec::new()) };
        let campaign = campaign.to_string();
        tokio::task::spawn_blocking(move || store.audit_rows(&campaign, since, limit))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| Error::unavailable(format!("cannot read the audit trail: {e}")))
    }
}
