//! Reading a config from text or from a file: parse, validate, and place every problem
//! on its line.

use crate::error::{ConfigError, ConfigErrors};
use crate::locate::{field_at, field_near_line, line_at, line_of};
use crate::{Config, Summary};
use std::path::Path;

impl Config {
    /// Parses and validates `text`. `file` is only used to name the file in errors.
    ///
    /// A syntax error, an unknown key, a value of the wrong type or a bad duration stops
    /// at the first one (the parser cannot go on); validation reports every problem.
    /// Either way each error carries the line and the dotted field.
    pub fn from_toml_str(text: &str, file: Option<&Path>) -> Result<Config, ConfigErrors> {
        Config::from_toml_str_with(text, file, &[])
    }

    /// [`Config::from_toml_str`] for a file that also defines campaigns outside its
    /// `[[campaigns]]` (a scenario's simulated ones, named in `campaigns`), which its
    /// `[[schedules]]` may change.
    pub fn from_toml_str_with(text: &str, file: Option<&Path>, campaigns: &[&str]) -> Result<Config, ConfigErrors> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigErrors::one(parse_error(text, file, &e)))?;
        let mut names: Vec<&str> = config.campaigns.iter().map(|c| c.name.as_str()).collect();
        names.extend_from_slice(campaigns);
        let problems = config.problems_with(&names);
        if problems.is_empty() {
            return Ok(config);
        }
        // The text parsed once already, so this parse succeeds; without it the errors
        // would only lack their lines.
        let doc = toml_edit::ImDocument::parse(text).ok();
        let mut errors: Vec<ConfigError> = problems
            .into_iter()
            .map(|p| ConfigError {
                file: file.map(Path::to_path_buf),
                line: doc.as_ref().and_then(|d| line_of(d, &p.field)),
                field: p.field.to_string(),
                message: p.message,
            })
            .collect();
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(ConfigErrors { errors })
    }

    /// Reads, parses and validates the file at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigErrors::one(ConfigError {
                file: Some(path.to_path_buf()),
                line: None,
                field: String::new(),
                message: format!("cannot read the file: {e}"),
            })
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigErrors::one(not_utf8(path, e)))?;
        Config::from_toml_str(&text, Some(path))
    }
}

/// A file that is not UTF-8 (TOML must be): where the first bad byte is.
fn not_utf8(path: &Path, e: std::string::FromUtf8Error) -> ConfigError {
    let at = e.utf8_error().valid_up_to();
    let bytes = e.as_bytes();
    let line_start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    // The text before the bad byte is valid: it says which field the line belongs to.
    let before = String::from_utf8_lossy(&bytes[..at]);
    let line = line_at(&before, at);
    ConfigError {
        file: Some(path.to_path_buf()),
        line: Some(line),
        field: field_near_line(&before, line),
        message: format!(
            "the file is not valid UTF-8 (byte 0x{:02x} at column {}); a TOML file must be UTF-8 text",
            bytes[at],
            at - line_start + 1
        ),
    }
}

/// What `callgate config check FILE` reports: the summary of a valid file, or every
/// problem (print one per line, e.g. with `{errors}`, and exit non-zero).
pub fn check_file(path: impl AsRef<Path>) -> Result<Summary, ConfigErrors> {
    Config::from_path(path).map(|c| c.summary())
}

/// Turns a parse error into one [`ConfigError`] with its line and field.
fn parse_error(text: &str, file: Option<&Path>, e: &toml::de::Error) -> ConfigError {
    let pos = e.span().map(|s| s.start);
    let line = pos.map(|p| line_at(text, p));
    let field = match (pos, toml_edit::ImDocument::parse(text)) {
        // The text is valid TOML but does not fit the config (unknown key, wrong type,
        // bad duration): the span says which key or value.
        (Some(pos), Ok(doc)) => field_at(&doc, pos).to_string(),
        // A syntax error: only the text around it is left to go by.
        (Some(_), Err(_)) => line.map(|l| field_near_line(text, l)).unwrap_or_default(),
        (None, _) => String::new(),
    };
    ConfigError {
        file: file.map(Path::to_path_buf),
        line,
        field,
        // Syntax errors come on several lines ("invalid array\nexpected `]`"); one
        // problem per line keeps the output greppable.
        message: match e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ") {
            // The parser says nothing about some characters it refuses (a control
            // character in a comment, say): name the character.
            m if m.is_empty() => match pos.and_then(|p| text.get(p..)).and_then(|t| t.chars().next()) {
                Some(c) if c.is_control() => format!("control character U+{:04X} is not allowed here", c as u32),
                Some(c) => format!("unexpected character `{c}`"),
                None => "unexpected end of the file".to_string(),
            },
            m => m,
        },
    }
}
