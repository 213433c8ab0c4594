//! `[[pools]]`: budgets of concurrent units, with reserves per class. A class's reserve
//! is a number of units, or `"forecast"`: it then follows the inbound forecast between a
//! floor and a ceiling (`forecast = { floor = 1, ceiling = 6 }`), which the server puts in
//! force at each 15-minute interval.

use crate::campaign::Real;
use crate::problem::{list, Field, Problems};
use crate::Config;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One `[[pools]]` table: a named budget of units (a platform account, an assistant, a
/// phone number, a campaign, a worker fleet…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PoolToml", into = "PoolToml")]
pub struct PoolConfig {
    /// Unique, non-empty name (e.g. `vapi-main`), referenced by flows.
    pub name: String,
    /// The most units held by live leases at once (e.g. the platform's concurrency
    /// limit, in calls). May be changed at runtime through the API.
    pub limit: u32,
    /// Units held back for a class and every class above it: class name → units
    /// (default: none). Kept sorted by class name, since the order carries no meaning;
    /// the ledger spec lists them in class order. The units add up to at most `limit`.
    /// A class whose reserve is `"forecast"` holds its floor here (what the ledger starts
    /// with, and keeps while no forecast is available).
    pub reserve: BTreeMap<String, u32>,
    /// The cap follows measured latency and provider refusals (default: none, the cap
    /// is the limit).
    pub adaptive: Option<crate::adaptive::AdaptiveConfig>,
    /// In cluster mode, what this pool's admissions do while Redis is unreachable
    /// (default: `[storage] on_redis_unavailable`).
    pub on_redis_unavailable: Option<crate::storage::RedisUnavailable>,
    /// A reserve that follows the inbound forecast (`reserve = { inbound = "forecast" }`,
    /// with the optional `forecast` table); `None` without one.
    pub forecast: Option<ForecastReserve>,
}

/// How a `"forecast"` reserve is worked out: each 15-minute interval, the lines that the
/// forecast arrivals of the class's flows need for `service_level` within `within`
/// (Erlang A with `patience`), kept between `floor` and `ceiling`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastReserve {
    /// The classes whose reserve is `"forecast"` (validation allows exactly one).
    #[serde(skip)]
    pub classes: Vec<String>,
    /// The fewest units held back (also without a forecast), default 0.
    #[serde(default)]
    pub floor: u32,
    /// The most units held back (default: the limit less the other classes' reserves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<u32>,
    /// Share of callers to answer within `within`, in (0, 1) (default 0.8).
    #[serde(default = "default_service_level")]
    pub service_level: Real,
    /// The answer time of the service level (default "20s").
    #[serde(default = "default_within", with = "crate::serde_duration")]
    pub within: Duration,
    /// The callers' mean patience, for Erlang A (default "60s"; "0s": they wait as long
    /// as it takes, Erlang C).
    #[serde(default = "default_patience", with = "crate::serde_duration")]
    pub patience: Duration,
    /// Weeks of call history the forecast learns from, 1 to 26 (default 8).
    #[serde(default = "default_weeks")]
    pub weeks: u32,
    /// The flows whose calls are forecast (default: every flow of the class that uses
    /// this pool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<String>,
}

fn default_service_level() -> Real {
    Real(0.8)
}
fn default_within() -> Duration {
    Duration::from_secs(20)
}
fn default_patience() -> Duration {
    Duration::from_secs(60)
}
fn default_weeks() -> u32 {
    8
}

impl Default for ForecastReserve {
    fn default() -> Self {
        ForecastReserve {
            classes: Vec::new(),
            floor: 0,
            ceiling: None,
            service_level: default_service_level(),
            within: default_within(),
            patience: default_patience(),
            weeks: default_weeks(),
            flows: Vec::new(),
        }
    }
}

impl PoolConfig {
    /// A pool named `name` with `limit` units and no reserves.
    pub fn new(name: &str, limit: u32) -> Self {
        PoolConfig {
            name: name.to_owned(),
            limit,
            reserve: BTreeMap::new(),
            adaptive: None,
            on_redis_unavailable: None,
            forecast: None,
        }
    }

    /// The class whose reserve follows the forecast, if one does.
    pub fn forecast_class(&self) -> Option<&str> {
        self.forecast.as_ref().and_then(|f| f.classes.first()).map(String::as_str)
    }

    /// The forecast reserve's ceiling: as configured, else the limit less the other
    /// classes' reserves.
    pub fn forecast_ceiling(&self) -> u32 {
        let class = self.forecast_class();
        let others: u64 =
            self.reserve.iter().filter(|(c, _)| Some(c.as_str()) != class).map(|(_, &u)| u64::from(u)).sum();
        let room = u64::from(self.limit).saturating_sub(others) as u32;
        self.forecast.as_ref().and_then(|f| f.ceiling).unwrap_or(room)
    }

    /// The most each class may ever have reserved: its units, the ceiling for a class
    /// that follows the forecast.
    pub fn reserve_at_most(&self) -> BTreeMap<String, u32> {
        let mut out = self.reserve.clone();
        if let Some(class) = self.forecast_class() {
            out.insert(class.to_owned(), self.forecast_ceiling());
        }
        out
    }
}

