//! Turning a [`Plan`] into one nft transaction, and recovering when the device disagrees.
//!
//! The first attempt trusts the plan. nft refuses a whole transaction for one element that is
//! not where the plan thought (deleting a missing element is an error; so is adding a prefix
//! that overlaps one in an interval set), so after a refusal the driver reads the sets back
//! and [`Transaction::reconcile_with`] adjusts the batch to what is really there:
//!
//! - a remove of an element no longer present is already done;
//! - an add of an element already present is done as it stands (its timeout is left alone);
//! - a refresh deletes whatever is present and adds the element again;
//! - in an interval set, a prefix inside a held broader one cannot be added and is reported
//!   `Failed` (it will fit once the broader one goes); a prefix covering held narrower ones
//!   replaces them in the same transaction, since it bans all they did;
//!
//! and the driver tries once more.

use super::element::{Location, SetName};
use super::listing::Element;
use super::script::Batch;
use crate::{ApplyReport, ItemOutcome, ItemReport, Step};
use netban_core::plan::{Held, Plan};
use netban_core::{Expiry, Prefix, Timestamp};
use std::collections::{HashMap, HashSet};

/// The longest timeout netban gives an element: ten years. A ban longer than that is stored
/// without a timeout (and removed by netban when it ends).
pub const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 86_400;

/// The timeout to give an element for a ban ending at `expiry`: the time left plus `grace`,
/// at least one second (nft reads `timeout 0s` as "no timeout"); `None` for no timeout.
pub fn device_timeout(expiry: Expiry, now: Timestamp, grace: u64) -> Option<u64> {
    match expiry {
        Expiry::Never => None,
        Expiry::At(t) => {
            let total = now.secs_until(t).saturating_add(grace).max(1);
            (total <= MAX_TIMEOUT_SECS).then_some(total)
        }
    }
}

/// The ban expiry an element with `expires` seconds left stands for (the inverse of
/// [`device_timeout`]); no timeout means the ban never expires on the device.
pub fn held_expiry(expires: Option<u64>, now: Timestamp, grace: u64) -> Expiry {
    match expires {
        None => Expiry::Never,
        Some(left) => {
            let left = i64::try_from(left).unwrap_or(i64::MAX);
            let grace = i64::try_from(grace).unwrap_or(i64::MAX);
            Expiry::At(Timestamp(now.0.saturating_add(left).saturating_sub(grace)))
        }
    }
}

/// One item of the plan as this transaction carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Intent {
    prefix: Prefix,
    step: Step,
    /// Elements this item deletes (the held entry; for a refresh after a refusal, whatever
    /// is present).
    delete: Vec<Location>,
    /// The element this item adds, with its timeout.
    add: Option<(Location, Option<u64>)>,
    /// Decided without the device; such an item carries only the operations still wanted.
    outcome: Option<ItemOutcome>,
    /// For adds and refreshes: the entry as held once done.
    held_after: Option<Held>,
}

/// A plan on its way to the device.
#[derive(Clone, Debug)]
pub struct Transaction {
    intents: Vec<Intent>,
    /// Narrower interval elements replaced by a broader one being added.
    replaced: Vec<Location>,
    now: Timestamp,
    grace: u64,
}

impl Transaction {
    pub fn from_plan(plan: &Plan, now: Timestamp, grace: u64) -> Transaction {
        let mut t = Transaction {
            intents: Vec::with_capacity(plan.len()),
            replaced: Vec::new(),
            now,
            grace,
        };
        for held in &plan.remove {
            t.push_removal(held.prefix, Step::Remove, held, None);
        }
        for (held, desired) in &plan.refresh {
            t.push_removal(desired.prefix, Step::Refresh, held, Some(desired.expiry));
        }
        for desired in &plan.add {
            let add = t.add_for(desired.prefix, desired.expiry);
            t.intents.push(Intent {
                prefix: desired.prefix,
                step: Step::Add,
                delete: Vec::new(),
                held_after: Some(t.held_after(desired.prefix, add.1)),
                add: Some(add),
                outcome: None,
            });
        }
        t
    }

    fn push_removal(&mut self, prefix: Prefix, step: Step, held: &Held, then: Option<Expiry>) {
        let mut intent = Intent {
            prefix,
            step,
            delete: Vec::new(),
            add: None,
            outcome: None,
            held_after: None,
        };
        match Location::from_held(&held.prefix, held.handle.as_deref()) {
            Ok(loc) => {
                intent.delete.push(loc);
                if let Some(expiry) = then {
                    let add = self.add_for(prefix, expiry);
                    intent.held_after = Some(self.held_after(prefix, add.1));
                    intent.add = Some(add);
                }
            }
            Err(reason) => intent.outcome = Some(ItemOutcome::Rejected { reason }),
        }
        self.intents.push(intent);
    }

