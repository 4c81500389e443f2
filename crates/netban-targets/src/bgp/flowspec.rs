//! Flow Specification rules (RFC 8955 for IPv4, RFC 8956 for IPv6): the NLRI of SAFI 133, as
//! bytes and back.
//!
//! A rule is a list of match components in strictly ascending type order; a packet matches
//! when it matches every component. netban sends one kind of rule, built by
//! [`SourceMatch::rule`]: "source prefix X [and IP protocol P [and destination port in
//! {…}]]", carried with the traffic-rate 0 extended community ([`TRAFFIC_RATE_DISCARD`]) that
//! tells the router to drop what matches. The decoder reads every component type either RFC
//! defines (1–13), so that UPDATEs from other speakers can be parsed in tests and by the fuzz
//! target; the session itself never decodes the peer's routes.
//!
//! Wire format, as the RFCs say:
//! - NLRI length: one octet below 240, else two octets `0xfnnn` (at most 4,095);
//! - prefix components (types 1, 2): IPv4 `type, length, prefix octets`; IPv6 `type, length,
//!   offset, pattern octets` (the bits `offset..length`, RFC 8956 section 3.1);
//! - numeric components (3–8, 10, 11, 13): `{operator, value}` pairs; the operator octet is
//!   `e a len 0 lt gt eq` (end of list, AND with the previous term, value length 1/2/4/8);
//! - bitmask components (9 TCP flags, 12 fragment): operator `e a len 0 0 not m`.
//!
//! Pure: no I/O; every input is bounded and nothing a peer sends makes it panic.

use super::config::MAX_DESTINATION_PORTS;
use ipnet::{IpNet, Ipv4Net};
use netban_core::Source;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The SAFI of dissemination of flow specification rules (RFC 8955).
pub const SAFI_FLOWSPEC: u8 = 133;

/// Component types (RFC 8955 section 4.2.2, RFC 8956 section 3).
pub mod component {
    pub const DESTINATION_PREFIX: u8 = 1;
    pub const SOURCE_PREFIX: u8 = 2;
    /// IP protocol (IPv4); Next Header (IPv6).
    pub const IP_PROTOCOL: u8 = 3;
    pub const PORT: u8 = 4;
    pub const DESTINATION_PORT: u8 = 5;
    pub const SOURCE_PORT: u8 = 6;
    pub const ICMP_TYPE: u8 = 7;
    pub const ICMP_CODE: u8 = 8;
    pub const TCP_FLAGS: u8 = 9;
    pub const PACKET_LENGTH: u8 = 10;
    pub const DSCP: u8 = 11;
    pub const FRAGMENT: u8 = 12;
    /// IPv6 only (RFC 8956).
    pub const FLOW_LABEL: u8 = 13;
}

/// The traffic-rate extended community (type 0x80, sub-type 0x06, RFC 8955 section 7.1) with
/// AS 0 and rate 0.0 (IEEE 754 single precision): discard every matching packet.
pub const TRAFFIC_RATE_DISCARD: [u8; 8] = [0x80, 0x06, 0, 0, 0, 0, 0, 0];

/// The longest NLRI the two-octet length can say.
pub const MAX_RULE_LEN: usize = 0xfff;

/// Operator bits shared by numeric and bitmask operators.
const OP_END: u8 = 0x80;
const OP_AND: u8 = 0x40;
const OP_LEN: u8 = 0x30;
/// Numeric comparison bits.
const OP_LT: u8 = 0x04;
const OP_GT: u8 = 0x02;
const OP_EQ: u8 = 0x01;
/// Bitmask bits.
const OP_NOT: u8 = 0x02;
const OP_MATCH: u8 = 0x01;

/// One flow specification rule: its components, in strictly ascending type order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    components: Vec<Component>,
}

/// One match component.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Destination(FlowPrefix),
    Source(FlowPrefix),
    /// Types 3–8, 10, 11, 13: the terms are ORed, or ANDed where a term says so.
    Numeric {
        kind: u8,
        terms: Vec<NumericTerm>,
    },
    /// Types 9 (TCP flags) and 12 (fragment).
    Bitmask {
        kind: u8,
        terms: Vec<BitmaskTerm>,
    },
}

