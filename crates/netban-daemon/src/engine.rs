//! The engine: the daemon's in-memory view of the ledger and of what each target should hold.
//!
//! The engine is changed only by ledger events ([`Engine::apply_events`]), so the daemon's own
//! writes and writes by other processes take the same path. Each event that changes the
//! effective ban of a prefix marks that prefix *dirty* for every target that handles its family,
//! and wakes the target's worker; the worker then plans just the dirty prefixes.
//!
//! What a target should hold ([`Engine::desired_of`]):
//! - bans in the target's scope (its `sources`, or all), in a family it handles;
//! - on a target with limited capacity, only the bans placement gave it
//!   ([`netban_core::placement`]), and the covering prefixes it merged bans into when the
//!   target allows aggregation ([`netban_core::aggregation`]);
//! - on a target that is another's fallback, also that target's overflow.

use netban_core::aggregation::{self, Aggregation};
use netban_core::placement::{self, Candidate, Capacity};
use netban_core::policy::Policy;
use netban_core::table::BanTable;
use netban_core::{Expiry, Prefix, Source, Timestamp};
use netban_ledger::{Event, EventKind};
use netban_targets::TargetInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub type SharedEngine = Arc<Mutex<Engine>>;

/// Which bans a target enforces.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only bans from these sources (jails); `None` = every source.
    pub sources: Option<BTreeSet<Source>>,
    /// Hold nothing of its own: only what targets that name it as `fallback` cannot hold
    /// (the seed's "iptables when the NACL is full").
    pub fallback_only: bool,
}

impl Scope {
    pub fn accepts(&self, source: &Source) -> bool {
        self.sources.as_ref().is_none_or(|s| s.contains(source))
    }
}

/// The engine's record of one target.
pub struct TargetSlot {
    pub info: TargetInfo,
    pub scope: Scope,
    /// Index of the target that takes what this one cannot hold.
    pub fallback: Option<usize>,
    /// The device's capacity, further limited by configuration.
    pub capacity: Capacity,
    /// On a capacity-limited target: the bans (and covering prefixes) placement gave it, and
    /// the bans that overflowed.
    pub placed: BTreeSet<Prefix>,
    pub overflow: BTreeSet<Prefix>,
    /// Where placement may merge bans into covering prefixes (`None`: never).
    pub aggregation: Option<Aggregation>,
    /// The covering prefixes among `placed`, with the latest expiry of their members.
    pub aggregates: BTreeMap<Prefix, Expiry>,
    /// Prefixes whose desired state may have changed since the worker last planned.
    pub dirty: BTreeSet<Prefix>,
    /// On a capacity-limited target: bans changed since placement last ran. Placement runs
    /// in the target's worker ([`Engine::refresh_placement`]), not on the ban path.
    pub placement_stale: bool,
    pub wake: Arc<Notify>,
}

impl TargetSlot {
    fn is_limited(&self) -> bool {
        self.capacity.v4.is_some() || self.capacity.v6.is_some()
    }
}

pub struct Engine {
    table: BanTable,
    policy: Arc<Policy>,
    targets: Vec<TargetSlot>,
}

impl Engine {
    pub fn new(policy: Policy, targets: Vec<TargetSlot>) -> Engine {
        Engine {
            table: BanTable::new(),
            policy: Arc::new(policy),
            targets,
        }
    }

    /// Loads one active ban read from the ledger at start-up. Nothing is marked dirty: every
    /// worker starts with a full sync. Call [`Self::placed_after_load`] when done.
    pub fn load(&mut self, ban: &netban_core::Ban) {
        self.table.set(ban.prefix, &ban.source, ban.expiry);
    }

    /// Runs placement for capacity-limited targets once the table is loaded.
    pub fn placed_after_load(&mut self) {
        for index in 0..self.targets.len() {
            if self.targets[index].is_limited() {
                self.replace(index);
            }
        }
    }

    /// The banned prefixes the current policy's allowlist or protected networks overlap.
    pub fn covered_by_policy(&self) -> Vec<Prefix> {
        let policy = &self.policy;
        self.table
            .iter_effective()
            .map(|(p, _)| p)
            .filter(|p| {
                policy.allowlist.overlapping(p).is_some()
                    || policy.protected.overlapping(p).is_some()
            })
            .collect()
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.clone()
    }

