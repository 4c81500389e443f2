//! [`PrefixSet`]: a set of prefixes that answers "does anything in it overlap this prefix?"
//! quickly, for allowlists and protected networks of many thousands of entries.

use crate::prefix::Prefix;
use ipnet::IpNet;
use std::collections::BTreeMap;

/// A set of prefixes that answers "does anything in the set overlap this prefix?" in
/// O(prefix lengths present × log n), for allowlists of many thousands of entries.
///
/// Per family, entries are kept in a `BTreeMap` keyed by (network as an integer, length),
/// with a count of entries per prefix length. An entry that *contains* the query has its
/// network equal to the query's network truncated to the entry's length, so it is found by
/// one exact lookup per length present; entries *inside* the query have their network in the
/// query's address range, so they are found by one range lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSet {
    v4: FamilySet,
    v6: FamilySet,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FamilySet {
    entries: BTreeMap<(u128, u8), Prefix>,
    /// `per_len[l]` = number of entries of length `l` (grown on demand up to 129 slots).
    per_len: Vec<u32>,
}

/// A prefix as (family width in bits, network as an integer, length).
fn key(prefix: &Prefix) -> (u8, u128, u8) {
    match prefix.net() {
        IpNet::V4(n) => (32, u128::from(u32::from(n.network())), n.prefix_len()),
        IpNet::V6(n) => (128, u128::from(n.network()), n.prefix_len()),
    }
}

/// The host bits of a prefix of length `len` in a `bits`-wide family.
fn host_mask(bits: u8, len: u8) -> u128 {
    let host_bits = u32::from(bits - len);
    1u128.checked_shl(host_bits).map_or(u128::MAX, |b| b - 1)
}

impl FamilySet {
    fn insert(&mut self, network: u128, len: u8, prefix: Prefix) -> bool {
        if self.entries.insert((network, len), prefix).is_some() {
            return false;
        }
        let l = usize::from(len);
        if self.per_len.len() <= l {
            self.per_len.resize(l + 1, 0);
        }
        self.per_len[l] += 1;
        true
    }

    fn remove(&mut self, network: u128, len: u8) -> bool {
        if self.entries.remove(&(network, len)).is_none() {
            return false;
        }
        self.per_len[usize::from(len)] -= 1;
        true
    }

    fn overlapping(&self, bits: u8, network: u128, len: u8) -> Option<Prefix> {
        // An entry containing the query (the query itself included), broadest first.
        for (l, count) in self.per_len.iter().enumerate().take(usize::from(len) + 1) {
            if *count == 0 {
                continue;
            }
            let l = l as u8; // at most 128
            let truncated = network & !host_mask(bits, l);
            if let Some(entry) = self.entries.get(&(truncated, l)) {
                return Some(*entry);
            }
        }
        // An entry inside the query: its network lies in the query's range. (An entry in that
        // range cannot be broader than the query unless it shares its network, and then it
        // contains the query and was found above.)
        let last = network | host_mask(bits, len);
        self.entries
            .range((network, 0)..=(last, u8::MAX))
            .next()
            .map(|(_, entry)| *entry)
    }
}

impl PrefixSet {
    pub fn new() -> Self {
        Self::default()
    }

