//! Policy: who may be banned, how broadly, and for how long.
//!
//! - The **allowlist** (operator CIDRs, inline and from files) can never be banned; a ban whose
//!   prefix overlaps an allowlisted prefix in either direction is refused, and adding an
//!   allowlist entry lifts every active ban it overlaps ([`Policy::lifted_by_allowlist`]).
//! - **Protected** networks (the machine's own addresses, management networks) behave like the
//!   allowlist but are reported as such, so an operator sees why.
//! - **Breadth**: an explicit prefix ban may not be broader than a per-family limit
//!   (default /24 for IPv4, /48 for IPv6).
//! - **Escalation**: a repeat offender's ban lasts `bantime × factor^n`, where n is the number
//!   of earlier bans of the same prefix (by any source) inside the window, capped at `max`.
//!   The operator can turn it off.

use crate::ban::{BanRequest, Expiry};
use crate::prefix::{Family, Prefix};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Escalation settings for repeat offenders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Escalation {
    pub enabled: bool,
    /// Multiplier per earlier ban (≥ 1).
    pub factor: f64,
    /// Upper bound on an escalated ban, in seconds.
    pub max_secs: u64,
    /// How far back earlier bans count, in seconds.
    pub window_secs: u64,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            enabled: true,
            factor: 2.0,
            max_secs: 7 * 86_400,
            window_secs: 30 * 86_400,
        }
    }
}

/// The broadest prefix an explicit ban may name, per family, as a minimum prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Breadth {
    pub min_len_v4: u8,
    pub min_len_v6: u8,
}

impl Default for Breadth {
    fn default() -> Self {
        Breadth {
            min_len_v4: 24,
            min_len_v6: 48,
        }
    }
}

impl Breadth {
    pub fn min_len(&self, family: Family) -> u8 {
        match family {
            Family::V4 => self.min_len_v4,
            Family::V6 => self.min_len_v6,
        }
    }
}

/// Why policy refused a ban. Each message tells the operator what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{prefix} is allowlisted (overlaps allowlist entry {entry}); remove it from the allowlist to ban it")]
    Allowlisted { prefix: Prefix, entry: Prefix },
    #[error("{prefix} overlaps protected network {entry} (this machine's own address or a management network) and is never banned")]
    Protected { prefix: Prefix, entry: Prefix },
    #[error("{prefix} is broader than /{min_len} allowed for {family}; ban a longer prefix or raise policy.breadth")]
    TooBroad {
        prefix: Prefix,
        family: Family,
        min_len: u8,
    },
}

/// A ban that policy admitted, with its final expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub expiry: Expiry,
    /// How many earlier bans escalated this one (0 = not escalated).
    pub escalation_step: u32,
}

/// The whole policy, built from configuration (allowlist files already read by the caller).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub allowlist: Vec<Prefix>,
    pub protected: Vec<Prefix>,
    pub breadth: Breadth,
    pub escalation: Escalation,
}

impl Policy {
    /// Decides a request at `now`, given how many earlier bans of the same prefix started
    /// inside the escalation window (`prior_bans`, counted by the ledger).
    pub fn admit(
        &self,
        request: &BanRequest,
        prior_bans: u32,
        now: Timestamp,
    ) -> Result<Admitted, Refusal> {
        let _ = (request, prior_bans, now);
        todo!()
    }

    /// Checks only allowlist, protection and breadth (used before anything is recorded, and
    /// to validate `unban`-independent inputs such as `plan`).
    pub fn check_prefix(&self, prefix: &Prefix) -> Result<(), Refusal> {
        let _ = prefix;
        todo!()
    }

    /// The banned prefixes (from `banned`) that the allowlist or protected networks now
    /// overlap and that must therefore be lifted everywhere.
    pub fn lifted_by_allowlist<'a>(&self, banned: impl Iterator<Item = &'a Prefix>) -> Vec<Prefix> {
        let _ = banned;
        todo!()
    }
}
