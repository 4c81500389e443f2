//! Addresses and prefixes, parsed strictly and kept in one canonical form.
//!
//! Everything netban ever sends to a device is rendered from a [`Prefix`], never from the text
//! a user typed, so a prefix that parsed cannot carry anything but digits, dots, colons and a
//! slash. Parsing refuses rather than guesses: hostnames, zone ids, octal-looking octets,
//! host bits set under a mask, whitespace and control characters are all errors that say what
//! was wrong.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The longest text accepted as an address or prefix. The longest canonical IPv6 prefix
/// (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128`) is 49 characters.
pub const MAX_INPUT_LEN: usize = 64;

/// IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The number of bits in an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// Why a text is not an acceptable address or prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("empty address")]
    Empty,
    #[error("address is too long ({len} characters, at most {MAX_INPUT_LEN})")]
    TooLong { len: usize },
    #[error("address {0:?} contains whitespace, control or non-ASCII characters")]
    BadCharacters(String),
    #[error(
        "{0:?} looks like a hostname; give an IP address or prefix (netban never resolves names)"
    )]
    Hostname(String),
    #[error("{0:?} has an IPv6 zone id ('%'); zone ids are link-local only and cannot be banned")]
    ZoneId(String),
    #[error("{0:?} is not a valid IPv4 address (four decimal octets 0-255, without leading zeros) or IPv6 address")]
    Malformed(String),
    #[error("{0:?} is not a valid IPv6 address (at most 8 groups of 1-4 hex digits, one '::')")]
    MalformedV6(String),
    #[error("{0:?} has an invalid prefix length (IPv4 takes /0-/32, IPv6 /0-/128, decimal without leading zeros)")]
    BadLength(String),
    #[error("{input:?} has host bits set under its mask; did you mean {network}?")]
    HostBits { input: String, network: String },
    #[error(
        "{0} is not a unicast address (unspecified, multicast or broadcast) and cannot be banned"
    )]
    NotUnicast(String),
}

/// A canonical IPv4 or IPv6 prefix: network address plus length, no host bits, IPv4-mapped
/// IPv6 folded into IPv4. A single address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(IpNet);

