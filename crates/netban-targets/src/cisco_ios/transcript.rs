//! Reading an IOS CLI transcript: finding prompts, cutting the output into one segment per
//! command sent, and classifying the router's `%` error lines. Pure text handling, no I/O.
//!
//! Commands are pipelined (several lines written before the first prompt comes back), so the
//! router's answer to a batch looks like
//!
//! ```text
//! 10 deny ip host 203.0.113.7 any            <- echo of line 0
//! R1(config-ext-nacl)#20 deny ip hostt 203.0.113.8 any   <- prompt, then echo of line 1
//!                                ^
//! % Invalid input detected at '^' marker.
//!
//! R1(config-ext-nacl)#                       <- prompt after line 1
//! ```
//!
//! Each prompt closes the segment of one command: the n-th prompt after the one the session was
//! sitting at ends the output of the n-th line sent. A prompt is recognised only at the start
//! of a line and only with the router's own hostname, so no output line can pass for one.

/// A prompt: `R1>`, `R1#`, `R1(config)#`, `R1(config-ext-nacl)#`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The configuration sub-mode in parentheses (`config`, `config-ext-nacl`…), if any.
    pub mode: Option<String>,
    /// `#` (privileged) rather than `>` (user EXEC).
    pub privileged: bool,
}

/// If `line` starts with a prompt of `hostname`, the prompt and the rest of the line.
pub fn prompt_at_start<'a>(line: &'a str, hostname: &str) -> Option<(Prompt, &'a str)> {
    let rest = line.strip_prefix(hostname)?;
    let (mode, rest) = match rest.strip_prefix('(') {
        Some(inner) => {
            let close = inner.find(')')?;
            let mode = &inner[..close];
            if mode.is_empty()
                || !mode
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return None;
            }
            (Some(mode.to_string()), &inner[close + 1..])
        }
        None => (None, rest),
    };
    let privileged = match rest.as_bytes().first()? {
        b'#' => true,
        b'>' => false,
        _ => return None,
    };
    Some((Prompt { mode, privileged }, &rest[1..]))
}

/// Recognises the first prompt of a session (hostname not yet known): the text after the
/// last line break is `NAME>` or `NAME#`, possibly with a mode. Returns the hostname.
pub fn learn_hostname(partial: &str) -> Option<String> {
    let text = partial.trim_end();
    let last = text.rsplit('\n').next()?.trim_start();
    if last.len() < 2 || !(last.ends_with('>') || last.ends_with('#')) {
        return None;
    }
    let body = &last[..last.len() - 1];
    let host = match body.find('(') {
        Some(i) if body.ends_with(')') => &body[..i],
        Some(_) => return None,
        None => body,
    };
    let ok = !host.is_empty()
        && host.starts_with(|c: char| c.is_ascii_alphanumeric())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| host.to_string())
}

/// How the router refused a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// `% Invalid input detected at '^' marker.`
    Invalid(String),
    /// `% Incomplete command.`
    Incomplete(String),
    /// `% Ambiguous command:  "…"`
    Ambiguous(String),
    /// Any other `%` message (`% Duplicate sequence number`, `% Access denied`…).
    Other(String),
}

impl LineError {
    pub fn message(&self) -> &str {
        match self {
            LineError::Invalid(m)
            | LineError::Incomplete(m)
            | LineError::Ambiguous(m)
            | LineError::Other(m) => m,
        }
    }

    /// A syntax refusal: sending the same line again will be refused again.
    pub fn is_syntax(&self) -> bool {
        !matches!(self, LineError::Other(_))
    }
}

/// What the router answered to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Output lines, the echo of the command included when the router echoed it.
    pub lines: Vec<String>,
    /// The prompt that ended the segment.
    pub prompt: Prompt,
}

impl Segment {
    /// The output without the echo of `command`.
    pub fn output(&self, command: &str) -> String {
        let skip = usize::from(
            self.lines
                .first()
                .is_some_and(|l| l.trim() == command.trim()),
        );
        self.lines[skip..].join("\n")
    }

    /// The first `%` error line, with the caret line before it when there is one.
    pub fn error(&self) -> Option<LineError> {
        let i = self
            .lines
            .iter()
            .position(|l| l.trim_start().starts_with('%'))?;
        let text = self.lines[i].trim().to_string();
        let with_caret = match i.checked_sub(1).map(|j| self.lines[j].trim()) {
            Some("^") => format!(
                "{text} (at column {})",
                self.lines[i - 1].find('^').unwrap_or(0)
            ),
            _ => text.clone(),
        };
        Some(if text.starts_with("% Invalid input") {
            LineError::Invalid(with_caret)
        } else if text.starts_with("% Incomplete command") {
            LineError::Incomplete(text)
        } else if text.starts_with("% Ambiguous command") {
            LineError::Ambiguous(text)
        } else {
            LineError::Other(text)
        })
    }
}

/// Text from the router, fed as it arrives and cut into segments at prompts.
#[derive(Debug)]
pub struct Transcript {
    hostname: String,
    done: Vec<Segment>,
    current: Vec<String>,
    partial: String,
}

impl Transcript {
    pub fn new(hostname: &str) -> Transcript {
        Transcript {
            hostname: hostname.to_string(),
            done: Vec::new(),
            current: Vec::new(),
            partial: String::new(),
        }
    }

