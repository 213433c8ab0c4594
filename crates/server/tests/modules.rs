//! Inside each crate of the running server (`callgate-runtime`, `callgate-http` and
//! `callgate-server` itself) the modules depend on each other one way too: a module (a file
//! or folder directly under `src/`) may name another through `crate::…` only if that one
//! does not, directly or not, name it back. A `crate::` path to something that is not a
//! module of the crate (an item of `lib.rs`, a re-exported crate) counts as naming `lib`.
//! The one circle allowed is inside the HTTP edge (`app`, the edge's state, holds the
//! configuration in force, and `reload` puts a new one in force in that state): both are
//! the same concern.
//!
//! The crates themselves (governor, runtime, http, …) are kept one way by
//! `crates/cli/tests/layers.rs`; this is the same rule one level down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates checked, as folders beside this one, and the circles each allows, as sorted
/// pairs of modules.
const CRATES: &[(&str, &[(&str, &str)])] = &[("runtime", &[]), ("http", &[("app", "reload")]), ("server", &[])];

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

/// `api/acquire.rs` → `api`; `campaign/run.rs` → `campaign`; `serve.rs` → `serve`.
fn module_of(rel: &str) -> String {
    let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    match parts.as_slice() {
        [top, ..] => (*top).to_string(),
        [] => unreachable!("a path has a part"),
    }
}

/// How deep a file is in its crate's module tree: `lib.rs` 0, `api.rs` and `api/mod.rs` 1,
/// `api/acquire.rs` 2; a `super::` climbs one level, and one that reaches the root names
/// the crate's modules as `crate::` does.
fn level(rel: &str) -> usize {
    let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    match parts.as_slice() {
        ["lib"] => 0,
        [.., "mod"] => parts.len() - 1,
        _ => parts.len(),
    }
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// The modules a file at `level` names, among `modules` (anything else: `lib`): through
/// `crate::a`, a group `crate::{a, b::c}`, and `super::` paths that reach the crate root.
fn named(text: &str, modules: &BTreeSet<String>, level: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |first: String| {
        if !first.is_empty() {
            out.insert(if modules.contains(&first) { first } else { "lib".to_string() });
        }
    };
    let root = "super::".repeat(level.max(1));
    let mut roots: Vec<&str> = vec!["crate::"];
    if level > 0 {
        roots.push(&root);
    }
    for prefix in roots {
        for (i, _) in text.match_indices(prefix) {
            // `super::super::` seen from a deeper file is not the root of a shallower one.
            if prefix != "crate::" && text[..i].ends_with("super::") {
                continue;
            }
            let part = &text[i + prefix.len()..];
            if prefix != "crate::" && part.starts_with("super::") {
                continue;
            }
            match part.strip_prefix('{') {
                Some(group) => {
                    let body = group.split('}').next().unwrap_or("");
                    for item in body.split(',') {
                        add(ident(item.trim()));
                    }
                }
                None => add(ident(part)),
            }
        }
    }
    out
}

/// The modules of the crate in `src` and those each one names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(src, &mut all);
    let rel = |path: &PathBuf| path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
    let modules: BTreeSet<String> = all.iter().map(|p| module_of(&rel(p))).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &all {
        let module = module_of(&rel(path));
        let text = std::fs::read_to_string(path).unwrap();
        let deps =
            named(&text, &modules, level(&rel(path))).into_iter().filter(|d| *d != module).collect::<BTreeSet<_>>();
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
fn no_two_modules_of_a_server_crate_name_each_other_in_a_circle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let graphs: BTreeMap<&str, _> =
        CRATES.iter().map(|(name, _)| (*name, graph(&crates.join(name).join("src")))).collect();
    assert!(graphs["http"].contains_key("api") && graphs["runtime"].contains_key("campaign"), "{graphs:?}");
    assert!(graphs["server"].contains_key("serve"), "{graphs:?}");
    let mut circles = BTreeSet::new();
    for (name, same_concern) in CRATES {
        let graph = &graphs[name];
        for (a, deps) in graph {
            for b in deps {
                if reaches(graph, b, a) {
                    let pair = if a < b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
                    if !same_concern.iter().any(|(x, y)| (*x, *y) == (pair.0.as_str(), pair.1.as_str())) {
                        circles.insert(format!("{name}: {} and {}", pair.0, pair.1));
                    }
                }
            }
        }
    }
    assert!(circles.is_empty(), "modules that name each other, directly or not: {circles:?}");
}

#[test]
fn the_reader_sees_crate_paths_as_modules() {
    let modules: BTreeSet<String> = ["api", "reload"].map(String::from).into();
    let text = "use crate::api::App;\nuse crate::reload::{Reload};\nlet x = crate::body_error(e);";
    let got: Vec<String> = named(text, &modules, 2).into_iter().collect();
    assert_eq!(got, ["api", "lib", "reload"]);
    // Groups, and `super::` paths that reach the root (from `twilio/mod.rs`, level 1; from
    // `twilio/call.rs`, level 2, where one `super::` is its own module).
    let modules: BTreeSet<String> = ["api", "reload", "twilio", "vapi"].map(String::from).into();
    let got: Vec<String> = named("use crate::{twilio, vapi::webhook};", &modules, 1).into_iter().collect();
    assert_eq!(got, ["twilio", "vapi"]);
    let got: Vec<String> = named("use super::api::App;", &modules, 1).into_iter().collect();
    assert_eq!(got, ["api"]);
    let got: Vec<String> = named("use super::call::Call;", &modules, 2).into_iter().collect();
    assert!(got.is_empty(), "{got:?}");
    let got: Vec<String> = named("use super::super::reload::Reload;", &modules, 2).into_iter().collect();
    assert_eq!(got, ["reload"]);
    assert_eq!((level("lib.rs"), level("api.rs"), level("api/mod.rs"), level("api/acquire.rs")), (0, 1, 1, 2));
    assert_eq!(module_of("api/acquire.rs"), "api");
    assert_eq!(module_of("lib.rs"), "lib");
    assert_eq!(module_of("campaign/run.rs"), "campaign");
}

/// A circle is found through a third module; a module that only names one in a circle is
/// not in it.
#[test]
fn a_circle_is_caught() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(m, deps)| (m.to_string(), deps.into_iter().map(String::from).collect()))
            .collect();
    assert!(reaches(&graph, "b", "a") && reaches(&graph, "a", "c"));
    assert!(!reaches(&graph, "a", "d"), "d names a, a never names d");
}
