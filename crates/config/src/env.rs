//! The process environment, read through a small trait so that tests hand in values
//! instead of calling `set_var` (which races with every other test in the process).

use std::collections::HashMap;

/// Where `*_env` settings (`api_key_env`, `auth_token_env`, …) are looked up.
pub trait Env: Send + Sync {
    /// The value of the variable `name`, if it is set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables (tests).
impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}
