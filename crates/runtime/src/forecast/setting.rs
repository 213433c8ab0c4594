//! What a forecast is set against for a pool (`GET /v1/forecast?pool=`): its lines, the
//! campaigns that dial through it with a cap of their own, and the `[pricing]`.

use super::Forecasts;
use callgate_config::Config;
use callgate_forecast::history::History;
use callgate_forecast::report::{Query, Report};
use callgate_forecast::series::Series;
use callgate_forecast::shortfall::{Campaign, Setting};

impl Forecasts {
    /// What `report` of `query` is set against for `pool` (blocking): the pool's lines,
    /// the campaigns dialing through it, the configuration's `[pricing]`.
    pub fn setting(
        &self,
        config: &Config,
        pool: &callgate_config::PoolConfig,
        query: &Query,
        report: &Report,
    ) -> Result<Setting, callgate_forecast::ForecastError> {
        let history = History::open(&self.data_dir)?;
        let campaigns = campaigns_of(config, &pool.name, &history, query, &report.points)?;
        Ok(Setting { limit: pool.limit, campaigns, pricing: config.pricing.clone() })
    }
}

/// The campaigns of `config` that dial through `pool` with a cap of their own
/// (`max_concurrency`: the lines they hold while they may dial), each with its calling
/// window over the intervals of `points` and the mean length of its flow's calls in the
/// history (else the handling time assumed). A campaign without a cap takes only the
/// lines inbound leaves, so it makes no interval short and has nothing to shift.
fn campaigns_of(
    config: &Config,
    pool: &str,
    history: &History,
    query: &Query,
    points: &[callgate_forecast::model::Interval],
) -> Result<Vec<Campaign>, callgate_forecast::ForecastError> {
    let end = callgate_forecast::interval_start(query.now_ms);
    let mut out = Vec::new();
    for c in &config.campaigns {
        let Some(lines) = c.max_concurrency else { continue };
        let Some(flow) = config.flow(&c.flow) else { continue };
        if !flow.pools.iter().any(|p| p.pool == pool) {
            continue;
        }
        let calendar = callgate_dialer::window::Calendar::new(c);
        let tz = c.timezone();
        let dialing = points.iter().map(|p| calendar.is_open(tz, p.start_ms)).collect();
        let aht = Series::from_history(history, Some(&c.flow), end, query.weeks, &[])?
            .mean_aht()
            .unwrap_or(callgate_forecast::report::ASSUMED_AHT_S);
        out.push(Campaign { name: c.name.clone(), lines, aht_s: aht, dialing });
        if out.len() == callgate_forecast::shortfall::MAX_CAMPAIGNS {
            break;
        }
    }
    Ok(out)
}