/// A reserve as written: units, or `"forecast"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReserveValue {
    Units(u32),
    Forecast,
}

impl<'de> Deserialize<'de> for ReserveValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ReserveValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of units or \"forecast\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ReserveValue, E> {
                u32::try_from(v)
                    .map(ReserveValue::Units)
                    .map_err(|_| E::custom(format!("a reserve is 0 to {} units, not {v}", u32::MAX)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ReserveValue, E> {
                u32::try_from(v)
                    .map(ReserveValue::Units)
                    .map_err(|_| E::custom(format!("a reserve is 0 to {} units, not {v}", u32::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ReserveValue, E> {
                if v == "forecast" {
                    Ok(ReserveValue::Forecast)
                } else {
                    Err(E::custom(format!("a reserve is a number of units or \"forecast\", not {v:?}")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ReserveValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ReserveValue::Units(u) => s.serialize_u32(*u),
            ReserveValue::Forecast => s.serialize_str("forecast"),
        }
    }
}

/// `[[pools]]` as written in the file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolToml {
    name: String,
    limit: u32,
    #[serde(default)]
    reserve: BTreeMap<String, ReserveValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    adaptive: Option<crate::adaptive::AdaptiveConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_redis_unavailable: Option<crate::storage::RedisUnavailable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forecast: Option<ForecastReserve>,
}

impl From<PoolToml> for PoolConfig {
    fn from(t: PoolToml) -> Self {
        let classes: Vec<String> =
            t.reserve.iter().filter(|(_, v)| **v == ReserveValue::Forecast).map(|(c, _)| c.clone()).collect();
        let forecast = match (t.forecast, classes.is_empty()) {
            (None, true) => None,
            (f, _) => Some(ForecastReserve { classes, ..f.unwrap_or_default() }),
        };
        let floor = forecast.as_ref().map_or(0, |f| f.floor);
        let reserve = t
            .reserve
            .into_iter()
            .map(|(c, v)| match v {
                ReserveValue::Units(u) => (c, u),
                ReserveValue::Forecast => (c, floor),
            })
            .collect();
        PoolConfig {
            name: t.name,
            limit: t.limit,
            reserve,
            adaptive: t.adaptive,
            on_redis_unavailable: t.on_redis_unavailable,
            forecast,
        }
    }
}

impl From<PoolConfig> for PoolToml {
    fn from(p: PoolConfig) -> Self {
        let classes = p.forecast.as_ref().map(|f| f.classes.clone()).unwrap_or_default();
        let reserve = p
            .reserve
            .into_iter()
            .map(|(c, u)| {
                let v = if classes.contains(&c) { ReserveValue::Forecast } else { ReserveValue::Units(u) };
                (c, v)
            })
            .collect();
        PoolToml {
            name: p.name,
            limit: p.limit,
            reserve,
            adaptive: p.adaptive,
            on_redis_unavailable: p.on_redis_unavailable,
            forecast: p.forecast,
        }
    }
}

/// Checks `[[pools]]`: names, reserves naming known classes, reserves within the limit,
/// and a forecast reserve's bounds.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let pools = Field::top("pools");
    out.names("pool", config.pools.iter().map(|p| p.name.as_str()), |i| pools.index(i).key("name"));
    for (i, pool) in config.pools.iter().enumerate() {
        let reserve = pools.index(i).key("reserve");
        for class in pool.reserve.keys() {
            if config.class(class).is_none() {
                out.push(
                    reserve.key(class),
                    format!(
                        "pool `{}` reserves units for unknown class `{class}` (classes: {})",
                        pool.name,
                        list(config.classes.iter().map(|c| c.name.as_str()))
                    ),
                );
            }
        }
        let total: u64 = pool.reserve.values().map(|&u| u64::from(u)).sum();
        if total > u64::from(pool.limit) {
            out.push(
                reserve.clone(),
                format!(
                    "a reserve larger than the limit: pool `{}` reserves {total} units but its \
                     limit is {}",
                    pool.name, pool.limit
                ),
            );
        }
        if let Some(f) = &pool.forecast {
            validate_forecast(config, pool, f, &pools.index(i), out);
        }
    }
}

fn validate_forecast(config: &Config, pool: &PoolConfig, f: &ForecastReserve, at: &Field, out: &mut Problems) {
    let table = at.key("forecast");
    match f.classes.as_slice() {
        [] => {
            out.push(
                table.clone(),
                format!("pool `{}` has a `forecast` table but no reserve = \"forecast\"", pool.name),
            );
            return;
        }
        [_] => {}
        [_, second, ..] => out.push(
            at.key("reserve").key(second),
            format!("only one class of pool `{}` can have its reserve follow the forecast", pool.name),
        ),
    }
    let total: u64 = pool.reserve.values().map(|&u| u64::from(u)).sum();
    if f.floor > pool.limit || total > u64::from(pool.limit) {
        out.push(
            table.key("floor"),
            format!(
                "the forecast reserve's floor ({}) and the other reserves exceed pool `{}`'s limit {}",
                f.floor, pool.name, pool.limit
            ),
        );
    }
    if let Some(ceiling) = f.ceiling {
        let others = total - u64::from(f.floor);
        if ceiling < f.floor {
            out.push(table.key("ceiling"), format!("the ceiling ({ceiling}) is below the floor ({})", f.floor));
        } else if u64::from(ceiling) + others > u64::from(pool.limit) {
            out.push(
                table.key("ceiling"),
                format!(
                    "the ceiling ({ceiling}) plus the other reserves ({others}) exceed pool `{}`'s limit {}",
                    pool.name, pool.limit
                ),
            );
        }
    }
    let sl = f.service_level.0;
    if !(sl.is_finite() && sl > 0.0 && sl < 1.0) {
        out.push(table.key("service_level"), format!("the service level is a share between 0 and 1, not {sl}"));
    }
    if f.within > Duration::from_secs(3600) {
        out.push(table.key("within"), "the answer time is at most 1h");
    }
    if f.patience > Duration::from_secs(3600) {
        out.push(table.key("patience"), "the patience is at most 1h (\"0s\": callers wait as long as it takes)");
    }
    if !(1..=26).contains(&f.weeks) {
        out.push(table.key("weeks"), format!("weeks of history are 1 to 26, not {}", f.weeks));
    }
    for (j, name) in f.flows.iter().enumerate() {
        match config.flows.iter().find(|fl| &fl.name == name) {
            None => out.push(
                table.key("flows").index(j),
                format!("unknown flow `{name}` (flows: {})", list(config.flows.iter().map(|f| f.name.as_str()))),
            ),
            Some(flow) if !flow.pools.iter().any(|p| p.pool == pool.name) => {
                out.push(table.key("flows").index(j), format!("flow `{name}` does not use pool `{}`", pool.name))
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const CLASSES: &str =
        "[[classes]]\nname = \"inbound\"\npriority = 50\n[[classes]]\nname = \"outbound\"\npriority = 10\n";

    fn errors(text: &str) -> Vec<(Option<usize>, String, String)> {
        let text = format!("{CLASSES}{text}");
        match Config::from_toml_str(&text, None) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.into_iter().map(|e| (e.line, e.field, e.message)).collect(),
        }
    }

    #[test]
    fn a_reserve_can_follow_the_forecast() {
        let text = format!(
            "{CLASSES}[[pools]]\nname = \"vapi\"\nlimit = 10\nreserve = {{ inbound = \"forecast\" }}\n\
             forecast = {{ floor = 2, ceiling = 6, patience = \"45s\" }}\n"
        );
        let c = Config::from_toml_str(&text, None).unwrap();
        let p = c.pool("vapi").unwrap();
        assert_eq!(p.forecast_class(), Some("inbound"));
        assert_eq!(p.reserve["inbound"], 2, "the floor until a forecast is in force");
        assert_eq!(p.forecast_ceiling(), 6);
        assert_eq!(p.forecast.as_ref().unwrap().patience.as_secs(), 45);
        // Written back as read.
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        // Without the table: floor 0, ceiling the limit less the other reserves.
        let text = format!(
            "{CLASSES}[[pools]]\nname = \"v\"\nlimit = 10\nreserve = {{ inbound = \"forecast\", outbound = 1 }}\n"
        );
        let c = Config::from_toml_str(&text, None).unwrap();
        assert_eq!((c.pools[0].reserve["inbound"], c.pools[0].forecast_ceiling()), (0, 9));
    }

    #[test]
    fn forecast_reserve_errors_name_the_field_and_line() {
        let e = errors("[[pools]]\nname = \"v\"\nlimit = 10\nreserve = { inbound = \"predict\" }\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].0, e[0].1.as_str()), (Some(10), "pools[0].reserve.inbound"), "{e:?}");
        assert!(e[0].2.contains("a number of units or \"forecast\""), "{e:?}");

        let e = errors(
            "[[pools]]\nname = \"v\"\nlimit = 10\nreserve = { inbound = \"forecast\", outbound = 3 }\n\
             [pools.forecast]\nfloor = 2\nceiling = 9\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1.as_str()), (Some(13), "pools[0].forecast.ceiling"));
        assert!(e[0].2.contains("plus the other reserves (3) exceed"), "{e:?}");

        let e = errors("[[pools]]\nname = \"v\"\nlimit = 10\n[pools.forecast]\nfloor = 2\n");
        assert_eq!((e[0].0, e[0].1.as_str()), (Some(10), "pools[0].forecast"), "{e:?}");

        let e = errors(
            "[[pools]]\nname = \"v\"\nlimit = 10\nreserve = { inbound = \"forecast\" }\n\
             forecast = { floor = 5, ceiling = 4, service_level = 1.5, flows = [\"nope\"] }\n",
        );
        let fields: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(
            fields,
            ["pools[0].forecast.ceiling", "pools[0].forecast.service_level", "pools[0].forecast.flows[0]"],
            "{e:?}"
        );
    }
}
