//! Call records and booked callbacks on PostgreSQL: the [`Records`] trait, with the
//! same rows and merge rules as the SQLite store (a callback is booked once per provider
//! call; a call record merges what each webhook taught; a callback only moves forward).

use crate::conn::{Conn, Link, Pg, Worker};
use crate::{big, unavailable, unbig};
use callgate_backend::records::{CallRecord, Callback, CallbackQuery, Record, Records};
use callgate_backend::{BoxFuture, Error};
use std::sync::{mpsc as std_mpsc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;

use callgate_backend::records::telemetry;

/// The most rows one read answers, whatever the caller asks: every list is bounded.
pub const MAX_ROWS: usize = 10_000;
/// Writes one commit takes at most.
const MAX_GROUP: usize = 1024;

/// Call records and callbacks in PostgreSQL. A write resolves once it is committed; the
/// writes waiting while a commit is under way share the next one (group commit, as the
/// journal's), so records keep up with a node's calls however slow each commit is.
pub struct PgRecords {
    tx: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    done: Mutex<Option<std_mpsc::Receiver<()>>>,
    reader: Worker,
    pg: Pg,
}

struct Job {
    records: Vec<Record>,
    done: oneshot::Sender<Result<(), Error>>,
}

impl std::fmt::Debug for PgRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRecords").finish_non_exhaustive()
    }
}

impl PgRecords {
    /// The records of the database `pg` opened (its migrations applied).
    pub fn open(pg: &Pg) -> PgRecords {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = std_mpsc::sync_channel(1);
        let (link, timeout) = (pg.link(), pg.settings().commit_timeout);
        pg.spawn(async move {
            run(rx, link, timeout).await;
            let _ = done_tx.send(());
        });
        PgRecords {
            tx: Mutex::new(Some(tx)),
            done: Mutex::new(Some(done_rx)),
            reader: pg.worker("records reader"),
            pg: pg.clone(),
        }
    }

    /// Stops taking writes and waits for the ones handed over.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(done) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = done.recv_timeout(self.pg.settings().commit_timeout * 2);
        }
    }
}

impl Drop for PgRecords {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer: takes every write waiting, commits them in one transaction, answers each.
async fn run(mut rx: mpsc::UnboundedReceiver<Job>, mut link: Link, timeout: std::time::Duration) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let result = match link.client().await {
            Ok(c) => match tokio::time::timeout(timeout, commit(&c, &jobs)).await {
                Ok(r) => r,
                Err(_) => Err(Error::unavailable(format!("postgres: a records commit took longer than {timeout:?}"))),
            },
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Its session ends, and with it whatever it had not committed.
            link.reset();
        }
        for j in jobs {
            let _ = j.done.send(result.clone());
        }
    }
}

async fn commit(c: &Conn, jobs: &[Job]) -> Result<(), Error> {
    let run = async {
        // Prepared before the transaction, so that each write below is sent when first
        // polled: in order, on one round trip (a state change after the booking it moves).
        for sql in [CALLBACK, CALLBACK_STATE, CALL] {
            c.prepared(sql).await?;
        }
        c.batch_execute("BEGIN").await?;
        futures_util::future::try_join_all(jobs.iter().flat_map(|j| &j.records).map(|r| apply(c, r))).await?;
        c.batch_execute("COMMIT").await
    };
    run.await.map_err(|e| unavailable("writing call records", e))
}

fn ms(v: Option<u64>) -> Option<i64> {
    v.map(big)
}

fn from_ms(v: Option<i64>) -> Option<u64> {
    v.map(unbig)
}

const CALLBACK: &str = "INSERT INTO callbacks (provider, call_id, number, flow, booked_at, due_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (provider, call_id) DO NOTHING";

const CALLBACK_STATE: &str = "UPDATE callbacks SET state = $2::text, outcome = COALESCE($3, outcome), updated_at = $4
     WHERE id = $1 AND (state = 'booked' OR $2::text = 'done')";

const CALL: &str = "INSERT INTO calls (provider, call_id, flow, from_number, to_number, outcome, started_at,
        ended_at, duration_ms, ended_reason, cost, recording_url, updated_at, assistant, telemetry)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
     ON CONFLICT (provider, call_id) DO UPDATE SET
        flow = COALESCE(excluded.flow, calls.flow),
        from_number = COALESCE(excluded.from_number, calls.from_number),
        to_number = COALESCE(excluded.to_number, calls.to_number),
        outcome = COALESCE(excluded.outcome, calls.outcome),
        started_at = COALESCE(excluded.started_at, calls.started_at),
        ended_at = COALESCE(excluded.ended_at, calls.ended_at),
        duration_ms = COALESCE(excluded.duration_ms, calls.duration_ms),
        ended_reason = COALESCE(excluded.ended_reason, calls.ended_reason),
        cost = COALESCE(excluded.cost, calls.cost),
        recording_url = COALESCE(excluded.recording_url, calls.recording_url),
        assistant = COALESCE(excluded.assistant, calls.assistant),
        telemetry = COALESCE(excluded.telemetry, calls.telemetry),
        updated_at = excluded.updated_at";

