//! The `nft -f -` scripts netban writes. Every line is built from validated configuration and
//! parsed addresses ([`Location`]), never from text a user typed.

use super::config::Hook;
use super::element::{Location, SetName};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Elements per `add element`/`delete element` statement: long enough to be fast, short enough
/// that nft's error messages (which repeat the failing line) stay readable.
pub const ELEMENTS_PER_STATEMENT: usize = 1000;

/// The table, its four sets and its chains, in one transaction that can run any number of
/// times: sets (and their elements) are kept; both known chains are re-created from scratch
/// (declared, flushed, deleted, then the configured ones added with their rules), so a
/// second run neither duplicates rules nor leaves a chain for a hook no longer configured,
/// and a changed priority takes effect. Nothing outside `table` is touched.
pub fn prepare(table: &str, hooks: &[Hook], priority: i32) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "add table inet {table}");
    for set in SetName::ALL {
        let flags = if set.is_interval() {
            "interval, timeout"
        } else {
            "timeout"
        };
        let _ = writeln!(
            s,
            "add set inet {table} {} {{ type {}; flags {flags}; }}",
            set.as_str(),
            set.key_type()
        );
    }
    for hook in Hook::ALL {
        let _ = writeln!(s, "add chain inet {table} {hook}");
        let _ = writeln!(s, "flush chain inet {table} {hook}");
        let _ = writeln!(s, "delete chain inet {table} {hook}");
    }
    for hook in hooks {
        let _ = writeln!(
            s,
            "add chain inet {table} {hook} {{ type filter hook {hook} priority {priority}; policy accept; }}"
        );
        for (matcher, set) in [
            ("ip saddr", SetName::Ban4),
            ("ip saddr", SetName::Net4),
            ("ip6 saddr", SetName::Ban6),
            ("ip6 saddr", SetName::Net6),
        ] {
            let _ = writeln!(
                s,
                "add rule inet {table} {hook} {matcher} @{} drop",
                set.as_str()
            );
        }
    }
    s
}

/// What one transaction changes: deletes run first, then adds (`None` timeout: the element
/// never expires on the device).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub deletes: Vec<Location>,
    pub adds: Vec<(Location, Option<u64>)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.adds.is_empty()
    }

    /// The script: one statement per set and up to [`ELEMENTS_PER_STATEMENT`] elements, all
    /// deletes before all adds, duplicates dropped (the last add of an element wins).
    pub fn render(&self, table: &str) -> String {
        let mut s = String::with_capacity(64 + 40 * (self.deletes.len() + self.adds.len()));
        let mut deletes: BTreeMap<SetName, Vec<Location>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for loc in &self.deletes {
            if seen.insert(*loc) {
                deletes.entry(loc.set).or_default().push(*loc);
            }
        }
        for (set, locs) in &deletes {
            for chunk in locs.chunks(ELEMENTS_PER_STATEMENT) {
                statement(
                    &mut s,
                    "delete",
                    table,
                    *set,
                    chunk.iter().map(|l| (l, None)),
                );
            }
        }
        let mut last: std::collections::HashMap<Location, usize> = Default::default();
        for (i, (loc, _)) in self.adds.iter().enumerate() {
            last.insert(*loc, i);
        }
        let mut adds: BTreeMap<SetName, Vec<(&Location, Option<u64>)>> = BTreeMap::new();
        for (i, (loc, timeout)) in self.adds.iter().enumerate() {
            if last.get(loc) == Some(&i) {
                adds.entry(loc.set).or_default().push((loc, *timeout));
            }
        }
        for (set, elems) in &adds {
            for chunk in elems.chunks(ELEMENTS_PER_STATEMENT) {
                statement(&mut s, "add", table, *set, chunk.iter().copied());
            }
        }
        s
    }
}

