//! The engine: the daemon's in-memory view of the ledger and of what each target should hold.
//!
//! # One owner
//! [`Engine`] is a cheap, cloneable handle (like mini-redis's `Db`): every task that needs the
//! engine holds a clone, and every read or mutation goes through the methods below. The state
//! ([`State`]) sits behind one lock that is held only for the few lines of each method: never
//! across I/O, an `.await`, a device call, or a sort of every ban. Placement, the one
//! computation that sorts every ban of a target, runs outside the lock in three steps
//! ([`TargetHandle::refresh_placement`]): snapshot the candidates, compute, commit.
//!
//! Why a lock and not an actor task: the ban path (the ledger thread) applies each committed
//! group of events and answers its clients right after, and a round trip through an actor's
//! queue would add a context switch to every acknowledgement for no gain in clarity; the
//! methods here are the whole API, and the fields are private to this file.
//!
//! # How the state changes
//! Only through ledger events ([`Engine::apply_events`]): the daemon's own writes and writes
//! by other processes take the same path. Each event that changes the effective ban of a
//! prefix marks that prefix *dirty* for every target that handles its family, and wakes the
//! target's worker; the worker then plans just the dirty prefixes.
//!
//! What a target should hold ([`State::desired_of`]):
//! - bans in the target's scope (its `sources`, or all), in a family it handles, that this
//!   host's policy does not protect (checked again here: in a fleet another host may have
//!   admitted them);
//! - on a target with limited capacity, only the bans placement gave it
//!   ([`netban_core::placement`]), and the covering prefixes it merged bans into when the
//!   target allows aggregation ([`netban_core::aggregation`]);
//! - on a target that is another's fallback, also that target's overflow.

use netban_core::aggregation::{self, Aggregation};
use netban_core::placement::{self, Candidate, Capacity};
use netban_core::plan::{Plan, SourceTracking};
use netban_core::policy::Policy;
use netban_core::table::BanTable;
use netban_core::{Ban, Expiry, Prefix, Source, Timestamp};
use netban_ledger::{Event, EventKind};
use netban_proto::{ListedBan, SourceBan};
use netban_targets::TargetInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// A configured target, as the engine and the daemon's tasks name it. Given out by
/// [`Engine::new`] in configuration order; it is a name, not a position callers index with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(u16);

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "target#{}", self.0)
    }
}

impl TargetId {
    /// The id of the `n`th configured target (configuration order).
    pub fn nth(n: usize) -> TargetId {
        TargetId(u16::try_from(n).expect("fewer than 65,536 targets"))
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

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

/// How a target takes part in the engine: what the configuration and its driver say.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    pub info: TargetInfo,
    pub scope: Scope,
    /// The target that takes what this one cannot hold.
    pub fallback: Option<TargetId>,
    /// The device's capacity, further limited by configuration.
    pub capacity: Capacity,
    /// Where placement may merge bans into covering prefixes (`None`: never).
    pub aggregation: Option<Aggregation>,
}

impl TargetSpec {
    fn is_limited(&self) -> bool {
        self.capacity.v4.is_some() || self.capacity.v6.is_some()
    }
}

/// Counts a worker publishes in `netban status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetCounts {
    /// Prefixes waiting to be planned.
    pub dirty: usize,
    /// Bans this target cannot hold and sent to its fallback.
    pub overflow: usize,
    /// Covering prefixes it holds in place of several bans.
    pub aggregates: usize,
}

/// The cheap, cloneable handle on the engine (see the module documentation).
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// One per target, indexed by [`TargetId`]; fixed at start-up, so outside the lock.
    wakes: Vec<Notify>,
    /// Events applied since start, by kind (in `EventKind::ALL` order): the metrics' counters.
    events_applied: [std::sync::atomic::AtomicU64; 5],
    /// A generation counter bumped after each batch of events, for whoever shows the ban
    /// table live (the web console's event stream): a change is pushed, never polled.
    changes: tokio::sync::watch::Sender<u64>,
}

/// Everything the engine knows. Private to this file: read it top to bottom below.
struct State {
    table: BanTable,
    policy: Arc<Policy>,
    targets: Vec<TargetState>,
}

