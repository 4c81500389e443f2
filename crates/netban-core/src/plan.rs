//! Plans: the difference between what a target should hold and what it holds.
//!
//! A target reports what it *holds* (read back from the device); the core works out what it
//! *should* hold (bans in its scope, after placement). [`plan`] turns the two into adds,
//! removes and refreshes. It never removes what netban does not own: on a device area netban
//! owns exclusively (its own nftables table, its own ACL, its own NACL rule range, its own BGP
//! session) everything held is netban's; on a shared area (an ExaFS organisation, a NETCONF
//! tenant, a WAF IP set) only the entries recorded as created by netban are.

use crate::ban::{Expiry, Source};
use crate::prefix::Prefix;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One entry a target should hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub prefix: Prefix,
    pub expiry: Expiry,
    /// The sources (in the target's scope) whose bans make this entry, in order, for a target
    /// whose entries depend on them ([`SourceTracking::Shaped`]); empty for every other target
    /// and for covering prefixes, which no one source bans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
}

impl Desired {
    /// An entry that does not say which sources ban it.
    pub fn new(prefix: Prefix, expiry: Expiry) -> Desired {
        Desired {
            prefix,
            expiry,
            sources: Vec::new(),
        }
    }
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

/// Whether what a target holds for a prefix depends on which sources ban it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceTracking {
    /// Only the prefix (and its expiry) matter: most targets.
    #[default]
    Ignored,
    /// The entry is built from the sources (a BGP flowspec rule narrowed per source to, say,
    /// tcp/22 for sshd): a change of the sources is a change of the entry. Such a target gets
    /// every desired entry with its [`Desired::sources`], and a refresh ([`reshape`]) when the
    /// sources of a prefix it holds change.
    Shaped,
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

impl Ownership<'_> {
    /// True if netban may remove or refresh `entry`.
    pub fn owns(&self, entry: &Held) -> bool {
        match self {
            Ownership::Exclusive => true,
            // The set is ordered by prefix first, so only this prefix's records are scanned,
            // without cloning the handle to build a lookup key.
            Ownership::Recorded(records) => records
                .range((entry.prefix, None)..)
                .take_while(|(prefix, _)| *prefix == entry.prefix)
                .any(|(_, handle)| handle.as_deref() == entry.handle.as_deref()),
        }
    }
}

/// True if `held` (an owned entry kept for a desired prefix) must be refreshed to `desired`.
fn is_stale(held: Option<Expiry>, desired: Expiry, tracking: ExpiryTracking) -> bool {
    let ExpiryTracking::Tracked { slack_secs } = tracking else {
        return false;
    };
    match (held, desired) {
        (Some(Expiry::At(held)), Expiry::At(desired)) => desired > held.plus_secs(slack_secs),
        (Some(Expiry::At(_)), Expiry::Never) => true,
        // Held permanently, or the device did not say: nothing to extend.
        (Some(Expiry::Never), _) | (None, _) => false,
    }
}

