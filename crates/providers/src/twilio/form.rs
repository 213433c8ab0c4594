//! Twilio's form-encoded parameters (and the query strings of the URLs callgate hands it).

/// Name-value pairs in the order they came. Bytes that are not UTF-8 are replaced, which
/// also makes the signature of such a body fail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Reads `a=1&b=2` (form or query encoding). Never fails: garbage reads as odd names.
    pub fn parse(bytes: &[u8]) -> Params {
        Params(form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, if it is not empty.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Every pair (for the signature).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}