/// The engine's record of one target.
struct TargetState {
    spec: TargetSpec,
    /// On a capacity-limited target: the bans (and covering prefixes) placement gave it, and
    /// the bans that overflowed.
    placed: BTreeSet<Prefix>,
    overflow: BTreeSet<Prefix>,
    /// The covering prefixes among `placed`, with the latest expiry of their members.
    aggregates: BTreeMap<Prefix, Expiry>,
    /// Prefixes whose desired state may have changed since the worker last planned.
    dirty: BTreeSet<Prefix>,
    /// On a capacity-limited target: bans changed since placement last took its snapshot.
    /// Placement runs in the target's worker, not on the ban path.
    placement_stale: bool,
}

impl Engine {
    /// An engine with no bans yet, the given policy, and the targets in configuration order
    /// (`specs[n]` is [`TargetId::nth`]`(n)`).
    pub fn new(policy: Policy, specs: Vec<TargetSpec>) -> Engine {
        let wakes = specs.iter().map(|_| Notify::new()).collect();
        let targets = specs
            .into_iter()
            .map(|spec| TargetState {
                placement_stale: spec.is_limited(),
                spec,
                placed: BTreeSet::new(),
                overflow: BTreeSet::new(),
                aggregates: BTreeMap::new(),
                dirty: BTreeSet::new(),
            })
            .collect();
        Engine {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    table: BanTable::new(),
                    policy: Arc::new(policy),
                    targets,
                }),
                wakes,
                events_applied: Default::default(),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves the state as it was at the panic's line; the
        // daemon's supervision (not this lock) decides what happens to the process.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The handle a target's worker uses.
    pub fn target(&self, id: TargetId) -> TargetHandle {
        assert!(id.index() < self.shared.wakes.len(), "unknown {id}");
        TargetHandle {
            engine: self.clone(),
            id,
        }
    }

    // ---- start-up -------------------------------------------------------------------------

    /// Loads active bans read from the ledger at start-up. Nothing is marked dirty: every
    /// worker starts with a full sync.
    pub fn load(&self, bans: impl IntoIterator<Item = Ban>) -> usize {
        let mut state = self.state();
        for ban in bans {
            state.table.set(ban.prefix, &ban.source, ban.expiry);
        }
        state.table.len()
    }

    /// Places every capacity-limited target once the table is loaded, before the workers
    /// start, so a fallback's first sync already knows the overflow it holds (nothing moves
    /// on a restart).
    pub fn place_all(&self) {
        let ids: Vec<TargetId> = (0..self.shared.wakes.len()).map(TargetId::nth).collect();
        for id in ids {
            self.target(id).refresh_placement();
        }
    }

    // ---- the ban path (ledger thread) -----------------------------------------------------

