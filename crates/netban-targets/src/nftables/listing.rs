//! Reading `nft -j list table inet TABLE` back into elements.
//!
//! nft 1.0.6 prints a set's elements in four shapes, all handled here:
//!
//! ```json
//! "203.0.113.8"                                                  plain address
//! {"prefix": {"addr": "10.0.0.0", "len": 8}}                     prefix (interval set)
//! {"range": ["10.0.0.1", "10.0.0.5"]}                            range (interval set)
//! {"elem": {"val": <one of the above>, "timeout": 3600, "expires": 3599, ...}}
//! ```
//!
//! `expires` is the whole seconds left (rounded by the kernel's clock, so ±1 s). Elements are
//! decoded straight from the text, without an intermediate JSON tree: a 100,000-element set is
//! 6.8 MB of JSON and listing it is on the observe path.

use super::element::{Key, Location, SetName};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;

/// One element read back, with the seconds it has left (`None`: no timeout, never expires).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub location: Location,
    pub expires: Option<u64>,
}

/// What a table listing says about netban's sets.
#[derive(Debug, Default)]
pub struct TableListing {
    pub elements: Vec<Element>,
    /// Which of the four sets exist.
    pub sets_found: Vec<SetName>,
}

/// Parses the JSON of `nft -j list table inet TABLE` (or `list set`), keeping the elements of
/// netban's four sets in `table`. Other objects (chains, rules, other sets) are skipped.
pub fn parse_listing(json: &[u8], table: &str) -> Result<TableListing, String> {
    let listing: Listing =
        serde_json::from_slice(json).map_err(|e| format!("unreadable nft JSON: {e}"))?;
    let mut out = TableListing::default();
    for set in listing.nftables.into_iter().filter_map(|item| item.set) {
        if set.table != table || set.family != "inet" {
            continue;
        }
        let Some(name) = SetName::from_name(&set.name) else {
            continue;
        };
        out.sets_found.push(name);
        out.elements.reserve(set.elem.len());
        for elem in set.elem {
            let key = match elem.val {
                RawVal::Addr(a) => Key::Net(a, if a.is_ipv4() { 32 } else { 128 }),
                RawVal::Prefix(a, len) => Key::Net(a, len),
                RawVal::Range(lo, hi) => Key::Range(lo, hi),
            };
            let expires = match (elem.timeout, elem.expires) {
                (_, Some(e)) => Some(e),
                // A timeout without a count-down: assume the full timeout is left.
                (Some(t), None) if t > 0 => Some(t),
                _ => None,
            };
            out.elements.push(Element {
                location: Location { set: name, key },
                expires,
            });
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Listing {
    nftables: Vec<Item>,
}

/// One object of the listing; only sets are read (`{"set": {...}}`), the rest is skipped.
#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    set: Option<SetObject>,
}

#[derive(Deserialize)]
struct SetObject {
    family: String,
    table: String,
    name: String,
    #[serde(default)]
    elem: Vec<RawElem>,
}

struct RawElem {
    val: RawVal,
    timeout: Option<u64>,
    expires: Option<u64>,
}

enum RawVal {
    Addr(IpAddr),
    Prefix(IpAddr, u8),
    Range(IpAddr, IpAddr),
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ElemField {
    Elem,
    Prefix,
    Range,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct PrefixObject {
    addr: IpAddr,
    len: u8,
}

/// The body of `{"elem": {...}}`: the value and its timers (comments, counters… ignored).
#[derive(Deserialize)]
struct ElemBody {
    val: RawVal,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    expires: Option<u64>,
}

/// Reads `"addr"` or a one-key object `{"prefix": …}` / `{"range": …}` / (with `allow_elem`)
/// `{"elem": …}`.
struct ElemVisitor {
    allow_elem: bool,
}

impl<'de> Visitor<'de> for ElemVisitor {
    type Value = RawElem;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an nftables set element (address, prefix, range or elem object)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawElem, E> {
        let addr = v
            .parse()
            .map_err(|_| E::custom(format!("set element {v:?} is not an address")))?;
        Ok(RawElem {
            val: RawVal::Addr(addr),
            timeout: None,
            expires: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawElem, A::Error> {
        let field: ElemField = map
            .next_key()?
            .ok_or_else(|| de::Error::custom("empty set element object"))?;
        let elem =
            match field {
                ElemField::Elem if self.allow_elem => {
                    let body: ElemBody = map.next_value()?;
                    RawElem {
                        val: body.val,
                        timeout: body.timeout,
                        expires: body.expires,
                    }
                }
                ElemField::Prefix => {
                    let p: PrefixObject = map.next_value()?;
                    let bits = if p.addr.is_ipv4() { 32 } else { 128 };
                    if p.len > bits {
                        return Err(de::Error::custom(format!("prefix length {}", p.len)));
                    }
                    bare(RawVal::Prefix(p.addr, p.len))
                }
                ElemField::Range => {
                    let (lo, hi): (IpAddr, IpAddr) = map.next_value()?;
                    bare(RawVal::Range(lo, hi))
                }
                ElemField::Elem | ElemField::Other => return Err(de::Error::custom(
                    "unsupported set element (netban's sets hold addresses, prefixes and ranges)",
                )),
            };
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(elem)
    }
}

fn bare(val: RawVal) -> RawElem {
    RawElem {
        val,
        timeout: None,
        expires: None,
    }
}

impl<'de> Deserialize<'de> for RawElem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElemVisitor { allow_elem: true })
    }
}

impl<'de> Deserialize<'de> for RawVal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElemVisitor { allow_elem: false })
            .map(|e| e.val)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of nft 1.0.6 (`nft -j list table inet netban`), elements as written by
    /// `add element` with and without timeouts, a range and a /32 in the interval set.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "netban", "handle": 7}},
{"set": {"family": "inet", "name": "ban4", "table": "netban", "type": "ipv4_addr", "handle": 1, "flags": ["timeout"], "elem": [{"elem": {"val": "203.0.113.7", "timeout": 3600, "expires": 3599}}, "203.0.113.8"]}},
{"set": {"family": "inet", "name": "ban6", "table": "netban", "type": "ipv6_addr", "handle": 2, "flags": ["timeout"], "elem": ["2001:db8::1", {"elem": {"val": "2001:db8:a::7", "timeout": 100, "expires": 99, "comment": "x"}}]}},
{"set": {"family": "inet", "name": "net4", "table": "netban", "type": "ipv4_addr", "handle": 3, "flags": ["interval", "timeout"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "172.16.0.7", {"elem": {"val": {"range": ["172.17.0.1", "172.17.0.5"]}, "timeout": 60, "expires": 59}}, {"elem": {"val": {"prefix": {"addr": "203.0.113.0", "len": 24}}, "timeout": 300, "expires": 223}}]}},
{"set": {"family": "inet", "name": "net6", "table": "netban", "type": "ipv6_addr", "handle": 4, "flags": ["interval", "timeout"], "elem": [{"prefix": {"addr": "2001:db8:b::", "len": 64}}, {"range": ["2001:db8:d::1", "2001:db8:d::9"]}]}},
{"set": {"family": "inet", "name": "other", "table": "netban", "type": "ipv4_addr", "handle": 9, "elem": ["198.51.100.1"]}},
{"chain": {"family": "inet", "table": "netban", "name": "input", "handle": 5, "type": "filter", "hook": "input", "prio": -10, "policy": "accept"}},
{"rule": {"family": "inet", "table": "netban", "chain": "input", "handle": 6, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@ban4"}}, {"drop": null}]}}]}"#;

    fn key(s: &str) -> Key {
        match s.split_once('-') {
            Some((a, b)) => Key::Range(a.parse().unwrap(), b.parse().unwrap()),
            None => match s.split_once('/') {
                Some((a, l)) => Key::Net(a.parse().unwrap(), l.parse().unwrap()),
                None => {
                    let a: IpAddr = s.parse().unwrap();
                    Key::Net(a, if a.is_ipv4() { 32 } else { 128 })
                }
            },
        }
    }

    fn el(set: SetName, k: &str, expires: Option<u64>) -> Element {
        Element {
            location: Location { set, key: key(k) },
            expires,
        }
    }

    #[test]
    fn every_element_shape_is_read() {
        let l = parse_listing(LISTING.as_bytes(), "netban").unwrap();
        use SetName::*;
        assert_eq!(l.sets_found, vec![Ban4, Ban6, Net4, Net6]);
        assert_eq!(
            l.elements,
            vec![
                el(Ban4, "203.0.113.7", Some(3599)),
                el(Ban4, "203.0.113.8", None),
                el(Ban6, "2001:db8::1", None),
                el(Ban6, "2001:db8:a::7", Some(99)),
                el(Net4, "10.0.0.0/8", None),
                el(Net4, "172.16.0.7", None),
                el(Net4, "172.17.0.1-172.17.0.5", Some(59)),
                el(Net4, "203.0.113.0/24", Some(223)),
                el(Net6, "2001:db8:b::/64", None),
                el(Net6, "2001:db8:d::1-2001:db8:d::9", None),
            ]
        );
    }

    #[test]
    fn other_tables_and_empty_sets() {
        let l = parse_listing(LISTING.as_bytes(), "other_table").unwrap();
        assert!(l.elements.is_empty() && l.sets_found.is_empty());
        let empty = r#"{"nftables": [{"metainfo": {"json_schema_version": 1}},
            {"set": {"family": "inet", "name": "ban4", "table": "netban", "type": "ipv4_addr", "handle": 1, "flags": ["timeout"]}}]}"#;
        let l = parse_listing(empty.as_bytes(), "netban").unwrap();
        assert_eq!(l.sets_found, vec![SetName::Ban4]);
        assert!(l.elements.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"nftables": [{"set": {"family": "inet", "table": "netban", "name": "ban4", "elem": ["203.0.113.7; drop"]}}]}"#,
            r#"{"nftables": [{"set": {"family": "inet", "table": "netban", "name": "ban4", "elem": [{"concat": ["a", "b"]}]}}]}"#,
            r#"{"nftables": [{"set": {"family": "inet", "table": "netban", "name": "net4", "elem": [{"prefix": {"addr": "10.0.0.0", "len": 40}}]}}]}"#,
            r#"{"nftables": [{"set": {"family": "inet", "table": "netban", "name": "net4", "elem": [{"elem": {"val": {"elem": {"val": "10.0.0.1"}}}}]}}]}"#,
        ] {
            assert!(parse_listing(bad.as_bytes(), "netban").is_err(), "{bad}");
        }
    }
}
