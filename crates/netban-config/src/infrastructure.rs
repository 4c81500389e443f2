//! What this machine cannot do without, found at start and at every policy reload: its own
//! addresses, its default gateways and its DNS resolvers. Protected from bans by default
//! (`netban_core::policy::Protection`), so a forged log line can never make netban cut the
//! machine (or, through a shared target, the fleet) off its own network.
//!
//! Read from the kernel's text tables rather than netlink or `ip -j`: `/proc/net/route` and
//! `/proc/net/ipv6_route` list the main routing table with no process to spawn and no
//! dependency, in the network namespace of the reader (so a daemon started with
//! `ip netns exec` sees its namespace's routes), and `/etc/resolv.conf` is what the C library
//! resolves with (`ip netns exec` bind-mounts `/etc/netns/NAME/resolv.conf` over it). The
//! parsers are pure and tested on captured text; [`discover`] does the reading.

use netban_core::policy::{Protected, Protection};
use netban_core::Prefix;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The route flag "this route goes through a gateway" (`RTF_GATEWAY`).
const RTF_GATEWAY: u32 = 0x2;

/// What [`discover`] found, and what it could not read (to be logged: a machine whose routes
/// cannot be read still runs, with fewer protections).
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    pub found: Vec<Protected>,
    pub problems: Vec<String>,
}

/// Reads this machine's addresses, default gateways and resolvers now.
pub fn discover() -> Discovered {
    let mut out = Discovered::default();
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => out.found.extend(interfaces.into_iter().map(|i| Protected {
            prefix: Prefix::host(i.ip()),
            reason: Protection::OwnAddress { interface: i.name },
        })),
        Err(e) => out
            .problems
            .push(format!("cannot list this machine's addresses: {e}")),
    }
    for (path, parse) in [
        (
            "/proc/net/route",
            ipv4_default_gateways as fn(&str) -> Vec<(IpAddr, String)>,
        ),
        ("/proc/net/ipv6_route", ipv6_default_gateways),
    ] {
        match std::fs::read_to_string(path) {
            Ok(text) => out
                .found
                .extend(parse(&text).into_iter().map(|(addr, interface)| Protected {
                    prefix: Prefix::host(addr),
                    reason: Protection::Gateway { interface },
                })),
            // No IPv6 in this kernel: no IPv6 gateway.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.contains("ipv6") => {}
            Err(e) => out.problems.push(format!("cannot read {path}: {e}")),
        }
    }
    let resolv = Path::new("/etc/resolv.conf");
    match std::fs::read_to_string(resolv) {
        Ok(text) => out
            .found
            .extend(nameservers(&text).into_iter().map(|addr| Protected {
                prefix: Prefix::host(addr),
                reason: Protection::Resolver,
            })),
        // No resolv.conf: the C library uses the local host, already protected.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => out
            .problems
            .push(format!("cannot read {}: {e}", resolv.display())),
    }
    out
}

/// The default gateways in `/proc/net/route` text: (gateway, interface) of every route with
/// destination and mask 0 and the gateway flag. Addresses are the kernel's network-order
/// words printed as native integers.
pub fn ipv4_default_gateways(text: &str) -> Vec<(IpAddr, String)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [iface, destination, gateway, flags, _, _, _, mask, ..] = fields[..] else {
            continue;
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(destination), Some(gateway), Some(flags), Some(mask)) =
            (hex(destination), hex(gateway), hex(flags), hex(mask))
        else {
            continue;
        };
        if destination == 0 && mask == 0 && flags & RTF_GATEWAY != 0 && gateway != 0 {
            let addr = IpAddr::V4(Ipv4Addr::from(gateway.to_ne_bytes()));
            push_unique(&mut out, (addr, iface.to_string()));
        }
    }
    out
}

/// The default gateways in `/proc/net/ipv6_route` text (link-local ones included): every
/// route with destination length 0 and a gateway.
pub fn ipv6_default_gateways(text: &str) -> Vec<(IpAddr, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, dest_len, _, _, gateway, _, _, _, flags, iface] = fields[..] else {
            continue;
        };
        let (Ok(dest_len), Ok(gateway), Ok(flags)) = (
            u8::from_str_radix(dest_len, 16),
            u128::from_str_radix(gateway, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if dest_len == 0 && gateway != 0 && flags & RTF_GATEWAY != 0 {
            let addr = IpAddr::V6(Ipv6Addr::from(gateway));
            push_unique(&mut out, (addr, iface.to_string()));
        }
    }
    out
}

/// The `nameserver` addresses of resolv.conf text (a link-local one's `%zone` dropped).
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let addr = addr.split('%').next().unwrap_or(addr);
        if let Ok(addr) = addr.parse::<IpAddr>() {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

fn push_unique<T: PartialEq>(out: &mut Vec<T>, item: T) {
    if !out.contains(&item) {
        out.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_default_routes_with_a_gateway() {
        // Captured on a lab machine: default via 192.0.2.1 dev eth0, a connected /24, and a
        // second default in another namespace's style (metric 100, via 10.1.0.254 on wan).
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            wan\t00000000\tFE00010A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            lan\t0000000A\t0100000A\t0003\t0\t0\t0\t000000FF\t0\t0\t0\n\
            garbage line\n";
        let gateways = ipv4_default_gateways(text);
        assert_eq!(
            gateways,
            vec![
                ("192.0.2.1".parse().unwrap(), "eth0".to_string()),
                ("10.1.0.254".parse().unwrap(), "wan".to_string()),
            ]
        );
    }

    #[test]
    fn ipv6_default_routes_link_local_included() {
        let text = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00000003     wan
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        assert_eq!(
            ipv6_default_gateways(text),
            vec![
                ("fd00::1".parse().unwrap(), "eth0".to_string()),
                ("fe80::1".parse().unwrap(), "wan".to_string()),
            ]
        );
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.net\nnameserver 10.255.255.53\n\
                    nameserver fe80::53%eth0 # link-local\n;nameserver 10.9.9.9\n\
                    nameserver   2001:db8::53\nnameserver not-an-ip\nnameserver 10.255.255.53\n\
                    options edns0\n";
        assert_eq!(
            nameservers(text),
            ["10.255.255.53", "fe80::53", "2001:db8::53"]
                .map(|a| a.parse::<IpAddr>().unwrap())
                .to_vec()
        );
    }

    #[test]
    fn this_machine_is_discovered_with_its_loopback_address() {
        let found = discover();
        assert!(
            found.found.iter().any(|p| p.prefix == Prefix::parse("127.0.0.1").unwrap()
                && matches!(&p.reason, Protection::OwnAddress { interface } if interface == "lo")),
            "{found:?}"
        );
    }
}