/// The prefix of a destination or source component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowPrefix {
    V4(Ipv4Net),
    /// Bits `offset..len` of an IPv6 address (RFC 8956); `pattern` holds no bit outside them.
    V6 {
        len: u8,
        offset: u8,
        pattern: Ipv6Addr,
    },
}

/// `value` compared with `lt`/`gt`/`eq` (all three false: never; all three: always).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NumericTerm {
    /// ANDed with the previous term (else ORed).
    pub and: bool,
    pub lt: bool,
    pub gt: bool,
    pub eq: bool,
    pub value: u64,
}

impl NumericTerm {
    /// `== value`, ORed with the previous term.
    pub fn equals(value: u64) -> NumericTerm {
        NumericTerm {
            and: false,
            lt: false,
            gt: false,
            eq: true,
            value,
        }
    }
}

/// `(data & value) == value` (`matched`) or `!= 0`, negated by `not`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BitmaskTerm {
    pub and: bool,
    pub not: bool,
    pub matched: bool,
    pub value: u64,
}

/// Why bytes are not a flow specification rule, or components do not make one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowspecError {
    #[error("the NLRI ends inside a rule")]
    Truncated,
    #[error("a rule without components")]
    Empty,
    #[error("component type {0} is not defined")]
    UnknownComponent(u8),
    #[error("component type {this} after type {previous}: types must be strictly ascending")]
    OutOfOrder { previous: u8, this: u8 },
    #[error("a prefix of length {len} (offset {offset}) is not valid for this address family")]
    BadPrefix { len: u8, offset: u8 },
    #[error("a component without terms")]
    NoTerms,
    #[error("the rule takes {0} bytes, more than the {MAX_RULE_LEN} the NLRI length can say")]
    TooLong(usize),
}

impl Component {
    /// The component's type code.
    pub fn kind(&self) -> u8 {
        match self {
            Component::Destination(_) => component::DESTINATION_PREFIX,
            Component::Source(_) => component::SOURCE_PREFIX,
            Component::Numeric { kind, .. } | Component::Bitmask { kind, .. } => *kind,
        }
    }
}

impl Rule {
    /// A rule of `components` (any order; they are sorted). Refused if two share a type, a
    /// type is not defined, a list of terms is empty, or the rule is too long for an NLRI.
    pub fn new(mut components: Vec<Component>) -> Result<Rule, FlowspecError> {
        components.sort_by_key(Component::kind);
        let mut previous = 0;
        for c in &components {
            let kind = c.kind();
            let expected = match c {
                Component::Destination(_) | Component::Source(_) => true,
                Component::Numeric { kind, terms } => is_numeric(*kind) && !terms.is_empty(),
                Component::Bitmask { kind, terms } => is_bitmask(*kind) && !terms.is_empty(),
            };
            if !expected {
                return Err(match c {
                    Component::Numeric { terms, .. } if terms.is_empty() => FlowspecError::NoTerms,
                    Component::Bitmask { terms, .. } if terms.is_empty() => FlowspecError::NoTerms,
                    _ => FlowspecError::UnknownComponent(kind),
                });
            }
            if kind <= previous {
                return Err(FlowspecError::OutOfOrder {
                    previous,
                    this: kind,
                });
            }
            previous = kind;
        }
        if components.is_empty() {
            return Err(FlowspecError::Empty);
        }
        let rule = Rule { components };
        let len = rule.body_len();
        if len > MAX_RULE_LEN {
            return Err(FlowspecError::TooLong(len));
        }
        Ok(rule)
    }

    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The rule's source prefix, if it has one.
    pub fn source(&self) -> Option<&FlowPrefix> {
        self.components.iter().find_map(|c| match c {
            Component::Source(p) => Some(p),
            _ => None,
        })
    }

