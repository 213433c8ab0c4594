//! TwiML, written by hand: a `<Response>` of verbs, escaped so that any text from the
//! configuration (messages, prompts, URLs) still makes well-formed XML.

use std::fmt::Write as _;

/// Where a `<Dial>` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialed {
    /// `<Number>`: E.164.
    Number(String),
    /// `<Sip>`: a SIP URI.
    Sip(String),
}

/// One TwiML verb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `<Say>`: text spoken to the caller.
    Say(String),
    /// `<Play>`: an audio URL.
    Play(String),
    /// `<Pause length>` (seconds).
    Pause(u32),
    /// `<Hangup/>`.
    Hangup,
    /// `<Leave/>`: out of the queue (only in a wait URL's answer).
    Leave,
    /// `<Reject reason="busy"|"rejected"/>`: only as the first verb, so the call is never
    /// answered (nor billed).
    Reject {
        /// `busy` (the caller hears busy) or `rejected` (not in service).
        busy: bool,
    },
    /// `<Redirect method="POST">`: go on with the TwiML at that URL.
    Redirect(String),
    /// `<Dial>`, with an `action` URL requested when the dialled leg ends.
    Dial {
        /// The other party.
        to: Dialed,
        /// Requested with `DialCallStatus` when the leg ends.
        action: Option<String>,
    },
    /// `<Connect><Stream url>`: a bidirectional media stream, with custom parameters.
    Stream {
        /// `wss://…`.
        url: String,
        /// `<Parameter name value/>`s.
        parameters: Vec<(String, String)>,
    },
    /// `<Enqueue waitUrl action>name</Enqueue>`: the waiting room.
    Enqueue {
        /// The queue's name.
        name: String,
        /// Requested again and again while the caller waits.
        wait_url: String,
        /// Requested when the caller leaves the queue.
        action: String,
    },
    /// `<Record action maxLength playBeep>`: a voicemail.
    Record {
        /// Requested with `RecordingUrl` when the recording ends.
        action: String,
        /// Seconds.
        max_length: u32,
    },
    /// `<Gather input="dtmf" numDigits="1">` around what the caller hears meanwhile.
    Gather {
        /// Requested with `Digits`.
        action: String,
        /// Seconds to wait for a key after the prompt.
        timeout: u32,
        /// What is said (only `Say` and `Play` nest in a `Gather`).
        prompt: Vec<Verb>,
    },
}

/// A TwiML document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Twiml {
    verbs: Vec<Verb>,
}

impl Twiml {
    /// An empty `<Response/>` (an acknowledgement).
    pub fn new() -> Self {
        Twiml::default()
    }

    /// A document of one verb.
    pub fn of(verb: Verb) -> Self {
        Twiml { verbs: vec![verb] }
    }

    /// Appends a verb.
    pub fn push(mut self, verb: Verb) -> Self {
        self.verbs.push(verb);
        self
    }

    /// Says `text`, then hangs up.
    pub fn goodbye(text: &str) -> Self {
        Twiml::of(Verb::Say(text.to_owned())).push(Verb::Hangup)
    }

    /// The verbs.
    #[cfg(test)]
    pub fn verbs(&self) -> &[Verb] {
        &self.verbs
    }

    /// The XML text.
    pub fn render(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>");
        for v in &self.verbs {
            write_verb(&mut out, v);
        }
        out.push_str("</Response>\n");
        out
    }
}

fn write_verb(out: &mut String, v: &Verb) {
    match v {
        Verb::Say(text) => {
            let _ = write!(out, "<Say>{}</Say>", esc(text));
        }
        Verb::Play(url) => {
            let _ = write!(out, "<Play>{}</Play>", esc(url));
        }
        Verb::Pause(secs) => {
            let _ = write!(out, "<Pause length=\"{secs}\"/>");
        }
        Verb::Hangup => out.push_str("<Hangup/>"),
        Verb::Leave => out.push_str("<Leave/>"),
        Verb::Reject { busy } => {
            let _ = write!(out, "<Reject reason=\"{}\"/>", if *busy { "busy" } else { "rejected" });
        }
        Verb::Redirect(url) => {
            let _ = write!(out, "<Redirect method=\"POST\">{}</Redirect>", esc(url));
        }
        Verb::Dial { to, action } => {
            out.push_str("<Dial");
            if let Some(a) = action {
                let _ = write!(out, " action=\"{}\" method=\"POST\"", esc(a));
            }
            out.push('>');
            let _ = match to {
                Dialed::Number(n) => write!(out, "<Number>{}</Number>", esc(n)),
                Dialed::Sip(s) => write!(out, "<Sip>{}</Sip>", esc(s)),
            };
            out.push_str("</Dial>");
        }
        Verb::Stream { url, parameters } => {
            let _ = write!(out, "<Connect><Stream url=\"{}\">", esc(url));
            for (name, value) in parameters {
                let _ = write!(out, "<Parameter name=\"{}\" value=\"{}\"/>", esc(name), esc(value));
            }
            out.push_str("</Stream></Connect>");
        }
        Verb::Enqueue { name, wait_url, action } => {
            let _ = write!(
                out,
                "<Enqueue waitUrl=\"{}\" waitUrlMethod=\"POST\" action=\"{}\" method=\"POST\">{}</Enqueue>",
                esc(wait_url),
                esc(action),
                esc(name)
            );
        }
        Verb::Record { action, max_length } => {
            let _ = write!(
                out,
                "<Record action=\"{}\" method=\"POST\" maxLength=\"{max_length}\" playBeep=\"true\"/>",
                esc(action)
            );
        }
        Verb::Gather { action, timeout, prompt } => {
            let _ = write!(
                out,
                "<Gather input=\"dtmf\" numDigits=\"1\" timeout=\"{timeout}\" action=\"{}\" method=\"POST\">",
                esc(action)
            );
            for p in prompt {
                write_verb(out, p);
            }
            out.push_str("</Gather>");
        }
    }
}

/// Escapes text for XML content and attribute values, and drops the characters XML 1.0
/// cannot hold at all (control characters other than tab, newline and carriage return).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}
