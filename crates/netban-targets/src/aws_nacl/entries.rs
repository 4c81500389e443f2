//! Reading a NACL's entries: which ingress entries are netban's (deny, all protocols, one
//! prefix, rule number inside `rule_range`), which rule numbers are taken, and whether the
//! operator's own rules leave netban's assumptions true. Pure: no I/O.
//!
//! The device is the only memory of rule numbers: every observe and every apply re-reads
//! them, so an entry deleted or renumbered behind netban's back is seen as it is now.

use netban_core::plan::Held;
use netban_core::{Family, Prefix};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

/// One entry of a NACL as DescribeNetworkAcls returns it (the fields netban looks at).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub rule_number: i32,
    pub egress: bool,
    pub deny: bool,
    /// `-1` for all protocols.
    pub protocol: String,
    pub cidr_v4: Option<String>,
    pub cidr_v6: Option<String>,
}

/// Why netban cannot work in a NACL as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error(
        "ingress rule {rule} sits below netban's rule_range {first}..{last}: a lower number \
         wins, so it would override netban's deny rules; move it above {last} or move \
         rule_range below it"
    )]
    RuleBelowRange { rule: i32, first: u16, last: u16 },
    #[error(
        "ingress rule {rule} inside netban's rule_range is not a netban entry (netban's are \
         deny, all protocols, one CIDR): move it out of the range or change rule_range"
    )]
    ForeignInRange { rule: i32 },
    #[error(
        "the NACL has {found} {family} ingress rules of its own but reserved_{family} = \
         {reserved}: set reserved_{family} = {found} (netban then holds max_rules_{family} - \
         {found} bans) or remove rules, or the NACL's rule quota will overflow"
    )]
    TooManyOperatorRules {
        family: &'static str,
        found: usize,
        reserved: u16,
    },
}

/// A NACL's ingress side as netban sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclView {
    /// netban's entries: rule number → prefix.
    pub owned: BTreeMap<u16, Prefix>,
    /// Every ingress rule number in use (netban's and the operator's).
    pub used: BTreeSet<i32>,
    /// The operator's ingress rules per family (outside netban's range).
    pub operator_v4: usize,
    pub operator_v6: usize,
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

impl AclView {
    /// Sorts `entries` into netban's and the operator's. Fails if an operator rule sits below
    /// the range or something that is not netban's sits inside it.
    pub fn read(entries: &[Entry], range: &RangeInclusive<u16>) -> Result<AclView, Conflict> {
        let mut view = AclView::default();
        let (first, last) = (*range.start(), *range.end());
        for entry in entries.iter().filter(|e| !e.egress) {
            view.used.insert(entry.rule_number);
            let in_range = u16::try_from(entry.rule_number)
                .ok()
                .filter(|n| range.contains(n));
            let Some(rule) = in_range else {
                if entry.rule_number < i32::from(first) {
                    return Err(Conflict::RuleBelowRange {
                        rule: entry.rule_number,
                        first,
                        last,
                    });
                }
                if entry.cidr_v6.is_some() {
                    view.operator_v6 += 1;
                } else {
                    view.operator_v4 += 1;
                }
                continue;
            };
            let prefix = match (&entry.cidr_v4, &entry.cidr_v6) {
                (Some(cidr), None) | (None, Some(cidr)) => Prefix::parse(cidr).ok(),
                _ => None,
            };
            match prefix {
                Some(prefix) if entry.deny && entry.protocol == "-1" => {
                    view.owned.insert(rule, prefix);
                }
                _ => {
                    return Err(Conflict::ForeignInRange {
                        rule: entry.rule_number,
                    })
                }
            }
        }
        Ok(view)
    }

    /// Fails if the operator keeps more rules in a family than the configuration reserves.
    pub fn check_reserved(&self, reserved_v4: u16, reserved_v6: u16) -> Result<(), Conflict> {
        for (family, found, reserved) in [
            (Family::V4, self.operator_v4, reserved_v4),
            (Family::V6, self.operator_v6, reserved_v6),
        ] {
            if found > usize::from(reserved) {
                return Err(Conflict::TooManyOperatorRules {
                    family: family_name(family),
                    found,
                    reserved,
                });
            }
        }
        Ok(())
    }

    /// netban's entries, each with its rule number as the handle.
    pub fn held(&self) -> Vec<Held> {
        self.owned
            .iter()
            .map(|(rule, prefix)| Held {
                prefix: *prefix,
                expiry: None,
                handle: Some(rule.to_string()),
            })
            .collect()
    }

    /// The rule number of netban's entry for `prefix`, if there is one.
    pub fn rule_of(&self, prefix: &Prefix) -> Option<u16> {
        self.owned
            .iter()
            .find(|(_, p)| *p == prefix)
            .map(|(rule, _)| *rule)
    }

    /// The lowest rule number in `range` nobody uses.
    pub fn free_rule(&self, range: &RangeInclusive<u16>) -> Option<u16> {
        range.clone().find(|n| !self.used.contains(&i32::from(*n)))
    }

    pub fn record_added(&mut self, rule: u16, prefix: Prefix) {
        self.used.insert(i32::from(rule));
        self.owned.insert(rule, prefix);
    }