    /// Appends the rule as NLRI: its length (one or two octets) and its components.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(32);
        for c in &self.components {
            encode_component(c, &mut body);
        }
        if body.len() < 240 {
            out.push(body.len() as u8);
        } else {
            // Rule::new and the decoder keep the length within 12 bits.
            out.extend_from_slice(&(0xf000 | body.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&body);
    }

    /// Bytes the rule takes in an NLRI field, length octets included.
    pub fn len_on_wire(&self) -> usize {
        let body = self.body_len();
        body + if body < 240 { 1 } else { 2 }
    }

    fn body_len(&self) -> usize {
        let mut body = Vec::new();
        for c in &self.components {
            encode_component(c, &mut body);
        }
        body.len()
    }
}

fn is_numeric(kind: u8) -> bool {
    matches!(kind, 3..=8 | 10 | 11 | 13)
}

fn is_bitmask(kind: u8) -> bool {
    matches!(kind, 9 | 12)
}

/// The length bits of an operator and the value's octets, shortest first.
fn value_octets(value: u64) -> (u8, Vec<u8>) {
    let bytes = value.to_be_bytes();
    if value <= 0xff {
        (0x00, bytes[7..].to_vec())
    } else if value <= 0xffff {
        (0x10, bytes[6..].to_vec())
    } else if value <= 0xffff_ffff {
        (0x20, bytes[4..].to_vec())
    } else {
        (0x30, bytes.to_vec())
    }
}

fn encode_component(c: &Component, out: &mut Vec<u8>) {
    out.push(c.kind());
    match c {
        Component::Destination(p) | Component::Source(p) => match p {
            FlowPrefix::V4(net) => {
                out.push(net.prefix_len());
                let octets = usize::from(net.prefix_len()).div_ceil(8);
                out.extend_from_slice(&net.trunc().addr().octets()[..octets]);
            }
            FlowPrefix::V6 {
                len,
                offset,
                pattern,
            } => {
                out.push(*len);
                out.push(*offset);
                let bits = len.saturating_sub(*offset);
                let shifted = u128::from(*pattern)
                    .checked_shl(u32::from(*offset))
                    .unwrap_or(0);
                let octets = usize::from(bits).div_ceil(8);
                out.extend_from_slice(&shifted.to_be_bytes()[..octets]);
            }
        },
        Component::Numeric { terms, .. } => {
            for (i, t) in terms.iter().enumerate() {
                let (len, value) = value_octets(t.value);
                let mut op = len;
                if i + 1 == terms.len() {
                    op |= OP_END;
                }
                for (set, bit) in [(t.and, OP_AND), (t.lt, OP_LT), (t.gt, OP_GT), (t.eq, OP_EQ)] {
                    if set {
                        op |= bit;
                    }
                }
                out.push(op);
                out.extend_from_slice(&value);
            }
        }
        Component::Bitmask { terms, .. } => {
            for (i, t) in terms.iter().enumerate() {
                let (len, value) = value_octets(t.value);
                let mut op = len;
                if i + 1 == terms.len() {
                    op |= OP_END;
                }
                for (set, bit) in [(t.and, OP_AND), (t.not, OP_NOT), (t.matched, OP_MATCH)] {
                    if set {
                        op |= bit;
                    }
                }
                out.push(op);
                out.extend_from_slice(&value);
            }
        }
    }
}

/// A bounds-checked cursor.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FlowspecError> {
        if self.bytes.len() < n {
            return Err(FlowspecError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FlowspecError> {
        self.take(1).map(|b| b[0])
    }
}

/// Decodes the rules of the NLRI field of an MP_REACH_NLRI / MP_UNREACH_NLRI of SAFI 133:
/// IPv6 rules (AFI 2, RFC 8956) if `ipv6`, else IPv4 rules (AFI 1, RFC 8955).
pub fn decode_rules(ipv6: bool, bytes: &[u8]) -> Result<Vec<Rule>, FlowspecError> {
    let mut r = Cursor { bytes };
    let mut rules = Vec::new();
    while !r.bytes.is_empty() {
        let first = r.u8()?;
        let len = if first >= 0xf0 {
            usize::from(first & 0x0f) << 8 | usize::from(r.u8()?)
        } else {
            usize::from(first)
        };
        let body = r.take(len)?;
        rules.push(decode_rule(ipv6, body)?);
    }
    Ok(rules)
}

fn decode_rule(ipv6: bool, body: &[u8]) -> Result<Rule, FlowspecError> {
    let mut r = Cursor { bytes: body };
    let mut components = Vec::new();
    let mut previous = 0;
    while !r.bytes.is_empty() {
        let kind = r.u8()?;
        if kind <= previous {
            return Err(FlowspecError::OutOfOrder {
                previous,
                this: kind,
            });
        }
        previous = kind;
        let c = match kind {
            component::DESTINATION_PREFIX => Component::Destination(decode_prefix(ipv6, &mut r)?),
            component::SOURCE_PREFIX => Component::Source(decode_prefix(ipv6, &mut r)?),
            k if is_numeric(k) => Component::Numeric {
                kind: k,
                terms: decode_terms(&mut r)?
                    .into_iter()
                    .map(|(op, value)| NumericTerm {
                        and: op & OP_AND != 0,
                        lt: op & OP_LT != 0,
                        gt: op & OP_GT != 0,
                        eq: op & OP_EQ != 0,
                        value,
                    })
                    .collect(),
            },
            k if is_bitmask(k) => Component::Bitmask {
                kind: k,
                terms: decode_terms(&mut r)?
                    .into_iter()
                    .map(|(op, value)| BitmaskTerm {
                        and: op & OP_AND != 0,
                        not: op & OP_NOT != 0,
                        matched: op & OP_MATCH != 0,
                        value,
                    })
                    .collect(),
            },
            k => return Err(FlowspecError::UnknownComponent(k)),
        };
        components.push(c);
    }
    if components.is_empty() {
        return Err(FlowspecError::Empty);
    }
    Ok(Rule { components })
}

fn decode_prefix(ipv6: bool, r: &mut Cursor<'_>) -> Result<FlowPrefix, FlowspecError> {
    let len = r.u8()?;
    if !ipv6 {
        if len > 32 {
            return Err(FlowspecError::BadPrefix { len, offset: 0 });
        }
        let octets = r.take(usize::from(len).div_ceil(8))?;
        let mut a = [0u8; 4];
        a[..octets.len()].copy_from_slice(octets);
        let net = Ipv4Net::new(Ipv4Addr::from(a), len)
            .map_err(|_| FlowspecError::BadPrefix { len, offset: 0 })?;
        return Ok(FlowPrefix::V4(net.trunc()));
    }
    let offset = r.u8()?;
    if len > 128 || offset > len {
        return Err(FlowspecError::BadPrefix { len, offset });
    }
    let bits = len - offset;
    let octets = r.take(usize::from(bits).div_ceil(8))?;
    let mut a = [0u8; 16];
    a[..octets.len()].copy_from_slice(octets);
    // Keep the pattern's `bits` bits (drop the padding), then move them to `offset`.
    let raw = u128::from_be_bytes(a);
    let kept = if bits == 0 {
        0
    } else {
        raw & (u128::MAX << (128 - u32::from(bits)))
    };
    let pattern = kept.checked_shr(u32::from(offset)).unwrap_or(0);
    Ok(FlowPrefix::V6 {
        len,
        offset,
        pattern: Ipv6Addr::from(pattern),
    })
}

/// `(operator, value)` pairs up to and including the one with the end-of-list bit.
fn decode_terms(r: &mut Cursor<'_>) -> Result<Vec<(u8, u64)>, FlowspecError> {
    let mut terms = Vec::new();
    loop {
        let op = r.u8()?;
        let n = 1usize << ((op & OP_LEN) >> 4);
        let mut value = 0u64;
        for b in r.take(n)? {
            value = value << 8 | u64::from(*b);
        }
        terms.push((op, value));
        if op & OP_END != 0 {
            return Ok(terms);
        }
    }
}

impl FlowPrefix {
    /// The prefix of `net` with offset 0.
    pub fn of(net: IpNet) -> FlowPrefix {
        match net.trunc() {
            IpNet::V4(n) => FlowPrefix::V4(n),
            IpNet::V6(n) => FlowPrefix::V6 {
                len: n.prefix_len(),
                offset: 0,
                pattern: n.addr(),
            },
        }
    }
}

/// What netban matches besides the banned source: IP protocols (Next Header in IPv6) and,
/// with them, destination ports. The empty match blocks every packet from the source.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceMatch {
    /// Ascending, without duplicates; empty: every protocol.
    protocols: Vec<u8>,
    /// Ascending, without duplicates; empty: every port.
    destination_ports: Vec<u16>,
}

impl SourceMatch {
    pub fn new(protocol: Option<u8>, destination_ports: Vec<u16>) -> SourceMatch {
        SourceMatch::of(protocol.into_iter().collect(), destination_ports)
    }