/// Adds to `plan` what one prefix needs: `desired` is its desired expiry (`None` = it should
/// not be held), `entries` what is held for it, in the order read back.
fn plan_one(
    plan: &mut Plan,
    prefix: Prefix,
    desired: Option<Expiry>,
    entries: &[&Held],
    ownership: &Ownership<'_>,
    tracking: ExpiryTracking,
) {
    let owned: Vec<&Held> = entries
        .iter()
        .copied()
        .filter(|e| ownership.owns(e))
        .collect();
    let Some(expiry) = desired else {
        plan.remove.extend(owned.into_iter().cloned());
        return;
    };
    let want = Desired::new(prefix, expiry);
    if entries.is_empty() {
        plan.add.push(want);
        return;
    }
    // Keep the owned entry with the freshest expiry (ties: the lowest handle, then the first
    // read back); every other owned entry is a duplicate. Foreign entries are left alone, and
    // one of them alone is enough to count the prefix as held.
    let keep = owned
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            b.expiry
                .cmp(&a.expiry)
                .then_with(|| a.handle.cmp(&b.handle))
        })
        .map(|(i, _)| i);
    let Some(keep) = keep else {
        return;
    };
    for (i, entry) in owned.iter().enumerate() {
        if i != keep {
            plan.remove.push((*entry).clone());
        }
    }
    let kept = owned[keep];
    if is_stale(kept.expiry, expiry, tracking) {
        plan.refresh.push((kept.clone(), want));
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
///
/// Of several owned entries for one prefix, the one kept is the one with the freshest held
/// expiry (ties: the lowest handle, then the first in `held`). Each list of the plan is in
/// prefix order (entries of one prefix in the order of `held`).
pub fn plan(
    desired: &BTreeMap<Prefix, Expiry>,
    held: &[Held],
    ownership: &Ownership<'_>,
    tracking: ExpiryTracking,
) -> Plan {
    let mut by_prefix: BTreeMap<Prefix, Vec<&Held>> = BTreeMap::new();
    for entry in held {
        by_prefix.entry(entry.prefix).or_default().push(entry);
    }
    let mut out = Plan::default();
    let mut desired_iter = desired.iter().peekable();
    let mut held_iter = by_prefix.iter().peekable();
    // Merge the two prefix-ordered sequences.
    loop {
        let next_desired = desired_iter.peek().map(|(p, _)| **p);
        let next_held = held_iter.peek().map(|(p, _)| **p);
        let prefix = match (next_desired, next_held) {
            (None, None) => break,
            (Some(d), None) => d,
            (None, Some(h)) => h,
            (Some(d), Some(h)) => d.min(h),
        };
        let want = desired_iter
            .next_if(|(p, _)| **p == prefix)
            .map(|(_, e)| *e);
        let entries = held_iter
            .next_if(|(p, _)| **p == prefix)
            .map_or(&[][..], |(_, v)| v.as_slice());
        plan_one(&mut out, prefix, want, entries, ownership, tracking);
    }
    out
}

/// The plan for only the prefixes in `dirty` (used between resyncs, when the daemon knows
/// which prefixes changed). Same rules as [`plan`], restricted to `dirty`.
///
/// `held` maps a prefix to the entries held for it (each with that prefix); prefixes not in
/// `dirty` are not looked at.
pub fn plan_prefixes(
    dirty: &BTreeSet<Prefix>,
    desired: &dyn Fn(&Prefix) -> Option<Expiry>,
    held: &BTreeMap<Prefix, Vec<Held>>,
    ownership: &Ownership<'_>,
    tracking: ExpiryTracking,
) -> Plan {
    let mut out = Plan::default();
    for prefix in dirty {
        let entries: Vec<&Held> = held.get(prefix).map_or(Vec::new(), |v| v.iter().collect());
        plan_one(
            &mut out,
            *prefix,
            desired(prefix),
            &entries,
            ownership,
            tracking,
        );
    }
    out
}

/// Adds to `plan` a refresh of every prefix in `changed` that is desired (`desired` says its
/// expiry), held (`held`), and not already added, removed or refreshed by `plan`: for a
/// [`SourceTracking::Shaped`] target, whose entry for a prefix must be rebuilt when the
/// sources banning it change although the prefix stays banned. The entry refreshed is the
/// first held one netban owns (a shaped target owns its area; there is one per prefix).
pub fn reshape(
    plan: &mut Plan,
    changed: &BTreeSet<Prefix>,
    desired: &dyn Fn(&Prefix) -> Option<Expiry>,
    held: &BTreeMap<Prefix, Vec<Held>>,
    ownership: &Ownership<'_>,
) {
    let planned: BTreeSet<Prefix> = plan
        .add
        .iter()
        .map(|d| d.prefix)
        .chain(plan.remove.iter().map(|h| h.prefix))
        .chain(plan.refresh.iter().map(|(h, _)| h.prefix))
        .collect();
    for prefix in changed.difference(&planned) {
        let Some(expiry) = desired(prefix) else {
            continue;
        };
        let Some(entry) = held
            .get(prefix)
            .and_then(|entries| entries.iter().find(|e| ownership.owns(e)))
        else {
            continue;
        };
        plan.refresh
            .push((entry.clone(), Desired::new(*prefix, expiry)));
    }
    plan.refresh.sort_by_key(|(held, _)| held.prefix);
}

/// What changed on a device outside netban between two observations ([`drift`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// Entries netban had applied (or seen) that the device no longer holds.
    pub missing: Vec<Prefix>,
    /// Entries the device holds that netban neither applied nor saw there.
    pub unexpected: Vec<Prefix>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

/// `held` grouped by prefix (the entries of one prefix in the order of `held`): how a worker
/// keeps what its device holds.
pub fn by_prefix(held: &[Held]) -> BTreeMap<Prefix, Vec<Held>> {
    let mut out: BTreeMap<Prefix, Vec<Held>> = BTreeMap::new();
    for entry in held {
        out.entry(entry.prefix).or_default().push(entry.clone());
    }
    out
}

/// Compares `cached` (what a worker believes the device holds: its last observation,
/// changed since only by its own successful applies) with `observed` (what the device holds
/// now), by prefix. Only entries netban owns count: a shared area's other entries are not
/// netban's to watch. A cached entry whose expiry has passed at `now` is not missing: the
/// device may time it out itself before netban removes it. Each list is in prefix order.
pub fn drift(
    cached: &BTreeMap<Prefix, Vec<Held>>,
    observed: &BTreeMap<Prefix, Vec<Held>>,
    ownership: &Ownership<'_>,
    now: Timestamp,
) -> Drift {
    let owned = |entries: Option<&Vec<Held>>| {
        entries.is_some_and(|entries| entries.iter().any(|h| ownership.owns(h)))
    };
    let missing = cached
        .iter()
        .filter(|(prefix, entries)| {
            !owned(observed.get(prefix))
                && entries
                    .iter()
                    .any(|h| ownership.owns(h) && !h.expiry.is_some_and(|e| e.is_past(now)))
        })
        .map(|(prefix, _)| *prefix)
        .collect();
    let unexpected = observed
        .iter()
        .filter(|(prefix, entries)| owned(Some(entries)) && !owned(cached.get(prefix)))
        .map(|(prefix, _)| *prefix)
        .collect();
    Drift {
        missing,
        unexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn at(t: i64) -> Expiry {
        Expiry::At(Timestamp(t))
    }
    fn held(prefix: &str, expiry: Option<Expiry>, handle: Option<&str>) -> Held {
        Held {
            prefix: p(prefix),
            expiry,
            handle: handle.map(str::to_string),
        }
    }
    fn want(prefix: &str, expiry: Expiry) -> Desired {
        Desired::new(p(prefix), expiry)
    }
    fn desired(list: &[(&str, Expiry)]) -> BTreeMap<Prefix, Expiry> {
        list.iter().map(|(s, e)| (p(s), *e)).collect()
    }
    fn records(list: &[(&str, Option<&str>)]) -> BTreeSet<(Prefix, Option<String>)> {
        list.iter()
            .map(|(s, h)| (p(s), h.map(str::to_string)))
            .collect()
    }
    const TRACKED: ExpiryTracking = ExpiryTracking::Tracked { slack_secs: 60 };

    #[test]
    fn drift_is_what_the_device_lost_or_gained_outside_netban() {
        let cached = by_prefix(&[
            held("10.0.0.1", Some(at(1_000)), None),
            held("10.0.0.2", Some(at(1_000)), None),
            held("10.0.0.3", None, None),
        ]);
        // Unchanged: no drift.
        assert!(drift(&cached, &cached, &Ownership::Exclusive, Timestamp(10)).is_empty());
        // 10.0.0.2 deleted by hand, 10.0.0.9 added by hand.
        let now = by_prefix(&[
            held("10.0.0.1", Some(at(1_000)), None),
            held("10.0.0.3", None, None),
            held("10.0.0.9", None, None),
        ]);
        assert_eq!(
            drift(&cached, &now, &Ownership::Exclusive, Timestamp(10)),
            Drift {
                missing: vec![p("10.0.0.2")],
                unexpected: vec![p("10.0.0.9")],
            }
        );
    }

    #[test]
    fn an_entry_the_device_timed_out_itself_is_not_drift() {
        let cached = by_prefix(&[held("10.0.0.1", Some(at(100)), None)]);
        let gone = BTreeMap::new();
        assert!(drift(&cached, &gone, &Ownership::Exclusive, Timestamp(100)).is_empty());
        assert_eq!(
            drift(&cached, &gone, &Ownership::Exclusive, Timestamp(99)).missing,
            vec![p("10.0.0.1")]
        );
    }

    #[test]
    fn on_a_shared_area_only_netbans_own_entries_count() {
        let owned = records(&[("10.0.0.1", Some("10")), ("10.0.0.2", Some("20"))]);
        let ownership = Ownership::Recorded(&owned);
        let cached = by_prefix(&[
            held("10.0.0.1", None, Some("10")),
            held("10.0.0.2", None, Some("20")),
            held("192.168.1.0/24", None, Some("5")),
        ]);
        // The operator removed their own line and added another: not netban's drift. Netban's
        // 10.0.0.2 is gone: drift.
        let now = by_prefix(&[
            held("10.0.0.1", None, Some("10")),
            held("172.16.0.0/12", None, Some("6")),
        ]);
        assert_eq!(
            drift(&cached, &now, &ownership, Timestamp(1)),
            Drift {
                missing: vec![p("10.0.0.2")],
                unexpected: vec![],
            }
        );
    }

    #[test]
    fn adds_what_nobody_holds_and_removes_what_is_no_longer_wanted() {
        let d = desired(&[("10.0.0.1", at(100)), ("10.0.0.2", at(100))]);
        let h = vec![held("10.0.0.2", None, None), held("10.0.0.3", None, None)];
        let plan = plan(&d, &h, &Ownership::Exclusive, ExpiryTracking::None);
        assert_eq!(plan.add, vec![want("10.0.0.1", at(100))]);
        assert_eq!(plan.remove, vec![held("10.0.0.3", None, None)]);
        assert!(plan.refresh.is_empty());
        assert_eq!(plan.len(), 2);
        assert!(!plan.is_empty());

        let empty = super::plan(
            &d,
            &[held("10.0.0.1", None, None), held("10.0.0.2", None, None)],
            &Ownership::Exclusive,
            ExpiryTracking::None,
        );
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert!(super::plan(&BTreeMap::new(), &[], &Ownership::Exclusive, TRACKED).is_empty());
    }

    #[test]
    fn foreign_entries_are_never_touched() {
        let none = BTreeSet::new();
        let shared = Ownership::Recorded(&none);
        let d = desired(&[("192.0.2.1", Expiry::Never)]);
        let h = vec![
            // Someone else's entry for a prefix netban wants: it counts as held, no add, and
            // it is not refreshed even though its expiry is stale.
            held("192.0.2.1", Some(at(5)), Some("r1")),
            // Someone else's entry netban does not want: left alone.
            held("198.51.100.0/24", Some(at(5)), Some("r2")),
        ];
        assert!(plan(&d, &h, &shared, TRACKED).is_empty());
        // With no area of its own and nothing held, netban adds.
        let plan = plan(&d, &[], &shared, TRACKED);
        assert_eq!(plan.add, vec![want("192.0.2.1", Expiry::Never)]);
    }

    #[test]
    fn recorded_ownership_goes_by_prefix_and_handle() {
        let rec = records(&[
            ("192.0.2.1", Some("7")),
            ("192.0.2.2", None),
            ("192.0.2.3", Some("9")),
        ]);
        let ours = Ownership::Recorded(&rec);
        let h = vec![
            held("192.0.2.1", None, Some("7")), // ours
            held("192.0.2.1", None, Some("8")), // same prefix, someone else's rule
            held("192.0.2.2", None, None),      // ours, device without handles
            held("192.0.2.3", None, None),      // not the handle we recorded
            held("192.0.2.4", None, Some("7")), // our handle on another prefix: not ours
        ];
        assert!(ours.owns(&h[0]) && !ours.owns(&h[1]) && ours.owns(&h[2]));
        assert!(!ours.owns(&h[3]) && !ours.owns(&h[4]));
        assert!(Ownership::Exclusive.owns(&h[4]));
        let plan = plan(&BTreeMap::new(), &h, &ours, ExpiryTracking::None);
        assert_eq!(plan.remove, vec![h[0].clone(), h[2].clone()]);
        assert!(plan.add.is_empty() && plan.refresh.is_empty());
    }

    #[test]
    fn exclusive_ownership_removes_strays() {
        let d = desired(&[("2001:db8::1", at(50))]);
        let h = vec![
            held("2001:db8::1", None, Some("1")),
            held("2001:db8::2", None, Some("2")),
            held("203.0.113.0/24", None, None),
        ];
        let plan = plan(&d, &h, &Ownership::Exclusive, ExpiryTracking::None);
        // Prefix order: IPv4 before IPv6.
        assert_eq!(plan.remove, vec![h[2].clone(), h[1].clone()]);
        assert!(plan.add.is_empty() && plan.refresh.is_empty());
    }

    #[test]
    fn duplicates_keep_the_freshest_and_remove_the_rest() {
        let d = desired(&[("10.0.0.1", at(1_000))]);
        let h = vec![
            held("10.0.0.1", Some(at(100)), Some("a")),
            held("10.0.0.1", Some(at(900)), Some("c")),
            held("10.0.0.1", None, Some("d")),
            held("10.0.0.1", Some(at(900)), Some("b")),
        ];
        let plan = plan(&d, &h, &Ownership::Exclusive, TRACKED);
        // Kept: expiry 900 with the lower handle "b", refreshed since 1000 > 900 + 60.
        assert_eq!(plan.remove, vec![h[0].clone(), h[1].clone(), h[2].clone()]);
        assert_eq!(
            plan.refresh,
            vec![(h[3].clone(), want("10.0.0.1", at(1_000)))]
        );
        assert!(plan.add.is_empty());

        // Not desired: every owned copy goes.
        let plan = super::plan(&BTreeMap::new(), &h, &Ownership::Exclusive, TRACKED);
        assert_eq!(plan.remove, h);

        // Exact duplicates (same prefix and handle): one stays.
        let twins = vec![held("10.0.0.1", None, None), held("10.0.0.1", None, None)];
        let plan = super::plan(&d, &twins, &Ownership::Exclusive, ExpiryTracking::None);
        assert_eq!(plan.remove, vec![twins[1].clone()]);
    }

    #[test]
    fn a_foreign_copy_does_not_make_ours_a_duplicate() {
        let rec = records(&[("10.0.0.1", Some("ours")), ("10.0.0.1", Some("ours2"))]);
        let d = desired(&[("10.0.0.1", at(10))]);
        let foreign = held("10.0.0.1", None, Some("theirs"));
        let ours = held("10.0.0.1", None, Some("ours"));
        let ours2 = held("10.0.0.1", None, Some("ours2"));
        let h = vec![foreign.clone(), ours.clone()];
        assert!(plan(&d, &h, &Ownership::Recorded(&rec), TRACKED).is_empty());
        let h = vec![ours2.clone(), foreign, ours];
        let plan = plan(&d, &h, &Ownership::Recorded(&rec), TRACKED);
        assert_eq!(plan.remove, vec![ours2]);
        assert!(plan.add.is_empty() && plan.refresh.is_empty());
    }

    #[test]
    fn refresh_rules() {
        let cases = [
            // (held expiry, desired, tracking, refreshed?)
            (Some(at(1_000)), at(1_060), TRACKED, false), // within slack
            (Some(at(1_000)), at(1_061), TRACKED, true),  // beyond slack
            (Some(at(1_000)), at(500), TRACKED, false),   // desired earlier
            (Some(at(1_000)), Expiry::Never, TRACKED, true),
            (Some(Expiry::Never), at(5), TRACKED, false),
            (Some(Expiry::Never), Expiry::Never, TRACKED, false),
            (None, at(5_000), TRACKED, false),
            (None, Expiry::Never, TRACKED, false),
            (Some(at(1_000)), Expiry::Never, ExpiryTracking::None, false),
            (Some(at(1_000)), at(9_999), ExpiryTracking::None, false),
            (
                Some(at(1_000)),
                at(1_001),
                ExpiryTracking::Tracked { slack_secs: 0 },
                true,
            ),
            (
                Some(at(i64::MAX - 1)),
                at(i64::MAX),
                ExpiryTracking::Tracked {
                    slack_secs: u64::MAX,
                },
                false,
            ),
        ];
        for (held_expiry, desired_expiry, tracking, refreshed) in cases {
            let h = vec![held("10.0.0.1", held_expiry, Some("1"))];
            let d = desired(&[("10.0.0.1", desired_expiry)]);
            let plan = plan(&d, &h, &Ownership::Exclusive, tracking);
            let want_refresh = if refreshed {
                vec![(h[0].clone(), want("10.0.0.1", desired_expiry))]
            } else {
                vec![]
            };
            assert_eq!(
                plan.refresh, want_refresh,
                "{held_expiry:?} → {desired_expiry:?} under {tracking:?}"
            );
            assert!(plan.add.is_empty() && plan.remove.is_empty());
        }
    }

    #[test]
    fn output_is_in_prefix_order_whatever_the_input_order() {
        let d = desired(&[
            ("10.0.0.9", at(1)),
            ("10.0.0.1", at(1)),
            ("2001:db8::5", at(1)),
            ("10.0.0.5", at(1)),
        ]);
        let h = vec![
            held("10.0.0.8", None, None),
            held("2001:db8::1", None, None),
            held("10.0.0.2", None, None),
            held("10.0.0.5", None, None),
        ];
        let plan = plan(&d, &h, &Ownership::Exclusive, ExpiryTracking::None);
        let added: Vec<_> = plan.add.iter().map(|d| d.prefix.to_string()).collect();
        let removed: Vec<_> = plan.remove.iter().map(|h| h.prefix.to_string()).collect();
        assert_eq!(added, ["10.0.0.1/32", "10.0.0.9/32", "2001:db8::5/128"]);
        assert_eq!(removed, ["10.0.0.2/32", "10.0.0.8/32", "2001:db8::1/128"]);
    }

    #[test]
    fn reshape_refreshes_held_prefixes_whose_sources_changed() {
        // 203.0.113.1: held and still desired (its sources changed) → refreshed.
        // 203.0.113.2: not held yet → the plan adds it; not refreshed as well.
        // 203.0.113.3: no longer desired → the plan removes it; not refreshed.
        // 203.0.113.4: held by someone else on a shared area → left alone.
        let d = desired(&[
            ("203.0.113.1", Expiry::Never),
            ("203.0.113.2", Expiry::Never),
            ("203.0.113.4", Expiry::Never),
        ]);
        let h = [
            held("203.0.113.1", None, None),
            held("203.0.113.3", None, None),
            held("203.0.113.4", None, Some("foreign")),
        ];
        let mut by_prefix: BTreeMap<Prefix, Vec<Held>> = BTreeMap::new();
        for e in &h {
            by_prefix.entry(e.prefix).or_default().push(e.clone());
        }
        let changed: BTreeSet<Prefix> =
            ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]
                .into_iter()
                .map(p)
                .collect();
        let lookup = |x: &Prefix| d.get(x).copied();
        let records = BTreeSet::from([(p("203.0.113.1"), None), (p("203.0.113.3"), None)]);
        let ownership = Ownership::Recorded(&records);
        let mut plan = plan_prefixes(
            &changed,
            &lookup,
            &by_prefix,
            &ownership,
            ExpiryTracking::None,
        );
        assert_eq!(plan.add, vec![want("203.0.113.2", Expiry::Never)]);
        assert_eq!(plan.remove, vec![held("203.0.113.3", None, None)]);
        assert!(plan.refresh.is_empty());
        reshape(&mut plan, &changed, &lookup, &by_prefix, &ownership);
        assert_eq!(
            plan.refresh,
            vec![(
                held("203.0.113.1", None, None),
                want("203.0.113.1", Expiry::Never)
            )]
        );
        // Nothing changed, nothing to reshape.
        let mut empty = Plan::default();
        reshape(
            &mut empty,
            &BTreeSet::new(),
            &lookup,
            &by_prefix,
            &ownership,
        );
        assert!(empty.is_empty());
    }

    #[test]
    fn plan_prefixes_looks_only_at_dirty_prefixes() {
        let d = desired(&[("10.0.0.1", at(100)), ("10.0.0.2", Expiry::Never)]);
        let mut by_prefix: BTreeMap<Prefix, Vec<Held>> = BTreeMap::new();
        for h in [
            held("10.0.0.2", Some(at(5)), None),
            held("10.0.0.3", None, None),
            held("10.0.0.4", None, None),
        ] {
            by_prefix.entry(h.prefix).or_default().push(h);
        }
        let dirty: BTreeSet<Prefix> = [p("10.0.0.1"), p("10.0.0.2"), p("10.0.0.3")].into();
        let lookup = |q: &Prefix| d.get(q).copied();
        let plan = plan_prefixes(&dirty, &lookup, &by_prefix, &Ownership::Exclusive, TRACKED);
        assert_eq!(plan.add, vec![want("10.0.0.1", at(100))]);
        assert_eq!(plan.remove, vec![held("10.0.0.3", None, None)]); // not 10.0.0.4
        assert_eq!(
            plan.refresh,
            vec![(
                held("10.0.0.2", Some(at(5)), None),
                want("10.0.0.2", Expiry::Never)
            )]
        );
        assert!(plan_prefixes(
            &BTreeSet::new(),
            &lookup,
            &by_prefix,
            &Ownership::Exclusive,
            TRACKED
        )
        .is_empty());
    }

    // ---- properties ---------------------------------------------------------------------

    const POOL: [&str; 5] = [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.0/24",
        "2001:db8::1",
        "2001:db8::/48",
    ];
    const HANDLES: [Option<&str>; 3] = [None, Some("1"), Some("2")];

    fn pool_prefix() -> impl Strategy<Value = Prefix> {
        (0..POOL.len()).prop_map(|i| p(POOL[i]))
    }
    fn expiry() -> impl Strategy<Value = Expiry> {
        prop_oneof![4 => (0i64..300).prop_map(at), 1 => Just(Expiry::Never)]
    }
    fn handle() -> impl Strategy<Value = Option<String>> {
        (0..HANDLES.len()).prop_map(|i| HANDLES[i].map(str::to_string))
    }
    fn held_entry() -> impl Strategy<Value = Held> {
        (pool_prefix(), proptest::option::of(expiry()), handle()).prop_map(
            |(prefix, expiry, handle)| Held {
                prefix,
                expiry,
                handle,
            },
        )
    }
    fn tracking() -> impl Strategy<Value = ExpiryTracking> {
        prop_oneof![
            Just(ExpiryTracking::None),
            (0u64..100).prop_map(|slack_secs| ExpiryTracking::Tracked { slack_secs }),
        ]
    }

    #[derive(Debug, Clone)]
    struct Case {
        desired: BTreeMap<Prefix, Expiry>,
        held: Vec<Held>,
        records: BTreeSet<(Prefix, Option<String>)>,
        exclusive: bool,
        tracking: ExpiryTracking,
        dirty: BTreeSet<Prefix>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            proptest::collection::btree_map(pool_prefix(), expiry(), 0..5),
            proptest::collection::vec(held_entry(), 0..8),
            proptest::collection::btree_set((pool_prefix(), handle()), 0..8),
            any::<bool>(),
            tracking(),
            proptest::collection::btree_set(pool_prefix(), 0..5),
        )
            .prop_map(
                |(desired, held, records, exclusive, tracking, dirty)| Case {
                    desired,
                    held,
                    records,
                    exclusive,
                    tracking,
                    dirty,
                },
            )
    }

    /// Carries out `plan` on `held` the way a target would; returns the new held entries and
    /// the new ownership records.
    fn apply(
        plan: &Plan,
        held: &[Held],
        records: &BTreeSet<(Prefix, Option<String>)>,
        tracking: ExpiryTracking,
    ) -> (Vec<Held>, BTreeSet<(Prefix, Option<String>)>) {
        let mut held = held.to_vec();
        for gone in &plan.remove {
            let i = held
                .iter()
                .position(|h| h == gone)
                .expect("removes what is held");
            held.remove(i);
        }
        for (old, new) in &plan.refresh {
            let i = held
                .iter()
                .position(|h| h == old)
                .expect("refreshes what is held");
            held[i].expiry = Some(new.expiry);
        }
        let mut records = records.clone();
        for add in &plan.add {
            let expiry = matches!(tracking, ExpiryTracking::Tracked { .. }).then_some(add.expiry);
            held.push(Held {
                prefix: add.prefix,
                expiry,
                handle: Some("new".into()),
            });
            records.insert((add.prefix, Some("new".into())));
        }
        (held, records)
    }

    proptest! {
        #[test]
        fn plan_prefixes_agrees_with_plan_on_the_dirty_set(c in case()) {
            let ownership = if c.exclusive {
                Ownership::Exclusive
            } else {
                Ownership::Recorded(&c.records)
            };
            let full = plan(&c.desired, &c.held, &ownership, c.tracking);
            let mut by_prefix: BTreeMap<Prefix, Vec<Held>> = BTreeMap::new();
            for h in &c.held {
                by_prefix.entry(h.prefix).or_default().push(h.clone());
            }
            let lookup = |q: &Prefix| c.desired.get(q).copied();
            let partial = plan_prefixes(&c.dirty, &lookup, &by_prefix, &ownership, c.tracking);
            let restricted = Plan {
                add: full.add.iter().filter(|d| c.dirty.contains(&d.prefix)).cloned().collect(),
                remove: full.remove.iter().filter(|h| c.dirty.contains(&h.prefix)).cloned().collect(),
                refresh: full.refresh.iter().filter(|(h, _)| c.dirty.contains(&h.prefix)).cloned().collect(),
            };
            prop_assert_eq!(partial, restricted);

            // Every prefix dirty: the same plan.
            let everything: BTreeSet<Prefix> =
                c.desired.keys().chain(c.held.iter().map(|h| &h.prefix)).copied().collect();
            let all = plan_prefixes(&everything, &lookup, &by_prefix, &ownership, c.tracking);
            prop_assert_eq!(all, full);
        }

        #[test]
        fn carrying_out_a_plan_converges(c in case()) {
            let ownership = if c.exclusive {
                Ownership::Exclusive
            } else {
                Ownership::Recorded(&c.records)
            };
            let first = plan(&c.desired, &c.held, &ownership, c.tracking);
            // Only owned entries are removed or refreshed.
            for h in first.remove.iter().chain(first.refresh.iter().map(|(h, _)| h)) {
                prop_assert!(ownership.owns(h));
            }
            // Output is in prefix order.
            prop_assert!(first.add.windows(2).all(|w| w[0].prefix < w[1].prefix));
            prop_assert!(first.remove.windows(2).all(|w| w[0].prefix <= w[1].prefix));
            prop_assert!(first.refresh.windows(2).all(|w| w[0].0.prefix < w[1].0.prefix));

            let (after, records) = apply(&first, &c.held, &c.records, c.tracking);
            let ownership = if c.exclusive {
                Ownership::Exclusive
            } else {
                Ownership::Recorded(&records)
            };
            // Foreign entries are all still there.
            for h in c.held.iter().filter(|h| !ownership.owns(h)) {
                prop_assert!(after.contains(h));
            }
            // Every desired prefix is held; owned entries hold only desired prefixes, once.
            for q in c.desired.keys() {
                prop_assert!(after.iter().any(|h| h.prefix == *q));
            }
            let mut owned_prefixes = BTreeSet::new();
            for h in after.iter().filter(|h| ownership.owns(h)) {
                prop_assert!(c.desired.contains_key(&h.prefix));
                prop_assert!(owned_prefixes.insert(h.prefix), "two owned entries for {}", h.prefix);
            }
            // And there is nothing left to do.
            let second = plan(&c.desired, &after, &ownership, c.tracking);
            prop_assert!(second.is_empty(), "{:?}", second);
        }
    }
}
