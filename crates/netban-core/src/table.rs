//! The table of active bans, in memory, and the effective ban of each prefix.
//!
//! The table holds one entry per (prefix, source). The *effective* ban of a prefix is the
//! union of its sources: it lasts until the latest of their expiries, and it ends only when
//! the last source's ban is removed or expires. Every mutation returns an [`EffectiveChange`]
//! saying whether what the targets should hold changed, so the daemon knows which prefixes to
//! re-plan without diffing the whole table.
//!
//! Sized for a million bans: sources are interned, and expiry is found by a scan
//! ([`BanTable::expire`]) rather than a second index.

use crate::ban::{Expiry, Source};
use crate::prefix::Prefix;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// What one mutation did to the effective ban of one prefix.
/// `before`/`after` are the effective expiries (`None` = not banned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveChange {
    pub prefix: Prefix,
    pub before: Option<Expiry>,
    pub after: Option<Expiry>,
}

impl EffectiveChange {
    /// True if targets must act: the prefix became banned, unbanned, or its expiry moved.
    pub fn is_effective(&self) -> bool {
        self.before != self.after
    }
}

/// The active bans of one prefix, one entry per source.
pub type SourceExpiries = Vec<(Source, Expiry)>;

/// All active bans, indexed by prefix.
#[derive(Debug, Default)]
pub struct BanTable {
    // Implemented in full by the domain work; see the method contracts.
    _private: (),
}

impl BanTable {
    pub fn new() -> Self {
        todo!()
    }

    /// Records that `source` bans `prefix` until `expiry`. If that source already bans the
    /// prefix, the later of the two expiries is kept (a re-ban never shortens a ban).
    pub fn insert(&mut self, prefix: Prefix, source: &Source, expiry: Expiry) -> EffectiveChange {
        let _ = (prefix, source, expiry);
        todo!()
    }

    /// Sets `source`'s ban on `prefix` to exactly `expiry` (used when replaying the ledger).
    pub fn set(&mut self, prefix: Prefix, source: &Source, expiry: Expiry) -> EffectiveChange {
        let _ = (prefix, source, expiry);
        todo!()
    }

    /// Removes `source`'s ban on `prefix`, or every source's ban when `source` is `None`.
    pub fn remove(&mut self, prefix: Prefix, source: Option<&Source>) -> EffectiveChange {
        let _ = (prefix, source);
        todo!()
    }

    /// Removes every (prefix, source) ban whose expiry is at or before `now`; returns one
    /// change per prefix whose effective ban changed, and the (prefix, source) pairs removed.
    pub fn expire(&mut self, now: Timestamp) -> (Vec<EffectiveChange>, Vec<(Prefix, Source)>) {
        let _ = now;
        todo!()
    }

    /// The effective expiry of `prefix`, counting only sources `in_scope` accepts.
    pub fn effective(&self, prefix: &Prefix, in_scope: impl Fn(&Source) -> bool) -> Option<Expiry> {
        let _ = (prefix, in_scope);
        todo!()
    }

    /// Every banned prefix with its effective expiry over all sources, in prefix order.
    pub fn iter_effective(&self) -> Box<dyn Iterator<Item = (Prefix, Expiry)> + '_> {
        todo!()
    }

    /// The per-source bans of `prefix` (empty if not banned).
    pub fn sources(&self, prefix: &Prefix) -> SourceExpiries {
        let _ = prefix;
        todo!()
    }

    /// Number of banned prefixes.
    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest expiry of any (prefix, source) ban, to know when to call [`Self::expire`].
    pub fn next_expiry(&self) -> Option<Timestamp> {
        todo!()
    }
}

#[allow(dead_code)]
type Unused = BTreeMap<Prefix, ()>;