async fn apply(c: &Conn, r: &Record) -> Result<u64, tokio_postgres::Error> {
    match r {
        Record::Callback(cb) => {
            let (booked, due) = (big(cb.booked_at), big(cb.due_at));
            c.execute(CALLBACK, &[&cb.provider, &cb.call_id, &cb.number, &cb.flow, &booked, &due]).await
        }
        Record::CallbackState(u) => {
            let (id, at) = (big(u.id), big(u.at));
            c.execute(CALLBACK_STATE, &[&id, &u.state.as_str(), &u.outcome, &at]).await
        }
        Record::Call(u) => {
            let telemetry = u.telemetry.as_ref().map(|t| telemetry::to_json(t).to_string());
            let (started, ended, duration, at) = (ms(u.started_at), ms(u.ended_at), ms(u.duration_ms), big(u.at));
            let cost = u.cost.filter(|c| c.is_finite());
            c.execute(
                CALL,
                &[
                    &u.provider,
                    &u.call_id,
                    &u.flow,
                    &u.from_number,
                    &u.to_number,
                    &u.outcome,
                    &started,
                    &ended,
                    &duration,
                    &u.ended_reason,
                    &cost,
                    &u.recording_url,
                    &at,
                    &u.assistant,
                    &telemetry,
                ],
            )
            .await
        }
    }
}

fn callback_row(r: &Row) -> Callback {
    Callback {
        id: unbig(r.get(0)),
        provider: r.get(1),
        call_id: r.get(2),
        number: r.get(3),
        flow: r.get(4),
        booked_at: unbig(r.get(5)),
        due_at: unbig(r.get(6)),
        state: r.get(7),
        outcome: r.get(8),
        updated_at: from_ms(r.get(9)),
    }
}

const CALL_COLUMNS: &str = "provider, call_id, flow, from_number, to_number, outcome, started_at, ended_at,
     duration_ms, ended_reason, cost, recording_url, updated_at, assistant, telemetry";

fn call_row(r: &Row) -> CallRecord {
    CallRecord {
        provider: r.get(0),
        call_id: r.get(1),
        flow: r.get(2),
        from_number: r.get(3),
        to_number: r.get(4),
        outcome: r.get(5),
        started_at: from_ms(r.get(6)),
        ended_at: from_ms(r.get(7)),
        duration_ms: from_ms(r.get(8)),
        ended_reason: r.get(9),
        cost: r.get(10),
        recording_url: r.get(11),
        at: unbig(r.get(12)),
        assistant: r.get(13),
        telemetry: r.get::<_, Option<String>>(14).as_deref().and_then(telemetry::from_json).map(Box::new),
    }
}

fn limit(n: usize) -> i64 {
    big(n.min(MAX_ROWS) as u64)
}

impl Records for PgRecords {
    fn record(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), Error>> {
        if records.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let (done, rx) = oneshot::channel();
        // Handed over now, so writes commit in the order of the calls.
        let sent = match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(Job { records, done }).is_ok(),
            None => false,
        };
        Box::pin(async move {
            if !sent {
                return Err(Error::unavailable("postgres: the records writer is closed"));
            }
            rx.await.map_err(|_| Error::unavailable("postgres: the records writer gave no answer"))?
        })
    }

    fn callbacks(&self, query: &CallbackQuery) -> Result<Vec<Callback>, Error> {
        let (state, flow, n) = (query.state.clone(), query.flow.clone(), limit(query.limit));
        self.reader.block(move |c| async move {
            let rows = c
                .query(
                    "SELECT id, provider, call_id, number, flow, booked_at, due_at, state, outcome, updated_at
                     FROM callbacks WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR flow = $2)
                     ORDER BY due_at, id LIMIT $3",
                    &[&state, &flow, &n],
                )
                .await
                .map_err(|e| unavailable("reading callbacks", e))?;
            Ok(rows.iter().map(callback_row).collect())
        })
    }

    fn calls(&self, n: usize) -> Result<Vec<CallRecord>, Error> {
        let n = limit(n);
        self.reader.block(move |c| async move {
            let rows = c
                .query(&format!("SELECT {CALL_COLUMNS} FROM calls ORDER BY updated_at DESC, call_id LIMIT $1"), &[&n])
                .await
                .map_err(|e| unavailable("reading call records", e))?;
            Ok(rows.iter().map(call_row).collect())
        })
    }

    fn call(&self, provider: &str, call_id: &str) -> Result<Option<CallRecord>, Error> {
        let (provider, call_id) = (provider.to_owned(), call_id.to_owned());
        self.reader.block(move |c| async move {
            let row = c
                .query_opt(
                    &format!("SELECT {CALL_COLUMNS} FROM calls WHERE provider = $1 AND call_id = $2"),
                    &[&provider, &call_id],
                )
                .await
                .map_err(|e| unavailable("reading a call record", e))?;
            Ok(row.as_ref().map(call_row))
        })
    }
}
