//! Set elements: which of netban's four sets holds a prefix, and how an element is written.
//!
//! Single addresses go to the hash sets `ban4`/`ban6` (fast at any size); shorter prefixes go
//! to the interval sets `net4`/`net6` (slow when large, so kept for real prefixes). An element
//! someone put elsewhere (a /32 in `net4`, a range `a-b`) is reported with a handle saying
//! where it is, so netban can delete exactly that element.

use netban_core::{Family, Prefix};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One of the four sets in netban's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetName {
    Ban4,
    Ban6,
    Net4,
    Net6,
}

impl SetName {
    pub const ALL: [SetName; 4] = [SetName::Ban4, SetName::Ban6, SetName::Net4, SetName::Net6];

    pub fn as_str(self) -> &'static str {
        match self {
            SetName::Ban4 => "ban4",
            SetName::Ban6 => "ban6",
            SetName::Net4 => "net4",
            SetName::Net6 => "net6",
        }
    }

    pub fn from_name(name: &str) -> Option<SetName> {
        SetName::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn family(self) -> Family {
        match self {
            SetName::Ban4 | SetName::Net4 => Family::V4,
            SetName::Ban6 | SetName::Net6 => Family::V6,
        }
    }

    /// Interval sets hold prefixes and ranges, and refuse overlapping elements.
    pub fn is_interval(self) -> bool {
        matches!(self, SetName::Net4 | SetName::Net6)
    }

    /// The set netban puts `prefix` in.
    pub fn for_prefix(prefix: &Prefix) -> SetName {
        match (prefix.family(), prefix.is_host()) {
            (Family::V4, true) => SetName::Ban4,
            (Family::V6, true) => SetName::Ban6,
            (Family::V4, false) => SetName::Net4,
            (Family::V6, false) => SetName::Net6,
        }
    }

    /// The nft type of the set's keys.
    pub fn key_type(self) -> &'static str {
        match self.family() {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
}

/// An element's key exactly as the device holds it (addresses kept raw, so an IPv4-mapped
/// IPv6 element found in `ban6` is written back as it was).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// An address with a prefix length (the full length for a single address).
    Net(IpAddr, u8),
    /// An inclusive range of addresses that is not a single prefix.
    Range(IpAddr, IpAddr),
}

impl Key {
    pub fn of(prefix: &Prefix) -> Key {
        Key::Net(prefix.addr(), prefix.len())
    }

    /// The prefixes this element covers: one, or the minimal cover of a range.
    pub fn prefixes(&self) -> Vec<Prefix> {
        match *self {
            Key::Net(addr, len) => prefix_of(addr, len).into_iter().collect(),
            Key::Range(lo, hi) => range_prefixes(lo, hi),
        }
    }

    /// The covered addresses as an inclusive range of integers (IPv4 in the low 32 bits).
    pub fn span(&self) -> (u128, u128) {
        match *self {
            Key::Net(addr, len) => {
                let bits = addr_bits(addr);
                let host_bits = u32::from(bits.saturating_sub(len));
                let size_mask = if host_bits >= 128 {
                    u128::MAX
                } else {
                    (1u128 << host_bits) - 1
                };
                let lo = addr_to_int(addr) & !size_mask;
                (lo, lo | size_mask)
            }
            Key::Range(lo, hi) => (addr_to_int(lo), addr_to_int(hi)),
        }
    }
}

impl fmt::Display for Key {
    /// nft syntax: `203.0.113.7`, `203.0.113.0/24`, `10.0.0.1-10.0.0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Key::Net(addr, len) if len == addr_bits(addr) => write!(f, "{addr}"),
            Key::Net(addr, len) => write!(f, "{addr}/{len}"),
            Key::Range(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

/// Where an element is: which set, which key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub set: SetName,
    pub key: Key,
}

impl Location {
    /// Where netban puts `prefix`.
    pub fn canonical(prefix: &Prefix) -> Location {
        Location {
            set: SetName::for_prefix(prefix),
            key: Key::of(prefix),
        }
    }

    /// The handle reported with a held entry: none where netban itself would have put it,
    /// else `"SET KEY"` (e.g. `"net4 10.0.0.1-10.0.0.5"`).
    pub fn handle(&self) -> Option<String> {
        let canonical = match self.key {
            Key::Net(addr, len) => {
                prefix_of(addr, len).is_some_and(|p| *self == Location::canonical(&p))
            }
            Key::Range(..) => false,
        };
        (!canonical).then(|| format!("{} {}", self.set.as_str(), self.key))
    }