fn statement<'a>(
    s: &mut String,
    verb: &str,
    table: &str,
    set: SetName,
    elems: impl Iterator<Item = (&'a Location, Option<u64>)>,
) {
    let _ = write!(s, "{verb} element inet {table} {} {{ ", set.as_str());
    for (i, (loc, timeout)) in elems.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}", loc.key);
        if let Some(t) = timeout {
            let _ = write!(s, " timeout {t}s");
        }
    }
    s.push_str(" }\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use netban_core::Prefix;

    fn loc(s: &str) -> Location {
        Location::canonical(&Prefix::parse(s).unwrap())
    }

    #[test]
    fn prepare_script() {
        let script = prepare("netban", &[Hook::Input, Hook::Forward], -10);
        let expected = "\
add table inet netban
add set inet netban ban4 { type ipv4_addr; flags timeout; }
add set inet netban ban6 { type ipv6_addr; flags timeout; }
add set inet netban net4 { type ipv4_addr; flags interval, timeout; }
add set inet netban net6 { type ipv6_addr; flags interval, timeout; }
add chain inet netban input
flush chain inet netban input
delete chain inet netban input
add chain inet netban forward
flush chain inet netban forward
delete chain inet netban forward
add chain inet netban input { type filter hook input priority -10; policy accept; }
add rule inet netban input ip saddr @ban4 drop
add rule inet netban input ip saddr @net4 drop
add rule inet netban input ip6 saddr @ban6 drop
add rule inet netban input ip6 saddr @net6 drop
add chain inet netban forward { type filter hook forward priority -10; policy accept; }
add rule inet netban forward ip saddr @ban4 drop
add rule inet netban forward ip saddr @net4 drop
add rule inet netban forward ip6 saddr @ban6 drop
add rule inet netban forward ip6 saddr @net6 drop
";
        assert_eq!(script, expected);
    }

    #[test]
    fn prepare_with_one_hook_still_removes_the_other_chain() {
        let script = prepare("t", &[Hook::Forward], 5);
        assert!(script.contains("delete chain inet t input\n"));
        assert!(!script.contains("hook input"));
        assert!(script.contains("type filter hook forward priority 5; policy accept;"));
        assert!(!script.contains("flush ruleset") && !script.contains("delete table"));
    }

    #[test]
    fn batch_script_groups_by_set_deletes_first() {
        let batch = Batch {
            deletes: vec![loc("203.0.113.9"), loc("2001:db8::/48"), loc("203.0.113.9")],
            adds: vec![
                (loc("203.0.113.7"), Some(3660)),
                (loc("2001:db8::7"), None),
                (loc("203.0.113.0/24"), Some(60)),
                (loc("203.0.113.8"), Some(1)),
            ],
        };
        assert_eq!(
            batch.render("netban"),
            "\
delete element inet netban ban4 { 203.0.113.9 }
delete element inet netban net6 { 2001:db8::/48 }
add element inet netban ban4 { 203.0.113.7 timeout 3660s, 203.0.113.8 timeout 1s }
add element inet netban ban6 { 2001:db8::7 }
add element inet netban net4 { 203.0.113.0/24 timeout 60s }
"
        );
    }

    #[test]
    fn duplicate_adds_keep_the_last() {
        let batch = Batch {
            deletes: vec![],
            adds: vec![(loc("203.0.113.7"), Some(10)), (loc("203.0.113.7"), None)],
        };
        assert_eq!(
            batch.render("t"),
            "add element inet t ban4 { 203.0.113.7 }\n"
        );
    }

    #[test]
    fn large_batches_are_split_into_statements() {
        let adds: Vec<_> = (0..2500u32)
            .map(|i| {
                let p = Prefix::host(std::net::Ipv4Addr::from(0x0a00_0000 + i).into());
                (Location::canonical(&p), Some(60))
            })
            .collect();
        let script = Batch {
            deletes: vec![],
            adds,
        }
        .render("netban");
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].matches(" timeout 60s").count(), 1000);
        assert_eq!(lines[2].matches(" timeout 60s").count(), 500);
        assert!(lines[0].starts_with("add element inet netban ban4 { 10.0.0.0 timeout 60s, "));
        assert!(lines.iter().all(|l| l.ends_with(" }")));
    }
}