impl Prefix {
    /// Parses user input strictly (see the module documentation).
    pub fn parse(input: &str) -> Result<Prefix, PrefixError> {
        if input.is_empty() {
            return Err(PrefixError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(PrefixError::TooLong { len: input.len() });
        }
        if !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PrefixError::BadCharacters(input.to_string()));
        }
        if input.contains('%') {
            return Err(PrefixError::ZoneId(input.to_string()));
        }
        let (addr_text, len_text) = match input.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (input, None),
        };
        let addr: IpAddr = match addr_text.parse() {
            Ok(a) => a,
            Err(_) => {
                return Err(if looks_like_hostname(addr_text) {
                    PrefixError::Hostname(input.to_string())
                } else if addr_text.contains(':') && !addr_text.contains('[') {
                    PrefixError::MalformedV6(input.to_string())
                } else {
                    PrefixError::Malformed(input.to_string())
                })
            }
        };
        let max_len = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let len = match len_text {
            None => max_len,
            Some(l) => {
                parse_len(l, max_len).ok_or_else(|| PrefixError::BadLength(input.to_string()))?
            }
        };
        let net = IpNet::new(addr, len).map_err(|_| PrefixError::BadLength(input.to_string()))?;
        if net.trunc() != net {
            return Err(PrefixError::HostBits {
                input: input.to_string(),
                network: Prefix::from_net(net.trunc()).to_string(),
            });
        }
        let prefix = Prefix::from_net(net);
        if !prefix.is_unicast() {
            return Err(PrefixError::NotUnicast(prefix.to_string()));
        }
        Ok(prefix)
    }

    /// The prefix of exactly one address.
    pub fn host(addr: IpAddr) -> Prefix {
        Prefix::from_net(IpNet::from(addr))
    }

    /// Wraps an `IpNet`, truncating host bits and folding IPv4-mapped IPv6 into IPv4.
    /// Used for trusted input (configuration already validated, device read-back).
    pub fn from_net(net: IpNet) -> Prefix {
        let net = net.trunc();
        if let IpNet::V6(v6) = net {
            if let Some(v4) = mapped_v4(v6) {
                return Prefix(IpNet::V4(v4));
            }
        }
        Prefix(net)
    }

    pub fn net(&self) -> IpNet {
        self.0
    }

    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length (a prefix always holds at least one address, so no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn family(&self) -> Family {
        match self.0 {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// True for a single address (/32 or /128).
    pub fn is_host(&self) -> bool {
        self.len() == self.family().bits()
    }

    /// True if `other` lies wholly inside this prefix (a prefix contains itself).
    pub fn contains(&self, other: &Prefix) -> bool {
        self.0.contains(&other.0)
    }

    /// True if the two prefixes share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The network mask in dotted form for IPv4 (`255.255.255.0`) or the IPv6 mask address.
    pub fn netmask(&self) -> IpAddr {
        self.0.netmask()
    }

    /// The inverted mask Cisco IOS uses in ACLs (`0.0.0.255` for a /24).
    pub fn wildcard_mask(&self) -> IpAddr {
        self.0.hostmask()
    }

    /// False for what netban never bans: the unspecified address, multicast, the IPv4
    /// broadcast address. [`Prefix::parse`] refuses those; [`Prefix::host`] and
    /// [`Prefix::from_net`] (trusted input, device read-back) do not check.
    pub fn is_unicast(&self) -> bool {
        match self.0 {
            IpNet::V4(n) => {
                let a = n.network();
                let unspecified = a.is_unspecified() && n.prefix_len() == 32;
                !(unspecified || a.is_multicast() || a == Ipv4Addr::BROADCAST)
            }
            IpNet::V6(n) => {
                let a = n.network();
                let unspecified = a.is_unspecified() && n.prefix_len() == 128;
                !(unspecified || a.is_multicast())
            }
        }
    }
}

fn mapped_v4(net: Ipv6Net) -> Option<Ipv4Net> {
    let seg = net.network().segments();
    if seg[..5] == [0, 0, 0, 0, 0] && seg[5] == 0xffff && net.prefix_len() >= 96 {
        let v4 = Ipv6Addr::to_ipv4_mapped(&net.network())?;
        return Ipv4Net::new(v4, net.prefix_len() - 96).ok();
    }
    None
}

/// A prefix length: decimal digits, no sign, no leading zero (except "0" itself).
fn parse_len(text: &str, max: u8) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    let len: u8 = text.parse().ok()?;
    (len <= max).then_some(len)
}

/// A failed parse made only of DNS label characters whose last label starts with a letter
/// (`example.com`, `localhost`) was meant as a name; `0x7f.0.0.1` was not.
fn looks_like_hostname(text: &str) -> bool {
    let all_label_chars = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let last_label = text.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    all_label_chars && last_label.starts_with(|c: char| c.is_ascii_alphabetic())
}

impl fmt::Display for Prefix {
    /// Canonical text: `203.0.113.7/32`, `2001:db8::/32`. Always with the length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.addr(), self.0.prefix_len())
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Prefix::parse(s)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Prefix::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str, canonical: &str) {
        assert_eq!(
            Prefix::parse(input).unwrap().to_string(),
            canonical,
            "input {input:?}"
        );
    }

    #[test]
    fn accepts_and_normalises() {
        ok("203.0.113.7", "203.0.113.7/32");
        ok("203.0.113.0/24", "203.0.113.0/24");
        ok("2001:db8::1", "2001:db8::1/128");
        ok("2001:0DB8:0000::0001", "2001:db8::1/128");
        ok("2001:db8::/32", "2001:db8::/32");
        ok("::ffff:203.0.113.7", "203.0.113.7/32");
        ok("::ffff:203.0.113.0/120", "203.0.113.0/24");
        ok("10.0.0.0/8", "10.0.0.0/8");
    }

    #[test]
    fn refuses_with_the_right_reason() {
        use PrefixError::*;
        type Check = fn(&PrefixError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, Empty)),
            ("example.com", |e| matches!(e, Hostname(_))),
            ("localhost", |e| matches!(e, Hostname(_))),
            ("fe80::1%eth0", |e| matches!(e, ZoneId(_))),
            ("010.0.0.1", |e| matches!(e, Malformed(_))),
            ("1.2.3.256", |e| matches!(e, Malformed(_))),
            ("1.2.3", |e| matches!(e, Malformed(_))),
            ("0x7f.0.0.1", |e| matches!(e, Malformed(_))),
            ("203.0.113.7 ", |e| matches!(e, BadCharacters(_))),
            ("203.0.113.7\n", |e| matches!(e, BadCharacters(_))),
            ("203.0.113.7;reboot", |e| matches!(e, Malformed(_))),
            ("203.0.113.0/24/1", |e| matches!(e, BadLength(_))),
            ("203.0.113.0/33", |e| matches!(e, BadLength(_))),
            ("203.0.113.0/024", |e| matches!(e, BadLength(_))),
            ("203.0.113.0/", |e| matches!(e, BadLength(_))),
            ("203.0.113.0/-1", |e| matches!(e, BadLength(_))),
            ("2001:db8::/129", |e| matches!(e, BadLength(_))),
            ("203.0.113.7/24", |e| matches!(e, HostBits { .. })),
            ("0.0.0.0", |e| matches!(e, NotUnicast(_))),
            ("::", |e| matches!(e, NotUnicast(_))),
            ("224.0.0.1", |e| matches!(e, NotUnicast(_))),
            ("255.255.255.255", |e| matches!(e, NotUnicast(_))),
            ("ff02::1", |e| matches!(e, NotUnicast(_))),
            ("[2001:db8::1]", |e| matches!(e, Malformed(_))),
            ("2001:db8::1::2", |e| matches!(e, MalformedV6(_))),
            ("2001:db8:ff::1114b", |e| matches!(e, MalformedV6(_))),
        ];
        for (input, check) in cases {
            let err = Prefix::parse(input).expect_err(input);
            assert!(check(&err), "{input:?} gave {err:?}");
        }
        assert!(matches!(
            Prefix::parse(&"1".repeat(65)),
            Err(TooLong { len: 65 })
        ));
    }

    #[test]
    fn host_bits_error_names_the_network() {
        let err = Prefix::parse("203.0.113.7/24").unwrap_err();
        assert!(err.to_string().contains("203.0.113.0/24"), "{err}");
    }

    #[test]
    fn containment_and_masks() {
        let net = Prefix::parse("203.0.113.0/24").unwrap();
        let host = Prefix::parse("203.0.113.9").unwrap();
        assert!(net.contains(&host) && !host.contains(&net) && net.overlaps(&host));
        assert_eq!(net.wildcard_mask().to_string(), "0.0.0.255");
        assert_eq!(net.netmask().to_string(), "255.255.255.0");
        assert!(host.is_host() && !net.is_host());
    }

    proptest::proptest! {
        #[test]
        fn canonical_text_round_trips(a: u32, len in 0u8..=32) {
            let net = Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
            let p = Prefix::from_net(IpNet::V4(net));
            if let Ok(back) = Prefix::parse(&p.to_string()) {
                proptest::prop_assert_eq!(back, p);
            }
        }

        #[test]
        fn v6_canonical_text_round_trips(a: u128, len in 0u8..=128) {
            let p = Prefix::from_net(IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap()));
            if let Ok(back) = Prefix::parse(&p.to_string()) {
                proptest::prop_assert_eq!(back, p);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = Prefix::parse(&s);
        }
    }
}
