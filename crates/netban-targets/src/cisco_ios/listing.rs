//! Parsing the router's `show` output for netban's ACLs and object group into [`Listing`]s.
//!
//! `show ip access-lists NAME` prints nothing when the ACL does not exist, the header
//! `Extended IP access list NAME` followed by one indented line per entry when it does.
//! `show ipv6 access-list NAME` prints `IPv6 access list NAME`; `show object-group name NAME`
//! prints `Network object group NAME`. Match counters may or may not be present.

use super::ace::{self, Entry, EntryKind};
use super::config::Action;
use netban_core::Prefix;

/// What one ACL or object group holds, in the router's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
}

impl Listing {
    /// The ban entries: (prefix, sequence number).
    pub fn bans(&self) -> impl Iterator<Item = (Prefix, Option<u32>)> + '_ {
        self.entries.iter().filter_map(|e| match e.kind {
            EntryKind::Ban(p) => Some((p, e.seq)),
            _ => None,
        })
    }

    /// Sequence numbers of the `permit … any any` entries (normally one, at the tail).
    pub fn tails(&self) -> Vec<Option<u32>> {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Tail)
            .map(|e| e.seq)
            .collect()
    }

    /// Lines netban does not understand (reported, left alone).
    pub fn others(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().filter_map(|e| match &e.kind {
            EntryKind::Other(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// The highest sequence number below `limit` in use, or 0.
    pub fn max_seq_below(&self, limit: u32) -> u32 {
        self.entries
            .iter()
            .filter_map(|e| e.seq)
            .filter(|s| *s < limit)
            .max()
            .unwrap_or(0)
    }
}

/// Which kind of list a `show` output is read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Ipv4Acl,
    Ipv6Acl,
    ObjectGroup,
}

impl ListKind {
    fn header(self) -> &'static str {
        match self {
            ListKind::Ipv4Acl => "Extended IP access list ",
            ListKind::Ipv6Acl => "IPv6 access list ",
            ListKind::ObjectGroup => "Network object group ",
        }
    }

    /// What the operator sees: `IPv4 ACL NETBAN`.
    pub fn describe(self, name: &str) -> String {
        match self {
            ListKind::Ipv4Acl => format!("extended IP access list {name}"),
            ListKind::Ipv6Acl => format!("IPv6 access list {name}"),
            ListKind::ObjectGroup => format!("object-group network {name}"),
        }
    }
}

/// Parses the output of the `show` command for `name`. `Ok(None)`: the list does not exist.
pub fn parse(
    output: &str,
    kind: ListKind,
    name: &str,
    action: Action,
) -> Result<Option<Listing>, String> {
    let mut found = false;
    let mut inside = false;
    let mut listing = Listing::default();
    for line in output.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if !indented {
            inside = false;
            let Some(rest) = line.strip_prefix(kind.header()) else {
                if kind == ListKind::Ipv4Acl && line.ends_with(&format!(" access list {name}")) {
                    return Err(format!(
                        "\"{line}\": netban needs an extended ACL named {name}; remove the \
                         other list of that name or choose another `acl`"
                    ));
                }
                continue;
            };
            // `Extended IP access list NAME` (IOS-XE may append details after the name).
            if rest.split_whitespace().next() == Some(name) {
                inside = true;
                found = true;
            }
            continue;
        }
        if !inside {
            continue;
        }
        let entry = match kind {
            ListKind::Ipv4Acl => ace::parse_v4(line, action),
            ListKind::Ipv6Acl => ace::parse_v6(line, action),
            ListKind::ObjectGroup => ace::parse_member(line),
        };
        listing.entries.extend(entry);
    }
    Ok(found.then_some(listing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    #[test]
    fn reads_an_ipv4_acl_and_ignores_other_lists() {
        let out = "Extended IP access list OTHER\n    10 deny ip host 203.0.113.99 any\n\
                   Extended IP access list NETBAN\n    10 deny ip host 203.0.113.7 any (12 matches)\n\
                   \x20   20 deny ip 198.51.100.0 0.0.0.255 any\n\
                   \x20   30 remark hand-made\n\
                   \x20   2147483647 permit ip any any (1234 matches)\n";
        let l = parse(out, ListKind::Ipv4Acl, "NETBAN", Action::Deny)
            .unwrap()
            .unwrap();
        let bans: Vec<_> = l.bans().collect();
        assert_eq!(
            bans,
            vec![
                (p("203.0.113.7"), Some(10)),
                (p("198.51.100.0/24"), Some(20))
            ]
        );
        assert_eq!(l.tails(), vec![Some(2_147_483_647)]);
        assert_eq!(l.others().collect::<Vec<_>>(), vec!["30 remark hand-made"]);
        assert_eq!(l.max_seq_below(2_147_483_647), 30);
    }

    #[test]
    fn a_missing_list_is_none_and_an_empty_one_is_empty() {
        assert_eq!(
            parse("", ListKind::Ipv4Acl, "NETBAN", Action::Deny),
            Ok(None)
        );
        assert_eq!(
            parse(
                "Extended IP access list NETBANX\n",
                ListKind::Ipv4Acl,
                "NETBAN",
                Action::Deny
            ),
            Ok(None)
        );
        let empty = parse(
            "IPv6 access list NETBAN6\n",
            ListKind::Ipv6Acl,
            "NETBAN6",
            Action::Deny,
        );
        assert_eq!(empty, Ok(Some(Listing::default())));
        let group = parse(
            "Network object group NETBAN\n host 203.0.113.7\n 198.51.100.0 255.255.255.0\n",
            ListKind::ObjectGroup,
            "NETBAN",
            Action::Deny,
        )
        .unwrap()
        .unwrap();
        assert_eq!(group.bans().count(), 2);
    }

    #[test]
    fn a_standard_acl_of_that_name_is_an_error_that_says_so() {
        let err = parse(
            "Standard IP access list NETBAN\n    10 deny   203.0.113.7\n",
            ListKind::Ipv4Acl,
            "NETBAN",
            Action::Deny,
        )
        .unwrap_err();
        assert!(err.contains("extended ACL"), "{err}");
    }
}