    pub fn record_removed(&mut self, rule: u16) {
        self.used.remove(&i32::from(rule));
        self.owned.remove(&rule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rule: i32, egress: bool, deny: bool, cidr: &str) -> Entry {
        let v6 = cidr.contains(':');
        Entry {
            rule_number: rule,
            egress,
            deny,
            protocol: "-1".into(),
            cidr_v4: (!v6).then(|| cidr.to_string()),
            cidr_v6: v6.then(|| cidr.to_string()),
        }
    }
    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    const RANGE: RangeInclusive<u16> = 1..=99;

    /// AWS's default NACL with IPv6: allow 100/101 and the `*` (32767) denies, both ways.
    fn defaults() -> Vec<Entry> {
        let mut v = Vec::new();
        for egress in [false, true] {
            v.push(entry(100, egress, false, "0.0.0.0/0"));
            v.push(entry(101, egress, false, "::/0"));
            v.push(entry(32767, egress, true, "0.0.0.0/0"));
            v.push(entry(32767, egress, true, "::/0"));
        }
        v
    }

    #[test]
    fn sorts_netbans_entries_from_the_operators() {
        let mut entries = defaults();
        entries.push(entry(3, false, true, "203.0.113.7/32"));
        entries.push(entry(1, false, true, "2001:db8:a::7/128"));
        // Egress rules are never netban's and never conflict.
        entries.push(entry(5, true, false, "10.0.0.0/8"));
        let view = AclView::read(&entries, &RANGE).unwrap();
        assert_eq!(
            view.held(),
            vec![
                Held {
                    prefix: p("2001:db8:a::7"),
                    expiry: None,
                    handle: Some("1".into())
                },
                Held {
                    prefix: p("203.0.113.7"),
                    expiry: None,
                    handle: Some("3".into())
                },
            ]
        );
        assert_eq!((view.operator_v4, view.operator_v6), (2, 2));
        assert_eq!(view.rule_of(&p("203.0.113.7")), Some(3));
        assert_eq!(view.rule_of(&p("203.0.113.8")), None);
        assert!(view.check_reserved(2, 2).is_ok());
        assert_eq!(
            view.check_reserved(2, 1),
            Err(Conflict::TooManyOperatorRules {
                family: "v6",
                found: 2,
                reserved: 1
            })
        );
    }

    #[test]
    fn allocates_the_lowest_free_number_without_collisions() {
        let mut entries = defaults();
        entries.push(entry(1, false, true, "203.0.113.1/32"));
        entries.push(entry(2, false, true, "203.0.113.2/32"));
        entries.push(entry(4, false, true, "203.0.113.4/32"));
        let mut view = AclView::read(&entries, &RANGE).unwrap();
        assert_eq!(view.free_rule(&RANGE), Some(3));
        view.record_added(3, p("203.0.113.3"));
        assert_eq!(view.free_rule(&RANGE), Some(5));
        view.record_removed(1);
        assert_eq!(view.free_rule(&RANGE), Some(1));
        assert_eq!(view.free_rule(&(3..=4)), None);
        // Egress numbers do not take ingress numbers.
        let view = AclView::read(&[entry(1, true, true, "10.0.0.0/8")], &RANGE).unwrap();
        assert_eq!(view.free_rule(&RANGE), Some(1));
    }

    #[test]
    fn conflicts_are_refused() {
        let mut below = defaults();
        below.push(entry(5, false, false, "198.51.100.0/24"));
        assert_eq!(
            AclView::read(&below, &(10..=50)),
            Err(Conflict::RuleBelowRange {
                rule: 5,
                first: 10,
                last: 50
            })
        );
        let mut allow_inside = defaults();
        allow_inside.push(entry(7, false, false, "198.51.100.0/24"));
        assert_eq!(
            AclView::read(&allow_inside, &RANGE),
            Err(Conflict::ForeignInRange { rule: 7 })
        );
        let mut tcp_only = defaults();
        let mut e = entry(8, false, true, "203.0.113.9/32");
        e.protocol = "6".into();
        tcp_only.push(e);
        assert_eq!(
            AclView::read(&tcp_only, &RANGE),
            Err(Conflict::ForeignInRange { rule: 8 })
        );
        // Host bits (AWS would have normalised them) or no CIDR at all: not netban's.
        let mut unparsable = defaults();
        unparsable.push(entry(9, false, true, "203.0.113.9/24"));
        assert_eq!(
            AclView::read(&unparsable, &RANGE),
            Err(Conflict::ForeignInRange { rule: 9 })
        );
        let mut no_cidr = defaults();
        let mut e = entry(9, false, true, "203.0.113.9/32");
        e.cidr_v4 = None;
        no_cidr.push(e);
        assert!(AclView::read(&no_cidr, &RANGE).is_err());
        // A deny for everything inside the range reads as netban's (a stray the plan removes:
        // netban never bans /0).
        let mut deny_all = defaults();
        deny_all.push(entry(9, false, true, "0.0.0.0/0"));
        assert_eq!(AclView::read(&deny_all, &RANGE).unwrap().owned.len(), 1);
        let msg = Conflict::RuleBelowRange {
            rule: 5,
            first: 10,
            last: 50,
        }
        .to_string();
        assert!(msg.contains("move it above 50"), "{msg}");
    }
}
