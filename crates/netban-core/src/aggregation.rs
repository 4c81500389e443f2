//! Aggregation: merging neighbouring bans into one covering prefix on a target of limited
//! capacity, when the operator allows it.
//!
//! A covering prefix blocks addresses nobody banned, so netban aggregates only on targets
//! configured for it, only at the one prefix length the operator chose per family (say /28),
//! only where at least `min_members` bans share that prefix, never over an allowlisted or
//! protected network (the caller's `may_cover`), and only as far as needed: while a family
//! has more candidates than slots, the covering prefix that frees the most slots (ties: the
//! lowest prefix) replaces its members. What still does not fit is left to placement
//! ([`crate::placement::place`]), which ranks aggregates like bans: an aggregate takes the best
//! of its members' expiry and repeat count.

use crate::ban::Expiry;
use crate::placement::{Candidate, Capacity};
use crate::prefix::{Family, Prefix};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where a target may merge bans into covering prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregation {
    /// The covering prefix length for IPv4 (`None`: IPv4 bans are never merged).
    pub len_v4: Option<u8>,
    /// The covering prefix length for IPv6 (`None`: IPv6 bans are never merged).
    pub len_v6: Option<u8>,
    /// Bans a covering prefix must hold before it is used (at least 2).
    pub min_members: usize,
}

impl Aggregation {
    pub fn len(&self, family: Family) -> Option<u8> {
        match family {
            Family::V4 => self.len_v4,
            Family::V6 => self.len_v6,
        }
    }
}

/// A covering prefix placed in place of several bans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    pub prefix: Prefix,
    /// The latest expiry among its members.
    pub expiry: Expiry,
    /// The bans it stands for, sorted.
    pub members: Vec<Prefix>,
}

/// The candidates to place after aggregation, and the aggregates among them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aggregated {
    /// Unmerged candidates plus one candidate per aggregate, sorted by prefix.
    pub candidates: Vec<Candidate>,
    /// Sorted by prefix.
    pub aggregates: Vec<Aggregate>,
}

/// Merges `candidates` into covering prefixes by the rule in the module documentation.
/// `was_placed` says whether the target holds a covering prefix now (it wins ties, as a
/// placed ban does); `may_cover` whether a covering prefix may be used at all.
pub fn aggregate(
    candidates: &[Candidate],
    capacity: Capacity,
    rule: &Aggregation,
    was_placed: impl Fn(&Prefix) -> bool,
    may_cover: impl Fn(&Prefix) -> bool,
) -> Aggregated {
    // Each prefix competes once, with its best entry (as in placement).
    let mut best: BTreeMap<Prefix, Candidate> = BTreeMap::new();
    for c in candidates {
        best.entry(c.prefix)
            .and_modify(|b| {
                b.expiry = b.expiry.max(c.expiry);
                b.repeat_count = b.repeat_count.max(c.repeat_count);
                b.placed |= c.placed;
            })
            .or_insert_with(|| c.clone());
    }
    let mut out = Aggregated::default();
    for family in [Family::V4, Family::V6] {
        let run: Vec<&Candidate> = best
            .values()
            .filter(|c| c.prefix.family() == family)
            .collect();
        let (Some(len), Some(slots)) = (rule.len(family), capacity.of(family)) else {
            out.candidates.extend(run.into_iter().cloned());
            continue;
        };
        // Bans at least as narrow as the covering length, grouped by their covering prefix.
        let mut groups: BTreeMap<Prefix, Vec<&Candidate>> = BTreeMap::new();
        for c in &run {
            if let Some(cover) = covering(&c.prefix, len) {
                groups.entry(cover).or_default().push(c);
            }
        }
        let mut eligible: Vec<(Prefix, Vec<&Candidate>)> = groups
            .into_iter()
            .filter(|(cover, members)| members.len() >= rule.min_members.max(2) && may_cover(cover))
            .collect();
        // Most members first (frees the most slots), then the lowest prefix.
        eligible.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let mut count = run.len();
        let mut merged: BTreeSet<Prefix> = BTreeSet::new();
        for (cover, members) in eligible {
            if count <= slots {
                break;
            }
            count -= members.len() - 1;
            merged.extend(members.iter().map(|m| m.prefix));
            let expiry = members.iter().map(|m| m.expiry).max().expect("members");
            out.candidates.push(Candidate {
                prefix: cover,
                expiry,
                repeat_count: members
                    .iter()
                    .map(|m| m.repeat_count)
                    .max()
                    .expect("members"),
                placed: was_placed(&cover),
            });
            out.aggregates.push(Aggregate {
                prefix: cover,
                expiry,
                members: members.iter().map(|m| m.prefix).collect(),
            });
        }
        out.candidates.extend(
            run.into_iter()
                .filter(|c| !merged.contains(&c.prefix))
                .cloned(),
        );
    }
    out.candidates.sort_by_key(|c| c.prefix);
    out.aggregates.sort_by_key(|a| a.prefix);
    out
}

