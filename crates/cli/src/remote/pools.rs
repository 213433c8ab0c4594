//! `callgate pools list` and `callgate pools set NAME --limit N`.

use super::{encode, Client, Conn};
use crate::out::{self, Failure};
use clap::Subcommand;
use serde_json::{json, Value};

/// `callgate pools …`
#[derive(Subcommand, Debug)]
pub(crate) enum PoolsCommand {
    /// List the pools: used, cap, limit, waiting, reserves.
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a pool's limit at once (admin). Lowering it below its use revokes nothing;
    /// it only stops new grants until use is under the limit.
    Set {
        /// The pool.
        name: String,
        /// The new limit (units).
        #[arg(long)]
        limit: u32,
        /// Print the pool as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

fn line(p: &Value) -> String {
    format!(
        "{}  used {}  cap {}  limit {}  waiting {}",
        p["name"].as_str().unwrap_or(""),
        p["used"],
        p["cap"],
        p["limit"],
        p["waiting"]
    )
}

pub(crate) async fn run(cmd: PoolsCommand) -> Result<(), Failure> {
    match cmd {
        PoolsCommand::List { json, conn } => {
            let v = Client::new(&conn)?.get("/v1/pools").await?;
            if json {
                return out::line(&v);
            }
            let text: String = v.as_array().into_iter().flatten().map(|p| line(p) + "\n").collect();
            out::print(&text)
        }
        PoolsCommand::Set { name, limit, json, conn } => {
            let v =
                Client::new(&conn)?.put(&format!("/v1/pools/{}", encode(&name)), &json!({ "limit": limit })).await?;
            if json {
                out::line(&v)
            } else {
                out::line(line(&v))
            }
        }
    }
}