    fn add_for(&self, prefix: Prefix, expiry: Expiry) -> (Location, Option<u64>) {
        (
            Location::canonical(&prefix),
            device_timeout(expiry, self.now, self.grace),
        )
    }

    fn held_after(&self, prefix: Prefix, timeout: Option<u64>) -> Held {
        Held {
            prefix,
            expiry: Some(held_expiry(timeout, self.now, self.grace)),
            handle: None,
        }
    }

    /// The operations to send.
    pub fn batch(&self) -> Batch {
        let mut batch = Batch::default();
        for intent in &self.intents {
            batch.deletes.extend(intent.delete.iter().copied());
            batch.adds.extend(intent.add);
        }
        batch.deletes.extend(self.replaced.iter().copied());
        batch
    }

    /// Narrower elements this transaction replaces with a broader one (not plan items).
    pub fn replaced(&self) -> &[Location] {
        &self.replaced
    }

    /// Adjusts the transaction to the elements really present (see the module documentation).
    pub fn reconcile_with(&mut self, present: &[Element]) {
        let by_location: HashMap<Location, Option<u64>> =
            present.iter().map(|e| (e.location, e.expires)).collect();
        let (now, grace) = (self.now, self.grace);
        for intent in self.intents.iter_mut().filter(|i| i.outcome.is_none()) {
            intent.delete.retain(|loc| by_location.contains_key(loc));
            let Some((loc, _)) = intent.add else {
                if intent.step == Step::Remove && intent.delete.is_empty() {
                    intent.outcome = Some(ItemOutcome::Done { held: None });
                }
                continue;
            };
            let Some(&expires) = by_location.get(&loc) else {
                continue;
            };
            match intent.step {
                Step::Add => {
                    intent.add = None;
                    intent.outcome = Some(ItemOutcome::Done {
                        held: Some(Held {
                            prefix: intent.prefix,
                            expiry: Some(held_expiry(expires, now, grace)),
                            handle: loc.handle(),
                        }),
                    });
                }
                Step::Refresh if !intent.delete.contains(&loc) => intent.delete.push(loc),
                Step::Refresh | Step::Remove => {}
            }
        }
        self.fit_interval_sets(present);
    }

    /// Interval sets refuse overlapping elements: decides, broadest first, which adds fit.
    fn fit_interval_sets(&mut self, present: &[Element]) {
        let deleted: HashSet<Location> = self
            .intents
            .iter()
            .flat_map(|i| i.delete.iter().copied())
            .collect();
        for set in [SetName::Net4, SetName::Net6] {
            let mut held: Vec<Location> = present
                .iter()
                .map(|e| e.location)
                .filter(|l| l.set == set && !deleted.contains(l))
                .collect();
            let mut candidates: Vec<usize> = (0..self.intents.len())
                .filter(|&i| {
                    let intent = &self.intents[i];
                    intent.outcome.is_none() && intent.add.is_some_and(|(l, _)| l.set == set)
                })
                .collect();
            // Broadest first, so a broader add wins over a narrower one in the same plan.
            candidates.sort_by_key(|&i| {
                let (lo, hi) = self.intents[i]
                    .add
                    .map(|(l, _)| l.key.span())
                    .unwrap_or((0, 0));
                std::cmp::Reverse(hi - lo)
            });
            for i in candidates {
                let Some((loc, _)) = self.intents[i].add else {
                    continue;
                };
                let (lo, hi) = loc.key.span();
                let clash = held.iter().find(|h| {
                    let (hl, hh) = h.key.span();
                    let overlaps = hl <= hi && lo <= hh;
                    let covers_it = lo <= hl && hh <= hi && (lo, hi) != (hl, hh);
                    overlaps && !covers_it
                });
                if let Some(other) = clash {
                    let intent = &mut self.intents[i];
                    intent.add = None;
                    intent.held_after = None;
                    intent.outcome = Some(ItemOutcome::Failed {
                        reason: format!(
                            "{} overlaps {} already held in nftables set {}; interval sets \
                             cannot hold overlapping elements, so it is added once that one \
                             is removed (the addresses it shares are banned meanwhile)",
                            intent.prefix,
                            other.key,
                            set.as_str()
                        ),
                    });
                    continue;
                }
                held.retain(|h| {
                    let (hl, hh) = h.key.span();
                    let covered = lo <= hl && hh <= hi;
                    if covered {
                        self.replaced.push(*h);
                    }
                    !covered
                });
                held.push(loc);
            }
        }
    }