    fn family_mut(&mut self, bits: u8) -> &mut FamilySet {
        if bits == 32 {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    /// Adds `prefix`; false if it was already in the set.
    pub fn insert(&mut self, prefix: Prefix) -> bool {
        let (bits, network, len) = key(&prefix);
        self.family_mut(bits).insert(network, len, prefix)
    }

    /// Removes `prefix` (exactly this prefix, not what it overlaps); false if it was absent.
    pub fn remove(&mut self, prefix: &Prefix) -> bool {
        let (bits, network, len) = key(prefix);
        self.family_mut(bits).remove(network, len)
    }

    /// True if exactly `prefix` is in the set.
    pub fn contains(&self, prefix: &Prefix) -> bool {
        let (bits, network, len) = key(prefix);
        let family = if bits == 32 { &self.v4 } else { &self.v6 };
        family.entries.contains_key(&(network, len))
    }

    /// An entry that overlaps `prefix` in either direction, if any: the broadest entry that
    /// contains `prefix`, or else the lowest entry inside it.
    pub fn overlapping(&self, prefix: &Prefix) -> Option<Prefix> {
        let (bits, network, len) = key(prefix);
        let family = if bits == 32 { &self.v4 } else { &self.v6 };
        family.overlapping(bits, network, len)
    }

    pub fn len(&self) -> usize {
        self.v4.entries.len() + self.v6.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, IPv4 before IPv6, each family by network then length.
    pub fn iter(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.v4
            .entries
            .values()
            .chain(self.v6.entries.values())
            .copied()
    }
}

impl FromIterator<Prefix> for PrefixSet {
    fn from_iter<I: IntoIterator<Item = Prefix>>(iter: I) -> Self {
        let mut set = PrefixSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<Prefix> for PrefixSet {
    fn extend<I: IntoIterator<Item = Prefix>>(&mut self, iter: I) {
        for prefix in iter {
            self.insert(prefix);
        }
    }
}

impl From<Vec<Prefix>> for PrefixSet {
    fn from(prefixes: Vec<Prefix>) -> Self {
        prefixes.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::{Ipv4Net, Ipv6Net};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn ps(list: &[&str]) -> Vec<Prefix> {
        list.iter().map(|s| p(s)).collect()
    }

    #[test]
    fn prefix_set_basics() {
        let mut set = PrefixSet::new();
        assert!(set.is_empty());
        assert!(set.insert(p("10.0.0.0/8")));
        assert!(!set.insert(p("10.0.0.0/8")));
        assert!(set.insert(p("10.1.0.0/16")));
        assert!(set.insert(p("2001:db8::/32")));
        assert_eq!(set.len(), 3);
        assert!(set.contains(&p("10.1.0.0/16")) && !set.contains(&p("10.2.0.0/16")));
        // The broadest containing entry is reported.
        assert_eq!(set.overlapping(&p("10.1.2.3")), Some(p("10.0.0.0/8")));
        assert!(set.remove(&p("10.0.0.0/8")));
        assert!(!set.remove(&p("10.0.0.0/8")));
        assert_eq!(set.overlapping(&p("10.1.2.3")), Some(p("10.1.0.0/16")));
        assert_eq!(set.overlapping(&p("10.2.2.3")), None);
        // Else the lowest entry inside the query.
        set.insert(p("10.2.0.128/25"));
        set.insert(p("10.2.0.7"));
        assert_eq!(
            set.overlapping(&Prefix::from_net("10.0.0.0/8".parse().unwrap())),
            Some(p("10.1.0.0/16"))
        );
        assert_eq!(set.overlapping(&p("10.2.0.0/24")), Some(p("10.2.0.7")));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            ps(&["10.1.0.0/16", "10.2.0.7", "10.2.0.128/25", "2001:db8::/32"])
        );
    }

    #[test]
    fn prefix_set_extremes() {
        // Trusted (configuration) input may hold prefixes a ban never could.
        let net = |s: &str| Prefix::from_net(s.parse().unwrap());
        let all: PrefixSet = vec![net("0.0.0.0/0"), net("::/0")].into();
        assert_eq!(
            all.overlapping(&p("255.255.255.254")),
            Some(net("0.0.0.0/0"))
        );
        assert_eq!(all.overlapping(&net("ffff::1/128")), Some(net("::/0")));
        let top: PrefixSet = [
            net("255.255.255.255/32"),
            net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            top.overlapping(&net("0.0.0.0/0")),
            Some(net("255.255.255.255/32"))
        );
        assert_eq!(
            top.overlapping(&net("::/0")),
            Some(net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
        );
        assert_eq!(
            top.overlapping(&net("255.255.255.255/32")),
            Some(net("255.255.255.255/32"))
        );
        assert!(top.overlapping(&p("255.255.255.254")).is_none());
        assert!(top
            .overlapping(&net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128"))
            .is_none());
    }

    // ---- properties ---------------------------------------------------------------------

    /// Prefixes packed into a small space (so that they overlap often), both families.
    fn prefix() -> impl Strategy<Value = Prefix> {
        prop_oneof![
            (any::<u8>(), 20u8..=32).prop_map(|(low, len)| {
                let a = Ipv4Addr::from(0xc000_0200 | u32::from(low));
                Prefix::from_net(IpNet::V4(Ipv4Net::new(a, len).unwrap()))
            }),
            (any::<u8>(), prop_oneof![Just(0u8), 100u8..=128]).prop_map(|(low, len)| {
                let a = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(low));
                Prefix::from_net(IpNet::V6(Ipv6Net::new(a, len).unwrap()))
            }),
        ]
    }

    proptest! {
        #[test]
        fn prefix_set_agrees_with_a_linear_scan(
            entries in proptest::collection::vec(prefix(), 0..20),
            removed in proptest::collection::vec(prefix(), 0..5),
            queries in proptest::collection::vec(prefix(), 1..20),
        ) {
            let mut set: PrefixSet = entries.iter().copied().collect();
            for r in &removed {
                set.remove(r);
            }
            let live: Vec<Prefix> = entries.iter().copied().filter(|e| !removed.contains(e)).collect();
            let distinct: std::collections::BTreeSet<Prefix> = live.iter().copied().collect();
            prop_assert_eq!(set.len(), distinct.len());
            for q in &queries {
                let containing = live.iter().filter(|e| e.contains(q)).min_by_key(|e| e.len());
                let inside = live.iter().filter(|e| q.contains(e)).min();
                let want = containing.or(inside).copied();
                prop_assert_eq!(set.overlapping(q), want, "query {}", q);
            }
        }

    }
}