    /// Applies ledger events in order, marks what changed dirty and wakes the workers.
    pub fn apply_events(&self, events: &[Event]) {
        let mut touched = BTreeSet::new();
        // Prefixes whose set of sources changed: what a source-shaped target holds for them
        // may change even when the effective ban does not.
        let mut resourced = BTreeSet::new();
        let mut state = self.state();
        crate::fault::inject(crate::fault::Point::EngineLocked);
        for event in events {
            let change = match (event.kind, &event.source, event.expiry) {
                (EventKind::Ban | EventKind::Extend, Some(source), Some(expiry)) => {
                    if state.table.get(&event.prefix, source).is_none() {
                        resourced.insert(event.prefix);
                    }
                    state.table.set(event.prefix, source, expiry)
                }
                (EventKind::Unban | EventKind::Lift | EventKind::Expire, source, _) => {
                    if source
                        .as_ref()
                        .is_some_and(|s| state.table.get(&event.prefix, s).is_some())
                    {
                        resourced.insert(event.prefix);
                    }
                    state.table.remove(event.prefix, source.as_ref())
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
            self.shared.events_applied[kind_index(event.kind)]
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let woken = state.touch(&touched, &resourced);
        drop(state);
        self.wake(woken);
        if !events.is_empty() {
            self.shared
                .changes
                .send_modify(|generation| *generation += 1);
        }
    }

    /// Told after each batch of events the ban table took (the value is a generation
    /// counter: compare, do not count).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// The expiry `source` holds on `prefix`, if that ban is active at `now`.
    pub fn source_expiry(
        &self,
        prefix: &Prefix,
        source: &Source,
        now: Timestamp,
    ) -> Option<Expiry> {
        self.state()
            .table
            .get(prefix, source)
            .filter(|e| !e.is_past(now))
    }

    /// Whether `prefix` is banned by any source.
    pub fn is_banned(&self, prefix: &Prefix) -> bool {
        self.state().table.contains(prefix)
    }

    /// Which of `prefixes` are banned by any source (one lock for all of them).
    pub fn banned_among(&self, prefixes: impl IntoIterator<Item = Prefix>) -> BTreeSet<Prefix> {
        let state = self.state();
        prefixes
            .into_iter()
            .filter(|p| state.table.contains(p))
            .collect()
    }

    /// Every prefix `source` bans.
    pub fn prefixes_of_source(&self, source: &Source) -> Vec<Prefix> {
        self.state()
            .table
            .iter_bans()
            .filter(|(_, s, _)| *s == source)
            .map(|(p, _, _)| p)
            .collect()
    }

    // ---- policy ---------------------------------------------------------------------------

    pub fn policy(&self) -> Arc<Policy> {
        self.state().policy.clone()
    }

    /// Installs a new policy (allowlist reload); returns the banned prefixes it now covers,
    /// which the caller lifts through the ledger. Targets that aggregate re-place: a covering
    /// prefix may now overlap the allowlist even where no ban does.
    pub fn set_policy(&self, policy: Policy) -> Vec<Prefix> {
        let mut state = self.state();
        state.policy = Arc::new(policy);
        let mut woken = Vec::new();
        for (n, target) in state.targets.iter_mut().enumerate() {
            if target.spec.aggregation.is_some() {
                target.placement_stale = true;
                woken.push(TargetId::nth(n));
            }
        }
        let covered = state.covered_by_policy();
        drop(state);
        self.wake(woken);
        covered
    }

    /// The banned prefixes the current policy's allowlist or protected networks overlap.
    pub fn covered_by_policy(&self) -> Vec<Prefix> {
        self.state().covered_by_policy()
    }

    // ---- reads for the socket -------------------------------------------------------------

    /// How many prefixes are banned.
    pub fn active_bans(&self) -> usize {
        self.state().table.len()
    }

    /// Ledger events applied since start, by kind (every writer's: this daemon's clients,
    /// expiry, other processes and hosts).
    pub fn events_applied(&self) -> Vec<(EventKind, u64)> {
        EventKind::ALL
            .iter()
            .map(|&kind| {
                let n = self.shared.events_applied[kind_index(kind)]
                    .load(std::sync::atomic::Ordering::Relaxed);
                (kind, n)
            })
            .collect()
    }

    /// Active (prefix, source) bans counted by family and source: counts the table keeps as
    /// it changes, so this is linear in the sources, not the bans (a scrape at a million bans
    /// holds the lock for microseconds).
    pub fn ban_counts(&self) -> Vec<(netban_core::Family, Source, u64)> {
        self.state()
            .table
            .counts_by_source()
            .map(|(family, source, n)| (family, source.clone(), n as u64))
            .collect()
    }

    /// Every banned prefix with its effective expiry (the latest of its sources): a linear
    /// copy under the lock, for the CrowdSec decision server's snapshot.
    pub fn effective_bans(&self) -> Vec<(Prefix, Expiry)> {
        let state = self.state();
        let mut bans = Vec::with_capacity(state.table.len());
        bans.extend(state.table.iter_effective());
        bans
    }

    /// A number that grows whenever a ledger event is applied (the sum of
    /// [`Engine::events_applied`]): equal numbers, equal ban table.
    pub fn generation(&self) -> u64 {
        self.shared
            .events_applied
            .iter()
            .map(|n| n.load(std::sync::atomic::Ordering::Acquire))
            .sum()
    }

    /// The bans overlapping `filter` (all without one), with every source's expiry.
    pub fn list(&self, filter: Option<Prefix>) -> Vec<ListedBan> {
        let state = self.state();
        state
            .table
            .iter_effective()
            .filter(|(p, _)| filter.is_none_or(|q| q.overlaps(p)))
            .map(|(prefix, expiry)| ListedBan {
                prefix,
                expiry,
                sources: state
                    .table
                    .sources(&prefix)
                    .into_iter()
                    .map(|(source, expiry)| SourceBan { source, expiry })
                    .collect(),
            })
            .collect()
    }

    fn wake(&self, ids: impl IntoIterator<Item = TargetId>) {
        for id in ids {
            self.shared.wakes[id.index()].notify_one();
        }
    }
}

fn kind_index(kind: EventKind) -> usize {
    EventKind::ALL
        .iter()
        .position(|&k| k == kind)
        .expect("every kind is in ALL")
}

/// A worker's handle on its own target's part of the engine.
#[derive(Clone)]
pub struct TargetHandle {
    engine: Engine,
    id: TargetId,
}

/// What placement needs, copied out of the engine so the sort runs without the lock.
struct PlacementSnapshot {
    candidates: Vec<Candidate>,
    capacity: Capacity,
    aggregation: Option<Aggregation>,
    placed: BTreeSet<Prefix>,
    policy: Arc<Policy>,
}

/// What placement decided for one target.
struct PlacementResult {
    placed: BTreeSet<Prefix>,
    overflow: BTreeSet<Prefix>,
    aggregates: BTreeMap<Prefix, Expiry>,
}

impl TargetHandle {
    /// Waits until the engine has work for this target (or was asked to look again).
    pub async fn work_signalled(&self) {
        self.engine.shared.wakes[self.id.index()].notified().await
    }

    /// Re-runs placement if bans changed since it last ran: snapshot under the lock, compute
    /// without it, commit under it. Bans that change meanwhile mark placement stale again,
    /// so the next call places them. Wakes the fallback when prefixes moved to or from it.
    pub fn refresh_placement(&self) {
        let Some(snapshot) = self.engine.state().placement_snapshot(self.id) else {
            return;
        };
        let result = compute_placement(snapshot);
        let woken = self.engine.state().commit_placement(self.id, result);
        self.engine.wake(woken);
    }

    /// Takes the dirty prefixes, each with what the target should hold for it now.
    pub fn take_dirty(&self) -> BTreeMap<Prefix, Option<Expiry>> {
        let mut state = self.engine.state();
        let dirty = std::mem::take(&mut state.targets[self.id.index()].dirty);
        dirty
            .into_iter()
            .map(|p| (p, state.desired_of(self.id, &p)))
            .collect()
    }

    /// Everything the target should hold (for a full sync); the dirty set is cleared, since
    /// the full plan covers it.
    pub fn take_all_desired(&self) -> BTreeMap<Prefix, Expiry> {
        let desired: Vec<(Prefix, Expiry)> = {
            let mut state = self.engine.state();
            state.targets[self.id.index()].dirty.clear();
            state.desired_all(self.id)
        };
        desired.into_iter().collect()
    }

    /// Everything the target should hold, leaving the dirty set alone (for a dry run).
    pub fn all_desired(&self) -> BTreeMap<Prefix, Expiry> {
        let desired = self.engine.state().desired_all(self.id);
        desired.into_iter().collect()
    }

    /// On a source-shaped target ([`SourceTracking::Shaped`]): fills in the sources of every
    /// entry `plan` adds or refreshes, as they are now. Other targets' plans are left alone.
    pub fn fill_sources(&self, plan: &mut Plan) {
        let state = self.engine.state();
        if state.targets[self.id.index()].spec.info.sources != SourceTracking::Shaped {
            return;
        }
        let entries = plan
            .add
            .iter_mut()
            .chain(plan.refresh.iter_mut().map(|(_, d)| d));
        for desired in entries {
            desired.sources = state.desired_sources(self.id, &desired.prefix);
        }
    }

    /// Puts prefixes back to be planned again (after a failed item or batch).
    pub fn mark_dirty(&self, prefixes: impl IntoIterator<Item = Prefix>) {
        self.engine.state().targets[self.id.index()]
            .dirty
            .extend(prefixes);
    }

    pub fn counts(&self) -> TargetCounts {
        let state = self.engine.state();
        let target = &state.targets[self.id.index()];
        TargetCounts {
            dirty: target.dirty.len(),
            overflow: target.overflow.len(),
            aggregates: target.aggregates.len(),
        }
    }
}

impl State {
    /// Marks `prefixes` (whose effective ban changed) dirty on every target that handles
    /// them, and `resourced` (whose sources changed) on the source-shaped ones; marks limited
    /// targets for re-placement; returns the targets to wake.
    fn touch(
        &mut self,
        prefixes: &BTreeSet<Prefix>,
        resourced: &BTreeSet<Prefix>,
    ) -> Vec<TargetId> {
        if prefixes.is_empty() && resourced.is_empty() {
            return Vec::new();
        }
        let mut woken = Vec::new();
        for (n, target) in self.targets.iter_mut().enumerate() {
            let info = &target.spec.info;
            let shaped = info.sources == SourceTracking::Shaped;
            target.dirty.extend(
                prefixes
                    .iter()
                    .chain(resourced.iter().filter(|_| shaped))
                    .filter(|p| info.handles(p))
                    .copied(),
            );
            target.placement_stale |= target.spec.is_limited() && !prefixes.is_empty();
            if !target.dirty.is_empty() {
                woken.push(TargetId::nth(n));
            }
        }
        woken
    }

    fn covered_by_policy(&self) -> Vec<Prefix> {
        self.table
            .iter_effective()
            .map(|(p, _)| p)
            .filter(|p| self.policy.protects(p))
            .collect()
    }

    /// Copies out what placement of target `id` needs, if bans changed since it last ran.
    /// Linear in the target's bans (no sort): the sort runs after the lock is released.
    fn placement_snapshot(&mut self, id: TargetId) -> Option<PlacementSnapshot> {
        let target = &mut self.targets[id.index()];
        if !std::mem::take(&mut target.placement_stale) {
            return None;
        }
        let spec = &target.spec;
        let table = &self.table;
        let candidates = table
            .iter_effective()
            .filter(|(p, _)| spec.info.handles(p))
            .filter_map(|(prefix, _)| {
                let expiry = table.effective(&prefix, |s| spec.scope.accepts(s))?;
                Some(Candidate {
                    prefix,
                    expiry,
                    // Several sources on one prefix (say sshd and recidive) mark a repeat
                    // offender; the ledger's full count is not needed to rank a few slots.
                    repeat_count: table.sources(&prefix).len().saturating_sub(1) as u32,
                    placed: target.placed.contains(&prefix),
                })
            })
            .collect();
        Some(PlacementSnapshot {
            candidates,
            capacity: spec.capacity,
            aggregation: spec.aggregation,
            placed: target.placed.clone(),
            policy: self.policy.clone(),
        })
    }

    /// Installs a placement result; prefixes that moved in or out are marked dirty on the
    /// target and on its fallback. Returns the targets to wake.
    fn commit_placement(&mut self, id: TargetId, result: PlacementResult) -> Vec<TargetId> {
        let target = &mut self.targets[id.index()];
        // Whatever entered or left either set may change what this target or its fallback
        // should hold (a new ban can go straight to the overflow).
        let moved: BTreeSet<Prefix> = result
            .placed
            .symmetric_difference(&target.placed)
            .copied()
            .collect();
        let spilled: BTreeSet<Prefix> = result
            .overflow
            .symmetric_difference(&target.overflow)
            .copied()
            .collect();
        // A covering prefix that stays but whose expiry changed must be refreshed.
        let refreshed: Vec<Prefix> = result
            .aggregates
            .iter()
            .filter(|(p, e)| target.aggregates.get(*p).is_some_and(|old| old != *e))
            .map(|(p, _)| *p)
            .collect();
        target.placed = result.placed;
        target.overflow = result.overflow;
        target.aggregates = result.aggregates;
        target.dirty.extend(moved.iter().copied());
        target.dirty.extend(refreshed);
        let mut woken = vec![id];
        if let Some(fallback) = target.spec.fallback {
            let fallback_state = &mut self.targets[fallback.index()];
            fallback_state.dirty.extend(moved);
            fallback_state.dirty.extend(spilled);
            if !fallback_state.dirty.is_empty() {
                woken.push(fallback);
            }
        }
        woken
    }

    /// What target `id` should hold for `prefix` (see the module documentation).
    fn desired_of(&self, id: TargetId, prefix: &Prefix) -> Option<Expiry> {
        let target = &self.targets[id.index()];
        if !target.spec.info.handles(prefix) {
            return None;
        }
        // This host's own policy is checked again here, not only at admission: a ban another
        // host admitted (with another allowlist) is never pushed over what this host protects.
        if self.policy.protects(prefix) {
            return None;
        }
        if let Some(expiry) = target.aggregates.get(prefix) {
            return Some(*expiry);
        }
        let scope = &target.spec.scope;
        let own = if scope.fallback_only
            || (target.spec.is_limited() && !target.placed.contains(prefix))
        {
            None
        } else {
            self.table.effective(prefix, |s| scope.accepts(s))
        };
        let fed = self
            .targets
            .iter()
            .filter(|feeder| feeder.spec.fallback == Some(id) && feeder.overflow.contains(prefix))
            .filter_map(|feeder| {
                self.table
                    .effective(prefix, |s| feeder.spec.scope.accepts(s))
            })
            .max();
        own.max(fed)
    }

    /// The sources whose bans make target `id` hold `prefix`: those in its scope (unless it
    /// holds nothing of its own), and those of the targets whose overflow it takes. Empty for
    /// a covering prefix.
    fn desired_sources(&self, id: TargetId, prefix: &Prefix) -> Vec<Source> {
        let target = &self.targets[id.index()];
        let own = |s: &Source| !target.spec.scope.fallback_only && target.spec.scope.accepts(s);
        let fed = |s: &Source| {
            self.targets.iter().any(|feeder| {
                feeder.spec.fallback == Some(id)
                    && feeder.overflow.contains(prefix)
                    && feeder.spec.scope.accepts(s)
            })
        };
        self.table
            .sources(prefix)
            .into_iter()
            .map(|(source, _)| source)
            .filter(|s| own(s) || fed(s))
            .collect()
    }

    /// Everything target `id` should hold, sorted by prefix.
    fn desired_all(&self, id: TargetId) -> Vec<(Prefix, Expiry)> {
        let mut all: Vec<(Prefix, Expiry)> = self
            .table
            .iter_effective()
            .filter_map(|(p, _)| self.desired_of(id, &p).map(|e| (p, e)))
            .collect();
        // Covering prefixes are not bans of their own: add those the table does not hold.
        let aggregates = &self.targets[id.index()].aggregates;
        all.extend(
            aggregates
                .iter()
                .filter(|(p, _)| !self.table.contains(p))
                .map(|(p, e)| (*p, *e)),
        );
        all
    }
}

/// Placement (and aggregation, where the target allows it) of one target: pure, run with no
/// lock held.
fn compute_placement(snapshot: PlacementSnapshot) -> PlacementResult {
    let PlacementSnapshot {
        candidates,
        capacity,
        aggregation,
        placed: was_placed,
        policy,
    } = snapshot;
    let (candidates, groups) = match &aggregation {
        Some(rule) => {
            let merged = aggregation::aggregate(
                &candidates,
                capacity,
                rule,
                |cover| was_placed.contains(cover),
                |cover| !policy.protects(cover),
            );
            (merged.candidates, merged.aggregates)
        }
        None => (candidates, Vec::new()),
    };
    let placement = placement::place(&candidates, capacity);
    let placed: BTreeSet<Prefix> = placement.held.into_iter().collect();
    // A covering prefix that does not fit overflows as its members (the fallback holds bans,
    // never covering prefixes).
    let mut overflow: BTreeSet<Prefix> = placement.overflow.into_iter().collect();
    let mut aggregates = BTreeMap::new();
    for group in &groups {
        if placed.contains(&group.prefix) {
            aggregates.insert(group.prefix, group.expiry);
        } else if overflow.remove(&group.prefix) {
            overflow.extend(group.members.iter().copied());
        }
    }
    PlacementResult {
        placed,
        overflow,
        aggregates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netban_core::plan::ExpiryTracking;
    use netban_core::Family;
    use netban_targets::OwnershipKind;

    fn prefix(text: &str) -> Prefix {
        Prefix::parse(text).unwrap()
    }

    fn source(name: &str) -> Source {
        Source::new(name).unwrap()
    }

    fn spec(name: &str, capacity_v4: Option<usize>) -> TargetSpec {
        TargetSpec {
            info: TargetInfo {
                name: name.into(),
                kind: "nftables",
                families: vec![Family::V4, Family::V6],
                capacity: Capacity::default(),
                ownership: OwnershipKind::Exclusive,
                expiry: ExpiryTracking::None,
                sources: SourceTracking::Ignored,
                max_batch: 100,
            },
            scope: Scope::default(),
            fallback: None,
            capacity: Capacity {
                v4: capacity_v4,
                v6: None,
            },
            aggregation: None,
        }
    }

    fn event(id: i64, kind: EventKind, p: &str, s: &str, until: i64) -> Event {
        Event {
            id,
            at: Timestamp(0),
            kind,
            prefix: prefix(p),
            source: Some(source(s)),
            expiry: matches!(kind, EventKind::Ban | EventKind::Extend)
                .then_some(Expiry::At(Timestamp(until))),
            reason: None,
            failures: None,
            origin_host: None,
            escalation_step: 0,
        }
    }

    #[test]
    fn events_mark_dirty_only_when_the_effective_ban_changes() {
        let engine = Engine::new(Policy::default(), vec![spec("edge", None)]);
        let edge = engine.target(TargetId::nth(0));
        let mut changes = engine.changes();
        engine.apply_events(&[]);
        assert!(!changes.has_changed().unwrap(), "no event, no change");
        engine.apply_events(&[event(1, EventKind::Ban, "203.0.113.7", "sshd", 100)]);
        assert!(changes.has_changed().unwrap(), "watchers are told");
        changes.mark_unchanged();
        let dirty = edge.take_dirty();
        assert_eq!(
            dirty.get(&prefix("203.0.113.7")),
            Some(&Some(Expiry::At(Timestamp(100))))
        );
        // A second source with an earlier expiry changes nothing the target holds (but the
        // list of sources a console shows: watchers are told).
        engine.apply_events(&[event(2, EventKind::Ban, "203.0.113.7", "web", 50)]);
        assert!(edge.take_dirty().is_empty());
        assert!(changes.has_changed().unwrap());
        // The longer source's unban shortens the effective ban: dirty again.
        engine.apply_events(&[event(3, EventKind::Unban, "203.0.113.7", "sshd", 0)]);
        assert_eq!(
            edge.take_dirty().get(&prefix("203.0.113.7")),
            Some(&Some(Expiry::At(Timestamp(50))))
        );
        assert!(engine.is_banned(&prefix("203.0.113.7")));
        assert_eq!(
            engine.prefixes_of_source(&source("web")),
            vec![prefix("203.0.113.7")]
        );
        assert!(engine.prefixes_of_source(&source("sshd")).is_empty());
    }

    #[test]
    fn a_source_shaped_target_hears_of_every_change_of_sources() {
        let mut flowspec = spec("flowspec", None);
        flowspec.info.sources = SourceTracking::Shaped;
        let mut scoped = spec("scoped", None);
        scoped.info.sources = SourceTracking::Shaped;
        scoped.scope.sources = Some(BTreeSet::from([source("sshd")]));
        let engine = Engine::new(
            Policy::default(),
            vec![spec("edge", None), flowspec, scoped],
        );
        let (edge, fs, scoped) = (
            engine.target(TargetId::nth(0)),
            engine.target(TargetId::nth(1)),
            engine.target(TargetId::nth(2)),
        );
        let x = prefix("203.0.113.7");
        engine.apply_events(&[event(1, EventKind::Ban, "203.0.113.7", "sshd", 100)]);
        for t in [&edge, &fs, &scoped] {
            assert_eq!(t.take_dirty().len(), 1);
        }
        // recidive bans it too, for less long: the effective ban is unchanged, so only the
        // shaped targets are told, and their plans carry both sources (the scoped one only
        // its own).
        engine.apply_events(&[event(2, EventKind::Ban, "203.0.113.7", "recidive", 50)]);
        assert!(edge.take_dirty().is_empty());
        assert_eq!(
            fs.take_dirty().get(&x),
            Some(&Some(Expiry::At(Timestamp(100))))
        );
        assert_eq!(scoped.take_dirty().len(), 1);
        let plan_of = |t: &TargetHandle| {
            let mut plan = Plan {
                add: vec![netban_core::plan::Desired::new(x, Expiry::Never)],
                ..Plan::default()
            };
            t.fill_sources(&mut plan);
            plan.add[0].sources.clone()
        };
        assert_eq!(plan_of(&fs), vec![source("recidive"), source("sshd")]);
        assert_eq!(plan_of(&scoped), vec![source("sshd")]);
        assert!(
            plan_of(&edge).is_empty(),
            "other targets' plans are left alone"
        );
        // Extending a source's ban is no change of sources.
        engine.apply_events(&[event(3, EventKind::Extend, "203.0.113.7", "recidive", 60)]);
        assert!(fs.take_dirty().is_empty());
        // recidive's ban ends: sources change again, the effective ban does not.
        engine.apply_events(&[event(4, EventKind::Expire, "203.0.113.7", "recidive", 0)]);
        assert_eq!(fs.take_dirty().len(), 1);
        assert!(edge.take_dirty().is_empty());
        assert_eq!(plan_of(&fs), vec![source("sshd")]);
    }

    #[test]
    fn overflow_goes_to_the_fallback_and_comes_back_when_room_frees() {
        let mut limited = spec("nacl", Some(2));
        limited.fallback = Some(TargetId::nth(1));
        let mut fallback = spec("host", None);
        fallback.scope.fallback_only = true;
        let engine = Engine::new(Policy::default(), vec![limited, fallback]);
        let (nacl, host) = (
            engine.target(TargetId::nth(0)),
            engine.target(TargetId::nth(1)),
        );
        engine.apply_events(&[
            event(1, EventKind::Ban, "203.0.113.1", "sshd", 300),
            event(2, EventKind::Ban, "203.0.113.2", "sshd", 200),
            event(3, EventKind::Ban, "203.0.113.3", "sshd", 100),
        ]);
        nacl.refresh_placement();
        let held: Vec<Prefix> = nacl.take_all_desired().into_keys().collect();
        assert_eq!(held, vec![prefix("203.0.113.1"), prefix("203.0.113.2")]);
        assert_eq!(nacl.counts().overflow, 1);
        // The shortest ban overflowed to the fallback, which holds nothing else.
        let fed = host.take_dirty();
        assert_eq!(
            fed.get(&prefix("203.0.113.3")),
            Some(&Some(Expiry::At(Timestamp(100))))
        );
        assert_eq!(fed.values().filter(|d| d.is_some()).count(), 1);
        // An unban frees a slot: the overflowed ban moves back and leaves the fallback.
        engine.apply_events(&[event(4, EventKind::Unban, "203.0.113.1", "sshd", 0)]);
        nacl.refresh_placement();
        assert_eq!(
            nacl.take_dirty().get(&prefix("203.0.113.3")),
            Some(&Some(Expiry::At(Timestamp(100))))
        );
        assert_eq!(host.take_dirty().get(&prefix("203.0.113.3")), Some(&None));
        assert_eq!(nacl.counts().overflow, 0);
    }

    #[test]
    fn placement_snapshot_does_not_lose_bans_that_arrive_while_it_computes() {
        let engine = Engine::new(Policy::default(), vec![spec("nacl", Some(1))]);
        let nacl = engine.target(TargetId::nth(0));
        engine.apply_events(&[event(1, EventKind::Ban, "203.0.113.1", "sshd", 100)]);
        // Take the snapshot, then let a ban arrive before the result is committed.
        let snapshot = engine.state().placement_snapshot(TargetId::nth(0)).unwrap();
        engine.apply_events(&[event(2, EventKind::Ban, "203.0.113.2", "sshd", 900)]);
        let result = compute_placement(snapshot);
        let _ = engine.state().commit_placement(TargetId::nth(0), result);
        // The late ban made placement stale again: the next refresh gives it the slot.
        nacl.refresh_placement();
        let held: Vec<Prefix> = nacl.take_all_desired().into_keys().collect();
        assert_eq!(held, vec![prefix("203.0.113.2")]);
    }

    #[test]
    fn a_new_policy_reports_the_bans_it_covers() {
        let engine = Engine::new(Policy::default(), vec![spec("edge", None)]);
        engine.apply_events(&[
            event(1, EventKind::Ban, "203.0.113.7", "sshd", 100),
            event(2, EventKind::Ban, "198.51.100.9", "sshd", 100),
        ]);
        let edge = engine.target(TargetId::nth(0));
        let _ = edge.take_dirty();
        let mut policy = Policy::default();
        policy.allowlist.insert(prefix("198.51.100.0/24"));
        assert_eq!(engine.set_policy(policy), vec![prefix("198.51.100.9")]);
        // Until the lift arrives from the ledger, no target is asked to hold it.
        let desired: Vec<Prefix> = edge.all_desired().into_keys().collect();
        assert_eq!(desired, vec![prefix("203.0.113.7")]);
        assert_eq!(engine.active_bans(), 2, "lifting is the ledger's job");
        assert_eq!(engine.list(Some(prefix("203.0.113.0/24"))).len(), 1);
    }
}
