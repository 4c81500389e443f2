//! What can happen to a ban, as history and the change feed record it. Defined once here and
//! carried unchanged by the ledger (SQL), the socket protocol and the CLI's output.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What happened, as kept in history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A new (prefix, source) ban.
    Ban,
    /// An existing (prefix, source) ban re-asserted with a later (or equal) expiry: a
    /// fail2ban restore, prolong or re-ban. Does not count as a repeat offence.
    Extend,
    /// Removed on request (`netban unban`, fail2ban's actionunban).
    Unban,
    /// Ended because its expiry passed.
    Expire,
    /// Lifted because the allowlist or a protected network now covers it.
    Lift,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Ban,
        EventKind::Extend,
        EventKind::Unban,
        EventKind::Expire,
        EventKind::Lift,
    ];

    /// The one spelling used everywhere (ledger column, protocol, output).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ban => "ban",
            EventKind::Extend => "extend",
            EventKind::Unban => "unban",
            EventKind::Expire => "expire",
            EventKind::Lift => "lift",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An event kind spelled in a way no netban writes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<EventKind, UnknownEventKind> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_in_text_and_serde() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        assert!("Ban".parse::<EventKind>().is_err());
    }
}
