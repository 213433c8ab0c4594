//! The server's own modules depend on each other one way too: a module (a file or folder
//! under `src/`, and each folder of `src/edges/` on its own) may name another through
//! `crate::…` only if that one does not, directly or not, name it back. The one circle
//! allowed is inside the HTTP edge (`edges/api` holds the reload state, `edges/reload`
//! reloads the application `edges/api` serves): both are the same concern.
//!
//! The crates below the server (governor, ops, events, …) are kept one way by
//! `crates/cli/tests/layers.rs`; this is the same rule one level down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Circles allowed, as sorted pairs of modules.
const SAME_CONCERN: &[(&str, &str)] = &[("edges/api", "edges/reload")];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `edges/api/acquire.rs` → `edges/api`; `campaign/run.rs` → `campaign`; `serve.rs` → `serve`.
fn module_of(rel: &str) -> String {
    let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    match parts.as_slice() {
        ["edges", "mod"] => "edges".into(),
        ["edges", sub, ..] => format!("edges/{sub}"),
        [top, ..] => (*top).to_string(),
        [] => unreachable!("a path has a part"),
    }
}

/// The modules a file names as `crate::a` or `crate::edges::b`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in text.split("crate::").skip(1) {
        let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
        let first = ident(part);
        if first.is_empty() {
            continue;
        }
        if first == "edges" {
            let rest = &part[first.len()..];
            match rest.strip_prefix("::").map(ident) {
                Some(sub) if !sub.is_empty() && sub.chars().next().is_some_and(|c| c.is_ascii_lowercase()) => {
                    out.insert(format!("edges/{sub}"));
                }
                _ => {
                    out.insert(first);
                }
            }
        } else {
            out.insert(first);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in all {
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let module = module_of(&rel);
        let text = std::fs::read_to_string(&path).unwrap();
        let deps = named(&text).into_iter().filter(|d| *d != module).collect::<BTreeSet<_>>();
        graph.entry(module).or_default().extend(deps);
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if d == to {
                return true;
            }
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    false
}

#[test]
fn no_two_modules_of_the_server_name_each_other_in_a_circle() {
    let graph = graph();
    assert!(graph.contains_key("edges/api") && graph.contains_key("campaign"), "{graph:?}");
    let mut circles = BTreeSet::new();
    for (a, deps) in &graph {
        for b in deps {
            if reaches(&graph, b, a) {
                let pair = if a < b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
                if !SAME_CONCERN.iter().any(|(x, y)| (*x, *y) == (pair.0.as_str(), pair.1.as_str())) {
                    circles.insert(pair);
                }
            }
        }
    }
    assert!(circles.is_empty(), "modules that name each other, directly or not: {circles:?}");
}

#[test]
fn the_reader_sees_crate_paths_as_modules() {
    let text = "use crate::edges::api::App;\nuse crate::governor::{Error, Governor};\nlet x = crate::edges::ApiError;";
    let got: Vec<String> = named(text).into_iter().collect();
    assert_eq!(got, ["edges", "edges/api", "governor"]);
    assert_eq!(module_of("edges/api/acquire.rs"), "edges/api");
    assert_eq!(module_of("edges/mod.rs"), "edges");
    assert_eq!(module_of("campaign/run.rs"), "campaign");
}
