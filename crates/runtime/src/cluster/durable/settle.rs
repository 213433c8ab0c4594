//! The tags of a journaling node's stream entries, and the settle marks that tell the
//! other nodes' followers when those entries are durable (see the parent's docs).

use callgate_backend::Executed;
use callgate_store_postgres::Journal;
use callgate_store_redis::{RedisLedger, Tag};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Hands out this node's tags and has the stream marked once their appends settle.
pub(super) struct Marker {
    /// This process's origin in its tags.
    origin: String,
    /// The last tag number handed out (under the order lock).
    tagged: AtomicU64,
    /// To the task that marks: each tagged call that appended, as its last append and its
    /// tag number.
    to_mark: mpsc::UnboundedSender<(u64, u64)>,
}

impl Marker {
    /// Starts the task that marks `redis`'s stream once `journal` settled what a tagged
    /// call appended (call inside the server's runtime).
    pub(super) fn start(redis: Arc<RedisLedger>, journal: Arc<Journal>) -> Marker {
        let (to_mark, mut settled) = mpsc::unbounded_channel::<(u64, u64)>();
        let origin = Tag::new_origin();
        let tag_origin = origin.clone();
        tokio::spawn(async move {
            // One mark for whatever came meanwhile: a mark covers every entry up to its own.
            while let Some(mut last) = settled.recv().await {
                while let Ok(next) = settled.try_recv() {
                    last = next;
                }
                // Committed, or lost (then being taken back): settled either way, as this
                // node's own bus has it (`Journaled::settle_own`).
                let _ = journal.durable(last.0).await;
                // Redis unreachable: the next mark covers it, or the others stop holding
                // it after a while (`cluster::HOLD_MAX`).
                let _ = redis.mark_settled(&Tag { origin: tag_origin.clone(), k: last.1 }).await;
            }
        });
        Marker { origin, tagged: AtomicU64::new(0), to_mark }
    }

    /// This process's origin in its tags.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }

    /// The tag of the next call on Redis (under the order lock).
    pub(super) fn next_tag(&self) -> Tag {
        Tag { origin: self.origin.clone(), k: self.tagged.fetch_add(1, Ordering::SeqCst) + 1 }
    }

    /// The call tagged `tag` answered `done` (under the order lock, after its appends):
    /// once the last of those is settled, the stream gets `tag`'s settle mark. Nothing
    /// appended, nothing to mark (the call made no stream entry).
    pub(super) fn to_settle<'a>(&self, tag: &Tag, done: impl IntoIterator<Item = &'a Executed>) {
        let last = done.into_iter().filter(|d| !d.events.is_empty()).map(|d| d.commit).max();
        if let Some(seq) = last {
            let _ = self.to_mark.send((seq, tag.k));
        }
    }
}
