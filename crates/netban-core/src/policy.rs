//! Policy: who may be banned, how broadly, and for how long.
//!
//! - The **allowlist** (operator CIDRs, inline and from files) can never be banned; a ban whose
//!   prefix overlaps an allowlisted prefix in either direction is refused, and adding an
//!   allowlist entry lifts every active ban it overlaps ([`Policy::lifted_by_allowlist`]).
//! - **Protected** networks (the infrastructure netban must never cut off: this machine's own
//!   addresses, its gateways and resolvers, the targets' management addresses, configured
//!   management networks) behave like the allowlist, but each entry carries why it is
//!   protected ([`Protection`]), shown in the refusal and by `check-config`. The set is given
//!   to the policy; discovering it (interfaces, routes, resolv.conf, target settings) is the
//!   daemon's job, at its edge.
//! - **Breadth**: an explicit prefix ban may not be broader than a per-family limit
//!   (default /24 for IPv4, /48 for IPv6).
//! - **Escalation**: a repeat offender's ban lasts `bantime × factor^n`, where n is the number
//!   of earlier bans of the same prefix (by any source) inside the window, capped at `max`.
//!   The operator can turn it off.

use crate::ban::{BanDuration, BanRequest, Expiry};
use crate::prefix::{Family, Prefix};
use crate::time::Timestamp;

pub use crate::prefix_set::PrefixSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Escalation settings for repeat offenders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Escalation {
    pub enabled: bool,
    /// Multiplier per earlier ban (≥ 1).
    pub factor: f64,
    /// Upper bound on an escalated ban, in seconds.
    pub max_secs: u64,
    /// How far back earlier bans count, in seconds.
    pub window_secs: u64,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            enabled: true,
            factor: 2.0,
            max_secs: 7 * 86_400,
            window_secs: 30 * 86_400,
        }
    }
}

/// The broadest prefix an explicit ban may name, per family, as a minimum prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Breadth {
    pub min_len_v4: u8,
    pub min_len_v6: u8,
}

impl Default for Breadth {
    fn default() -> Self {
        Breadth {
            min_len_v4: 24,
            min_len_v6: 48,
        }
    }
}

impl Breadth {
    pub fn min_len(&self, family: Family) -> u8 {
        match family {
            Family::V4 => self.min_len_v4,
            Family::V6 => self.min_len_v6,
        }
    }
}

/// Why policy refused a ban. Each message tells the operator what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{prefix} is allowlisted (overlaps allowlist entry {entry}); remove it from the allowlist to ban it")]
    Allowlisted { prefix: Prefix, entry: Prefix },
    #[error(
        "{prefix} overlaps protected {entry} ({}) and is never banned",
        Protection::describe_all(reasons)
    )]
    Protected {
        prefix: Prefix,
        entry: Prefix,
        /// Why `entry` is protected (at least one reason).
        reasons: Vec<Protection>,
    },
    #[error("{prefix} is broader than /{min_len} allowed for {family}; ban a longer prefix or raise policy.breadth")]
    TooBroad {
        prefix: Prefix,
        family: Family,
        min_len: u8,
    },
}

/// A ban that policy admitted, with its final expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub expiry: Expiry,
    /// How many earlier bans escalated this one (0 = not escalated).
    pub escalation_step: u32,
}

/// Why a network is protected: what it is to this machine, and the setting that opts out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Protection {
    /// Listed in `policy.protected` by the operator.
    Configured,
    /// An address configured on this machine (on `interface`).
    OwnAddress { interface: String },
    /// A default gateway of this machine (reached through `interface`).
    Gateway { interface: String },
    /// A DNS resolver this machine uses (a `nameserver` of /etc/resolv.conf).
    Resolver,
    /// The address a target reaches its device at (`setting` names where it comes from, e.g.
    /// `host`, `url`, `peers`).
    Management { target: String, setting: String },
}

