//! The bounds on what a client sends (`[server]` in the configuration), checked at the
//! edge before anything reaches the governor: what exceeds one is answered with a 4xx
//! and changes nothing.

use crate::error::{ApiError, ErrorKind};
use callgate_config::ServerConfig;

/// The configured bounds.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest `meta`, in bytes of JSON text.
    pub meta_bytes: usize,
    /// Deepest `meta` (the object itself is 1).
    pub meta_depth: usize,
    /// Longest idempotency key, in bytes.
    pub key_bytes: usize,
    /// Longest flow, class, pool or dependency name, or query parameter value, in bytes.
    pub name_bytes: usize,
    /// Most pools in one acquire.
    pub pools_per_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&ServerConfig::default())
    }
}

impl Limits {
    /// The bounds of a `[server]` section.
    pub fn from_config(server: &ServerConfig) -> Self {
        Limits {
            meta_bytes: server.max_meta_bytes,
            meta_depth: server.max_meta_depth,
            key_bytes: server.max_key_bytes,
            name_bytes: server.max_name_bytes,
            pools_per_request: server.max_pools_per_request,
        }
    }

    /// 400 when `value` (a name the client sent as `what`) is empty or too long.
    pub(crate) fn name(&self, what: &str, value: &str) -> Result<(), ApiError> {
        if value.is_empty() || value.len() > self.name_bytes {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "name_too_long",
                format!("`{what}` must be 1 to {} bytes, not {}", self.name_bytes, value.len()),
            ));
        }
        Ok(())
    }

    /// [`Limits::name`] for an optional value.
    pub(crate) fn opt_name(&self, what: &str, value: Option<&str>) -> Result<(), ApiError> {
        value.map_or(Ok(()), |v| self.name(what, v))
    }

    /// 400 when an idempotency key is empty or too long.
    pub(crate) fn key(&self, key: &str) -> Result<(), ApiError> {
        if key.is_empty() || key.len() > self.key_bytes {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "key_too_long",
                format!("`key` must be 1 to {} bytes, not {}", self.key_bytes, key.len()),
            ));
        }
        Ok(())
    }

    /// 413 when `meta` (valid JSON text) is too large, 400 when it nests too deep.
    pub(crate) fn meta(&self, text: &str) -> Result<(), ApiError> {
        if text.len() > self.meta_bytes {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                "meta_too_large",
                format!("`meta` must be at most {} bytes of JSON, not {}", self.meta_bytes, text.len()),
            ));
        }
        let depth = json_depth(text);
        if depth > self.meta_depth {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "meta_too_deep",
                format!("`meta` may nest at most {} levels deep, not {depth}", self.meta_depth),
            ));
        }
        // Valid JSON text is not yet JSON every reader takes: a number beyond f64's range
        // (`1e400`) or a lone surrogate (`"\ud800"`) passes the raw check but fails
        // when the lease is turned into a value for its answer, its events or the
        // journal. Read it once here (the depth is bounded above), so it never gets that far.
        if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "invalid_meta",
                format!("`meta` is not JSON callgate can keep: {e}"),
            ));
        }
        Ok(())
    }
}

/// How deep objects and arrays nest in JSON text (`{}` is 1, `{"a":[1]}` is 2). Brackets
/// inside strings do not count. Linear, no recursion: safe on any input.
pub(crate) fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::json_depth;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth("{}"), 1);
        assert_eq!(json_depth(r#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(r#"{"a":"{{[[\"]]}}"}"#), 1);
        assert_eq!(json_depth(&format!("{}{}", "[".repeat(200), "]".repeat(200))), 200);
    }
}
