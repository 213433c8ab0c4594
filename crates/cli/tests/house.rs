//! The house rules that keep the workspace readable, checked like tests: no source file
//! grows past ~600 lines without a reason written at its top (`// Long file: …`).

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if !matches!(p.file_name().and_then(|n| n.to_str()), Some("target" | "node_modules")) {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_file_is_long_without_a_reason_at_its_top() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    assert!(files.len() > 50, "the walk found the workspace's sources");
    let mut long = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines = text.lines().count();
        if lines > MAX_LINES && !text.lines().take(5).any(|l| l.starts_with("// Long file: ")) {
            long.push(format!("{} ({lines} lines)", f.strip_prefix(&root).unwrap_or(&f).display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines without a `// Long file: <why>` line at their top (split them, or say why \
         they are one): {long:#?}"
    );
}