impl Protection {
    /// How an operator turns this protection off (the `[policy]` setting).
    pub fn opt_out(&self) -> &'static str {
        match self {
            Protection::Configured => "remove it from policy.protected",
            Protection::OwnAddress { .. } => "policy.protect_own_addresses = false",
            Protection::Gateway { .. } => "policy.protect_gateways = false",
            Protection::Resolver => "policy.protect_resolvers = false",
            Protection::Management { .. } => "policy.protect_targets = false",
        }
    }

    /// Several reasons, as one phrase.
    pub fn describe_all(reasons: &[Protection]) -> String {
        reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protection::Configured => f.write_str("listed in policy.protected"),
            Protection::OwnAddress { interface } => {
                write!(f, "an address of this machine, on {interface}")
            }
            Protection::Gateway { interface } => {
                write!(f, "a default gateway of this machine, via {interface}")
            }
            Protection::Resolver => f.write_str("a DNS resolver of this machine (resolv.conf)"),
            Protection::Management { target, setting } => {
                write!(f, "the management address of target {target} ({setting})")
            }
        }
    }
}

/// One protected network and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protected {
    pub prefix: Prefix,
    pub reason: Protection,
}

/// The protected networks, each with every reason it is protected for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtectedSet {
    set: PrefixSet,
    reasons: BTreeMap<Prefix, Vec<Protection>>,
}

impl ProtectedSet {
    pub fn new(entries: impl IntoIterator<Item = Protected>) -> ProtectedSet {
        let mut out = ProtectedSet::default();
        for Protected { prefix, reason } in entries {
            out.set.insert(prefix);
            let reasons = out.reasons.entry(prefix).or_default();
            if !reasons.contains(&reason) {
                reasons.push(reason);
                reasons.sort();
            }
        }
        out
    }

    /// How many distinct networks are protected.
    pub fn len(&self) -> usize {
        self.reasons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }

    /// A protected network overlapping `prefix` in either direction, and why it is protected.
    pub fn overlapping(&self, prefix: &Prefix) -> Option<(Prefix, &[Protection])> {
        let entry = self.set.overlapping(prefix)?;
        Some((
            entry,
            self.reasons.get(&entry).map_or(&[][..], Vec::as_slice),
        ))
    }

    /// Every protected network with its reasons, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, &[Protection])> {
        self.reasons.iter().map(|(p, r)| (p, r.as_slice()))
    }
}

/// The whole policy, built from configuration (allowlist files already read by the caller).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub allowlist: PrefixSet,
    pub protected: ProtectedSet,
    pub breadth: Breadth,
    pub escalation: Escalation,
}

/// Escalation exponents beyond this change nothing: even a factor barely above 1 has long
/// reached any `max_secs` (and `f64::powi` would overflow to infinity, which is clamped too).
const MAX_ESCALATION_EXPONENT: u32 = 4096;

impl Escalation {
    /// The duration of a ban of `base` seconds after `prior_bans` earlier bans:
    /// `min(base × factor^n, max_secs)`, never shorter than `base`. Returns the duration and
    /// the escalation step (`n` if the ban was lengthened, else 0).
    pub fn escalate(&self, base: u64, prior_bans: u32) -> (u64, u32) {
        if !self.enabled || prior_bans == 0 || base >= self.max_secs {
            return (base, 0);
        }
        // A factor below 1 (or NaN) would shorten bans; treat it as 1 (no escalation).
        let factor = if self.factor.is_nan() || self.factor < 1.0 {
            1.0
        } else {
            self.factor
        };
        let exponent = prior_bans.min(MAX_ESCALATION_EXPONENT) as i32;
        let scaled = base as f64 * factor.powi(exponent);
        let secs = if scaled >= self.max_secs as f64 {
            self.max_secs
        } else {
            // Finite, non-negative and below max_secs here; `as` truncates to whole seconds.
            (scaled as u64).min(self.max_secs)
        };
        let secs = secs.max(base);
        (secs, if secs > base { prior_bans } else { 0 })
    }
}

impl Policy {
    /// A policy from plain lists (as read from configuration and allowlist files).
    pub fn new(
        allowlist: Vec<Prefix>,
        protected: Vec<Protected>,
        breadth: Breadth,
        escalation: Escalation,
    ) -> Policy {
        Policy {
            allowlist: allowlist.into(),
            protected: ProtectedSet::new(protected),
            breadth,
            escalation,
        }
    }

