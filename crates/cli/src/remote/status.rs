//! `callgate status`: one page of everything a running server knows (a redis-cli `INFO`
//! for callgate): health, pools with used/cap/limit and use by class, the waiting line,
//! campaigns, breakers, alerts, and per Vapi assistant what Vapi measured
//! (`GET /v1/calls/summary`).

use super::{all_leases, human_ms, Client, Conn};
use crate::out::{self, Failure};
use clap::Args;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Leases read to count each pool's use by class; a server with more live leases than
/// this shows its per-class figures as a lower bound (marked).
const MAX_LEASES: usize = 20_000;
/// Waiting callers listed in the text view (all of them in `--json`).
const SHOWN_WAITING: usize = 20;

/// `callgate status`
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// What `status` gathers, also `top`'s frame.
pub(crate) async fn gather(client: &Client) -> Result<Value, Failure> {
    let health = client.health().await?;
    let pools = client.get("/v1/pools").await?;
    let waiting = client.get("/v1/tickets").await?;
    let campaigns = optional(client.get("/v1/campaigns").await)?;
    let breakers = optional(client.get("/v1/breakers").await)?;
    let alerts = optional(client.get("/v1/alerts").await)?;
    let assistants = optional(client.get("/v1/calls/summary").await)?["assistants"].clone();
    let leases = all_leases(client, &[], MAX_LEASES).await?;
    let mut by_pool: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for l in &leases.list {
        let class = l["class"].as_str().unwrap_or("?");
        for p in l["pools"].as_array().into_iter().flatten() {
            let units = p["units"].as_u64().unwrap_or(1);
            *by_pool
                .entry(p["pool"].as_str().unwrap_or("?").to_string())
                .or_default()
                .entry(class.to_string())
                .or_default() += units;
        }
    }
    let pools: Vec<Value> = pools
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut p = p.clone();
            if p.get("used_by_class").is_none() {
                let name = p["name"].as_str().unwrap_or("");
                p["used_by_class"] = json!(by_pool.get(name).cloned().unwrap_or_default());
            }
            p
        })
        .collect();
    Ok(json!({
        "server": client.base,
        "health": health,
        "leases": leases.list.len(),
        "leases_complete": leases.complete,
        "pools": pools,
        "waiting": waiting,
        "campaigns": campaigns,
        "breakers": breakers,
        "alerts": alerts,
        "assistants": assistants,
    }))
}

/// An endpoint an older server may not have (404): shown as absent.
fn optional(r: Result<Value, Failure>) -> Result<Value, Failure> {
    match r {
        Err(Failure::Message(m)) if m.contains("HTTP 404") => Ok(Value::Null),
        other => other,
    }
}

impl Client {
    /// `GET /healthz`, whose 503 is an answer, not an error.
    async fn health(&self) -> Result<Value, Failure> {
        match self.get("/healthz").await {
            Ok(v) => Ok(v),
            Err(Failure::Message(m)) if m.contains("HTTP 503") => Ok(json!({ "status": "failing", "reason": m })),
            Err(e) => Err(e),
        }
    }
}

