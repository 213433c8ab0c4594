//! Dependencies between callgate's crates point one way, down the data flow:
//!
//! ```text
//! core < backend < config < policy < store < dialer < providers < events < ops < governor < runtime < http < server < callgate (cli)
//! plan: core, config, policy and dialer only (the simulator runs the server's policies and
//!   the real dialer's scheduling; both are sans-IO)
//! forecast: core, config and plan only; runtime and the crates above it may use it (and
//!   so they may use plan, which is pure: the forecast reserve needs its Erlang A)
//! store-redis: core, backend and config only (beside store); runtime and above may use it
//! store-postgres: core, backend and config only (beside store); runtime and above may use it
//! events, ops, governor: never store (admission and its consumers run over any backend)
//! ```
//!
//! A crate may depend (normal, dev or build dependency, on any target) only on crates of
//! a lower layer. `providers` sits above `dialer` because its dialers implement the
//! `Dialer` trait the dialer defines. `events` (the bus and its read-only consumers) sits
//! below `ops`, which publishes on the bus, and `governor`, which owns an `Ops`. `runtime`
//! (campaigns, inbound admission, reconciliation, cluster duties) runs around the
//! governor; `http`, the edge, hands requests to both; `server` wires them at start-up.
//! Every workspace member must have a place in the table, so a new crate is placed
//! deliberately rather than by accident. The manifests are read with a TOML parser, not
//! grepped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each package and the packages it may depend on.
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    const LAYERS: [&str; 14] = [
        "callgate-core",
        "callgate-backend",
        "callgate-config",
        "callgate-policy",
        "callgate-store",
        "callgate-dialer",
        "callgate-providers",
        "callgate-events",
        "callgate-ops",
        "callgate-governor",
        "callgate-runtime",
        "callgate-http",
        "callgate-server",
        "callgate",
    ];
    let mut allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, name) in LAYERS.iter().enumerate() {
        let mut below = LAYERS[..i].to_vec();
        if matches!(*name, "callgate-runtime" | "callgate-http" | "callgate-server" | "callgate") {
            below.push("callgate-plan");
            below.push("callgate-forecast");
        }
        if matches!(*name, "callgate-runtime" | "callgate-http" | "callgate-server" | "callgate") {
            below.push("callgate-store-redis");
            below.push("callgate-store-postgres");
        }
        allowed.insert(name, below);
    }
    // Admission and what consumes its events know backends only through `callgate-backend`:
    // the embedded store is one backend among others, chosen by the server at start.
    for name in ["callgate-events", "callgate-ops", "callgate-governor"] {
        allowed.get_mut(name).expect("a layer").retain(|d| *d != "callgate-store");
    }
    allowed.insert("callgate-plan", vec!["callgate-core", "callgate-config", "callgate-policy", "callgate-dialer"]);
    allowed.insert("callgate-forecast", vec!["callgate-core", "callgate-config", "callgate-plan"]);
    allowed.insert("callgate-store-redis", vec!["callgate-core", "callgate-backend", "callgate-config"]);
    allowed.insert("callgate-store-postgres", vec!["callgate-core", "callgate-backend", "callgate-config"]);
    allowed
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn parse(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace's packages: name and manifest.
fn members() -> Vec<(String, toml::Table)> {
    let root = repo();
    let workspace = parse(&root.join("Cargo.toml"));
    let members = workspace["workspace"]["members"].as_array().expect("workspace.members");
    members
        .iter()
        .map(|m| {
            let manifest = parse(&root.join(m.as_str().unwrap()).join("Cargo.toml"));
            let name = manifest["package"]["name"].as_str().expect("package.name").to_owned();
            (name, manifest)
        })
        .collect()
}

/// The `callgate*` packages a manifest depends on, in every dependency table (also
/// `[target.'cfg(…)'.*]`), by package name (a renamed dependency counts by its `package`).
fn callgate_deps(manifest: &toml::Table) -> Vec<(String, &'static str)> {
    const KINDS: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];
    let targets = manifest.get("target").and_then(|t| t.as_table());
    let scopes =
        std::iter::once(manifest).chain(targets.into_iter().flat_map(|t| t.values().filter_map(|t| t.as_table())));
    let tables =
        scopes.flat_map(|scope| KINDS.into_iter().filter_map(move |kind| Some((scope.get(kind)?.as_table()?, kind))));
    let mut out = Vec::new();
    for (deps, kind) in tables {
        for (key, spec) in deps {
            let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(key);
            if package == "callgate" || package.starts_with("callgate-") {
                out.push((package.to_owned(), kind));
            }
        }
    }
    out
}

/// Every dependency that breaks the table, as a sentence.
fn violations(members: &[(String, toml::Table)], allowed: &BTreeMap<&str, Vec<&str>>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, manifest) in members {
        let Some(may) = allowed.get(name.as_str()) else {
            out.push(format!("{name} has no layer: add it to the table in crates/cli/tests/layers.rs"));
            continue;
        };
        for (dep, kind) in callgate_deps(manifest) {
            if !may.contains(&dep.as_str()) {
                out.push(format!("{name} depends on {dep} ({kind}), which is not below it"));
            }
        }
    }
    out
}

#[test]
fn dependencies_point_down_the_layers() {
    let members = members();
    assert!(members.len() >= 8, "every crate is read: {:?}", members.iter().map(|m| &m.0).collect::<Vec<_>>());
    let problems = violations(&members, &allowed());
    assert!(problems.is_empty(), "dependencies that point up or sideways:\n{}", problems.join("\n"));
}

#[test]
fn every_table_entry_is_a_workspace_crate() {
    let names: Vec<String> = members().into_iter().map(|m| m.0).collect();
    for name in allowed().keys() {
        assert!(names.iter().any(|n| n == name), "{name} is in the table but not in the workspace");
    }
}

/// The check itself catches what it is for: an upward dependency, a renamed one, one in a
/// target table or a dev-dependency, and an unplaced crate.
#[test]
fn an_upward_dependency_is_caught() {
    let manifest = |text: &str| -> toml::Table { text.parse().unwrap() };
    let bad = vec![
        (
            "callgate-dialer".to_owned(),
            manifest("[dependencies]\ncallgate-config = { workspace = true }\ngate = { package = \"callgate-server\", path = \"x\" }\n"),
        ),
        ("callgate-store".to_owned(), manifest("[target.'cfg(unix)'.dev-dependencies]\ncallgate-providers = \"*\"\n")),
        ("callgate-plan".to_owned(), manifest("[dev-dependencies]\ncallgate-store.workspace = true\n")),
        ("callgate-new".to_owned(), manifest("[dependencies]\n")),
        ("callgate-server".to_owned(), manifest("[dependencies]\ncallgate-dialer.workspace = true\ncallgate-core.workspace = true\n")),
        ("callgate-runtime".to_owned(), manifest("[dependencies]\ncallgate-http.workspace = true\n")),
    ];
    let problems = violations(&bad, &allowed());
    assert_eq!(
        problems,
        [
            "callgate-dialer depends on callgate-server (dependencies), which is not below it",
            "callgate-store depends on callgate-providers (dev-dependencies), which is not below it",
            "callgate-plan depends on callgate-store (dev-dependencies), which is not below it",
            "callgate-new has no layer: add it to the table in crates/cli/tests/layers.rs",
            "callgate-runtime depends on callgate-http (dependencies), which is not below it",
        ]
    );
}
