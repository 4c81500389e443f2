//! The text of netban's entries on the router, both ways: rendering configuration lines from
//! parsed [`Prefix`] values (never from user text) and reading entries back from `show` output.
//!
//! ```text
//! show ip access-lists NAME        10 deny ip host 203.0.113.7 any (12 matches)
//!                                  20 deny ip 198.51.100.0 0.0.0.255 any
//! show ipv6 access-list NAME6      deny ipv6 host 2001:DB8::1 any sequence 10
//!                                  deny ipv6 2001:DB8:1::/48 any (3 matches) sequence 20
//! show object-group name NAME       host 203.0.113.7
//!                                   198.51.100.0 255.255.255.0
//! ```

use super::config::Action;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netban_core::{Family, Prefix};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One line of an ACL or object group as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The ACE's sequence number (object-group members have none).
    pub seq: Option<u32>,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// `<action> ip <prefix> any`: a ban entry in netban's form.
    Ban(Prefix),
    /// `permit ip any any`: the trailing permit netban keeps.
    Tail,
    /// Anything else (remarks, other protocols, ports, non-contiguous wildcards): reported in
    /// the log, never touched except by `prepare` for the tail.
    Other(String),
}

// ---- rendering -----------------------------------------------------------------------------

/// The source operand of an IPv4 ACE: `host A`, `A WILDCARD` or `any`.
fn source_v4(prefix: &Prefix) -> String {
    match prefix.len() {
        0 => "any".to_string(),
        32 => format!("host {}", prefix.addr()),
        _ => format!("{} {}", prefix.addr(), prefix.wildcard_mask()),
    }
}

/// The source operand of an IPv6 ACE: `host A`, `P/L` or `any`.
fn source_v6(prefix: &Prefix) -> String {
    match prefix.len() {
        0 => "any".to_string(),
        128 => format!("host {}", prefix.addr()),
        _ => prefix.to_string(),
    }
}

/// `10 deny ip host 203.0.113.7 any` (IPv4 ACL configuration mode).
pub fn ace_v4(seq: u32, action: Action, prefix: &Prefix) -> String {
    debug_assert_eq!(prefix.family(), Family::V4);
    format!("{seq} {} ip {} any", action.as_str(), source_v4(prefix))
}

/// `deny ipv6 host 2001:db8::1 any sequence 10` (IPv6 ACL configuration mode).
pub fn ace_v6(seq: u32, action: Action, prefix: &Prefix) -> String {
    debug_assert_eq!(prefix.family(), Family::V6);
    format!(
        "{} ipv6 {} any sequence {seq}",
        action.as_str(),
        source_v6(prefix)
    )
}

/// Removes an IPv6 ACE by its text (`no deny ipv6 host A any`); IPv4 ACEs go by `no SEQ`.
pub fn no_ace_v6(action: Action, prefix: &Prefix) -> String {
    format!("no {} ipv6 {} any", action.as_str(), source_v6(prefix))
}

/// The trailing permit, at `seq`.
pub fn tail_v4(seq: u32) -> String {
    format!("{seq} permit ip any any")
}

pub fn tail_v6(seq: u32) -> String {
    format!("permit ipv6 any any sequence {seq}")
}

/// An object-group member: `host A` or `NET MASK`.
pub fn member(prefix: &Prefix) -> String {
    debug_assert_eq!(prefix.family(), Family::V4);
    if prefix.is_host() {
        format!("host {}", prefix.addr())
    } else {
        format!("{} {}", prefix.addr(), prefix.netmask())
    }
}

// ---- parsing -------------------------------------------------------------------------------

/// Drops a `(12 matches)` / `(1 match)` counter and a `log` keyword's absence is not assumed:
/// anything left over makes the line `Other`.
fn strip_matches(line: &str) -> String {
    match (line.find(" ("), line.rfind(')')) {
        (Some(open), Some(close)) if close > open && line[open + 2..close].contains("match") => {
            format!("{}{}", &line[..open], &line[close + 1..])
        }
        _ => line.to_string(),
    }
}

/// Reads one entry line of `show ip access-lists NAME` (extended ACL).
pub fn parse_v4(line: &str, action: Action) -> Option<Entry> {
    let text = strip_matches(line.trim());
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let (seq, rest) = match tokens.first()?.parse::<u32>() {
        Ok(seq) => (Some(seq), &tokens[1..]),
        Err(_) => (None, &tokens[..]),
    };
    let kind = classify_v4(rest, action).unwrap_or_else(|| EntryKind::Other(text.clone()));
    Some(Entry { seq, kind })
}