    /// The per-item report once the batch has been applied.
    pub fn report(self) -> ApplyReport {
        let items = self
            .intents
            .into_iter()
            .map(|intent| ItemReport {
                prefix: intent.prefix,
                step: intent.step,
                result: intent.outcome.unwrap_or(ItemOutcome::Done {
                    held: intent.held_after,
                }),
            })
            .collect();
        ApplyReport { items }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::element::Key;
    use netban_core::plan::Desired;

    const NOW: Timestamp = Timestamp(1_700_000_000);
    const GRACE: u64 = 60;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn at(secs_from_now: i64) -> Expiry {
        Expiry::At(Timestamp(NOW.0 + secs_from_now))
    }
    fn desired(s: &str, expiry: Expiry) -> Desired {
        Desired::new(p(s), expiry)
    }
    fn held(s: &str) -> Held {
        Held {
            prefix: p(s),
            expiry: Some(at(100)),
            handle: None,
        }
    }
    fn present(s: &str, expires: Option<u64>) -> Element {
        Element {
            location: Location::canonical(&p(s)),
            expires,
        }
    }
    fn loc(s: &str) -> Location {
        Location::canonical(&p(s))
    }
    fn results(t: Transaction) -> Vec<(String, Step, ItemOutcome)> {
        t.report()
            .items
            .into_iter()
            .map(|i| (i.prefix.to_string(), i.step, i.result))
            .collect()
    }

    #[test]
    fn timeouts_are_remaining_time_plus_grace() {
        assert_eq!(device_timeout(at(3600), NOW, 60), Some(3660));
        assert_eq!(device_timeout(Expiry::Never, NOW, 60), None);
        // Already over: only the grace; never 0 (which nft reads as "no timeout").
        assert_eq!(device_timeout(at(-50), NOW, 60), Some(60));
        assert_eq!(device_timeout(at(0), NOW, 0), Some(1));
        // Beyond ten years: no timeout at all rather than an absurd one.
        let far = at(i64::try_from(MAX_TIMEOUT_SECS).unwrap());
        assert_eq!(device_timeout(far, NOW, 60), None);
        assert_eq!(device_timeout(at(i64::MAX - NOW.0), NOW, 60), None);
    }

    #[test]
    fn held_expiry_inverts_device_timeout() {
        for secs in [1, 59, 3600, 86_400 * 400] {
            let timeout = device_timeout(at(secs), NOW, GRACE);
            assert_eq!(held_expiry(timeout, NOW, GRACE), at(secs));
        }
        assert_eq!(held_expiry(None, NOW, GRACE), Expiry::Never);
        // Kept past the ban's end by the grace: reads as already over.
        assert_eq!(held_expiry(Some(10), NOW, GRACE), at(-50));
        assert_eq!(
            held_expiry(Some(u64::MAX), NOW, GRACE),
            Expiry::At(Timestamp(i64::MAX - 60))
        );
    }

    #[test]
    fn first_attempt_follows_the_plan() {
        let plan = Plan {
            add: vec![
                desired("203.0.113.7", at(3600)),
                desired("2001:db8::/48", Expiry::Never),
            ],
            remove: vec![held("203.0.113.9")],
            refresh: vec![(held("2001:db8::5"), desired("2001:db8::5", at(7200)))],
        };
        let t = Transaction::from_plan(&plan, NOW, GRACE);
        assert_eq!(
            t.batch(),
            Batch {
                deletes: vec![loc("203.0.113.9"), loc("2001:db8::5")],
                adds: vec![
                    (loc("2001:db8::5"), Some(7260)),
                    (loc("203.0.113.7"), Some(3660)),
                    (loc("2001:db8::/48"), None),
                ],
            }
        );
        let r = results(t);
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            (
                "203.0.113.9/32".into(),
                Step::Remove,
                ItemOutcome::Done { held: None }
            )
        );
        assert_eq!(r[1].1, Step::Refresh);
        assert_eq!(
            r[2].2,
            ItemOutcome::Done {
                held: Some(Held {
                    prefix: p("203.0.113.7"),
                    expiry: Some(at(3600)),
                    handle: None
                })
            }
        );
        assert_eq!(
            r[3].2,
            ItemOutcome::Done {
                held: Some(Held {
                    prefix: p("2001:db8::/48"),
                    expiry: Some(Expiry::Never),
                    handle: None
                })
            }
        );
    }

