//! Plans: the difference between what a target should hold and what it holds.
//!
//! A target reports what it *holds* (read back from the device); the core works out what it
//! *should* hold (bans in its scope, after placement). [`plan`] turns the two into adds,
//! removes and refreshes. It never removes what netban does not own: on a device area netban
//! owns exclusively (its own nftables table, its own ACL, its own NACL rule range, its own BGP
//! session) everything held is netban's; on a shared area (an ExaFS organisation, a NETCONF
//! tenant, a WAF IP set) only the entries recorded as created by netban are.

use crate::ban::Expiry;
use crate::prefix::Prefix;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One entry a target should hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub prefix: Prefix,
    pub expiry: Expiry,
}

/// One entry a target holds, as read back from the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub prefix: Prefix,
    /// The expiry the device knows, if the device has such a notion (nftables timeouts, ExaFS).
    pub expiry: Option<Expiry>,
    /// The device's own identifier for the entry (ExaFS rule id, NACL rule number, IOS
    /// sequence number), if it has one. Opaque to the core.
    pub handle: Option<String>,
}

/// Which held entries netban may remove.
#[derive(Clone, Debug)]
pub enum Ownership<'a> {
    /// The whole area the target reads back belongs to netban.
    Exclusive,
    /// Only entries whose (prefix, handle) netban recorded when it created them.
    Recorded(&'a BTreeSet<(Prefix, Option<String>)>),
}

/// How a target treats expiries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryTracking {
    /// The device has no notion of expiry; netban removes entries when bans end.
    None,
    /// The device stores an expiry; refresh an entry when the desired expiry is later than the
    /// held one by more than `slack_secs` (or is permanent while the held one is not).
    Tracked { slack_secs: u64 },
}

/// What to change on one target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub add: Vec<Desired>,
    pub remove: Vec<Held>,
    /// Entries held with a stale expiry: `.0` is what is held, `.1` what should be.
    pub refresh: Vec<(Held, Desired)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.refresh.is_empty()
    }

    pub fn len(&self) -> usize {
        self.add.len() + self.remove.len() + self.refresh.len()
    }
}

/// The plan that makes `held` match `desired` (full comparison, used on every resync).
///
/// - a desired prefix held by nobody → add;
/// - a desired prefix held (owned or not) → nothing, or a refresh of an owned entry whose
///   expiry is stale under `tracking`;
/// - an owned entry whose prefix is not desired, or a second owned entry for the same prefix
///   → remove;
/// - an entry netban does not own → never touched.
pub fn plan(
    desired: &BTreeMap<Prefix, Expiry>,
    held: &[Held],
    ownership: &Ownership<'_>,
    tracking: ExpiryTracking,
) -> Plan {
    let _ = (desired, held, ownership, tracking);
    todo!()
}

/// The plan for only the prefixes in `dirty` (used between resyncs, when the daemon knows
/// which prefixes changed). Same rules as [`plan`], restricted to `dirty`.
pub fn plan_prefixes(
    dirty: &BTreeSet<Prefix>,
    desired: &dyn Fn(&Prefix) -> Option<Expiry>,
    held: &BTreeMap<Prefix, Vec<Held>>,
    ownership: &Ownership<'_>,
    tracking: ExpiryTracking,
) -> Plan {
    let _ = (dirty, desired, held, ownership, tracking);
    todo!()
}