    /// A match of any of `protocols` and, if any are given, any of `destination_ports`.
    pub fn of(mut protocols: Vec<u8>, mut destination_ports: Vec<u16>) -> SourceMatch {
        protocols.sort_unstable();
        protocols.dedup();
        destination_ports.sort_unstable();
        destination_ports.dedup();
        SourceMatch {
            protocols,
            destination_ports,
        }
    }

    pub fn protocols(&self) -> &[u8] {
        &self.protocols
    }

    pub fn destination_ports(&self) -> &[u16] {
        &self.destination_ports
    }

    /// Whether every packet from the source matches.
    pub fn is_unrestricted(&self) -> bool {
        self.protocols.is_empty()
    }

    /// The narrowest match covering both `self` and `other`, for one rule serving bans of
    /// differently shaped sources: unrestricted if either is; else the union of the
    /// protocols, and the union of the ports if both restrict ports (and the union stays
    /// within [`MAX_DESTINATION_PORTS`]), else every port. A union can match more than
    /// either side: tcp/22 ∪ udp/53 also matches tcp/53 and udp/22 (one rule has one list of
    /// protocols and one of ports). It never matches less.
    pub fn union(&self, other: &SourceMatch) -> SourceMatch {
        if self.is_unrestricted() || other.is_unrestricted() {
            return SourceMatch::default();
        }
        let protocols = [self.protocols.as_slice(), other.protocols.as_slice()].concat();
        let ports = if self.destination_ports.is_empty() || other.destination_ports.is_empty() {
            Vec::new()
        } else {
            [
                self.destination_ports.as_slice(),
                other.destination_ports.as_slice(),
            ]
            .concat()
        };
        let mut union = SourceMatch::of(protocols, ports);
        if union.destination_ports.len() > MAX_DESTINATION_PORTS {
            union.destination_ports.clear();
        }
        union
    }

