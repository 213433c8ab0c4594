//! `callgate leases list` and `callgate leases release ID | --key K`.

use super::{all_leases, encode, Client, Conn};
use crate::out::{self, Failure};
use clap::{ArgGroup, Subcommand};
use serde_json::{json, Value};

/// `callgate leases …`
#[derive(Subcommand, Debug)]
pub(crate) enum LeasesCommand {
    /// List the live leases (the calls holding capacity), oldest first.
    List {
        /// Only the leases holding units in this pool.
        #[arg(long)]
        pool: Option<String>,
        /// Print at most this many (the server is asked page by page).
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// Print them as JSON (an array).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Release a lease by its id or by its key (the provider's call id); its units are
    /// freed once, however often this is repeated.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "key"])))]
    Release {
        /// The lease id (e.g. L12).
        id: Option<String>,
        /// The lease's key instead of its id.
        #[arg(long)]
        key: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub(crate) async fn run(cmd: LeasesCommand) -> Result<(), Failure> {
    match cmd {
        LeasesCommand::List { pool, max, json, conn } => {
            let client = Client::new(&conn)?;
            let filters: Vec<(&str, &str)> = pool.as_deref().map(|p| ("pool", p)).into_iter().collect();
            let leases = all_leases(&client, &filters, max).await?;
            if json {
                return out::line(Value::Array(leases.list));
            }
            let mut text = String::new();
            for l in &leases.list {
                let pools: Vec<String> = l["pools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p["pool"].as_str().unwrap_or(""), p["units"]))
                    .collect();
                text.push_str(&format!(
                    "{}  {}  flow {}  pools {}  key {}  expires_at_ms {}\n",
                    l["id"].as_str().unwrap_or(""),
                    l["class"].as_str().unwrap_or(""),
                    l["flow"].as_str().unwrap_or("-"),
                    pools.join(","),
                    l["key"].as_str().unwrap_or("-"),
                    l["expires_at_ms"]
                ));
            }
            if !leases.complete {
                text.push_str(&format!("… more than {max} leases (--max raises it)\n"));
            }
            out::print(&text)
        }
        LeasesCommand::Release { id, key, json, conn } => {
            let client = Client::new(&conn)?;
            let (path, what) = match (&id, &key) {
                (Some(id), _) => (format!("/v1/leases/{}", encode(id)), format!("lease {id}")),
                (None, Some(k)) => (format!("/v1/leases?key={}", encode(k)), format!("the lease of key `{k}`")),
                (None, None) => return Err("give a lease id or --key".to_string().into()),
            };
            let v = client.delete(&path).await?;
            if json {
                return out::line(&v);
            }
            if v["released"] == json!(true) {
                out::line(format!("released {what}"))
            } else {
                out::line(format!("{what} was not live (released before, expired or unknown): nothing freed"))
            }
        }
    }
}