    /// Decides a request at `now`, given how many earlier bans of the same prefix started
    /// inside the escalation window (`prior_bans`, counted by the ledger).
    ///
    /// Refusals are checked as in [`Self::check_prefix`]. A temporary ban is then escalated
    /// (see [`Escalation::escalate`]); a permanent ban stays permanent and is never reported
    /// as escalated. `escalation_step` is the number of earlier bans when escalation
    /// lengthened the ban, 0 when it did not (disabled, first offence, factor 1, or a base
    /// duration already at or above `max_secs`).
    pub fn admit(
        &self,
        request: &BanRequest,
        prior_bans: u32,
        now: Timestamp,
    ) -> Result<Admitted, Refusal> {
        self.check_prefix(&request.prefix)?;
        Ok(match request.duration {
            BanDuration::Permanent => Admitted {
                expiry: Expiry::Never,
                escalation_step: 0,
            },
            BanDuration::Seconds(base) => {
                let (secs, escalation_step) = self.escalation.escalate(base, prior_bans);
                Admitted {
                    expiry: Expiry::after(now, secs),
                    escalation_step,
                }
            }
        })
    }

    /// Checks only allowlist, protection and breadth (used before anything is recorded, and
    /// to validate `unban`-independent inputs such as `plan`).
    ///
    /// In this order: breadth first (a single address is never too broad; a prefix that is
    /// too broad is refused as such even if it also overlaps a protected network, since that
    /// is the more useful message), then protected networks, then the allowlist (each
    /// overlapping in either direction).
    pub fn check_prefix(&self, prefix: &Prefix) -> Result<(), Refusal> {
        let family = prefix.family();
        let min_len = self.breadth.min_len(family);
        if !prefix.is_host() && prefix.len() < min_len {
            return Err(Refusal::TooBroad {
                prefix: *prefix,
                family,
                min_len,
            });
        }
        if let Some((entry, reasons)) = self.protected.overlapping(prefix) {
            return Err(Refusal::Protected {
                prefix: *prefix,
                entry,
                reasons: reasons.to_vec(),
            });
        }
        if let Some(entry) = self.allowlist.overlapping(prefix) {
            return Err(Refusal::Allowlisted {
                prefix: *prefix,
                entry,
            });
        }
        Ok(())
    }

    /// Whether the allowlist or a protected network overlaps `prefix` (either way round):
    /// such a prefix is never banned, and a ban of it is lifted.
    pub fn protects(&self, prefix: &Prefix) -> bool {
        self.protected.overlapping(prefix).is_some() || self.allowlist.overlapping(prefix).is_some()
    }