    /// The rule for traffic from `source`: source prefix, then protocols (`== P1 OR == P2 …`),
    /// then the destination ports (`== p1 OR == p2 …`), in that (ascending type) order.
    pub fn rule(&self, source: IpNet) -> Rule {
        let mut components = vec![Component::Source(FlowPrefix::of(source))];
        let equals = |values: Vec<u64>| values.into_iter().map(NumericTerm::equals).collect();
        if !self.protocols.is_empty() {
            components.push(Component::Numeric {
                kind: component::IP_PROTOCOL,
                terms: equals(self.protocols.iter().map(|&p| u64::from(p)).collect()),
            });
        }
        if !self.destination_ports.is_empty() {
            components.push(Component::Numeric {
                kind: component::DESTINATION_PORT,
                terms: equals(
                    self.destination_ports
                        .iter()
                        .map(|&p| u64::from(p))
                        .collect(),
                ),
            });
        }
        // At most 1 + 18 + 1 + 2 × 256 + 1 + 3 × 65,536 bytes only with absurd lists; the
        // configuration and `union` cap them, so the components are always a valid, short
        // rule.
        Rule { components }
    }
}

/// The shape of the rules one target sends: what a rule matches besides the source, by
/// default and for bans of particular sources (`[targets.flowspec.sources.NAME]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleShapes {
    pub default: SourceMatch,
    pub by_source: BTreeMap<Source, SourceMatch>,
}