fn classify_v4(tokens: &[&str], action: Action) -> Option<EntryKind> {
    let (verb, proto) = (*tokens.first()?, *tokens.get(1)?);
    if proto != "ip" {
        return None;
    }
    let (source, used) = match *tokens.get(2)? {
        "any" => (None, 1),
        "host" => (Some(host_v4(tokens.get(3)?)?), 2),
        addr => (Some(with_wildcard(addr, tokens.get(3)?)?), 2),
    };
    if tokens.get(2 + used) != Some(&"any") || tokens.len() != 3 + used {
        return None;
    }
    match source {
        None if verb == "permit" => Some(EntryKind::Tail),
        Some(prefix) if verb == action.as_str() => Some(EntryKind::Ban(prefix)),
        _ => None,
    }
}

fn host_v4(addr: &str) -> Option<Prefix> {
    let a: Ipv4Addr = addr.parse().ok()?;
    Some(Prefix::host(IpAddr::V4(a)))
}

/// `198.51.100.0 0.0.0.255` → 198.51.100.0/24; `None` for a non-contiguous wildcard.
fn with_wildcard(addr: &str, wildcard: &str) -> Option<Prefix> {
    let a: Ipv4Addr = addr.parse().ok()?;
    let w: Ipv4Addr = wildcard.parse().ok()?;
    let mask = !u32::from(w);
    let len = mask.leading_ones();
    if mask.checked_shl(len).unwrap_or(0) != 0 {
        return None;
    }
    Some(Prefix::from_net(IpNet::V4(
        Ipv4Net::new(a, len as u8).ok()?,
    )))
}

/// `198.51.100.0 255.255.255.0` → 198.51.100.0/24; `None` for a non-contiguous mask.
fn with_netmask(addr: &str, netmask: &str) -> Option<Prefix> {
    let a: Ipv4Addr = addr.parse().ok()?;
    let net = Ipv4Net::with_netmask(a, netmask.parse().ok()?).ok()?;
    Some(Prefix::from_net(IpNet::V4(net)))
}

/// Reads one entry line of `show ipv6 access-list NAME`: the sequence comes last, the match
/// counter (if any) before it.
pub fn parse_v6(line: &str, action: Action) -> Option<Entry> {
    let text = strip_matches(line.trim());
    let mut tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.is_empty() {
        return None;
    }
    let mut seq = None;
    if tokens.len() >= 2 && tokens[tokens.len() - 2] == "sequence" {
        seq = tokens[tokens.len() - 1].parse::<u32>().ok();
        if seq.is_some() {
            tokens.truncate(tokens.len() - 2);
        }
    }
    let kind = classify_v6(&tokens, action).unwrap_or_else(|| EntryKind::Other(text.clone()));
    Some(Entry { seq, kind })
}

fn classify_v6(tokens: &[&str], action: Action) -> Option<EntryKind> {
    let (verb, proto) = (*tokens.first()?, *tokens.get(1)?);
    if proto != "ipv6" {
        return None;
    }
    let (source, used) = match *tokens.get(2)? {
        "any" => (None, 1),
        "host" => {
            let a: Ipv6Addr = tokens.get(3)?.parse().ok()?;
            (Some(Prefix::host(IpAddr::V6(a))), 2)
        }
        net => {
            let n: Ipv6Net = net.parse().ok()?;
            (Some(Prefix::from_net(IpNet::V6(n))), 1)
        }
    };
    if tokens.get(2 + used) != Some(&"any") || tokens.len() != 3 + used {
        return None;
    }
    match source {
        None if verb == "permit" => Some(EntryKind::Tail),
        Some(prefix) if verb == action.as_str() && prefix.family() == Family::V6 => {
            Some(EntryKind::Ban(prefix))
        }
        _ => None,
    }
}

