//! Singleton duties: work that must run on one node of a domain at a time (lease-expiry
//! sweeps, each provider's reconciliation, alert evaluation), held through a lease in
//! Redis with a fencing token.
//!
//! The lease is the key `{cg:<domain>}:duty:<name>` holding `<node>|<token>` with a TTL
//! (`PX`). Taking it is `SET NX PX` done in a script together with `INCR` of the duty's
//! token counter, so every holder gets a larger token than every holder before it
//! (Kleppmann's fencing token); a counter Redis does not have (a new domain, or a Redis
//! that restarted empty) starts at Redis's clock in ms, so tokens keep growing across a
//! restart too. Renewing compares holder *and* token in a script before it extends the
//! TTL, so a node that lost the lease (paused past its TTL, partitioned) and comes back
//! cannot renew the lease another node holds now; it learns that it lost it and stops. A holder that cannot renew stops its duties on its own once the lease
//! may have expired (see [`DutyLease::held`]), without waiting for Redis to answer.
//! A holder that dies stops renewing, and the lease moves when its TTL runs out.
//!
//! The ledger enforces the token too: the duties' commands that change it (the sweep, a
//! reconciliation's repair, an alert's limit change) come as `Command::Fenced` with the
//! holder's token, and the ledger script runs them only while this key holds that token,
//! in the same call ([`fenced_args`]), so a former holder that wakes after a takeover
//! changes nothing.

use crate::{connect, unavailable, RedisLedger};
use callgate_backend::{Command, Error, Fence};
use std::sync::Mutex;
use std::time::Duration;

/// Takes the lease when nobody holds it (`SET NX PX` with a new token), renews it when
/// this node holds it with this token; answers the token, or nil when another holds it.
/// KEYS: the lease, the token counter. ARGV: node, TTL (ms), the token held ('' if none).
const TAKE_OR_RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[1] and string.sub(cur, sep + 1) == ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(ARGV[3])
  end
  return false
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- A new counter (or one an emptied Redis lost) starts at Redis's clock in ms, so tokens
  -- keep growing across a restart: a holder from before it never matches a new one.
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'NX', 'PX', ARGV[2])
return token
";

/// Lets the lease go when this node holds it with this token (a node that stops hands
/// its duties over at once instead of after the TTL).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] .. '|' .. ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// One duty's lease, as one node sees it.
#[derive(Debug)]
pub struct DutyLease {
    client: redis::Client,
    key: String,
    counter: String,
    node: String,
    ttl: Duration,
    /// `(token, deadline)`: the token held, and the time (on the caller's clock, ms)
    /// before which the lease cannot have expired in Redis: taken or renewed at `sent`,
    /// it holds until `sent + ttl`; 80% of that leaves a margin for clock rates.
    held: Mutex<Option<(u64, u64)>>,
}

impl DutyLease {
    /// The lease of duty `name` in `ledger`'s domain, for node `node`, held for `ttl` per
    /// take or renewal (renew it well within that, e.g. every `ttl / 5`).
    pub fn new(ledger: &RedisLedger, name: &str, node: &str, ttl: Duration) -> Result<DutyLease, Error> {
        if node.is_empty() || node.contains('|') || node.len() > 128 {
            return Err(Error::invalid(format!("bad node name {node:?}: 1 to 128 characters, no `|`")));
        }
        let prefix = ledger.key_prefix();
        Ok(DutyLease {
            client: ledger.client.clone(),
            key: format!("{prefix}:duty:{name}"),
            counter: format!("{prefix}:duty:{name}:token"),
            node: node.to_owned(),
            ttl,
            held: Mutex::new(None),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<(u64, u64)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes or renews the lease (blocking: call it off the async threads), `sent_ms` being
    /// the caller's clock before the call. `Ok(Some(token))` while this node holds it,
    /// `Ok(None)` while another does; an error when Redis could not be asked (the lease is
    /// then held only until its local deadline passes).
    pub fn take_or_renew(&self, sent_ms: u64) -> Result<Option<u64>, Error> {
        let token = self.state().map(|(t, _)| t.to_string()).unwrap_or_default();
        let mut conn = connect(&self.client).map_err(unavailable)?;
        let answer: Option<u64> = redis::cmd("EVAL")
            .arg(TAKE_OR_RENEW)
            .arg(2)
            .arg(&self.key)
            .arg(&self.counter)
            .arg(&self.node)
            .arg(self.ttl.as_millis() as u64)
            .arg(token)
            .query(&mut conn)
            .map_err(unavailable)?;
        let mut held = self.state();
        let margin = (self.ttl.as_millis() as u64).saturating_mul(4) / 5;
        *held = answer.map(|t| (t, sent_ms.saturating_add(margin)));
        Ok(answer)
    }

    /// The token while this node may act on the duty: it holds the lease, and its local
    /// deadline has not passed (a renewal that fails does not extend it).
    pub fn held(&self, now_ms: u64) -> Option<u64> {
        match *self.state() {
            Some((token, deadline)) if now_ms < deadline => Some(token),
            _ => None,
        }
    }

    /// Lets the lease go, if this node holds it (at a clean stop).
    pub fn release(&self) {
        let Some((token, _)) = self.state().take() else { return };
        if let Ok(mut conn) = connect(&self.client) {
            let _: Result<i64, _> =
                redis::cmd("EVAL").arg(RELEASE).arg(1).arg(&self.key).arg(&self.node).arg(token).query(&mut conn);
        }
    }

    /// The node that holds the lease now and its token, as Redis says (for operators).
    pub fn holder(&self) -> Result<Option<(String, u64)>, Error> {
        let mut conn = connect(&self.client).map_err(unavailable)?;
        let cur: Option<String> = redis::cmd("GET").arg(&self.key).query(&mut conn).map_err(unavailable)?;
        Ok(cur.and_then(|c| {
            let (node, token) = c.rsplit_once('|')?;
            Some((node.to_owned(), token.parse().ok()?))
        }))
    }
}

/// The script's arguments for `cmd` fenced by `fence`: the duty, the token, then the
/// command's own name and arguments (the script checks the lease, then runs it). Only the
/// duties' commands are fenced: the sweep, a reconciliation's repair and an alert's limit
/// change.
pub(crate) fn fenced_args(fence: &Fence, cmd: &Command) -> Result<Vec<String>, Error> {
    if !matches!(cmd, Command::Tick | Command::Repair { .. } | Command::SetLimit { .. }) {
        return Err(Error::invalid("only a sweep, a reconciliation or an alert's limit change is fenced"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if fence.duty.is_empty() || fence.duty.len() > 64 || !fence.duty.chars().all(ok) {
        return Err(Error::invalid(format!("bad duty name {:?}", fence.duty)));
    }
    let (name, inner) = crate::encode(cmd)?;
    let mut args = vec![fence.duty.to_string(), fence.token.to_string(), name.to_owned()];
    args.extend(inner);
    Ok(args)
}