    /// The banned prefixes (from `banned`) that the allowlist or protected networks now
    /// overlap and that must therefore be lifted everywhere, in the order given.
    pub fn lifted_by_allowlist<'a>(&self, banned: impl Iterator<Item = &'a Prefix>) -> Vec<Prefix> {
        banned.filter(|p| self.protects(p)).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::Source;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn ps(list: &[&str]) -> Vec<Prefix> {
        list.iter().map(|s| p(s)).collect()
    }

    fn policy(allow: &[&str], protected: &[&str]) -> Policy {
        Policy::new(
            ps(allow),
            ps(protected)
                .into_iter()
                .map(|prefix| Protected {
                    prefix,
                    reason: Protection::Configured,
                })
                .collect(),
            Breadth::default(),
            Escalation::default(),
        )
    }

    fn request(prefix: &str, duration: BanDuration) -> BanRequest {
        BanRequest {
            prefix: p(prefix),
            source: Source::new("sshd").unwrap(),
            duration,
            reason: None,
            failures: None,
            origin_host: None,
        }
    }

    #[test]
    fn allowlist_overlap_refuses_in_both_directions() {
        let pol = policy(&["10.0.0.0/8", "192.0.2.5", "2001:db8:1::/48"], &[]);
        for (banned, entry) in [
            ("10.1.2.3", "10.0.0.0/8"),
            ("10.9.9.0/24", "10.0.0.0/8"),
            ("192.0.2.0/24", "192.0.2.5/32"),
            ("192.0.2.5", "192.0.2.5/32"),
            ("2001:db8:1:2::7", "2001:db8:1::/48"),
        ] {
            assert_eq!(
                pol.check_prefix(&p(banned)),
                Err(Refusal::Allowlisted {
                    prefix: p(banned),
                    entry: p(entry)
                }),
                "{banned}"
            );
        }
        for ok in [
            "11.0.0.1",
            "192.0.2.4",
            "192.0.2.6",
            "192.0.3.0/24",
            "2001:db8:2::1",
        ] {
            assert_eq!(pol.check_prefix(&p(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refusals_come_in_order_too_broad_protected_allowlisted() {
        let pol = policy(&["198.51.100.0/24", "203.0.113.0/25"], &["203.0.113.10"]);
        // Protected wins over allowlisted.
        assert_eq!(
            pol.check_prefix(&p("203.0.113.10")),
            Err(Refusal::Protected {
                prefix: p("203.0.113.10"),
                entry: p("203.0.113.10"),
                reasons: vec![Protection::Configured],
            })
        );
        // Too broad wins over protected and allowlisted.
        assert!(matches!(
            pol.check_prefix(&p("203.0.0.0/16")),
            Err(Refusal::TooBroad { .. })
        ));
        assert!(matches!(
            pol.check_prefix(&p("198.51.0.0/16")),
            Err(Refusal::TooBroad { .. })
        ));
        // Allowlisted applies to prefixes within the breadth limit too.
        assert_eq!(
            pol.check_prefix(&p("198.51.100.128/25")),
            Err(Refusal::Allowlisted {
                prefix: p("198.51.100.128/25"),
                entry: p("198.51.100.0/24")
            })
        );
        assert_eq!(
            pol.check_prefix(&p("192.0.0.0/16")),
            Err(Refusal::TooBroad {
                prefix: p("192.0.0.0/16"),
                family: Family::V4,
                min_len: 24
            })
        );
    }

    #[test]
    fn breadth_limits_per_family_and_hosts_are_never_too_broad() {
        let mut pol = policy(&[], &[]);
        assert!(pol.check_prefix(&p("192.0.2.0/24")).is_ok());
        assert!(matches!(
            pol.check_prefix(&p("192.0.2.0/23")),
            Err(Refusal::TooBroad {
                min_len: 24,
                family: Family::V4,
                ..
            })
        ));
        assert!(pol.check_prefix(&p("2001:db8:1::/48")).is_ok());
        assert!(matches!(
            pol.check_prefix(&p("2001:db8::/47")),
            Err(Refusal::TooBroad {
                min_len: 48,
                family: Family::V6,
                ..
            })
        ));
        // An operator demanding more than a full address still can ban single addresses.
        pol.breadth = Breadth {
            min_len_v4: 33,
            min_len_v6: 200,
        };
        assert!(pol.check_prefix(&p("192.0.2.1")).is_ok());
        assert!(pol.check_prefix(&p("2001:db8::1")).is_ok());
        assert!(pol.check_prefix(&p("192.0.2.0/31")).is_err());
        pol.breadth = Breadth {
            min_len_v4: 0,
            min_len_v6: 0,
        };
        assert!(pol.check_prefix(&p("128.0.0.0/1")).is_ok());
    }

    #[test]
    fn families_never_overlap() {
        let pol = policy(&["2001:db8::/32"], &["10.0.0.0/8"]);
        assert!(pol.check_prefix(&p("2001:db9::1")).is_ok());
        let all_v6: PrefixSet = vec![Prefix::from_net("::/0".parse().unwrap())].into();
        assert_eq!(all_v6.overlapping(&p("10.0.0.1")), None);
        assert!(all_v6.overlapping(&p("2001:db8::1")).is_some());
        // An IPv4-mapped address is IPv4 and meets the IPv4 protected network.
        assert!(matches!(
            pol.check_prefix(&p("::ffff:10.1.2.3")),
            Err(Refusal::Protected { .. })
        ));
    }

    #[test]
    fn a_protected_address_is_refused_with_every_reason_it_is_protected_for() {
        let gateway = Protected {
            prefix: p("198.51.100.1"),
            reason: Protection::Gateway {
                interface: "eth0".into(),
            },
        };
        let resolver = Protected {
            prefix: p("198.51.100.1"),
            reason: Protection::Resolver,
        };
        let router = Protected {
            prefix: p("2001:db8:ff::1"),
            reason: Protection::Management {
                target: "edge".into(),
                setting: "host".into(),
            },
        };
        let link_local = Protected {
            prefix: p("fe80::1"),
            reason: Protection::Gateway {
                interface: "eth0".into(),
            },
        };
        let pol = Policy::new(
            vec![],
            vec![
                resolver.clone(),
                gateway.clone(),
                router,
                link_local,
                gateway.clone(),
            ],
            Breadth::default(),
            Escalation::default(),
        );
        assert_eq!(pol.protected.len(), 3, "one entry per network");
        // The gateway is also the resolver: both reasons, in a stable order, no duplicate.
        let refusal = pol.check_prefix(&p("198.51.100.0/24")).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::Protected {
                prefix: p("198.51.100.0/24"),
                entry: p("198.51.100.1"),
                reasons: vec![gateway.reason.clone(), resolver.reason.clone()],
            }
        );
        assert_eq!(
            refusal.to_string(),
            "198.51.100.0/24 overlaps protected 198.51.100.1/32 (a default gateway of this \
             machine, via eth0; a DNS resolver of this machine (resolv.conf)) and is never banned"
        );
        let refusal = pol.check_prefix(&p("2001:db8:ff::/64")).unwrap_err();
        assert!(
            refusal
                .to_string()
                .contains("the management address of target edge (host)"),
            "{refusal}"
        );
        assert!(matches!(
            pol.check_prefix(&p("fe80::1")),
            Err(Refusal::Protected { .. })
        ));
        assert!(pol.check_prefix(&p("fe80::2")).is_ok());
        assert!(pol.check_prefix(&p("198.51.100.2")).is_ok());
        // Each kind names its opt-out.
        assert_eq!(gateway.reason.opt_out(), "policy.protect_gateways = false");
        let listed: Vec<(Prefix, usize)> =
            pol.protected.iter().map(|(p, r)| (*p, r.len())).collect();
        assert_eq!(
            listed,
            vec![
                (p("198.51.100.1"), 2),
                (p("2001:db8:ff::1"), 1),
                (p("fe80::1"), 1)
            ]
        );
    }

    #[test]
    fn admit_refuses_before_escalating() {
        let pol = policy(&["192.0.2.0/24"], &[]);
        let r = request("192.0.2.9", BanDuration::Seconds(600));
        assert!(matches!(
            pol.admit(&r, 3, Timestamp(0)),
            Err(Refusal::Allowlisted { .. })
        ));
    }

    #[test]
    fn escalation_doubles_per_prior_ban_up_to_the_cap() {
        let pol = policy(&[], &[]);
        let now = Timestamp(1_000_000);
        let admit = |secs, n| {
            pol.admit(&request("203.0.113.7", BanDuration::Seconds(secs)), n, now)
                .unwrap()
        };
        let cases = [
            (600, 0, 600, 0),
            (600, 1, 1_200, 1),
            (600, 3, 4_800, 3),
            (600, 10, 604_800, 10), // 614_400 capped at a week
            (600, u32::MAX, 604_800, u32::MAX),
            (604_800, 2, 604_800, 0), // already at the cap: not escalated
            (1_000_000, 2, 1_000_000, 0), // above the cap: kept, never shortened
            (0, 5, 0, 0),
        ];
        for (base, n, secs, step) in cases {
            assert_eq!(
                admit(base, n),
                Admitted {
                    expiry: Expiry::At(Timestamp(now.0 + secs)),
                    escalation_step: step
                },
                "base {base}, prior {n}"
            );
        }
    }

    #[test]
    fn escalation_settings() {
        let now = Timestamp(50);
        let r = request("203.0.113.7", BanDuration::Seconds(600));
        let with = |escalation: Escalation| {
            let mut pol = policy(&[], &[]);
            pol.escalation = escalation;
            pol.admit(&r, 2, now).unwrap()
        };
        let base = Escalation::default();
        let unescalated = Admitted {
            expiry: Expiry::At(Timestamp(650)),
            escalation_step: 0,
        };
        assert_eq!(
            with(Escalation {
                enabled: false,
                ..base.clone()
            }),
            unescalated
        );
        for factor in [1.0, 0.5, 0.0, -3.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(
                with(Escalation {
                    factor,
                    ..base.clone()
                }),
                unescalated,
                "factor {factor}"
            );
        }
        assert_eq!(
            with(Escalation {
                factor: f64::INFINITY,
                ..base.clone()
            }),
            Admitted {
                expiry: Expiry::At(Timestamp(50 + 604_800)),
                escalation_step: 2
            }
        );
        // 600 × 1.5² = 1350.
        assert_eq!(
            with(Escalation {
                factor: 1.5,
                ..base.clone()
            }),
            Admitted {
                expiry: Expiry::At(Timestamp(50 + 1_350)),
                escalation_step: 2
            }
        );
        // A cap below the base duration never shortens the ban.
        assert_eq!(
            with(Escalation {
                max_secs: 60,
                ..base
            }),
            unescalated
        );
    }

    #[test]
    fn permanent_stays_permanent_and_a_ban_beyond_ten_years_is_permanent() {
        let pol = policy(&[], &[]);
        let r = request("203.0.113.7", BanDuration::Permanent);
        assert_eq!(
            pol.admit(&r, 7, Timestamp(0)).unwrap(),
            Admitted {
                expiry: Expiry::Never,
                escalation_step: 0
            }
        );
        let r = request("203.0.113.7", BanDuration::Seconds(u64::MAX));
        assert_eq!(
            pol.admit(&r, 7, Timestamp(10)).unwrap().expiry,
            Expiry::Never
        );
        let r = request(
            "203.0.113.7",
            BanDuration::Seconds(crate::ban::MAX_BAN_SECS + 1),
        );
        assert_eq!(
            pol.admit(&r, 0, Timestamp(10)).unwrap().expiry,
            Expiry::Never
        );
    }

    #[test]
    fn lifted_by_allowlist_finds_overlaps_both_ways() {
        let pol = policy(&["10.0.0.0/24", "192.0.2.77"], &["2001:db8::1"]);
        let banned = ps(&[
            "10.0.0.5",
            "10.0.1.5",
            "192.0.2.0/24",
            "192.0.2.78",
            "2001:db8::/48",
            "2001:db9::/48",
            "10.0.0.0/24",
        ]);
        assert_eq!(
            pol.lifted_by_allowlist(banned.iter()),
            ps(&["10.0.0.5", "192.0.2.0/24", "2001:db8::/48", "10.0.0.0/24"])
        );
        assert!(policy(&[], &[])
            .lifted_by_allowlist(banned.iter())
            .is_empty());
    }

    #[test]
    fn a_large_allowlist_is_answered_exactly() {
        // Every even host of 10.0.0.0/16 is allowlisted (32768 entries).
        let allow: Vec<Prefix> = (0u32..65_536)
            .step_by(2)
            .map(|i| Prefix::host(Ipv4Addr::from(0x0a00_0000 | i).into()))
            .collect();
        let pol = Policy::new(allow, Vec::new(), Breadth::default(), Escalation::default());
        assert_eq!(pol.allowlist.len(), 32_768);
        let banned: Vec<Prefix> = (0u32..65_536)
            .map(|i| Prefix::host(Ipv4Addr::from(0x0a00_0000 | i).into()))
            .collect();
        let lifted = pol.lifted_by_allowlist(banned.iter());
        assert_eq!(lifted.len(), 32_768);
        assert!(lifted.iter().all(|p| u32::from(match p.addr() {
            std::net::IpAddr::V4(a) => a,
            _ => unreachable!(),
        }) % 2
            == 0));
        assert_eq!(
            pol.check_prefix(&p("10.0.7.0/24")),
            Err(Refusal::Allowlisted {
                prefix: p("10.0.7.0/24"),
                entry: p("10.0.7.0")
            })
        );
    }

    proptest! {
        #[test]
        fn escalation_is_bounded_and_monotone(
            base in 0u64..2_000_000,
            n in 0u32..100,
            factor in prop_oneof![0.0f64..10.0, Just(1.0), Just(2.0)],
            max_secs in 0u64..2_000_000,
        ) {
            let e = Escalation { enabled: true, factor, max_secs, window_secs: 0 };
            let (secs, step) = e.escalate(base, n);
            let (next, _) = e.escalate(base, n + 1);
            prop_assert!(secs >= base);
            prop_assert!(secs <= base.max(max_secs));
            prop_assert!(next >= secs);
            prop_assert_eq!(step, if secs > base { n } else { 0 });
            if factor >= 1.0 && n > 0 && base < max_secs {
                let exact = base as f64 * factor.powi(n as i32);
                prop_assert!((secs as f64 - exact.min(max_secs as f64)).abs() <= 1.0);
            }
        }
    }
}