/// Reads one member line of `show object-group name NAME`.
pub fn parse_member(line: &str) -> Option<Entry> {
    let text = line.trim();
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let prefix = match tokens.as_slice() {
        [] => return None,
        ["host", a] => host_v4(a),
        [a, m] => with_netmask(a, m),
        _ => None,
    };
    Some(Entry {
        seq: None,
        kind: prefix.map_or_else(|| EntryKind::Other(text.to_string()), EntryKind::Ban),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn ban(seq: Option<u32>, s: &str) -> Option<Entry> {
        Some(Entry {
            seq,
            kind: EntryKind::Ban(p(s)),
        })
    }

    #[test]
    fn renders_only_from_prefixes() {
        let d = Action::Deny;
        assert_eq!(
            ace_v4(10, d, &p("203.0.113.7")),
            "10 deny ip host 203.0.113.7 any"
        );
        assert_eq!(
            ace_v4(20, Action::Permit, &p("198.51.100.0/24")),
            "20 permit ip 198.51.100.0 0.0.0.255 any"
        );
        assert_eq!(
            ace_v4(30, d, &p("10.0.0.0/9")),
            "30 deny ip 10.0.0.0 0.127.255.255 any"
        );
        assert_eq!(
            ace_v6(10, d, &p("2001:db8::1")),
            "deny ipv6 host 2001:db8::1 any sequence 10"
        );
        assert_eq!(
            ace_v6(20, d, &p("2001:db8:1::/48")),
            "deny ipv6 2001:db8:1::/48 any sequence 20"
        );
        assert_eq!(
            no_ace_v6(d, &p("2001:db8::1")),
            "no deny ipv6 host 2001:db8::1 any"
        );
        assert_eq!(member(&p("203.0.113.7")), "host 203.0.113.7");
        assert_eq!(
            member(&p("198.51.100.0/25")),
            "198.51.100.0 255.255.255.128"
        );
        assert_eq!(tail_v4(TAIL), "2147483647 permit ip any any");
        assert_eq!(tail_v6(TAIL), "permit ipv6 any any sequence 2147483647");
    }
    const TAIL: u32 = super::super::config::TAIL_SEQUENCE;

    #[test]
    fn reads_ipv4_entries_with_and_without_counters() {
        let d = Action::Deny;
        assert_eq!(
            parse_v4("    10 deny ip host 203.0.113.7 any", d),
            ban(Some(10), "203.0.113.7")
        );
        assert_eq!(
            parse_v4("    20 deny ip host 203.0.113.8 any (12 matches)", d),
            ban(Some(20), "203.0.113.8")
        );
        assert_eq!(
            parse_v4("    30 deny ip 198.51.100.0 0.0.0.255 any (1 match)", d),
            ban(Some(30), "198.51.100.0/24")
        );
        assert_eq!(
            parse_v4("    40 permit ip any any (5 matches)", d),
            Some(Entry {
                seq: Some(40),
                kind: EntryKind::Tail
            })
        );
        // A permit entry is netban's only in permit (class-map) mode.
        assert_eq!(
            parse_v4(" 50 permit ip host 203.0.113.9 any", Action::Permit),
            ban(Some(50), "203.0.113.9")
        );
        for other in [
            "60 permit ip host 203.0.113.9 any",
            "70 deny tcp host 203.0.113.9 any eq 22",
            "80 deny ip host 203.0.113.9 host 198.51.100.1",
            "90 deny ip 10.0.0.0 0.255.0.255 any",
            "100 deny ip host 203.0.113.9 any log",
            "110 remark banned by hand",
        ] {
            assert!(
                matches!(parse_v4(other, d).unwrap().kind, EntryKind::Other(_)),
                "{other}"
            );
        }
        assert_eq!(parse_v4("   ", d), None);
    }

    #[test]
    fn reads_ipv6_entries_in_ios_upper_case() {
        let d = Action::Deny;
        assert_eq!(
            parse_v6("    deny ipv6 host 2001:DB8::1 any sequence 10", d),
            ban(Some(10), "2001:db8::1")
        );
        assert_eq!(
            parse_v6(
                "    deny ipv6 2001:DB8:1::/48 any (3 matches) sequence 20",
                d
            ),
            ban(Some(20), "2001:db8:1::/48")
        );
        assert_eq!(
            parse_v6("    permit ipv6 any any (7 matches) sequence 2147483647", d),
            Some(Entry {
                seq: Some(TAIL),
                kind: EntryKind::Tail
            })
        );
        assert!(matches!(
            parse_v6("deny ipv6 host 203.0.113.1 any sequence 5", d)
                .unwrap()
                .kind,
            EntryKind::Other(_)
        ));
    }

    #[test]
    fn reads_object_group_members() {
        assert_eq!(parse_member(" host 203.0.113.7"), ban(None, "203.0.113.7"));
        assert_eq!(
            parse_member(" 198.51.100.0 255.255.255.0"),
            ban(None, "198.51.100.0/24")
        );
        assert!(matches!(
            parse_member(" range 203.0.113.1 203.0.113.9").unwrap().kind,
            EntryKind::Other(_)
        ));
    }

    #[test]
    fn what_is_rendered_reads_back_as_the_same_prefix() {
        for s in [
            "203.0.113.7",
            "198.51.100.0/24",
            "10.0.0.0/8",
            "198.18.0.0/15",
        ] {
            let line = ace_v4(10, Action::Deny, &p(s));
            assert_eq!(parse_v4(&line, Action::Deny), ban(Some(10), s), "{line}");
            assert_eq!(parse_member(&member(&p(s))), ban(None, s));
        }
        for s in ["2001:db8::1", "2001:db8::/32", "2001:db8:0:1::/64"] {
            let line = ace_v6(20, Action::Deny, &p(s));
            assert_eq!(parse_v6(&line, Action::Deny), ban(Some(20), s), "{line}");
            let upper = line
                .to_uppercase()
                .replace("DENY IPV6", "deny ipv6")
                .replace("HOST", "host")
                .replace("ANY SEQUENCE", "any sequence");
            assert_eq!(parse_v6(&upper, Action::Deny), ban(Some(20), s), "{upper}");
        }
    }
}
