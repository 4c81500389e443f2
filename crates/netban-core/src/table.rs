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
//!
//! Layout: a `BTreeMap` from prefix to a compact slot list. The common case, a prefix banned
//! by one source, is stored inline (a source id and an expiry, no heap allocation of its own);
//! a prefix banned by several sources keeps a boxed slice sorted by source name. Source ids
//! index an interning table; interned sources are never forgotten (they are jail names, a
//! small and stable set).

use crate::ban::{Expiry, Source};
use crate::prefix::{Family, Prefix};
use crate::time::Timestamp;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

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

/// An interned source.
type SourceId = u32;

/// One source's ban of a prefix, packed into 16 bytes (an `(u32, Expiry)` pair takes 24).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    at: i64,
    id: SourceId,
    never: bool,
}

impl Slot {
    fn new(id: SourceId, expiry: Expiry) -> Slot {
        match expiry {
            Expiry::At(t) => Slot {
                at: t.0,
                id,
                never: false,
            },
            Expiry::Never => Slot {
                at: 0,
                id,
                never: true,
            },
        }
    }

    fn expiry(self) -> Expiry {
        if self.never {
            Expiry::Never
        } else {
            Expiry::At(Timestamp(self.at))
        }
    }
}

/// The per-source bans of one prefix. Never empty: a prefix without bans has no slots at all.
/// 16 bytes: the single-source case inline, the rare multi-source case behind one pointer.
#[derive(Clone, Debug)]
enum Slots {
    /// One source (the common case), stored inline.
    One(Slot),
    /// Two or more sources, sorted by source name, no id twice. Boxed so the variant is one
    /// thin pointer and `Slots` stays 16 bytes (a bare `Vec` or boxed slice makes it 24).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Slot>>),
}

impl Slots {
    fn as_slice(&self) -> &[Slot] {
        match self {
            Slots::One(slot) => std::slice::from_ref(slot),
            Slots::Many(slots) => slots,
        }
    }

    /// Builds slots from slots with distinct ids; `None` if there are none.
    fn from_vec(mut slots: Vec<Slot>, sources: &[Source]) -> Option<Slots> {
        match slots.len() {
            0 => None,
            1 => Some(Slots::One(slots[0])),
            _ => {
                slots.sort_by(|a, b| sources[a.id as usize].cmp(&sources[b.id as usize]));
                slots.shrink_to_fit();
                Some(Slots::Many(Box::new(slots)))
            }
        }
    }

    fn get(&self, id: SourceId) -> Option<Expiry> {
        self.as_slice()
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.expiry())
    }

    /// The effective expiry over every source.
    fn max_all(&self) -> Expiry {
        match self {
            Slots::One(slot) => slot.expiry(),
            Slots::Many(slots) => slots
                .iter()
                .map(|s| s.expiry())
                .max()
                .expect("Many holds at least two slots"),
        }
    }

    /// The effective expiry over the sources `in_scope` accepts.
    fn max_where(&self, in_scope: impl Fn(SourceId) -> bool) -> Option<Expiry> {
        self.as_slice()
            .iter()
            .filter(|s| in_scope(s.id))
            .map(|s| s.expiry())
            .max()
    }
}

/// All active bans, indexed by prefix.
#[derive(Debug, Default)]
pub struct BanTable {
    entries: BTreeMap<Prefix, Slots>,
    /// Interned sources; a [`SourceId`] indexes this.
    sources: Vec<Source>,
    source_ids: HashMap<Source, SourceId>,
    /// Number of (prefix, source) bans.
    pairs: usize,
    /// (prefix, source) bans per source (indexed by [`SourceId`]) and family (IPv4, IPv6),
    /// kept by every mutation so that counting them (a metrics scrape) is not a scan of a
    /// million bans under the engine's lock.
    per_source: Vec<[usize; 2]>,
}

