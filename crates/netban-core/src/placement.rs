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
use std::cmp::Reverse;
use std::collections::HashSet;

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

/// The sort key of a candidate: smaller ranks higher.
fn rank(c: &Candidate) -> impl Ord {
    (
        Reverse(c.expiry == Expiry::Never),
        Reverse(c.repeat_count),
        Reverse(c.expiry),
        Reverse(c.placed),
        c.prefix,
    )
}

/// Places `candidates` under `capacity` by the rule in the module documentation.
///
/// Each family is placed on its own: the `capacity.of(family)` best-ranked candidates are
/// held, the others overflow. Both lists are sorted by prefix (IPv4 first). A prefix listed
/// more than once competes once, with its best-ranked entry.
pub fn place(candidates: &[Candidate], capacity: Capacity) -> Placement {
    let mut ranked: Vec<&Candidate> = candidates.iter().collect();
    // Family first, so that each family is one contiguous run in rank order.
    ranked.sort_unstable_by_key(|c| (c.prefix.family(), rank(c)));
    let mut seen = HashSet::with_capacity(ranked.len());
    ranked.retain(|c| seen.insert(c.prefix));

    let mut placement = Placement::default();
    for family in [Family::V4, Family::V6] {
        let run: Vec<Prefix> = ranked
            .iter()
            .filter(|c| c.prefix.family() == family)
            .map(|c| c.prefix)
            .collect();
        let slots = capacity.of(family).unwrap_or(usize::MAX).min(run.len());
        placement.held.extend_from_slice(&run[..slots]);
        placement.overflow.extend_from_slice(&run[slots..]);
    }
    placement.held.sort_unstable();
    placement.overflow.sort_unstable();
    placement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(i: u32) -> Prefix {
        Prefix::host(Ipv4Addr::from(0xc633_6400 + i).into()) // 198.51.100.0 + i
    }
    fn v6(i: u32) -> Prefix {
        Prefix::host(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)).into())
    }
    fn at(t: i64) -> Expiry {
        Expiry::At(Timestamp(t))
    }
    fn cand(prefix: Prefix, expiry: Expiry, repeat_count: u32, placed: bool) -> Candidate {
        Candidate {
            prefix,
            expiry,
            repeat_count,
            placed,
        }
    }
    fn sorted(mut v: Vec<Prefix>) -> Vec<Prefix> {
        v.sort();
        v
    }

    #[test]
    fn sixty_into_twenty_with_unbounded_v6() {
        let mut candidates = Vec::new();
        // 0..5: permanent; 5..12: repeat offenders (repeat 2); 12..60: first offences with
        // expiry 1000 + i, so the latest expiries are the highest i.
        for i in 0..60 {
            let (expiry, repeat) = match i {
                0..5 => (Expiry::Never, 0),
                5..12 => (at(500), 2),
                _ => (at(1_000 + i64::from(i)), 0),
            };
            candidates.push(cand(v4(i), expiry, repeat, false));
        }
        for i in 0..30 {
            candidates.push(cand(v6(i), at(10), 0, false));
        }
        // Scramble the input order: the output must not depend on it.
        candidates.reverse();
        candidates.swap(3, 70);

        let placement = place(
            &candidates,
            Capacity {
                v4: Some(20),
                v6: None,
            },
        );
        let want_v4: Vec<Prefix> = (0..12).chain(52..60).map(v4).collect();
        let want_held: Vec<Prefix> = sorted(want_v4.into_iter().chain((0..30).map(v6)).collect());
        assert_eq!(placement.held, want_held);
        assert_eq!(placement.overflow, (12..52).map(v4).collect::<Vec<_>>());
    }

    #[test]
    fn a_permanent_ban_evicts_the_lowest_ranked() {
        let cap = Capacity {
            v4: Some(3),
            v6: Some(0),
        };
        let mut candidates = vec![
            cand(v4(1), at(100), 1, true),
            cand(v4(2), at(300), 0, true),
            cand(v4(3), at(200), 0, true),
        ];
        assert_eq!(place(&candidates, cap).held, vec![v4(1), v4(2), v4(3)]);
        // A new temporary ban ranking lower than all held ones overflows.
        candidates.push(cand(v4(4), at(150), 0, false));
        let p = place(&candidates, cap);
        assert_eq!(
            (p.held.clone(), p.overflow),
            (vec![v4(1), v4(2), v4(3)], vec![v4(4)])
        );
        // A permanent ban takes the slot of the lowest-ranked held ban (earliest expiry among
        // the first offences).
        candidates.push(cand(v4(9), Expiry::Never, 0, false));
        let p = place(&candidates, cap);
        assert_eq!(p.held, vec![v4(1), v4(2), v4(9)]);
        assert_eq!(p.overflow, vec![v4(3), v4(4)]);
        // IPv6 with no slots: everything overflows.
        let p = place(&[cand(v6(1), Expiry::Never, 9, true)], cap);
        assert_eq!((p.held, p.overflow), (vec![], vec![v6(1)]));
    }

    #[test]
    fn repeat_offenders_beat_longer_bans_and_permanent_beats_both() {
        let cap = Capacity {
            v4: Some(1),
            v6: None,
        };
        let a = cand(v4(1), at(1_000_000), 0, true);
        let b = cand(v4(2), at(10), 1, false);
        assert_eq!(place(&[a.clone(), b.clone()], cap).held, vec![v4(2)]);
        let c = cand(v4(3), Expiry::Never, 0, false);
        assert_eq!(place(&[a, b, c.clone()], cap).held, vec![v4(3)]);
        // Among permanent bans, repeat offenders first.
        let d = cand(v4(4), Expiry::Never, 5, false);
        assert_eq!(place(&[c, d], cap).held, vec![v4(4)]);
    }

    #[test]
    fn a_freed_slot_goes_to_the_best_overflowing_ban() {
        let cap = Capacity {
            v4: Some(2),
            v6: None,
        };
        let mut candidates = vec![
            cand(v4(1), at(900), 0, true),
            cand(v4(2), at(800), 0, true),
            cand(v4(3), at(700), 0, false),
            cand(v4(4), at(100), 0, false),
            cand(v4(5), at(750), 0, false),
        ];
        let p = place(&candidates, cap);
        assert_eq!(p.held, vec![v4(1), v4(2)]);
        assert_eq!(p.overflow, vec![v4(3), v4(4), v4(5)]);
        candidates.remove(0); // v4(1)'s ban ends
        let p = place(&candidates, cap);
        assert_eq!(p.held, vec![v4(2), v4(5)]);
        assert_eq!(p.overflow, vec![v4(3), v4(4)]);
    }

    #[test]
    fn equal_ranks_do_not_churn() {
        let cap = Capacity {
            v4: Some(2),
            v6: None,
        };
        // Without placement the lowest prefixes win the tie...
        let fresh: Vec<_> = (1..=4).map(|i| cand(v4(i), at(500), 1, false)).collect();
        assert_eq!(place(&fresh, cap).held, vec![v4(1), v4(2)]);
        // ...but bans already placed keep their slots against equal newcomers.
        let mut placed = fresh.clone();
        placed[2].placed = true;
        placed[3].placed = true;
        let p = place(&placed, cap);
        assert_eq!(p.held, vec![v4(3), v4(4)]);
        assert_eq!(p.overflow, vec![v4(1), v4(2)]);
        // One strictly better newcomer displaces exactly one of them (the highest prefix).
        placed[0].expiry = at(501);
        assert_eq!(place(&placed, cap).held, vec![v4(1), v4(3)]);
    }

    #[test]
    fn duplicates_compete_once_with_their_best_entry() {
        let cap = Capacity {
            v4: Some(1),
            v6: None,
        };
        let candidates = vec![
            cand(v4(1), at(10), 0, false),
            cand(v4(2), at(50), 0, false),
            cand(v4(1), at(100), 0, false),
        ];
        let p = place(&candidates, cap);
        assert_eq!((p.held, p.overflow), (vec![v4(1)], vec![v4(2)]));
        assert_eq!(place(&[], cap), Placement::default());
    }

    // ---- properties ---------------------------------------------------------------------

    fn candidate() -> impl Strategy<Value = Candidate> {
        (
            any::<bool>(),
            0u32..12,
            prop_oneof![3 => (0i64..4).prop_map(at), 1 => Just(Expiry::Never)],
            0u32..3,
            any::<bool>(),
        )
            .prop_map(|(is_v4, i, expiry, repeat, placed)| {
                cand(if is_v4 { v4(i) } else { v6(i) }, expiry, repeat, placed)
            })
    }

    fn capacity() -> impl Strategy<Value = Capacity> {
        let one = proptest::option::of(0usize..8);
        (one.clone(), one).prop_map(|(v4, v6)| Capacity { v4, v6 })
    }

    /// Rank by the rule's first three criteria only (no tie-breaks); smaller is better.
    fn merit(c: &Candidate) -> (bool, Reverse<u32>, Reverse<Expiry>) {
        (
            c.expiry != Expiry::Never,
            Reverse(c.repeat_count),
            Reverse(c.expiry),
        )
    }

    proptest! {
        #[test]
        fn placement_properties(
            candidates in proptest::collection::vec(candidate(), 0..30),
            cap in capacity(),
        ) {
            let p = place(&candidates, cap);
            // Sorted, disjoint, covering every distinct prefix.
            prop_assert!(p.held.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(p.overflow.windows(2).all(|w| w[0] < w[1]));
            let held: BTreeSet<Prefix> = p.held.iter().copied().collect();
            let over: BTreeSet<Prefix> = p.overflow.iter().copied().collect();
            prop_assert!(held.is_disjoint(&over));
            let all: BTreeSet<Prefix> = candidates.iter().map(|c| c.prefix).collect();
            prop_assert_eq!(&held | &over, all.clone());

            // The best entry of each prefix (what competes).
            let best = |q: Prefix| candidates.iter().filter(|c| c.prefix == q)
                .min_by_key(|c| rank(c)).unwrap();
            for family in [Family::V4, Family::V6] {
                let n = all.iter().filter(|q| q.family() == family).count();
                let held_n = held.iter().filter(|q| q.family() == family).count();
                prop_assert_eq!(held_n, cap.of(family).map_or(n, |c| c.min(n)));
                for h in held.iter().filter(|q| q.family() == family) {
                    for o in over.iter().filter(|q| q.family() == family) {
                        let (h, o) = (best(*h), best(*o));
                        // Held ranks at least as high as overflow...
                        prop_assert!(merit(h) <= merit(o));
                        // ...and a placed ban lost its slot only to a strictly better one.
                        if o.placed && !h.placed {
                            prop_assert!(merit(h) < merit(o));
                        }
                        if merit(h) == merit(o) && h.placed == o.placed {
                            prop_assert!(h.prefix < o.prefix);
                        }
                    }
                }
            }

            // Placing again with the outcome as what is placed changes nothing (no churn).
            let again: Vec<Candidate> = candidates.iter().map(|c| Candidate {
                placed: held.contains(&c.prefix), ..c.clone()
            }).collect();
            prop_assert_eq!(place(&again, cap), p.clone());
            // Input order does not matter.
            let mut reversed = candidates.clone();
            reversed.reverse();
            prop_assert_eq!(place(&reversed, cap), p);
        }
    }
}