    /// Installs a new policy (allowlist reload); returns the banned prefixes it now covers,
    /// which the caller lifts through the ledger.
    /// Targets that aggregate re-place: a covering prefix may now overlap the allowlist even
    /// where no ban does.
    pub fn set_policy(&mut self, policy: Policy) -> Vec<Prefix> {
        self.policy = Arc::new(policy);
        for slot in self.targets.iter_mut().filter(|s| s.aggregation.is_some()) {
            slot.placement_stale = true;
            slot.wake.notify_one();
        }
        self.covered_by_policy()
    }

    pub fn table(&self) -> &BanTable {
        &self.table
    }

    pub fn targets(&self) -> &[TargetSlot] {
        &self.targets
    }

    pub fn is_banned(&self, prefix: &Prefix) -> bool {
        self.table.effective(prefix, |_| true).is_some()
    }

    /// The expiry `source` holds on `prefix`, if that ban is active at `now`.
    pub fn source_expiry(
        &self,
        prefix: &Prefix,
        source: &Source,
        now: Timestamp,
    ) -> Option<Expiry> {
        self.table
            .sources(prefix)
            .into_iter()
            .find(|(s, e)| s == source && !e.is_past(now))
            .map(|(_, e)| e)
    }

    /// Every prefix `source` bans.
    pub fn prefixes_of_source(&self, source: &Source) -> Vec<Prefix> {
        self.table
            .iter_effective()
            .map(|(p, _)| p)
            .filter(|p| self.table.sources(p).iter().any(|(s, _)| s == source))
            .collect()
    }

    /// Applies ledger events in order, marks what changed dirty and wakes the workers.
    pub fn apply_events(&mut self, events: &[Event]) {
        let mut touched = BTreeSet::new();
        for event in events {
            let change = match (event.kind, &event.source, event.expiry) {
                (EventKind::Ban | EventKind::Extend, Some(source), Some(expiry)) => {
                    self.table.set(event.prefix, source, expiry)
                }
                (EventKind::Unban | EventKind::Lift | EventKind::Expire, source, _) => {
                    self.table.remove(event.prefix, source.as_ref())
                }
                _ => {
                    tracing::warn!(
                        id = event.id,
                        "ledger event without source or expiry; ignored"
                    );
                    continue;
                }
            };
            if change.is_effective() {
                touched.insert(event.prefix);
            }
        }
        self.touch(touched);
    }

    /// Marks `prefixes` dirty on every target that handles them, re-places limited targets,
    /// and wakes the workers that have work.
    pub fn touch(&mut self, prefixes: BTreeSet<Prefix>) {
        if prefixes.is_empty() {
            return;
        }
        for slot in &mut self.targets {
            slot.dirty
                .extend(prefixes.iter().filter(|p| slot.info.handles(p)));
        }
        for slot in &mut self.targets {
            slot.placement_stale |= slot.is_limited();
        }
        for slot in &self.targets {
            if !slot.dirty.is_empty() {
                slot.wake.notify_one();
            }
        }
    }

    /// Runs placement for target `index` if bans changed since it last ran (called by the
    /// target's worker before it plans, so a ban is acknowledged without waiting for a sort of
    /// every ban). Wakes the fallback when prefixes moved to or from it.
    pub fn refresh_placement(&mut self, index: usize) {
        if !std::mem::take(&mut self.targets[index].placement_stale) {
            return;
        }
        self.replace(index);
        if let Some(f) = self.targets[index].fallback {
            if !self.targets[f].dirty.is_empty() {
                self.targets[f].wake.notify_one();
            }
        }
    }

