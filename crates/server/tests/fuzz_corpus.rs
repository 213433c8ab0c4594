//! The fuzz targets on stable, in the ordinary test run: each target's committed corpus
//! (`fuzz/corpus/<target>/`) is replayed, then a fixed number of cheap mutations of it
//! (bit flips, bytes and tokens inserted, ranges cut, repeated or spliced from another
//! entry), from a fixed seed, so a failure reproduces. The coverage-guided runs, for
//! longer, are `scripts/fuzz`; this keeps what they found from coming back (the
//! `regression-*` files of a corpus are such findings: a `meta` 200 deep, one holding
//! `1e400` or a lone surrogate, a CSV quote that never closes).
//!
//! `CALLGATE_FUZZ_MUTATIONS=N` changes the number of mutations per target (default 1000)
//! and `CALLGATE_FUZZ_SEED=S` the seed. A failing input is written under the test's
//! target tmp dir (`fuzz-failures/`) and its path printed, ready to be copied into the
//! corpus once fixed.

use callgate_server::fuzz;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<dir>/<target>/`, sorted by name.
fn inputs(dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join(dir).join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// xorshift64*: a fixed sequence from a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that mean something to one of the parsers.
const BYTES: &[u8] = b"\"{}[],:=&%+\n\r\\ \t#.0189-e\x00\x7f\xff\xc3";
/// Tokens the parsers branch on.
const TOKENS: &[&str] = &[
    "\"meta\":{\"a\":[{\"b\":{}}]}",
    "\"pools\":[{\"pool\":\"p\",\"units\":1}]",
    "\"class\":\"inbound\"",
    "\"key\":\"",
    "\"units\":-1",
    "\"ttl_ms\":18446744073709551615",
    "\"message\":{\"type\":\"end-of-call-report\",\"call\":{\"id\":\"c\"}}",
    "\"cost\":1e400",
    "\"startedAt\":\"2024-02-30T25:61:61Z\"",
    "%ff%fe",
    "%",
    "CallSid=CA1&From=%2B1555",
    "[[pools]]\nname = \"p\"\nlimit = 10\n",
    "[[flows]]\nname = \"f\"\npools = [\"p\"]\n",
    "reserve = { inbound = 11 }\n",
    "lease_ttl = \"99999999999h\"\n",
    "queue = { max_wait = \"0s\", max_len = 0 }\n",
    "\"\"",
    "+15555550100",
    "phone,name,timezone,score\n",
    "\"leads\":[{\"phone\":\"+442071838750\",\"vars\":{\"a\":1}}]",
    "NaN",
    "1e308",
    "America/New_York",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(8) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = BYTES[rng.below(BYTES.len())];
            }
            2 => out.insert(at, BYTES[rng.below(BYTES.len())]),
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !out.is_empty() => {
                let from = rng.below(out.len());
                let end = (from + 1 + rng.below(32)).min(out.len());
                let chunk = out[from..end].to_vec();
                for _ in 0..=rng.below(3) {
                    out.splice(at..at, chunk.iter().copied());
                }
            }
            5 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, t.iter().copied());
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())].1;
                let from = rng.below(other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                if !out.is_empty() {
                    out.truncate(rng.below(out.len()));
                }
            }
        }
        out.truncate(64 * 1024);
    }
    out
}

fn save_failure(target: &str, n: usize, data: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{target}-{n}"));
    std::fs::write(&path, data).unwrap();
    path
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Replays the corpus of `corpus_name` through `target`, then the mutations; fails with
/// every input that broke the invariant.
fn replay(corpus_name: &str, target: Target) {
    let corpus = inputs("corpus", corpus_name);
    assert!(corpus.len() >= 5, "fuzz/corpus/{corpus_name} holds a real corpus ({} files)", corpus.len());
    let mut failures = Vec::new();
    for (name, data) in &corpus {
        if catch_unwind(AssertUnwindSafe(|| target(data))).is_err() {
            failures.push(format!("fuzz/corpus/{corpus_name}/{name}"));
        }
    }
    let seed = env_or("CALLGATE_FUZZ_SEED", 0x5eed_ca11_9a7e) ^ corpus_name.len() as u64;
    let mut rng = Rng(seed.max(1));
    for n in 0..env_or("CALLGATE_FUZZ_MUTATIONS", 1000) as usize {
        let base = &corpus[rng.below(corpus.len())].1;
        let data = mutate(&mut rng, base, &corpus);
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failures.push(format!("mutation {n}: {}", save_failure(corpus_name, n, &data).display()));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{corpus_name}: the invariant broke on\n  {}", failures.join("\n  "));
}

#[test]
fn acquire_body() {
    replay("acquire_body", fuzz::acquire_body);
}

#[test]
fn vapi_message() {
    replay("vapi_message", fuzz::vapi_message);
}

#[test]
fn twilio_form() {
    replay("twilio_form", fuzz::twilio_form);
}

#[test]
fn config() {
    replay("config", callgate_config::fuzz::config);
}

/// Every CSV invariant, the unclosed-quote rule included: a file that ends inside a
/// quoted field is refused with its row (`regression-unbalanced_quote*`).
#[test]
fn lead_csv() {
    replay("lead_csv", fuzz::lead_csv);
}

#[test]
fn lead_json() {
    replay("lead_json", fuzz::lead_json);
}