    /// Adds raw text: carriage returns and other control characters (bells, backspaces,
    /// escape sequences' introducers) are dropped, line feeds kept.
    pub fn push(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '\n' => {
                    let line = std::mem::take(&mut self.partial);
                    self.complete_line(line);
                }
                c if c.is_control() => {}
                c => self.partial.push(c),
            }
        }
    }

    fn complete_line(&mut self, line: String) {
        match prompt_at_start(&line, &self.hostname) {
            Some((prompt, rest)) => {
                let lines = std::mem::take(&mut self.current);
                self.done.push(Segment { lines, prompt });
                if !rest.is_empty() {
                    self.current.push(rest.to_string());
                }
            }
            None => self.current.push(line),
        }
    }

    /// The prompt the text ends with, if the last (unterminated) line is exactly a prompt.
    fn trailing_prompt(&self) -> Option<Prompt> {
        match prompt_at_start(self.partial.trim_end(), &self.hostname) {
            Some((prompt, "")) => Some(prompt),
            _ => None,
        }
    }

    /// How many commands have been answered so far.
    pub fn completed(&self) -> usize {
        self.done.len() + usize::from(self.trailing_prompt().is_some())
    }

    /// The segments, once `completed()` has reached the number of lines sent; `None` before.
    pub fn finish(mut self, sent: usize) -> Option<Vec<Segment>> {
        if self.completed() < sent {
            return None;
        }
        if self.done.len() < sent {
            let prompt = self.trailing_prompt()?;
            let lines = std::mem::take(&mut self.current);
            self.done.push(Segment { lines, prompt });
        }
        Some(self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_recognised_only_with_the_hostname_at_line_start() {
        let (p, rest) = prompt_at_start("R1(config-ext-nacl)#10 deny ip any any", "R1").unwrap();
        assert_eq!(p.mode.as_deref(), Some("config-ext-nacl"));
        assert!(p.privileged);
        assert_eq!(rest, "10 deny ip any any");
        let (p, rest) = prompt_at_start("R1>", "R1").unwrap();
        assert!(!p.privileged && p.mode.is_none() && rest.is_empty());
        assert!(prompt_at_start("R10#", "R1").is_none());
        assert!(prompt_at_start(" R1#", "R1").is_none());
        assert!(prompt_at_start("R1(con fig)#", "R1").is_none());
        assert!(prompt_at_start("Extended IP access list R1", "R1").is_none());
    }

    #[test]
    fn the_first_prompt_gives_the_hostname() {
        assert_eq!(
            learn_hostname("Custom SSH Shell\r\nedge-1>").as_deref(),
            Some("edge-1")
        );
        assert_eq!(learn_hostname("\nR1#  ").as_deref(), Some("R1"));
        assert_eq!(learn_hostname("R1(config)#").as_deref(), Some("R1"));
        assert_eq!(learn_hostname("Welcome to the router\n"), None);
        assert_eq!(learn_hostname("Password: "), None);
        assert_eq!(learn_hostname("<b>#"), None);
    }

    #[test]
    fn a_pipelined_batch_is_cut_into_one_segment_per_line() {
        let mut t = Transcript::new("R1");
        // Arrives in arbitrary pieces, with CRLF line ends.
        let text = "10 deny ip host 203.0.113.7 any\r\nR1(config-ext-nacl)#20 deny ip hostt 2\
                    03.0.113.8 any\r\n                                ^\r\n% Invalid input detected at '^' marker.\r\n\r\n\
                    R1(config-ext-nacl)#end\r\nR1#";
        for chunk in text.as_bytes().chunks(7) {
            t.push(std::str::from_utf8(chunk).unwrap());
        }
        assert_eq!(t.completed(), 3);
        let segs = t.finish(3).unwrap();
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[0].error(), None);
        assert_eq!(segs[0].prompt.mode.as_deref(), Some("config-ext-nacl"));
        let err = segs[1].error().unwrap();
        assert!(
            matches!(err, LineError::Invalid(_)) && err.is_syntax(),
            "{err:?}"
        );
        assert!(err.message().contains("at column 32"), "{err:?}");
        assert_eq!(
            segs[2].prompt,
            Prompt {
                mode: None,
                privileged: true
            }
        );
        assert_eq!(segs[2].output("end"), "");
    }

    #[test]
    fn a_trailing_prompt_counts_once_even_when_the_next_echo_follows_it() {
        let mut t = Transcript::new("R1");
        t.push(
            "show ip access-lists X\r\nExtended IP access list X\r\n    10 deny ip any any\r\nR1#",
        );
        assert_eq!(t.completed(), 1);
        t.push("show ipv6 access-list Y\r\n");
        assert_eq!(t.completed(), 1);
        t.push("R1#");
        assert_eq!(t.completed(), 2);
        let segs = t.finish(2).unwrap();
        assert_eq!(
            segs[0].output("show ip access-lists X"),
            "Extended IP access list X\n    10 deny ip any any"
        );
        assert_eq!(segs[1].output("show ipv6 access-list Y"), "");
    }

    #[test]
    fn unfinished_transcripts_give_nothing() {
        let mut t = Transcript::new("R1");
        t.push("configure terminal\r\nEnter configuration commands, one per line.\r\n");
        assert_eq!(t.completed(), 0);
        assert!(t.finish(1).is_none());
    }

    #[test]
    fn error_kinds() {
        let seg = |lines: &[&str]| Segment {
            lines: lines.iter().map(|s| s.to_string()).collect(),
            prompt: Prompt {
                mode: None,
                privileged: true,
            },
        };
        assert!(matches!(
            seg(&["deny ip host", "% Incomplete command."]).error(),
            Some(LineError::Incomplete(_))
        ));
        assert!(matches!(
            seg(&["co", "% Ambiguous command:  \"co\""]).error(),
            Some(LineError::Ambiguous(_))
        ));
        let dup = seg(&["10 deny ip any any", "% Duplicate sequence number"])
            .error()
            .unwrap();
        assert!(!dup.is_syntax());
        assert_eq!(
            seg(&["write memory", "Building configuration...", "[OK]"]).error(),
            None
        );
    }
}