    #[test]
    fn handles_locate_odd_elements_and_bad_ones_are_rejected() {
        let mut odd = held("203.0.113.7");
        odd.handle = Some("net4 203.0.113.7".into());
        let mut bad = held("203.0.113.8");
        bad.handle = Some("net4 203.0.113.8 }; flush ruleset".into());
        let plan = Plan {
            remove: vec![odd, bad],
            ..Plan::default()
        };
        let t = Transaction::from_plan(&plan, NOW, GRACE);
        assert_eq!(
            t.batch().deletes,
            vec![Location {
                set: SetName::Net4,
                key: Key::of(&p("203.0.113.7"))
            }]
        );
        let r = results(t);
        assert!(matches!(r[1].2, ItemOutcome::Rejected { .. }), "{r:?}");
    }

    #[test]
    fn after_a_refusal_missing_deletes_and_present_adds_are_dropped() {
        let plan = Plan {
            add: vec![
                desired("203.0.113.7", at(3600)),
                desired("203.0.113.8", at(3600)),
            ],
            remove: vec![held("203.0.113.9"), held("203.0.113.10")],
            refresh: vec![
                (held("203.0.113.11"), desired("203.0.113.11", at(7200))),
                (held("203.0.113.12"), desired("203.0.113.12", at(7200))),
            ],
        };
        let mut t = Transaction::from_plan(&plan, NOW, GRACE);
        t.reconcile_with(&[
            present("203.0.113.7", Some(100)), // added meanwhile
            present("203.0.113.10", None),     // still there
            present("203.0.113.12", Some(5)),  // refresh target present
            present("198.51.100.1", None),     // unrelated
        ]);
        assert_eq!(
            t.batch(),
            Batch {
                deletes: vec![loc("203.0.113.10"), loc("203.0.113.12")],
                adds: vec![
                    (loc("203.0.113.11"), Some(7260)),
                    (loc("203.0.113.12"), Some(7260)),
                    (loc("203.0.113.8"), Some(3660)),
                ],
            }
        );
        let r = results(t);
        assert_eq!(
            r[0].2,
            ItemOutcome::Done { held: None },
            "missing = removed"
        );
        assert_eq!(
            r[4].2,
            ItemOutcome::Done {
                held: Some(Held {
                    prefix: p("203.0.113.7"),
                    expiry: Some(at(40)),
                    handle: None
                })
            },
            "an element already present is reported as it is"
        );
    }

    #[test]
    fn interval_overlaps_broadest_wins() {
        let plan = Plan {
            add: vec![
                desired("203.0.113.0/25", at(600)),
                desired("203.0.0.0/16", at(600)),
                desired("198.51.100.0/26", at(600)),
                desired("2001:db8:1::/48", at(600)),
            ],
            ..Plan::default()
        };
        let mut t = Transaction::from_plan(&plan, NOW, GRACE);
        t.reconcile_with(&[
            present("203.0.113.0/24", Some(600)),
            present("198.51.100.0/24", None),
            present("2001:db8::/32", None),
            present("203.0.113.5", None), // hash set: never conflicts
        ]);
        let batch = t.batch();
        assert_eq!(batch.adds, vec![(loc("203.0.0.0/16"), Some(660))]);
        assert_eq!(
            batch.deletes,
            vec![loc("203.0.113.0/24")],
            "replaced by the /16"
        );
        assert_eq!(t.replaced(), &[loc("203.0.113.0/24")]);
        let r = results(t);
        for i in [0, 2, 3] {
            assert!(
                matches!(&r[i].2, ItemOutcome::Failed { reason } if reason.contains("overlaps")),
                "{:?}",
                r[i]
            );
        }
        assert!(matches!(r[1].2, ItemOutcome::Done { held: Some(_) }));
    }

    #[test]
    fn partial_overlap_with_a_range_fails_the_add() {
        let plan = Plan {
            add: vec![desired("10.0.0.4/30", at(600))],
            ..Plan::default()
        };
        let mut t = Transaction::from_plan(&plan, NOW, GRACE);
        t.reconcile_with(&[Element {
            location: Location {
                set: SetName::Net4,
                key: Key::Range("10.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()),
            },
            expires: None,
        }]);
        assert!(t.batch().is_empty());
        assert!(matches!(results(t)[0].2, ItemOutcome::Failed { .. }));
    }

    #[test]
    fn refresh_of_a_vanished_element_just_adds() {
        let plan = Plan {
            refresh: vec![(held("203.0.113.0/24"), desired("203.0.113.0/24", at(900)))],
            ..Plan::default()
        };
        let mut t = Transaction::from_plan(&plan, NOW, GRACE);
        t.reconcile_with(&[]);
        assert_eq!(
            t.batch(),
            Batch {
                deletes: vec![],
                adds: vec![(loc("203.0.113.0/24"), Some(960))]
            }
        );
    }
}
