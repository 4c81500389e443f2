//! Bans: one per (prefix, source), each with its own expiry.
//!
//! A prefix may be banned by several sources at once (the `sshd` jail for ten minutes, the
//! `recidive` jail for a week). Each is its own [`Ban`]; the prefix stays banned until the last
//! of them ends (see [`crate::table`]). That is what keeps a short jail's unban from lifting a
//! long recidive ban.

use crate::prefix::Prefix;
use crate::time::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// When a ban ends. `Never` sorts after every instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expiry {
    At(Timestamp),
    Never,
}

impl Expiry {
    /// True once the ban has ended at `now` (a ban expiring at `t` is over at `t`).
    pub fn is_past(self, now: Timestamp) -> bool {
        match self {
            Expiry::At(t) => t <= now,
            Expiry::Never => false,
        }
    }

    /// Seconds left at `now`; `None` for a permanent ban.
    pub fn remaining(self, now: Timestamp) -> Option<u64> {
        match self {
            Expiry::At(t) => Some(now.secs_until(t)),
            Expiry::Never => None,
        }
    }

    /// As stored and sent over the wire: epoch seconds, or -1 for never (fail2ban's convention).
    pub fn to_epoch_or_minus_one(self) -> i64 {
        match self {
            Expiry::At(t) => t.0,
            Expiry::Never => -1,
        }
    }

    pub fn from_epoch_or_minus_one(v: i64) -> Expiry {
        if v < 0 {
            Expiry::Never
        } else {
            Expiry::At(Timestamp(v))
        }
    }
}

impl PartialOrd for Expiry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Expiry {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Expiry::Never, Expiry::Never) => Ordering::Equal,
            (Expiry::Never, _) => Ordering::Greater,
            (_, Expiry::Never) => Ordering::Less,
            (Expiry::At(a), Expiry::At(b)) => a.cmp(b),
        }
    }
}

/// How long a requested ban should last, before policy (escalation) adjusts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanDuration {
    Seconds(u64),
    Permanent,
}

impl BanDuration {
    /// fail2ban's convention: a negative bantime means forever.
    pub fn from_fail2ban(bantime: i64) -> BanDuration {
        if bantime < 0 {
            BanDuration::Permanent
        } else {
            BanDuration::Seconds(bantime as u64)
        }
    }

    pub fn expiry_from(self, now: Timestamp) -> Expiry {
        match self {
            BanDuration::Seconds(s) => Expiry::after(now, s),
            BanDuration::Permanent => Expiry::Never,
        }
    }
}

/// The longest temporary ban: ten years. A longer one (fail2ban's bantime in the billions,
/// escalation run away) is permanent, never an expiry in the year 3,000,000,000.
pub const MAX_BAN_SECS: u64 = 10 * 365 * 86_400;

impl Expiry {
    /// The expiry of a ban of `secs` seconds from `now`: permanent beyond [`MAX_BAN_SECS`].
    pub fn after(now: Timestamp, secs: u64) -> Expiry {
        if secs > MAX_BAN_SECS {
            Expiry::Never
        } else {
            Expiry::At(now.plus_secs(secs))
        }
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is too long ({len} characters, at most {max})")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} {value:?} may contain only {allowed}")]
    BadCharacters {
        what: &'static str,
        value: String,
        allowed: &'static str,
    },
}

/// Checks `value` against a character class; the one validation every name here shares.
fn check_name(
    what: &'static str,
    value: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(u8) -> bool,
) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > max {
        return Err(NameError::TooLong {
            what,
            len: value.len(),
            max,
        });
    }
    if !value.bytes().all(ok) {
        return Err(NameError::BadCharacters {
            what,
            value: value.to_string(),
            allowed,
        });
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: &str) -> Result<Self, NameError> {
                check_name($what, value, $max, $allowed, $ok)?;
                Ok(Self(value.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::new(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// Who asked for a ban: a fail2ban jail name, or another named origin (`manual`, `api`,
    /// `crowdsec:crowdsecurity.ssh-bf` for a CrowdSec scenario).
    Source,
    "source (jail name)",
    64,
    "letters, digits, '.', '_', '-', '@' and ':'",
    |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':')
);

validated_name!(
    /// The host that reported a ban (for the multi-host ledger and history).
    OriginHost,
    "origin host",
    253,
    "letters, digits, '.', '_' and '-'",
    |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
);

validated_name!(
    /// Free text saying why, shown in history. Printable ASCII only: it may end up in a device
    /// comment or a log line, so no newlines, no control characters.
    Reason,
    "reason",
    256,
    "printable ASCII characters (no newlines or control characters)",
    |b: u8| (0x20..0x7f).contains(&b)
);

/// A ban as asked for, before policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRequest {
    pub prefix: Prefix,
    pub source: Source,
    pub duration: BanDuration,
    pub reason: Option<Reason>,
    pub failures: Option<u32>,
    pub origin_host: Option<OriginHost>,
}

/// A ban as recorded: one prefix, one source, one expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub prefix: Prefix,
    pub source: Source,
    pub created: Timestamp,
    pub expiry: Expiry,
    pub reason: Option<Reason>,
    pub failures: Option<u32>,
    pub origin_host: Option<OriginHost>,
}

impl Ban {
    pub fn is_active(&self, now: Timestamp) -> bool {
        !self.expiry.is_past(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_outlasts_every_instant() {
        assert!(Expiry::Never > Expiry::At(Timestamp(i64::MAX)));
        assert!(Expiry::At(Timestamp(5)) < Expiry::At(Timestamp(6)));
        assert!(Expiry::At(Timestamp(10)).is_past(Timestamp(10)));
        assert!(!Expiry::At(Timestamp(10)).is_past(Timestamp(9)));
        assert!(!Expiry::Never.is_past(Timestamp(i64::MAX)));
    }

    #[test]
    fn fail2ban_minus_one_is_permanent() {
        assert_eq!(BanDuration::from_fail2ban(-1), BanDuration::Permanent);
        assert_eq!(BanDuration::from_fail2ban(600), BanDuration::Seconds(600));
        let now = Timestamp(1_800_000_000);
        assert_eq!(
            BanDuration::Seconds(MAX_BAN_SECS).expiry_from(now),
            Expiry::At(Timestamp(now.0 + MAX_BAN_SECS as i64))
        );
        for huge in [MAX_BAN_SECS + 1, 100_000_000_000_000, u64::MAX] {
            assert_eq!(BanDuration::Seconds(huge).expiry_from(now), Expiry::Never);
        }
        assert_eq!(Expiry::from_epoch_or_minus_one(-1), Expiry::Never);
        assert_eq!(Expiry::Never.to_epoch_or_minus_one(), -1);
    }

    #[test]
    fn names_refuse_injection() {
        for bad in ["", "sshd;reboot", "ss hd", "sshd\n", "a/b", "<x>", "'q'"] {
            assert!(Source::new(bad).is_err(), "{bad:?}");
        }
        assert!(Source::new(&"j".repeat(65)).is_err());
        for good in [
            "sshd",
            "recidive",
            "nginx-http-auth",
            "postfix.sasl",
            "f2b@host1",
            "crowdsec:crowdsecurity.ssh-bf",
        ] {
            assert!(Source::new(good).is_ok(), "{good:?}");
        }
        assert!(Reason::new("3 failures in 600s; sshd").is_ok());
        assert!(Reason::new("line\nbreak").is_err());
        assert!(OriginHost::new("edge-1.example.net").is_ok());
        assert!(OriginHost::new("edge 1").is_err());
    }
}
