//! What happened to a ban, as kept in the ledger's history: one spelling for serde, SQL and
//! the wire.

use std::fmt;
use std::str::FromStr;

/// What happened, as kept in history. Its text form ([`EventKind::as_str`], serde, and what
/// the ledgers store) is the lowercase name: `ban`, `extend`, `unban`, `expire`, `lift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 5] = [
        EventKind::Ban,
        EventKind::Extend,
        EventKind::Unban,
        EventKind::Expire,
        EventKind::Lift,
    ];

    /// The lowercase name, as stored and sent.
    pub const fn as_str(self) -> &'static str {
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
        f.write_str(self.as_str())
    }
}

/// A text that is not one of the [`EventKind`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?} (expected ban, extend, unban, expire or lift)")]
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
    use serde::de::value::{Error, StrDeserializer};
    use serde::de::IntoDeserializer;
    use serde::Deserialize;

    #[test]
    fn text_serde_and_parse_agree_on_every_kind() {
        let names: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["ban", "extend", "unban", "expire", "lift"]);
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            // serde's spelling is the same text.
            let de: StrDeserializer<'_, Error> = kind.as_str().into_deserializer();
            assert_eq!(EventKind::deserialize(de), Ok(kind));
        }
        let err = "Ban".parse::<EventKind>().unwrap_err();
        assert!(err.to_string().contains("\"Ban\""), "{err}");
    }
}
