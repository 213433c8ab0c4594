//! The documentation is tested like code: every ```toml block of README.md and docs/*.md
//! must pass `callgate config check` (or, for a simulation scenario, run through
//! `callgate simulate`), and every link must resolve inside the repository (a file that
//! exists, a heading that exists) or point at a well-known external documentation site.
//!
//! A block that is not a whole configuration says what it adds to with an HTML comment on
//! the line before it (invisible when rendered):
//!
//! ```text
//! <!-- toml-check: name=readme-vapi -->                    names a block
//! <!-- toml-check: extends=readme-vapi -->                 is appended to that block
//! <!-- toml-check: extends=a,b kind=scenario -->           a, then b, then this; run as a scenario
//! ```
//!
//! `extends` names blocks of any checked file (names are unique); each named block is
//! taken with what it extends in turn.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// README.md and docs/*.md.
fn documents() -> Vec<PathBuf> {
    let root = repo();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

#[derive(Debug, Clone)]
struct Block {
    /// `file:line` of the opening fence.
    at: String,
    name: Option<String>,
    extends: Vec<String>,
    scenario: bool,
    text: String,
}

fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let rel = path.strip_prefix(repo()).unwrap().display().to_string();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```toml" {
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            let marker = lines[..start].iter().rev().find(|l| !l.trim().is_empty()).copied().unwrap_or("");
            let mut b = Block {
                at: format!("{rel}:{}", start + 1),
                name: None,
                extends: Vec::new(),
                scenario: false,
                text: body,
            };
            if let Some(spec) = marker.trim().strip_prefix("<!-- toml-check:").and_then(|s| s.strip_suffix("-->")) {
                for pair in spec.split_whitespace() {
                    match pair.split_once('=') {
                        Some(("name", v)) => b.name = Some(v.to_string()),
                        Some(("extends", v)) => b.extends = v.split(',').map(str::to_string).collect(),
                        Some(("kind", "scenario")) => b.scenario = true,
                        Some(("kind", "config")) => {}
                        _ => panic!("{}: unknown toml-check setting `{pair}`", b.at),
                    }
                }
            }
            out.push(b);
        }
        i += 1;
    }
    out
}

/// The block with everything it extends in front of it.
fn whole(b: &Block, named: &HashMap<String, Block>, depth: usize) -> String {
    assert!(depth < 10, "{}: `extends` goes round in a circle", b.at);
    let mut text = String::new();
    for base in &b.extends {
        let base = named.get(base).unwrap_or_else(|| panic!("{}: extends `{base}`, which no block is named", b.at));
        text.push_str(&whole(base, named, depth + 1));
        text.push('\n');
    }
    text.push_str(&b.text);
    text
}

#[test]
fn every_toml_block_in_the_docs_is_a_valid_configuration() {
    let all: Vec<Block> = documents().iter().flat_map(|d| blocks(d)).collect();
    assert!(all.len() >= 8, "found only {} blocks", all.len());
    let mut named = HashMap::new();
    for b in &all {
        if let Some(n) = &b.name {
            assert!(named.insert(n.clone(), b.clone()).is_none(), "{}: a second block named `{n}`", b.at);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (k, b) in all.iter().enumerate() {
        let text = whole(b, &named, 0);
        let file = dir.path().join(format!("block-{k}.toml"));
        std::fs::write(&file, &text).unwrap();
        let file = file.to_str().unwrap();
        let args: Vec<&str> = if b.scenario {
            vec!["simulate", file, "--calls", "200", "--quiet", "--json"]
        } else {
            vec!["config", "check", file]
        };
        let out = Command::new(env!("CARGO_BIN_EXE_callgate")).args(&args).output().unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{} ({}):\n{}{}\n--- as checked ---\n{text}",
                b.at,
                args[..2].join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} blocks fail:\n\n{}", failures.len(), all.len(), failures.join("\n\n"));
}

/// `callgate campaign create` takes the README's campaign block as it is written (it
/// starts with `[[`, which once made it read as JSON).
#[tokio::test]
async fn campaign_create_reads_the_readme_campaign_block() {
    let readme = blocks(&repo().join("README.md"));
    let vapi = readme.iter().find(|b| b.name.as_deref() == Some("readme-vapi")).expect("the README's Vapi block");
    let campaign = readme.iter().find(|b| b.text.contains("[[campaigns]]")).expect("the README's campaign block");
    let dir = tempfile::tempdir().unwrap();
    // The server runs the Vapi configuration with the campaign's flow, without the campaign.
    let flows_only = campaign.text.split("[[campaigns]]").next().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, format!("{}\n{flows_only}", vapi.text)).unwrap();
    let env = [("VAPI_API_KEY", "test-key"), ("VAPI_WEBHOOK_SECRET", "test-secret"), ("AGENTS_SECRET", "test-agents")];
    let (_server, base) = support::start_with_env(&config, &dir.path().join("data"), &env).await;
    let token =
        vapi.text.split("token = \"").nth(1).and_then(|t| t.split('"').next()).expect("the block's admin token");
    let file = dir.path().join("campaign.toml");
    std::fs::write(&file, &campaign.text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["campaign", "create", file.to_str().unwrap(), "--server", &base, "--token", token])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("campaign `spring-promo`: paused"), "{stdout}");
}

/// External sites a link may point at: the platforms' and tools' own documentation.
const EXTERNAL: &[&str] = &[
    "docs.vapi.ai",
    "www.twilio.com",
    "prometheus.io",
    "grafana.com",
    "opentelemetry.io",
    "docs.docker.com",
    "www.freedesktop.org",
    "en.wikipedia.org",
];

/// The anchor GitHub gives a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut in_code = false;
    let mut out = Vec::new();
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && l.starts_with('#') {
            out.push(slug(l.trim_start_matches('#')));
        }
    }
    out
}

/// `[text](target)` and `![alt](target)` outside code blocks and code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (n, l) in text.lines().enumerate() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans: a `](` inside backticks is not a link.
        let plain: String = l.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push((n + 1, after[..end].trim().to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_link_in_the_docs_stays_in_the_repository() {
    let root = repo();
    let mut bad = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let rel = doc.strip_prefix(&root).unwrap().display().to_string();
        for (line, target) in links(&text) {
            let at = format!("{rel}:{line}: `{target}`");
            if let Some(rest) = target.strip_prefix("https://").or_else(|| target.strip_prefix("http://")) {
                let host = rest.split('/').next().unwrap_or("");
                if !EXTERNAL.contains(&host) {
                    bad.push(format!("{at} leaves the repository"));
                }
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                bad.push(format!("{at} leaves the repository"));
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() { doc.clone() } else { doc.parent().unwrap().join(file) };
            match path.canonicalize() {
                Ok(p) if p.starts_with(&root) => {
                    if !anchor.is_empty() && !anchors(&p).iter().any(|a| a == anchor) {
                        bad.push(format!(
                            "{at}: no heading `#{anchor}` in {}",
                            p.strip_prefix(&root).unwrap().display()
                        ));
                    }
                }
                Ok(_) => bad.push(format!("{at} points outside the repository")),
                Err(_) => bad.push(format!("{at}: no such file")),
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_link_checker_sees_what_it_must() {
    assert_eq!(slug("Operating under load (additions)"), "operating-under-load-additions");
    assert_eq!(slug("Outbound campaigns: `[[campaigns]]`"), "outbound-campaigns-campaigns");
    let found = links("see [a](docs/x.md#y) and `[b](c)`\n```\n[d](e)\n```\n![img](pic.png)");
    assert_eq!(found, [(1, "docs/x.md#y".to_string()), (5, "pic.png".to_string())]);
}
