//! Merging netban's changes into an IP set's whole address list. Pure: no I/O.
//!
//! UpdateIPSet replaces the whole list, so every write starts from the list just read
//! (GetIPSet), applies netban's removes and adds to it, and writes all of it back: entries
//! netban did not add stay exactly as they were, unparsable ones included.

use crate::{ItemOutcome, Step};
use netban_core::plan::Held;
use netban_core::Prefix;
use std::collections::BTreeSet;

/// The list to write back and what happened to each item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    pub addresses: Vec<String>,
    /// False when the list is already as wanted: no write needed.
    pub changed: bool,
    pub results: Vec<(Prefix, Step, ItemOutcome)>,
}

/// Applies `remove` and `add` to `current`, holding at most `max` addresses.
pub fn merge(current: &[String], remove: &[Prefix], add: &[Prefix], max: usize) -> Merged {
    let removing: BTreeSet<Prefix> = remove.iter().copied().collect();
    let mut addresses: Vec<String> = Vec::with_capacity(current.len() + add.len());
    let mut present = BTreeSet::new();
    let mut changed = false;
    for text in current {
        match Prefix::parse(text) {
            Ok(p) if removing.contains(&p) => changed = true,
            Ok(p) => {
                present.insert(p);
                addresses.push(text.clone());
            }
            Err(_) => addresses.push(text.clone()),
        }
    }
    let mut results: Vec<(Prefix, Step, ItemOutcome)> = remove
        .iter()
        .map(|p| (*p, Step::Remove, ItemOutcome::Done { held: None }))
        .collect();
    for prefix in add {
        let result = if present.contains(prefix) {
            ItemOutcome::Done { held: None }
        } else if addresses.len() < max {
            // Rendered only from the parsed prefix.
            addresses.push(prefix.to_string());
            present.insert(*prefix);
            changed = true;
            ItemOutcome::Done { held: None }
        } else {
            ItemOutcome::Failed {
                reason: format!("the IP set is full ({max} addresses)"),
            }
        };
        results.push((*prefix, Step::Add, result));
    }
    Merged {
        addresses,
        changed,
        results,
    }
}

/// Every entry of `addresses` netban can read as a prefix (foreign ones included: the
/// reconciler decides what is netban's).
pub fn held(addresses: &[String]) -> Vec<Held> {
    addresses
        .iter()
        .filter_map(|a| Prefix::parse(a).ok())
        .map(|prefix| Held {
            prefix,
            expiry: None,
            handle: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn foreign_entries_stay_as_they_are() {
        let current = list(&["198.51.100.0/24", "203.0.113.7/32", "not an address"]);
        let m = merge(&current, &[p("203.0.113.7")], &[p("203.0.113.8")], 10);
        assert_eq!(
            m.addresses,
            list(&["198.51.100.0/24", "not an address", "203.0.113.8/32"])
        );
        assert!(m.changed);
        assert!(m
            .results
            .iter()
            .all(|(_, _, r)| *r == ItemOutcome::Done { held: None }));
        assert_eq!(held(&current).len(), 2);
    }

    #[test]
    fn nothing_to_write_when_already_so() {
        let current = list(&["203.0.113.7/32"]);
        let m = merge(&current, &[p("203.0.113.9")], &[p("203.0.113.7")], 10);
        assert!(!m.changed);
        assert_eq!(m.addresses, current);
    }

    #[test]
    fn the_limit_holds_foreign_entries_included() {
        let current = list(&["198.51.100.1/32", "198.51.100.2/32"]);
        let adds = [p("203.0.113.1"), p("203.0.113.2"), p("203.0.113.3")];
        let m = merge(&current, &[p("198.51.100.2")], &adds, 3);
        assert_eq!(m.addresses.len(), 3);
        let failed: Vec<Prefix> = m
            .results
            .iter()
            .filter(|(_, _, r)| matches!(r, ItemOutcome::Failed { .. }))
            .map(|(p, _, _)| *p)
            .collect();
        assert_eq!(failed, vec![p("203.0.113.3")]);
    }
}