/// The prefix of length `len` covering `prefix`, if `prefix` is at least that narrow.
fn covering(prefix: &Prefix, len: u8) -> Option<Prefix> {
    if prefix.len() < len {
        return None;
    }
    let net = IpNet::new(prefix.addr(), len).ok()?;
    Some(Prefix::from_net(net))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::place;
    use crate::time::Timestamp;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// 203.0.113.i
    fn v4(i: u8) -> Prefix {
        Prefix::host(Ipv4Addr::new(203, 0, 113, i).into())
    }
    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn at(t: i64) -> Expiry {
        Expiry::At(Timestamp(t))
    }
    fn cand(prefix: Prefix, expiry: Expiry) -> Candidate {
        Candidate {
            prefix,
            expiry,
            repeat_count: 0,
            placed: false,
        }
    }
    const SLASH28: Aggregation = Aggregation {
        len_v4: Some(28),
        len_v6: None,
        min_members: 2,
    };
    fn cap(v4: usize) -> Capacity {
        Capacity {
            v4: Some(v4),
            v6: None,
        }
    }
    fn prefixes(a: &Aggregated) -> Vec<Prefix> {
        a.candidates.iter().map(|c| c.prefix).collect()
    }

    #[test]
    fn nothing_is_merged_while_everything_fits() {
        let c: Vec<_> = (1..=4).map(|i| cand(v4(i), at(10))).collect();
        let a = aggregate(&c, cap(4), &SLASH28, |_| false, |_| true);
        assert!(a.aggregates.is_empty());
        assert_eq!(prefixes(&a), (1..=4).map(v4).collect::<Vec<_>>());
        // Unbounded: never.
        let a = aggregate(&c, Capacity::UNBOUNDED, &SLASH28, |_| false, |_| true);
        assert!(a.aggregates.is_empty());
    }

    #[test]
    fn the_biggest_groups_merge_first_and_only_as_far_as_needed() {
        // 0/28: 5 bans, 16/28: 3 bans, 96/28: 2 bans, and a lone one in 200/28.
        let mut c: Vec<_> = [2, 3, 4, 5, 7, 17, 18, 19, 100, 101, 200]
            .iter()
            .map(|&i| cand(v4(i), at(i64::from(i))))
            .collect();
        c[0].repeat_count = 3;
        // 11 candidates into 7 slots: merging 0/28 (5 → 1) is enough.
        let a = aggregate(&c, cap(7), &SLASH28, |_| false, |_| true);
        assert_eq!(
            a.aggregates,
            vec![Aggregate {
                prefix: p("203.0.113.0/28"),
                expiry: at(7),
                members: [2, 3, 4, 5, 7].map(v4).to_vec(),
            }]
        );
        assert_eq!(a.candidates.len(), 7);
        let agg = &a.candidates[0];
        assert_eq!(
            (agg.prefix, agg.expiry, agg.repeat_count),
            (p("203.0.113.0/28"), at(7), 3),
            "an aggregate takes its best member's expiry and repeat count"
        );
        // Into 4 slots: 0/28, then 16/28 (3 → 1): 5 left; then 96/28: 4.
        let a = aggregate(&c, cap(4), &SLASH28, |_| false, |_| true);
        assert_eq!(
            prefixes(&a),
            vec![
                p("203.0.113.0/28"),
                p("203.0.113.16/28"),
                p("203.0.113.96/28"),
                v4(200)
            ]
        );
        // Into 1 slot: every group merges, and placement decides among what is left (the
        // repeat offender's aggregate).
        let a = aggregate(&c, cap(1), &SLASH28, |_| false, |_| true);
        assert_eq!(a.aggregates.len(), 3);
        assert_eq!(place(&a.candidates, cap(1)).held, vec![p("203.0.113.0/28")]);
    }

    #[test]
    fn never_over_an_allowlisted_network_or_below_min_members() {
        let c: Vec<_> = [2, 3, 17, 18, 19]
            .iter()
            .map(|&i| cand(v4(i), at(5)))
            .collect();
        // The client 203.0.113.20 is allowlisted: 16/28 may not be used.
        let client = v4(20);
        let a = aggregate(
            &c,
            cap(1),
            &SLASH28,
            |_| false,
            |cover| !cover.contains(&client),
        );
        assert_eq!(
            prefixes(&a),
            vec![p("203.0.113.0/28"), v4(17), v4(18), v4(19)]
        );
        // At least three members required: 0/28 (two) is not used either.
        let three = Aggregation {
            min_members: 3,
            ..SLASH28
        };
        let a = aggregate(&c, cap(1), &three, |_| false, |_| true);
        assert_eq!(prefixes(&a), vec![v4(2), v4(3), p("203.0.113.16/28")]);
        // min_members below 2 means 2: a lone ban is never widened.
        let one = Aggregation {
            min_members: 1,
            ..SLASH28
        };
        let a = aggregate(&[cand(v4(9), at(1))], cap(0), &one, |_| false, |_| true);
        assert_eq!(prefixes(&a), vec![v4(9)]);
    }

    #[test]
    fn broader_bans_stay_whole_and_families_are_separate() {
        let c = vec![
            cand(p("203.0.113.0/24"), at(9)),
            cand(v4(1), at(1)),
            cand(v4(2), at(1)),
            cand(p("2001:db8::1"), at(1)),
            cand(p("2001:db8::2"), at(1)),
        ];
        let a = aggregate(&c, cap(1), &SLASH28, |_| false, |_| true);
        // The /24 is broader than /28: not a member. IPv6 has no length: untouched.
        assert_eq!(
            prefixes(&a),
            vec![
                p("203.0.113.0/24"),
                p("203.0.113.0/28"),
                p("2001:db8::1"),
                p("2001:db8::2")
            ]
        );
        let v6 = Aggregation {
            len_v4: None,
            len_v6: Some(64),
            min_members: 2,
        };
        let a = aggregate(
            &c,
            Capacity {
                v4: None,
                v6: Some(1),
            },
            &v6,
            |_| false,
            |_| true,
        );
        assert_eq!(a.aggregates.len(), 1);
        assert_eq!(a.aggregates[0].prefix, p("2001:db8::/64"));
    }

    #[test]
    fn a_placed_aggregate_keeps_its_tie() {
        let c: Vec<_> = [2, 3, 17, 18].iter().map(|&i| cand(v4(i), at(5))).collect();
        let placed = p("203.0.113.16/28");
        let a = aggregate(&c, cap(1), &SLASH28, |q| *q == placed, |_| true);
        assert_eq!(place(&a.candidates, cap(1)).held, vec![placed]);
    }

    #[test]
    fn never_over_a_protected_gateway_resolver_or_management_address() {
        use crate::policy::{Breadth, Escalation, Policy, Protected, Protection};
        // Bans all around the gateway 203.0.113.1, the resolver 203.0.113.53 and the router
        // 203.0.113.200, on a target with room for 2 entries.
        let protected = [
            (
                "203.0.113.1",
                Protection::Gateway {
                    interface: "eth0".into(),
                },
            ),
            ("203.0.113.53", Protection::Resolver),
            (
                "203.0.113.200",
                Protection::Management {
                    target: "edge".into(),
                    setting: "host".into(),
                },
            ),
        ];
        let policy = Policy::new(
            vec![],
            protected
                .iter()
                .map(|(a, reason)| Protected {
                    prefix: p(a),
                    reason: reason.clone(),
                })
                .collect(),
            Breadth::default(),
            Escalation::default(),
        );
        let c: Vec<_> = [2, 3, 4, 50, 51, 52, 60, 61, 197, 198, 199]
            .iter()
            .map(|&i| cand(v4(i), at(5)))
            .collect();
        let a = aggregate(
            &c,
            cap(2),
            &SLASH28,
            |_| false,
            |cover| !policy.protects(cover),
        );
        // 0/28 (gateway), 48/28 (resolver), 192/28 (router) may not be used; 48/28's members
        // stay single, 60-61 (in 48/28 too) as well; nothing covers a protected address.
        for candidate in &a.candidates {
            assert!(!policy.protects(&candidate.prefix), "{}", candidate.prefix);
        }
        assert!(a.aggregates.is_empty(), "{:?}", a.aggregates);
        // Without the protection they would have merged.
        let a = aggregate(&c, cap(2), &SLASH28, |_| false, |_| true);
        assert_eq!(a.aggregates.len(), 3);
    }

    fn candidate() -> impl Strategy<Value = Candidate> {
        (0u8..64, 0i64..4, 0u32..3, any::<bool>()).prop_map(|(i, t, repeat_count, placed)| {
            Candidate {
                prefix: v4(i),
                expiry: at(t),
                repeat_count,
                placed,
            }
        })
    }

    proptest! {
        #[test]
        fn aggregation_properties(
            candidates in proptest::collection::vec(candidate(), 0..40),
            slots in 0usize..12,
            min_members in 0usize..4,
            forbidden in 0u8..64,
            protected in 0u8..64,
        ) {
            let rule = Aggregation { len_v4: Some(28), len_v6: None, min_members };
            let banned = v4(forbidden);
            // A protected host (say the gateway) as the daemon passes it: through the policy.
            let policy = crate::policy::Policy::new(
                vec![banned],
                vec![crate::policy::Protected {
                    prefix: v4(protected),
                    reason: crate::policy::Protection::Gateway { interface: "eth0".into() },
                }],
                crate::policy::Breadth::default(),
                crate::policy::Escalation::default(),
            );
            let may_cover = |q: &Prefix| !policy.protects(q);
            let a = aggregate(&candidates, cap(slots), &rule, |_| false, may_cover);
            let distinct: BTreeSet<Prefix> = candidates.iter().map(|c| c.prefix).collect();
            // Every ban is either a candidate itself or a member of exactly one aggregate
            // that covers it; nothing else appears.
            let members: Vec<Prefix> =
                a.aggregates.iter().flat_map(|g| g.members.iter().copied()).collect();
            let member_set: BTreeSet<Prefix> = members.iter().copied().collect();
            prop_assert_eq!(members.len(), member_set.len());
            for q in &distinct {
                let alone = a.candidates.iter().any(|c| c.prefix == *q);
                prop_assert!(alone != member_set.contains(q), "{q}");
            }
            for g in &a.aggregates {
                prop_assert!(g.members.len() >= min_members.max(2));
                prop_assert!(may_cover(&g.prefix));
                prop_assert!(!g.prefix.contains(&v4(protected)) && !g.prefix.contains(&banned));
                prop_assert!(g.members.iter().all(|m| g.prefix.contains(m)));
                prop_assert!(a.candidates.iter().any(|c| c.prefix == g.prefix));
            }
            // Only as far as needed: without the last aggregate it would not have fitted.
            if !a.aggregates.is_empty() {
                let smallest = a.aggregates.iter().map(|g| g.members.len()).min().unwrap();
                prop_assert!(a.candidates.len() + smallest - 1 > slots);
            }
            // Nothing left to merge when it still does not fit.
            if a.candidates.len() > slots {
                let mut groups: BTreeMap<Prefix, usize> = BTreeMap::new();
                for c in a.candidates.iter().filter(|c| c.prefix.len() == 32) {
                    *groups.entry(covering(&c.prefix, 28).unwrap()).or_default() += 1;
                }
                for (cover, n) in groups {
                    prop_assert!(n < min_members.max(2) || !may_cover(&cover)
                        || a.aggregates.iter().any(|g| g.prefix == cover));
                }
            }
        }
    }
}
