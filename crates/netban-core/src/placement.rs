//! Placement: which bans a target of limited capacity holds, and which overflow.
//!
//! Some enforcement points hold only a handful of entries (an AWS Network ACL: 20 rules per
//! direction and family, default rules included). Placement ranks the bans in scope and gives
//! the slots to the most important ones; the rest go to the target's fallback (for example
//! nftables on the host). The rule, chosen because a slot on the edge device is worth most for
//! the bans that will last longest and come back most:
//!
//! 1. permanent bans before temporary ones;
//! 2. then repeat offenders (more earlier bans) first;
//! 3. then the longest remaining time first;
//! 4. ties keep the bans already placed (no churn), then the lowest prefix.
//!
//! A new ban evicts a held one only if it ranks strictly higher; when a slot frees, the best
//! overflowing ban moves in.

use crate::ban::Expiry;
use crate::prefix::{Family, Prefix};
use serde::{Deserialize, Serialize};

/// Slots per family; `None` means unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub v4: Option<usize>,
    pub v6: Option<usize>,
}

impl Capacity {
    pub const UNBOUNDED: Capacity = Capacity { v4: None, v6: None };

    pub fn of(&self, family: Family) -> Option<usize> {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

/// One ban competing for a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub prefix: Prefix,
    pub expiry: Expiry,
    /// Earlier bans of this prefix (from the ledger), for "repeat offenders first".
    pub repeat_count: u32,
    /// True if the target holds it now (wins ties).
    pub placed: bool,
}

/// The outcome: what the target holds, and what goes to its fallback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub held: Vec<Prefix>,
    pub overflow: Vec<Prefix>,
}

/// Places `candidates` under `capacity` by the rule in the module documentation.
pub fn place(candidates: &[Candidate], capacity: Capacity) -> Placement {
    let _ = (candidates, capacity);
    todo!()
}