pub(crate) async fn run(args: StatusArgs) -> Result<(), Failure> {
    let client = Client::new(&args.conn)?;
    let v = gather(&client).await?;
    if args.json {
        out::line(&v)
    } else {
        out::print(&text(&v))
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `inbound=2 vip=1`
fn pairs(v: &Value) -> String {
    let m: Option<&Map<String, Value>> = v.as_object();
    let list: Vec<String> = m.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(" ")
    }
}

/// The text view.
pub(crate) fn text(v: &Value) -> String {
    let mut o = String::new();
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    o.push_str("# Server\n");
    o.push_str(&format!("server:   {}\n", s(&v["server"])));
    let health = s(&v["health"]["status"]);
    match v["health"]["reason"].as_str() {
        Some(why) => o.push_str(&format!("health:   {health} ({why})\n")),
        None => o.push_str(&format!("health:   {health}\n")),
    }
    o.push_str(&format!("leases:   {}{}\n", v["leases"], if v["leases_complete"] == false { "+" } else { "" }));
    o.push_str(&format!("waiting:  {}\n", list("waiting").len()));

    o.push_str("\n# Pools\n");
    let pools = list("pools");
    let w = pools.iter().map(|p| s(&p["name"]).len()).max().unwrap_or(4).max(4);
    o.push_str(&format!(
        "{:<w$}  {:>14}  {:>7}  {:<18}  {}\n",
        "pool", "used/cap/limit", "waiting", "reserve", "used by class"
    ));
    for p in &pools {
        let ucl = format!("{}/{}/{}", p["used"], p["cap"], p["limit"]);
        o.push_str(&format!(
            "{:<w$}  {:>14}  {:>7}  {:<18}  {}\n",
            s(&p["name"]),
            ucl,
            p["waiting"].to_string(),
            pairs(&p["reserve"]),
            pairs(&p["used_by_class"])
        ));
    }

    o.push_str("\n# Waiting\n");
    let waiting = list("waiting");
    if waiting.is_empty() {
        o.push_str("nobody\n");
    }
    for t in waiting.iter().take(SHOWN_WAITING) {
        o.push_str(&format!(
            "{:>3}. {}  {}  flow {}  eta {}  key {}\n",
            t["position"].to_string(),
            s(&t["id"]),
            s(&t["class"]),
            t["flow"].as_str().unwrap_or("-"),
            human_ms(t["eta_ms"].as_u64().unwrap_or(0)),
            t["key"].as_str().unwrap_or("-")
        ));
    }
    if waiting.len() > SHOWN_WAITING {
        o.push_str(&format!("… and {} more (--json lists them)\n", waiting.len() - SHOWN_WAITING));
    }

    o.push_str("\n# Campaigns\n");
    let campaigns = list("campaigns");
    if campaigns.is_empty() {
        o.push_str("none\n");
    }
    for c in &campaigns {
        o.push_str(&format!(
            "{}  {}  priority {}  live {}  scheduled {}\n",
            s(&c["name"]),
            s(&c["state"]),
            c["priority"],
            c["live"],
            c["scheduled"]
        ));
    }

    o.push_str("\n# Breakers\n");
    let breakers = list("breakers");
    if breakers.is_empty() {
        o.push_str("none\n");
    }
    for b in &breakers {
        o.push_str(&format!(
            "{}  {}  calls {}  failed {}  slow {}\n",
            s(&b["name"]),
            s(&b["state"]),
            b["calls"],
            b["failed"],
            b["slow"]
        ));
    }

    o.push_str("\n# Alerts\n");
    let alerts = list("alerts");
    if alerts.is_empty() {
        o.push_str("none\n");
    }
    for a in &alerts {
        let value = a["value"].as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
        o.push_str(&format!(
            "{}  {}  {} {} {} {} (now {value})\n",
            s(&a["name"]),
            s(&a["state"]),
            s(&a["target"]["name"]),
            s(&a["metric"]),
            s(&a["direction"]),
            a["threshold"]
        ));
    }

    o.push_str("\n# Vapi assistants (recent calls)\n");
    let assistants = list("assistants");
    if assistants.is_empty() {
        o.push_str("none\n");
    }
    let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.0}ms"));
    for a in &assistants {
        let per_min = a["cost_per_minute_usd"].as_f64().map_or("-".to_string(), |x| format!("${x:.3}/min"));
        o.push_str(&format!(
            "{}  {}  calls {}  turn p50 {} p95 {}  interrupted {}  {per_min}  errors {}\n",
            s(&a["provider"]),
            a["assistant"].as_str().unwrap_or("-"),
            a["calls"],
            ms(&a["turn_p50_ms"]),
            ms(&a["turn_p95_ms"]),
            a["user_interrupted"],
            a["error_endings"]
        ));
    }
    o
}

/// `callgate health`
#[derive(Args, Debug)]
pub(crate) struct HealthArgs {
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `GET /healthz`: exit 0 when the server serves and can make grants durable (`ok`, or
/// `degraded`: admitting on its own share while Redis is unreachable, which a restart
/// would not mend), 1 when not (or unreachable). Needs no key: a container's HEALTHCHECK
/// runs it.
pub(crate) async fn run_health(args: HealthArgs) -> Result<(), Failure> {
    let client = Client::new(&args.conn)?;
    let v = client.health().await?;
    if args.json {
        out::line(&v)?;
    } else {
        out::line(s(&v["status"]))?;
    }
    if v["status"] == "ok" || v["status"] == "degraded" {
        Ok(())
    } else {
        Err(Failure::Message(format!("{} is not healthy", client.base)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_view_shows_what_vapi_measured_per_assistant() {
        let v = json!({
            "server": "http://127.0.0.1:8080",
            "health": { "status": "ok" },
            "assistants": [{ "provider": "vapi-main", "assistant": "asst_support", "calls": 12,
                             "turn_p50_ms": 812.4, "turn_p95_ms": 1630.0, "user_interrupted": 3,
                             "cost_per_minute_usd": 0.1234, "error_endings": 1 }],
        });
        let shown = text(&v);
        assert!(
            shown.contains(
                "vapi-main  asst_support  calls 12  turn p50 812ms p95 1630ms  interrupted 3  $0.123/min  errors 1"
            ),
            "{shown}"
        );
        assert!(text(&json!({})).contains("# Vapi assistants (recent calls)\nnone\n"));
    }
}