    /// Re-runs placement for a capacity-limited target; prefixes that moved in or out are
    /// marked dirty on it and on its fallback.
    fn replace(&mut self, index: usize) {
        let slot = &self.targets[index];
        let candidates: Vec<Candidate> = self
            .table
            .iter_effective()
            .filter(|(p, _)| slot.info.handles(p))
            .filter_map(|(prefix, _)| {
                let expiry = self.table.effective(&prefix, |s| slot.scope.accepts(s))?;
                Some(Candidate {
                    prefix,
                    expiry,
                    // Several sources on one prefix (say sshd and recidive) mark a repeat
                    // offender; the ledger's full count is not needed to rank a few slots.
                    repeat_count: self.table.sources(&prefix).len().saturating_sub(1) as u32,
                    placed: slot.placed.contains(&prefix),
                })
            })
            .collect();
        let (candidates, groups) = match &slot.aggregation {
            Some(rule) => {
                let policy = &self.policy;
                let merged = aggregation::aggregate(
                    &candidates,
                    slot.capacity,
                    rule,
                    |cover| slot.placed.contains(cover),
                    |cover| {
                        policy.allowlist.overlapping(cover).is_none()
                            && policy.protected.overlapping(cover).is_none()
                    },
                );
                (merged.candidates, merged.aggregates)
            }
            None => (candidates, Vec::new()),
        };
        let placement = placement::place(&candidates, slot.capacity);
        let placed: BTreeSet<Prefix> = placement.held.into_iter().collect();
        // A covering prefix that does not fit overflows as its members (the fallback holds
        // bans, never covering prefixes).
        let mut overflow: BTreeSet<Prefix> = placement.overflow.into_iter().collect();
        let mut aggregates = BTreeMap::new();
        for group in &groups {
            if placed.contains(&group.prefix) {
                aggregates.insert(group.prefix, group.expiry);
            } else if overflow.remove(&group.prefix) {
                overflow.extend(group.members.iter().copied());
            }
        }
        // Whatever entered or left either set may change what this target or its fallback
        // should hold (a new ban can go straight to the overflow).
        let moved: BTreeSet<Prefix> = placed.symmetric_difference(&slot.placed).copied().collect();
        let spilled: BTreeSet<Prefix> = overflow
            .symmetric_difference(&slot.overflow)
            .copied()
            .collect();
        // A covering prefix that stays but whose expiry changed must be refreshed.
        let refreshed: Vec<Prefix> = aggregates
            .iter()
            .filter(|(p, e)| slot.aggregates.get(*p).is_some_and(|old| old != *e))
            .map(|(p, _)| *p)
            .collect();
        let fallback = slot.fallback;
        let slot = &mut self.targets[index];
        slot.placed = placed;
        slot.overflow = overflow;
        slot.aggregates = aggregates;
        slot.dirty.extend(moved.iter().copied());
        slot.dirty.extend(refreshed);
        if let Some(f) = fallback {
            self.targets[f].dirty.extend(moved);
            self.targets[f].dirty.extend(spilled);
        }
    }

    /// What target `index` should hold for `prefix` (see the module documentation).
    pub fn desired_of(&self, index: usize, prefix: &Prefix) -> Option<Expiry> {
        let slot = &self.targets[index];
        if !slot.info.handles(prefix) {
            return None;
        }
        if let Some(expiry) = slot.aggregates.get(prefix) {
            return Some(*expiry);
        }
        let own =
            if slot.scope.fallback_only || (slot.is_limited() && !slot.placed.contains(prefix)) {
                None
            } else {
                self.table.effective(prefix, |s| slot.scope.accepts(s))
            };
        let fed = self
            .targets
            .iter()
            .filter(|feeder| feeder.fallback == Some(index) && feeder.overflow.contains(prefix))
            .filter_map(|feeder| self.table.effective(prefix, |s| feeder.scope.accepts(s)))
            .max();
        own.max(fed)
    }

    /// Everything target `index` should hold (for a full resync).
    pub fn desired_all(&self, index: usize) -> BTreeMap<Prefix, Expiry> {
        let mut all: BTreeMap<Prefix, Expiry> = self
            .table
            .iter_effective()
            .filter_map(|(p, _)| self.desired_of(index, &p).map(|e| (p, e)))
            .collect();
        all.extend(&self.targets[index].aggregates);
        all
    }

    /// Takes the dirty set of target `index`.
    pub fn take_dirty(&mut self, index: usize) -> BTreeSet<Prefix> {
        std::mem::take(&mut self.targets[index].dirty)
    }

    /// Puts prefixes back to be planned again (after a failed item).
    pub fn mark_dirty(&mut self, index: usize, prefixes: impl IntoIterator<Item = Prefix>) {
        self.targets[index].dirty.extend(prefixes);
    }

    /// How many prefixes target `index` cannot hold and sent to its fallback.
    pub fn overflow_count(&self, index: usize) -> usize {
        self.targets[index].overflow.len()
    }

    /// How many covering prefixes target `index` holds in place of several bans.
    pub fn aggregate_count(&self, index: usize) -> usize {
        self.targets[index].aggregates.len()
    }
}
