//! Caps below a pool's limit, set by whoever learns the platform allows fewer calls than
//! configured (the campaign dialer after a concurrency refusal; adaptive limits).

use super::Governor;
use crate::error::ApiError;
use crate::views::PoolInfo;

impl Governor {
    /// Sets (with `None` clears) a cap below the pool's limit; the effective cap is
    /// `min(limit, cap)`. Lowering it revokes nothing; raising it grants what now fits.
    pub async fn set_cap(&self, pool: &str, cap: Option<u32>) -> Result<PoolInfo, ApiError> {
        let (out, seq) = self.apply(|st, now| {
            let id = st.ledger.pool_id(pool).ok_or_else(|| super::unknown_pool(pool))?;
            st.ledger.set_cap(id, cap, now);
            Ok::<_, ApiError>(PoolInfo::new(&st.ledger.pool(id), &self.names))
        });
        let out = out?;
        self.journal.durable(seq).await?;
        Ok(out)
    }
}