impl RuleShapes {
    /// The match of the one rule for a prefix banned by `sources`: the [`SourceMatch::union`]
    /// of each source's shape (its own, else the default). So a prefix banned by sshd (tcp/22)
    /// and by recidive (no shape of its own, default unrestricted) gets a source-only rule.
    /// No sources (a covering prefix, or a caller that does not say) → the default.
    pub fn for_sources(&self, sources: &[Source]) -> SourceMatch {
        let mut shapes = sources
            .iter()
            .map(|s| self.by_source.get(s).unwrap_or(&self.default));
        let Some(first) = shapes.next() else {
            return self.default.clone();
        };
        shapes.fold(first.clone(), |union, shape| union.union(shape))
    }

    /// Whether any source has a shape of its own (else every rule has the default shape).
    pub fn per_source(&self) -> bool {
        !self.by_source.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn encoded(rule: &Rule) -> Vec<u8> {
        let mut out = Vec::new();
        rule.encode(&mut out);
        out
    }

    /// The NLRI of GoBGP 3.10's rules A, B and C (field notes, section 1b).
    const RULE_A: &str = "060220cb007107";
    const RULE_B: &str = "0c0220cb007107038106058116";
    const RULE_C: &str = "1302800020010db8000a00000000000000000007";

    #[test]
    fn source_rules_match_gobgp_byte_for_byte() {
        let a = SourceMatch::default().rule("203.0.113.7/32".parse().unwrap());
        assert_eq!(encoded(&a), hex(RULE_A));
        let b = SourceMatch::new(Some(6), vec![22]).rule("203.0.113.7/32".parse().unwrap());
        assert_eq!(encoded(&b), hex(RULE_B));
        let c = SourceMatch::default().rule("2001:db8:a::7/128".parse().unwrap());
        assert_eq!(encoded(&c), hex(RULE_C));
        for (rule, bytes, ipv6) in [(a, RULE_A, false), (b, RULE_B, false), (c, RULE_C, true)] {
            assert_eq!(decode_rules(ipv6, &hex(bytes)).unwrap(), vec![rule]);
        }
    }

    #[test]
    fn several_ports_are_ored_and_take_the_shortest_value_length() {
        let rule = SourceMatch::new(Some(6), vec![443, 22, 22, 80])
            .rule("2001:db8:a::/48".parse().unwrap());
        let bytes = encoded(&rule);
        // Source /48 offset 0 (6 octets), protocol == 6, ports == 22 OR == 80 OR == 443.
        let want = hex(concat!(
            "14",
            "02",
            "30",
            "00",
            "20010db8000a",
            "03",
            "81",
            "06",
            "05",
            "01",
            "16",
            "01",
            "50",
            "91",
            "01bb"
        ));
        assert_eq!(bytes, want);
        assert_eq!(rule.len_on_wire(), bytes.len());
        assert_eq!(decode_rules(true, &bytes).unwrap(), vec![rule]);
    }

    #[test]
    fn long_rules_use_the_two_octet_length() {
        // 100 two-octet ports: 300 bytes of terms.
        let ports: Vec<u16> = (1000..1100).collect();
        let rule = SourceMatch::new(Some(17), ports).rule("203.0.113.0/24".parse().unwrap());
        let bytes = encoded(&rule);
        assert!(bytes.len() > 240);
        assert_eq!(bytes[0] & 0xf0, 0xf0);
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]) & 0x0fff);
        assert_eq!(len, bytes.len() - 2);
        assert_eq!(rule.len_on_wire(), bytes.len());
        assert_eq!(decode_rules(false, &bytes).unwrap(), vec![rule]);
        // A two-octet length on a short rule is still read.
        assert_eq!(
            decode_rules(false, &hex("f0060220cb007107")).unwrap().len(),
            1
        );
    }

    #[test]
    fn ipv6_offset_selects_the_middle_bits() {
        // RFC 8956 section 3.1: bits 64..104 of the address, pattern of 5 octets.
        let bytes = hex("08016840aabbccddee");
        let rules = decode_rules(true, &bytes).unwrap();
        let Component::Destination(FlowPrefix::V6 {
            len,
            offset,
            pattern,
        }) = rules[0].components()[0]
        else {
            panic!("{rules:?}")
        };
        assert_eq!((len, offset), (104, 64));
        assert_eq!(pattern, "::aabb:ccdd:ee00:0".parse::<Ipv6Addr>().unwrap());
        assert_eq!(encoded(&rules[0]), bytes);
        // An offset beyond the length is malformed.
        assert_eq!(
            decode_rules(true, &hex("030140ff")),
            Err(FlowspecError::BadPrefix {
                len: 64,
                offset: 255
            })
        );
    }

    #[test]
    fn malformed_rules_are_refused() {
        let cases = [
            ("05032081", FlowspecError::Truncated), // length beyond the bytes
            ("00", FlowspecError::Empty),           // no components
            ("040e810101", FlowspecError::UnknownComponent(14)), // type 14
            (
                "06038106028100",
                FlowspecError::OutOfOrder {
                    previous: 3,
                    this: 2,
                },
            ),
            ("03022120", FlowspecError::BadPrefix { len: 33, offset: 0 }),
            ("0303010600", FlowspecError::Truncated), // no end-of-list bit
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_rules(false, &hex(bytes)), Err(want), "{bytes}");
        }
        assert_eq!(
            Rule::new(vec![
                Component::Source(FlowPrefix::of("203.0.113.7/32".parse().unwrap())),
                Component::Source(FlowPrefix::of("203.0.113.8/32".parse().unwrap())),
            ]),
            Err(FlowspecError::OutOfOrder {
                previous: 2,
                this: 2
            })
        );
        assert_eq!(
            Rule::new(vec![Component::Numeric {
                kind: 5,
                terms: vec![]
            }]),
            Err(FlowspecError::NoTerms)
        );
    }

    #[test]
    fn one_rule_for_several_sources_is_the_union_of_their_shapes() {
        let src = |s: &str| Source::new(s).unwrap();
        let shapes = RuleShapes {
            default: SourceMatch::default(),
            by_source: BTreeMap::from([
                (src("sshd"), SourceMatch::new(Some(6), vec![22])),
                (src("nginx"), SourceMatch::new(Some(6), vec![80, 443])),
                (src("named"), SourceMatch::new(Some(17), vec![53])),
                (src("icmp"), SourceMatch::new(Some(1), vec![])),
            ]),
        };
        let shape = |names: &[&str]| {
            let sources: Vec<Source> = names.iter().map(|n| src(n)).collect();
            shapes.for_sources(&sources)
        };
        assert_eq!(shape(&["sshd"]), SourceMatch::new(Some(6), vec![22]));
        // Any source without a shape of its own (default: unrestricted) → source-only rule.
        assert_eq!(shape(&["recidive", "sshd"]), SourceMatch::default());
        assert_eq!(shape(&[]), SourceMatch::default());
        // Same protocol: the ports add up.
        assert_eq!(
            shape(&["nginx", "sshd"]),
            SourceMatch::new(Some(6), vec![22, 80, 443])
        );
        // Different protocols: both protocols, all ports (over-matches tcp/53 and udp/22).
        assert_eq!(
            shape(&["named", "sshd"]),
            SourceMatch::of(vec![6, 17], vec![22, 53])
        );
        // A protocol with no ports of its own drops the port restriction.
        assert_eq!(
            shape(&["icmp", "sshd"]),
            SourceMatch::of(vec![1, 6], vec![])
        );
        // Never fewer than the shape of each source; a source order does not matter.
        assert_eq!(shape(&["sshd", "nginx"]), shape(&["nginx", "sshd"]));
        // Two protocols are ORed in one component: type 3, `== 6`, `== 17` (end bit last).
        let rule =
            SourceMatch::of(vec![17, 6], vec![22, 53]).rule("203.0.113.7/32".parse().unwrap());
        assert_eq!(encoded(&rule), hex("100220cb00710703010681110501168135"));
        // A non-default default shape applies to sources without their own.
        let narrow = RuleShapes {
            default: SourceMatch::new(Some(17), vec![]),
            ..shapes.clone()
        };
        assert_eq!(
            narrow.for_sources(&[src("recidive"), src("named")]),
            SourceMatch::new(Some(17), vec![])
        );
        // A union past the port cap drops the ports, never the rule.
        let many = |from: u16| SourceMatch::new(Some(6), (from..from + 20).collect());
        assert_eq!(
            many(1000).union(&many(2000)),
            SourceMatch::new(Some(6), vec![])
        );
    }

    #[test]
    fn rule_new_sorts_components_by_type() {
        let port = Component::Numeric {
            kind: component::DESTINATION_PORT,
            terms: vec![NumericTerm::equals(22)],
        };
        let source = Component::Source(FlowPrefix::of("203.0.113.7/32".parse().unwrap()));
        let rule = Rule::new(vec![port.clone(), source.clone()]).unwrap();
        assert_eq!(rule.components(), &[source, port]);
    }

    fn prefix_strategy(ipv6: bool) -> BoxedStrategy<FlowPrefix> {
        if ipv6 {
            (any::<u128>(), 0u8..=128, 0u8..=128)
                .prop_map(|(a, len, offset)| {
                    let offset = offset.min(len);
                    let bits = len - offset;
                    let mask = if bits == 0 {
                        0
                    } else {
                        (u128::MAX << (128 - u32::from(bits))) >> offset
                    };
                    FlowPrefix::V6 {
                        len,
                        offset,
                        pattern: Ipv6Addr::from(a & mask),
                    }
                })
                .boxed()
        } else {
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, l)| {
                    FlowPrefix::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
                })
                .boxed()
        }
    }

    fn rule_strategy(ipv6: bool) -> impl Strategy<Value = Rule> {
        let numeric = (
            prop_oneof![3u8..=8, Just(10u8), Just(11u8), Just(13u8)],
            proptest::collection::vec(
                (
                    any::<bool>(),
                    any::<bool>(),
                    any::<bool>(),
                    any::<bool>(),
                    any::<u64>(),
                ),
                1..4,
            ),
        )
            .prop_map(|(kind, terms)| Component::Numeric {
                kind,
                terms: terms
                    .into_iter()
                    .map(|(and, lt, gt, eq, value)| NumericTerm {
                        and,
                        lt,
                        gt,
                        eq,
                        value,
                    })
                    .collect(),
            });
        let bitmask = (
            prop_oneof![Just(9u8), Just(12u8)],
            proptest::collection::vec(
                (any::<bool>(), any::<bool>(), any::<bool>(), any::<u16>()),
                1..3,
            ),
        )
            .prop_map(|(kind, terms)| Component::Bitmask {
                kind,
                terms: terms
                    .into_iter()
                    .map(|(and, not, matched, value)| BitmaskTerm {
                        and,
                        not,
                        matched,
                        value: u64::from(value),
                    })
                    .collect(),
            });
        (
            proptest::option::of(prefix_strategy(ipv6)),
            proptest::option::of(prefix_strategy(ipv6)),
            proptest::collection::vec(prop_oneof![numeric, bitmask], 0..5),
        )
            .prop_filter_map("a valid rule", |(dst, src, mut rest)| {
                rest.extend(dst.map(Component::Destination));
                rest.extend(src.map(Component::Source));
                rest.sort_by_key(Component::kind);
                rest.dedup_by_key(|c| c.kind());
                Rule::new(rest).ok()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn rules_round_trip(v4 in proptest::collection::vec(rule_strategy(false), 1..4),
                            v6 in proptest::collection::vec(rule_strategy(true), 1..4)) {
            for (rules, ipv6) in [(v4, false), (v6, true)] {
                let mut bytes = Vec::new();
                for r in &rules {
                    let before = bytes.len();
                    r.encode(&mut bytes);
                    prop_assert_eq!(bytes.len() - before, r.len_on_wire());
                }
                prop_assert_eq!(decode_rules(ipv6, &bytes).unwrap(), rules);
            }
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), ipv6 in any::<bool>()) {
            if let Ok(rules) = decode_rules(ipv6, &bytes) {
                let mut again = Vec::new();
                for r in &rules {
                    r.encode(&mut again);
                }
                prop_assert_eq!(decode_rules(ipv6, &again).unwrap(), rules);
            }
        }
    }
}