    /// Reads back a handle made by [`Location::handle`], or the canonical location when there
    /// is none. Every part is parsed, so the result renders only addresses and numbers.
    pub fn from_held(prefix: &Prefix, handle: Option<&str>) -> Result<Location, String> {
        let Some(handle) = handle else {
            return Ok(Location::canonical(prefix));
        };
        let bad = || format!("unrecognised nftables element handle {handle:?}");
        let (set, key) = handle.split_once(' ').ok_or_else(bad)?;
        let set = SetName::from_name(set).ok_or_else(bad)?;
        let key = if let Some((lo, hi)) = key.split_once('-') {
            let lo: IpAddr = lo.parse().map_err(|_| bad())?;
            let hi: IpAddr = hi.parse().map_err(|_| bad())?;
            if lo.is_ipv4() != hi.is_ipv4() || addr_to_int(lo) > addr_to_int(hi) {
                return Err(bad());
            }
            Key::Range(lo, hi)
        } else if let Some((addr, len_text)) = key.split_once('/') {
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let len: u8 = len_text.parse().map_err(|_| bad())?;
            if len > addr_bits(addr) || !len_text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            Key::Net(addr, len)
        } else {
            let addr: IpAddr = key.parse().map_err(|_| bad())?;
            Key::Net(addr, addr_bits(addr))
        };
        let family_ok = match key {
            Key::Net(a, _) | Key::Range(a, _) => a.is_ipv4() == (set.family() == Family::V4),
        };
        if !family_ok {
            return Err(bad());
        }
        Ok(Location { set, key })
    }
}

/// The prefix of `len` bits at `addr` (host bits cleared), as netban's [`Prefix`]; `None` for
/// what netban never bans (multicast, broadcast, the unspecified address) or a bad length.
pub fn prefix_of(addr: IpAddr, len: u8) -> Option<Prefix> {
    let bits = addr_bits(addr);
    if len == bits {
        return Some(Prefix::host(addr)).filter(Prefix::is_unicast);
    }
    if len > bits {
        return None;
    }
    let (lo, _) = Key::Net(addr, len).span();
    Prefix::parse(&format!("{}/{len}", int_to_addr(lo, addr.is_ipv4()))).ok()
}

fn int_to_addr(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

fn addr_bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn addr_to_int(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The fewest prefixes that exactly cover `lo..=hi` (same family, `lo <= hi`).
fn range_prefixes(lo: IpAddr, hi: IpAddr) -> Vec<Prefix> {
    let v4 = lo.is_ipv4();
    let bits = addr_bits(lo);
    let (mut start, end) = (addr_to_int(lo), addr_to_int(hi));
    if v4 != hi.is_ipv4() || start > end {
        return Vec::new();
    }
    let mut out = Vec::new();
    loop {
        // The largest aligned block starting at `start` that does not pass `end`.
        let mut size_bits = if start == 0 {
            u32::from(bits)
        } else {
            start.trailing_zeros().min(u32::from(bits))
        };
        while size_bits > 0 && block_end(start, size_bits) > end {
            size_bits -= 1;
        }
        let len = bits - size_bits as u8;
        out.extend(prefix_of(int_to_addr(start, v4), len));
        let last = block_end(start, size_bits);
        if last >= end {
            return out;
        }
        start = last + 1;
    }
}

fn block_end(start: u128, size_bits: u32) -> u128 {
    if size_bits >= 128 {
        u128::MAX
    } else {
        start.saturating_add((1u128 << size_bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    fn strs(v: Vec<Prefix>) -> Vec<String> {
        v.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn hosts_go_to_hash_sets_and_prefixes_to_interval_sets() {
        assert_eq!(SetName::for_prefix(&p("203.0.113.7")), SetName::Ban4);
        assert_eq!(SetName::for_prefix(&p("2001:db8::7")), SetName::Ban6);
        assert_eq!(SetName::for_prefix(&p("203.0.113.0/24")), SetName::Net4);
        assert_eq!(SetName::for_prefix(&p("2001:db8::/48")), SetName::Net6);
        assert!(SetName::Net6.is_interval() && !SetName::Ban4.is_interval());
    }

    #[test]
    fn keys_render_in_nft_syntax() {
        assert_eq!(Key::of(&p("203.0.113.7")).to_string(), "203.0.113.7");
        assert_eq!(Key::of(&p("203.0.113.0/24")).to_string(), "203.0.113.0/24");
        assert_eq!(Key::of(&p("2001:db8::1")).to_string(), "2001:db8::1");
        assert_eq!(Key::of(&p("2001:db8::/32")).to_string(), "2001:db8::/32");
        let range = Key::Range("10.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap());
        assert_eq!(range.to_string(), "10.0.0.1-10.0.0.5");
    }

    #[test]
    fn ranges_are_covered_by_minimal_prefixes() {
        let r = |a: &str, b: &str| strs(range_prefixes(a.parse().unwrap(), b.parse().unwrap()));
        assert_eq!(
            r("10.0.0.1", "10.0.0.5"),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31"]
        );
        assert_eq!(r("10.0.0.0", "10.0.0.255"), ["10.0.0.0/24"]);
        assert_eq!(r("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(
            r("2001:db8::1", "2001:db8::9"),
            [
                "2001:db8::1/128",
                "2001:db8::2/127",
                "2001:db8::4/126",
                "2001:db8::8/127"
            ]
        );
        assert_eq!(r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ["::/0"]);
        assert!(r("10.0.0.5", "10.0.0.1").is_empty());
    }

    #[test]
    fn prefixes_from_device_values() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(prefix_of(a("10.1.2.3"), 8), Some(p("10.0.0.0/8")));
        assert_eq!(prefix_of(a("10.1.2.3"), 32), Some(p("10.1.2.3")));
        assert_eq!(prefix_of(a("2001:db8::1"), 32), Some(p("2001:db8::/32")));
        assert_eq!(prefix_of(a("0.0.0.0"), 0), Some(p("0.0.0.0/0")));
        assert_eq!(
            prefix_of(a("::ffff:203.0.113.0"), 120),
            Some(p("203.0.113.0/24"))
        );
        assert_eq!(prefix_of(a("224.0.0.0"), 4), None);
        // Single addresses netban never bans were read back as prefixes while their networks
        // were not (the nft_listing fuzz target's property; fuzz/corpus/nft_listing/multicast-host).
        for never in [
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "ff02::1",
            "::",
            "::ffff:224.0.0.1",
        ] {
            let addr = a(never);
            assert_eq!(prefix_of(addr, addr_bits(addr)), None, "{never}");
        }
        assert_eq!(prefix_of(a("10.0.0.0"), 33), None);
    }

    #[test]
    fn spans() {
        assert_eq!(Key::of(&p("10.0.0.0/8")).span(), (0x0a00_0000, 0x0aff_ffff));
        assert_eq!(Key::of(&p("10.0.0.7")).span(), (0x0a00_0007, 0x0a00_0007));
        assert_eq!(Key::Net("::".parse().unwrap(), 0).span(), (0, u128::MAX));
    }

    #[test]
    fn handles_round_trip_and_canonical_ones_are_omitted() {
        let host = p("203.0.113.7");
        assert_eq!(Location::canonical(&host).handle(), None);
        assert_eq!(Location::canonical(&p("2001:db8::/48")).handle(), None);
        let odd = [
            Location {
                set: SetName::Net4,
                key: Key::of(&host),
            },
            Location {
                set: SetName::Net4,
                key: Key::Range("10.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()),
            },
            Location {
                set: SetName::Ban6,
                key: Key::Net("::ffff:203.0.113.7".parse().unwrap(), 128),
            },
        ];
        for loc in odd {
            let handle = loc.handle().expect("non-canonical location has a handle");
            let prefix = loc.key.prefixes()[0];
            assert_eq!(
                Location::from_held(&prefix, Some(&handle)),
                Ok(loc),
                "{handle}"
            );
        }
        assert_eq!(odd[0].handle().unwrap(), "net4 203.0.113.7");
        assert_eq!(
            Location::from_held(&host, None),
            Ok(Location::canonical(&host))
        );
    }

    #[test]
    fn hostile_handles_are_refused() {
        let host = p("203.0.113.7");
        for bad in [
            "",
            "net4",
            "filter 203.0.113.7",
            "net4 203.0.113.7; flush ruleset",
            "net4 203.0.113.7 }",
            "net4 2001:db8::1",
            "ban6 10.0.0.1",
            "net4 10.0.0.5-10.0.0.1",
            "net4 10.0.0.1-2001:db8::1",
            "net4 10.0.0.0/33",
        ] {
            assert!(Location::from_held(&host, Some(bad)).is_err(), "{bad:?}");
        }
    }
}
