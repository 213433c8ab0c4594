//! The fuzz target of the configuration: the TOML text through the whole load and
//! validate path, as `callgate config check` and `callgate serve` take it.
//!
//! It runs coverage-guided under `cargo fuzz` (`fuzz/`, `scripts/fuzz`) and, on stable,
//! over the committed corpus in the ordinary test run (see `callgate_server::fuzz`, which
//! holds the other parsers' targets). It panics when the invariant breaks: the text is
//! either a config the server can start from, or refused with problems that each carry
//! a line of the file.

use crate::Config;
use std::path::Path;

/// Parses and validates `data` as a config file.
pub fn config(data: &[u8]) {
    // A file that is not UTF-8 is read by `Config::from_path`, which reports it before
    // any parsing (issue 10 item 9 asks that report to carry a line).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count().max(1);
    match Config::from_toml_str(text, Some(Path::new("fuzz.toml"))) {
        Ok(config) => {
            assert!(config.validate().is_ok(), "a config that loads validates");
            // What `callgate serve` builds first: a config that `config check` accepts
            // must start a server.
            if let Err(e) = callgate_core::Ledger::new(&config.ledger_spec()) {
                panic!("a valid config makes a ledger the server refuses: {e}");
            }
            let _ = config.summary().to_string();
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal names at least one problem");
            for e in errors.iter() {
                let line = e.line.unwrap_or_else(|| panic!("a problem without a line: {e}"));
                assert!((1..=lines + 1).contains(&line), "line {line} is in the file ({lines} lines): {e}");
                assert!(!e.message.is_empty(), "a problem says what is wrong: {e}");
            }
            let _ = errors.to_string();
        }
    }
}