fn family_index(prefix: &Prefix) -> usize {
    match prefix.family() {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

impl BanTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn intern(&mut self, source: &Source) -> SourceId {
        if let Some(id) = self.source_ids.get(source) {
            return *id;
        }
        let id = SourceId::try_from(self.sources.len()).expect("fewer than 2^32 distinct sources");
        self.sources.push(source.clone());
        self.source_ids.insert(source.clone(), id);
        self.per_source.push([0, 0]);
        id
    }

    /// One (prefix, source) ban more.
    fn counted(&mut self, prefix: &Prefix, id: SourceId) {
        self.pairs += 1;
        self.per_source[id as usize][family_index(prefix)] += 1;
    }

    /// One (prefix, source) ban less.
    fn uncounted(&mut self, prefix: &Prefix, id: SourceId) {
        self.pairs -= 1;
        self.per_source[id as usize][family_index(prefix)] -= 1;
    }

    /// Writes `source`'s ban on `prefix` to `new(old)`, where `old` is its current expiry.
    fn write(
        &mut self,
        prefix: Prefix,
        source: &Source,
        new: impl FnOnce(Option<Expiry>) -> Expiry,
    ) -> EffectiveChange {
        let id = self.intern(source);
        let sources = &self.sources;
        let mut added = false;
        let (before, after) = match self.entries.entry(prefix) {
            Entry::Vacant(slot) => {
                let expiry = new(None);
                slot.insert(Slots::One(Slot::new(id, expiry)));
                added = true;
                (None, Some(expiry))
            }
            Entry::Occupied(mut slot) => {
                let slots = slot.get_mut();
                let before = slots.max_all();
                let existing = match slots {
                    Slots::One(one) => Some(one).filter(|s| s.id == id),
                    Slots::Many(many) => many.iter_mut().find(|s| s.id == id),
                };
                match existing {
                    Some(slot) => *slot = Slot::new(id, new(Some(slot.expiry()))),
                    None => {
                        let mut grown = slots.as_slice().to_vec();
                        grown.push(Slot::new(id, new(None)));
                        *slots = Slots::from_vec(grown, sources).expect("not empty");
                        added = true;
                    }
                }
                (Some(before), Some(slots.max_all()))
            }
        };
        if added {
            self.counted(&prefix, id);
        }
        EffectiveChange {
            prefix,
            before,
            after,
        }
    }

    /// Records that `source` bans `prefix` until `expiry`. If that source already bans the
    /// prefix, the later of the two expiries is kept (a re-ban never shortens a ban).
    pub fn insert(&mut self, prefix: Prefix, source: &Source, expiry: Expiry) -> EffectiveChange {
        self.write(prefix, source, |old| {
            old.map_or(expiry, |old| old.max(expiry))
        })
    }

    /// Sets `source`'s ban on `prefix` to exactly `expiry` (used when replaying the ledger).
    pub fn set(&mut self, prefix: Prefix, source: &Source, expiry: Expiry) -> EffectiveChange {
        self.write(prefix, source, |_| expiry)
    }

    /// Removes `source`'s ban on `prefix`, or every source's ban when `source` is `None`.
    pub fn remove(&mut self, prefix: Prefix, source: Option<&Source>) -> EffectiveChange {
        let unchanged = |before| EffectiveChange {
            prefix,
            before,
            after: before,
        };
        let Entry::Occupied(mut slot) = self.entries.entry(prefix) else {
            return unchanged(None);
        };
        let before = Some(slot.get().max_all());
        let after = match source {
            None => {
                for gone in slot.remove().as_slice() {
                    self.uncounted(&prefix, gone.id);
                }
                None
            }
            Some(source) => {
                let Some(&id) = self.source_ids.get(source) else {
                    return unchanged(before);
                };
                if slot.get().get(id).is_none() {
                    return unchanged(before);
                }
                let rest: Vec<Slot> = slot
                    .get()
                    .as_slice()
                    .iter()
                    .copied()
                    .filter(|s| s.id != id)
                    .collect();
                let after = match Slots::from_vec(rest, &self.sources) {
                    Some(slots) => {
                        let after = slots.max_all();
                        *slot.get_mut() = slots;
                        Some(after)
                    }
                    None => {
                        slot.remove();
                        None
                    }
                };
                self.uncounted(&prefix, id);
                after
            }
        };
        EffectiveChange {
            prefix,
            before,
            after,
        }
    }

    /// Removes every (prefix, source) ban whose expiry is at or before `now`; returns one
    /// change per prefix whose effective ban changed, and the (prefix, source) pairs removed.
    ///
    /// Both lists are in prefix order (removed pairs of one prefix in source order). A prefix
    /// that lost an expired source but keeps the same effective expiry through another source
    /// (say an expired 10-minute ban under a permanent one) yields no change.
    pub fn expire(&mut self, now: Timestamp) -> (Vec<EffectiveChange>, Vec<(Prefix, Source)>) {
        let mut changes = Vec::new();
        let mut removed = Vec::new();
        let mut gone_ids = Vec::new();
        let sources = &self.sources;
        self.entries.retain(|prefix, slots| {
            if !slots.as_slice().iter().any(|s| s.expiry().is_past(now)) {
                return true;
            }
            let before = Some(slots.max_all());
            let (gone, kept): (Vec<Slot>, Vec<Slot>) = slots
                .as_slice()
                .iter()
                .partition(|s| s.expiry().is_past(now));
            removed.extend(
                gone.iter()
                    .map(|s| (*prefix, sources[s.id as usize].clone())),
            );
            gone_ids.extend(gone.iter().map(|s| (*prefix, s.id)));
            let kept = Slots::from_vec(kept, sources);
            let after = kept.as_ref().map(Slots::max_all);
            if before != after {
                changes.push(EffectiveChange {
                    prefix: *prefix,
                    before,
                    after,
                });
            }
            match kept {
                Some(kept) => {
                    *slots = kept;
                    true
                }
                None => false,
            }
        });
        for (prefix, id) in gone_ids {
            self.uncounted(&prefix, id);
        }
        (changes, removed)
    }

    /// One flag per interned source: does `in_scope` accept it? Lets a scan over every prefix
    /// ask the predicate once per source instead of once per ban.
    fn scope_mask(&self, in_scope: impl Fn(&Source) -> bool) -> Vec<bool> {
        self.sources.iter().map(in_scope).collect()
    }

    /// The effective expiry of `prefix`, counting only sources `in_scope` accepts.
    pub fn effective(&self, prefix: &Prefix, in_scope: impl Fn(&Source) -> bool) -> Option<Expiry> {
        self.entries
            .get(prefix)?
            .max_where(|id| in_scope(&self.sources[id as usize]))
    }

    /// The effective expiry of `prefix` over all sources (`None` if not banned).
    pub fn effective_all(&self, prefix: &Prefix) -> Option<Expiry> {
        self.entries.get(prefix).map(Slots::max_all)
    }

    /// True if any source bans `prefix`.
    pub fn contains(&self, prefix: &Prefix) -> bool {
        self.entries.contains_key(prefix)
    }

    /// `source`'s own ban on `prefix`, if any.
    pub fn get(&self, prefix: &Prefix, source: &Source) -> Option<Expiry> {
        let id = *self.source_ids.get(source)?;
        self.entries.get(prefix)?.get(id)
    }

    /// Every banned prefix with its effective expiry over all sources, in prefix order.
    pub fn iter_effective(&self) -> Box<dyn Iterator<Item = (Prefix, Expiry)> + '_> {
        Box::new(self.entries.iter().map(|(p, s)| (*p, s.max_all())))
    }

    /// Every prefix banned by at least one source `in_scope` accepts, with its effective
    /// expiry over those sources, in prefix order. `in_scope` is asked once per known source,
    /// when this is called, so it must not depend on anything but the source.
    pub fn iter_effective_in_scope<'a>(
        &'a self,
        in_scope: impl Fn(&Source) -> bool,
    ) -> impl Iterator<Item = (Prefix, Expiry)> + 'a {
        let mask = self.scope_mask(in_scope);
        self.entries
            .iter()
            .filter_map(move |(p, s)| s.max_where(|id| mask[id as usize]).map(|e| (*p, e)))
    }

    /// Every banned prefix with its per-source bans (sorted by source), in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (Prefix, SourceExpiries)> + '_ {
        self.entries.iter().map(|(p, s)| (*p, self.expand(s)))
    }

    /// Every (prefix, source) ban, in prefix order then source order; no allocation per item.
    pub fn iter_bans(&self) -> impl Iterator<Item = (Prefix, &Source, Expiry)> + '_ {
        self.entries.iter().flat_map(move |(p, s)| {
            s.as_slice()
                .iter()
                .map(move |s| (*p, &self.sources[s.id as usize], s.expiry()))
        })
    }

    fn expand(&self, slots: &Slots) -> SourceExpiries {
        slots
            .as_slice()
            .iter()
            .map(|s| (self.sources[s.id as usize].clone(), s.expiry()))
            .collect()
    }

    /// The per-source bans of `prefix` (empty if not banned), sorted by source.
    pub fn sources(&self, prefix: &Prefix) -> SourceExpiries {
        self.entries
            .get(prefix)
            .map(|s| self.expand(s))
            .unwrap_or_default()
    }

    /// Number of banned prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Number of (prefix, source) bans (at least [`Self::len`]).
    pub fn ban_count(&self) -> usize {
        self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of (prefix, source) bans of each source and family that has any, kept as
    /// the table changes: linear in the sources, not the bans.
    pub fn counts_by_source(&self) -> impl Iterator<Item = (Family, &Source, usize)> + '_ {
        self.sources
            .iter()
            .zip(&self.per_source)
            .flat_map(|(source, [v4, v6])| [(Family::V4, source, *v4), (Family::V6, source, *v6)])
            .filter(|(_, _, n)| *n > 0)
    }

    /// The earliest expiry of any (prefix, source) ban, to know when to call [`Self::expire`].
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.entries
            .values()
            .flat_map(|s| s.as_slice().iter())
            .filter_map(|s| match s.expiry() {
                Expiry::At(t) => Some(t),
                Expiry::Never => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn src(s: &str) -> Source {
        Source::new(s).unwrap()
    }
    fn at(t: i64) -> Expiry {
        Expiry::At(Timestamp(t))
    }

    #[test]
    fn slots_stay_small() {
        // The memory budget (a million prefixes in ~100 MB) relies on the inline single-source
        // case: an expiry plus a source id, with the multi-source variant no bigger.
        assert_eq!(std::mem::size_of::<Slots>(), 16);
        for e in [at(i64::MIN), at(0), at(i64::MAX), Expiry::Never] {
            assert_eq!(Slot::new(7, e).expiry(), e);
        }
    }

    #[test]
    fn seed_scenario_recidive_outlives_sshd() {
        let mut t = BanTable::new();
        let x = p("203.0.113.7");
        let (sshd, recidive) = (src("sshd"), src("recidive"));

        let c = t.insert(x, &sshd, at(600));
        assert_eq!((c.before, c.after), (None, Some(at(600))));
        assert!(c.is_effective());
        let c = t.insert(x, &recidive, at(604_800));
        assert_eq!((c.before, c.after), (Some(at(600)), Some(at(604_800))));
        assert_eq!(t.len(), 1);
        assert_eq!(t.ban_count(), 2);

        // sshd's unban does not lift recidive's ban.
        let c = t.remove(x, Some(&sshd));
        assert_eq!((c.before, c.after), (Some(at(604_800)), Some(at(604_800))));
        assert!(!c.is_effective());
        assert_eq!(t.sources(&x), vec![(recidive.clone(), at(604_800))]);

        let (changes, removed) = t.expire(Timestamp(601));
        assert!(changes.is_empty() && removed.is_empty());
        assert_eq!(t.effective_all(&x), Some(at(604_800)));
        assert_eq!(t.next_expiry(), Some(Timestamp(604_800)));

        let (changes, removed) = t.expire(Timestamp(604_800));
        assert_eq!(
            changes,
            vec![EffectiveChange {
                prefix: x,
                before: Some(at(604_800)),
                after: None
            }]
        );
        assert_eq!(removed, vec![(x, recidive)]);
        assert!(t.is_empty());
        assert_eq!(t.ban_count(), 0);
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn seed_scenario_when_sshd_expires_instead_of_being_removed() {
        let mut t = BanTable::new();
        let x = p("203.0.113.7");
        t.insert(x, &src("sshd"), at(600));
        t.insert(x, &src("recidive"), at(604_800));
        let (changes, removed) = t.expire(Timestamp(600));
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(removed, vec![(x, src("sshd"))]);
        assert_eq!(t.effective_all(&x), Some(at(604_800)));
    }

    #[test]
    fn insert_keeps_the_later_expiry_and_set_is_exact() {
        let mut t = BanTable::new();
        let x = p("198.51.100.0/24");
        let s = src("sshd");
        t.insert(x, &s, at(100));
        let c = t.insert(x, &s, at(50));
        assert!(!c.is_effective());
        assert_eq!(t.get(&x, &s), Some(at(100)));
        let c = t.insert(x, &s, Expiry::Never);
        assert_eq!((c.before, c.after), (Some(at(100)), Some(Expiry::Never)));
        let c = t.insert(x, &s, at(1_000));
        assert!(!c.is_effective());
        assert_eq!(t.get(&x, &s), Some(Expiry::Never));

        let c = t.set(x, &s, at(50));
        assert_eq!((c.before, c.after), (Some(Expiry::Never), Some(at(50))));
        assert_eq!(t.get(&x, &s), Some(at(50)));
        assert_eq!(t.ban_count(), 1);
    }

    #[test]
    fn set_on_one_of_many_sources() {
        let mut t = BanTable::new();
        let x = p("2001:db8::1");
        t.set(x, &src("b"), at(10));
        t.set(x, &src("a"), at(20));
        t.set(x, &src("c"), at(30));
        let c = t.set(x, &src("c"), at(5));
        assert_eq!((c.before, c.after), (Some(at(30)), Some(at(20))));
        assert_eq!(
            t.sources(&x),
            vec![(src("a"), at(20)), (src("b"), at(10)), (src("c"), at(5))]
        );
        assert_eq!(t.ban_count(), 3);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn remove_all_sources_and_unknowns() {
        let mut t = BanTable::new();
        let x = p("192.0.2.1");
        let y = p("192.0.2.2");
        t.insert(x, &src("sshd"), at(10));
        t.insert(x, &src("manual"), Expiry::Never);
        t.insert(y, &src("sshd"), at(10));

        // Unknown source, unbanned prefix, source that does not ban this prefix: no change.
        let c = t.remove(x, Some(&src("nginx")));
        assert_eq!(
            (c.before, c.after),
            (Some(Expiry::Never), Some(Expiry::Never))
        );
        let c = t.remove(p("192.0.2.3"), None);
        assert_eq!((c.before, c.after), (None, None));
        let c = t.remove(y, Some(&src("manual")));
        assert_eq!((c.before, c.after), (Some(at(10)), Some(at(10))));
        assert_eq!(t.ban_count(), 3);

        let c = t.remove(x, None);
        assert_eq!((c.before, c.after), (Some(Expiry::Never), None));
        assert!(c.is_effective());
        assert!(!t.contains(&x));
        assert!(t.sources(&x).is_empty());
        assert_eq!(t.len(), 1);
        assert_eq!(t.ban_count(), 1);

        let c = t.remove(y, Some(&src("sshd")));
        assert_eq!((c.before, c.after), (Some(at(10)), None));
        assert!(t.is_empty());
        assert_eq!(t.ban_count(), 0);
    }

    #[test]
    fn effective_in_scope_filters_sources() {
        let mut t = BanTable::new();
        let x = p("203.0.113.0/24");
        let y = p("203.0.113.9");
        t.insert(x, &src("sshd"), at(600));
        t.insert(x, &src("recidive"), Expiry::Never);
        t.insert(y, &src("recidive"), at(900));

        let only_sshd = |s: &Source| s.as_str() == "sshd";
        assert_eq!(t.effective(&x, only_sshd), Some(at(600)));
        assert_eq!(t.effective(&y, only_sshd), None);
        assert_eq!(t.effective(&x, |_| true), Some(Expiry::Never));
        assert_eq!(t.effective(&p("10.0.0.1"), |_| true), None);

        let scoped: Vec<_> = t.iter_effective_in_scope(only_sshd).collect();
        assert_eq!(scoped, vec![(x, at(600))]);
        let all: Vec<_> = t.iter_effective_in_scope(|_| true).collect();
        assert_eq!(all, t.iter_effective().collect::<Vec<_>>());
        assert_eq!(all, vec![(x, Expiry::Never), (y, at(900))]);
        assert_eq!(t.iter_effective_in_scope(|_| false).count(), 0);
    }

    #[test]
    fn listing_is_in_prefix_then_source_order() {
        let mut t = BanTable::new();
        let a = p("10.0.0.2");
        let b = p("10.0.0.1");
        let c = p("2001:db8::/48");
        t.insert(a, &src("zz"), at(1));
        t.insert(a, &src("aa"), at(2));
        t.insert(c, &src("mm"), at(3));
        t.insert(b, &src("mm"), at(4));
        let listed: Vec<_> = t.iter().collect();
        assert_eq!(
            listed,
            vec![
                (b, vec![(src("mm"), at(4))]),
                (a, vec![(src("aa"), at(2)), (src("zz"), at(1))]),
                (c, vec![(src("mm"), at(3))]),
            ]
        );
        let flat: Vec<_> = t.iter_bans().map(|(p, s, e)| (p, s.clone(), e)).collect();
        let expanded: Vec<_> = listed
            .into_iter()
            .flat_map(|(p, v)| v.into_iter().map(move |(s, e)| (p, s, e)))
            .collect();
        assert_eq!(flat, expanded);
        assert_eq!(t.next_expiry(), Some(Timestamp(1)));
    }

    #[test]
    fn expire_reports_only_effective_changes() {
        let mut t = BanTable::new();
        let (a, b, c, d) = (p("10.0.0.1"), p("10.0.0.2"), p("10.0.0.3"), p("10.0.0.4"));
        t.insert(a, &src("s1"), at(10)); // lifted at 10
        t.insert(b, &src("s1"), at(10)); // s1 ends at 10, s2 keeps it banned until 20
        t.insert(b, &src("s2"), at(20));
        t.insert(c, &src("s1"), at(20)); // s2 ends first, s1 keeps it banned until 20
        t.insert(c, &src("s2"), at(5));
        t.insert(d, &src("s1"), Expiry::Never); // permanent under a short ban
        t.insert(d, &src("s2"), at(1));

        let (changes, removed) = t.expire(Timestamp(10));
        assert_eq!(
            changes,
            vec![EffectiveChange {
                prefix: a,
                before: Some(at(10)),
                after: None
            }]
        );
        assert_eq!(
            removed,
            vec![
                (a, src("s1")),
                (b, src("s1")),
                (c, src("s2")),
                (d, src("s2"))
            ]
        );
        assert_eq!(t.ban_count(), 3);
        assert_eq!(t.len(), 3);

        // b: s2 until 30 and s3 until 15; expiring s3 changes nothing effective.
        t.insert(b, &src("s3"), at(15));
        t.set(b, &src("s2"), at(30));
        let (changes, _) = t.expire(Timestamp(15));
        assert!(changes.is_empty(), "{changes:?}");
        let (changes, removed) = t.expire(Timestamp(30));
        assert_eq!(
            changes,
            vec![
                EffectiveChange {
                    prefix: b,
                    before: Some(at(30)),
                    after: None
                },
                EffectiveChange {
                    prefix: c,
                    before: Some(at(20)),
                    after: None
                },
            ]
        );
        assert_eq!(removed, vec![(b, src("s2")), (c, src("s1"))]);
        assert_eq!(
            t.iter_effective().collect::<Vec<_>>(),
            vec![(d, Expiry::Never)]
        );
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn expire_never_shortens_an_effective_ban_it_keeps() {
        // The effective expiry is the latest source's, so an expiry pass either leaves it as it
        // is (a shorter source ended) or lifts the prefix (the last source ended).
        let mut t = BanTable::new();
        let x = p("10.1.0.0/24");
        t.insert(x, &src("a"), at(5));
        t.insert(x, &src("b"), at(6));
        t.insert(x, &src("c"), at(7));
        let (changes, removed) = t.expire(Timestamp(6));
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(removed, vec![(x, src("a")), (x, src("b"))]);
        assert_eq!(t.sources(&x), vec![(src("c"), at(7))]);
        let (changes, _) = t.expire(Timestamp(7));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].after, None);
    }

    // ---- model-based property test ------------------------------------------------------

    #[derive(Clone, Debug)]
    enum Op {
        Insert(usize, usize, Expiry),
        Set(usize, usize, Expiry),
        Remove(usize, Option<usize>),
        Expire(i64),
    }

    const PREFIXES: [&str; 5] = [
        "10.0.0.1",
        "10.0.0.0/24",
        "192.0.2.7",
        "2001:db8::1",
        "2001:db8::/48",
    ];
    const SOURCES: [&str; 4] = ["sshd", "recidive", "manual", "nginx"];

    fn expiry() -> impl Strategy<Value = Expiry> {
        prop_oneof![
            4 => (0i64..40).prop_map(at),
            1 => Just(Expiry::Never),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let pi = 0..PREFIXES.len();
        let si = 0..SOURCES.len();
        prop_oneof![
            4 => (pi.clone(), si.clone(), expiry()).prop_map(|(p, s, e)| Op::Insert(p, s, e)),
            2 => (pi.clone(), si.clone(), expiry()).prop_map(|(p, s, e)| Op::Set(p, s, e)),
            2 => (pi, proptest::option::of(si)).prop_map(|(p, s)| Op::Remove(p, s)),
            1 => (0i64..45).prop_map(Op::Expire),
        ]
    }

    type Model = BTreeMap<(Prefix, Source), Expiry>;

    fn model_effective(m: &Model, prefix: Prefix) -> Option<Expiry> {
        m.iter()
            .filter(|((p, _), _)| *p == prefix)
            .map(|(_, e)| *e)
            .max()
    }

    proptest! {
        #[test]
        fn behaves_like_a_map_of_pairs(ops in proptest::collection::vec(op(), 0..60)) {
            let prefixes: Vec<Prefix> = PREFIXES.iter().map(|s| p(s)).collect();
            let sources: Vec<Source> = SOURCES.iter().map(|s| src(s)).collect();
            let mut t = BanTable::new();
            let mut m = Model::new();
            for op in ops {
                match op {
                    Op::Insert(pi, si, e) | Op::Set(pi, si, e) => {
                        let (px, s) = (prefixes[pi], &sources[si]);
                        let before = model_effective(&m, px);
                        let is_insert = matches!(op, Op::Insert(..));
                        let c = if is_insert { t.insert(px, s, e) } else { t.set(px, s, e) };
                        let slot = m.entry((px, s.clone())).or_insert(e);
                        *slot = if is_insert { (*slot).max(e) } else { e };
                        prop_assert_eq!(c, EffectiveChange {
                            prefix: px, before, after: model_effective(&m, px)
                        });
                    }
                    Op::Remove(pi, si) => {
                        let px = prefixes[pi];
                        let before = model_effective(&m, px);
                        let c = t.remove(px, si.map(|i| &sources[i]));
                        m.retain(|(q, s), _| *q != px || si.is_some_and(|i| *s != sources[i]));
                        prop_assert_eq!(c, EffectiveChange {
                            prefix: px, before, after: model_effective(&m, px)
                        });
                    }
                    Op::Expire(now) => {
                        let now = Timestamp(now);
                        let touched: BTreeSet<Prefix> = m.keys().map(|(p, _)| *p).collect();
                        let before: Vec<_> =
                            touched.iter().map(|p| (*p, model_effective(&m, *p))).collect();
                        let want_removed: Vec<_> = m
                            .iter()
                            .filter(|(_, e)| e.is_past(now))
                            .map(|(k, _)| k.clone())
                            .collect();
                        m.retain(|_, e| !e.is_past(now));
                        let want_changes: Vec<_> = before
                            .into_iter()
                            .map(|(p, b)| EffectiveChange { prefix: p, before: b,
                                after: model_effective(&m, p) })
                            .filter(EffectiveChange::is_effective)
                            .collect();
                        let (changes, removed) = t.expire(now);
                        prop_assert_eq!(changes, want_changes);
                        // Model keys sort by (prefix, source name), as the table reports them.
                        prop_assert_eq!(removed, want_removed);
                    }
                }
                // Whole-table invariants after every operation.
                let pairs: Vec<_> = t.iter_bans().map(|(p, s, e)| ((p, s.clone()), e)).collect();
                let want: Vec<_> = m.iter().map(|(k, e)| (k.clone(), *e)).collect();
                prop_assert_eq!(pairs, want);
                prop_assert_eq!(t.ban_count(), m.len());
                // The counts kept per (family, source) are the model's, counted afresh.
                let mut want_counts = BTreeMap::new();
                for (q, s) in m.keys() {
                    *want_counts.entry((q.family(), s.clone())).or_insert(0usize) += 1;
                }
                let counts: BTreeMap<_, _> =
                    t.counts_by_source().map(|(f, s, n)| ((f, s.clone()), n)).collect();
                prop_assert_eq!(counts, want_counts);
                let model_prefixes: BTreeSet<Prefix> = m.keys().map(|(p, _)| *p).collect();
                prop_assert_eq!(t.len(), model_prefixes.len());
                for px in &prefixes {
                    prop_assert_eq!(t.effective_all(px), model_effective(&m, *px));
                    let scoped = t.effective(px, |s| s.as_str() != "recidive");
                    let want = m.iter()
                        .filter(|((q, s), _)| q == px && s.as_str() != "recidive")
                        .map(|(_, e)| *e)
                        .max();
                    prop_assert_eq!(scoped, want);
                }
                let want_next = m.values().filter_map(|e| match e {
                    Expiry::At(t) => Some(*t),
                    Expiry::Never => None,
                }).min();
                prop_assert_eq!(t.next_expiry(), want_next);
            }
        }
    }
}
