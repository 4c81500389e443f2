//! Source-based RTBH (RFC 5635) with real packets: the daemon's BGP target announces the
//! banned attacker's /32 and /128 to a real router (BIRD 2, then FRR 8), which installs kernel
//! blackhole routes for them; with reverse-path filtering on the router's LAN interface,
//! packets *from* the attacker are dropped at the router.
//!
//! The lab is netban-testlab's RTBH lab (`peers::bgp_routers::rtbh`): attacker and client on a
//! bridge (`br-lan`, the router's L3 interface towards them), the router, a server behind it,
//! and netban's namespace linked to the router. Packets are one-way UDP datagrams counted by
//! nftables counters on the server (per source address), so what the server *receives* is
//! measured, not whether an answer came back. Each run shows, in order:
//!
//! 1. banned, no uRPF: the attacker's datagrams still reach the server; its TCP connections
//!    fail (the server's answers hit the blackhole route). Only replies die.
//! 2. uRPF on `br-lan` (IPv4: `rp_filter`, strict for BIRD's run and loose for FRR's; IPv6,
//!    which has no rp_filter: an nftables `fib` rule, see [`Urpf::fib_v6`]): the attacker's
//!    datagrams are dropped at the router — counted by the kernel's IPReversePathFilter
//!    counter and the nft rule's counter — while the client's arrive.
//! 3. unban: the routes go, the attacker's datagrams arrive again with uRPF still on.

use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::peers::bgp_routers::{
    blackholes, rtbh, Kind, Router, PORT, ROUTER_AS, ROUTER_LINK_V4, SPEAKER_AS, SPEAKER_LINK_V4,
    SPEAKER_LINK_V6,
};
use netban_testlab::{require_netns, wait_until, Edge, Host};
use std::time::{Duration, Instant};

/// The UDP port the datagrams go to (nothing listens: the server's input hook counts them).
const UDP_PORT: u16 = 5555;
/// Datagrams per host and family in each phase.
const SENT: u64 = 5;
/// How long datagrams, routes and counters may take to show.
const WAIT: Duration = Duration::from_secs(15);
/// How long a blocked TCP connection attempt is given (an allowed one takes milliseconds).
const BLOCKED_WAIT: Duration = Duration::from_millis(700);

/// Reverse-path filtering on the router's LAN interface, the way docs/targets/bgp.md tells
/// operators to set it up.
#[derive(Clone, Copy, Debug)]
enum Urpf {
    /// The source must be reachable back through the interface the packet came in on.
    Strict,
    /// The source must be reachable through any interface.
    Loose,
}

/// The router's nftables table for IPv6 uRPF, and its drop counter.
const URPF_TABLE: &str = "nsr_urpf";
/// The server's nftables table counting arrivals.
const COUNT_TABLE: &str = "nsr_count";

impl Urpf {
    /// `net.ipv4.conf.<iface>.rp_filter`.
    fn rp_filter(self) -> &'static str {
        match self {
            Urpf::Strict => "1",
            Urpf::Loose => "2",
        }
    }

    /// The nftables expression that fails the reverse-path check for IPv6 (Linux has no IPv6
    /// rp_filter sysctl): the route lookup for the *source* (strict: out of the interface
    /// the packet came in on) finds no output interface — as for a blackhole route.
    fn fib_v6(self) -> &'static str {
        match self {
            Urpf::Strict => "fib saddr . iif oif missing",
            Urpf::Loose => "fib saddr oif missing",
        }
    }

    /// Turns it on in `router` for its LAN interface.
    fn enable(self, router: &Host) {
        let iface = Edge::LAN_BRIDGE;
        router
            .sysctl(&[(
                format!("net.ipv4.conf.{iface}.rp_filter").as_str(),
                self.rp_filter(),
            )])
            .unwrap();
        let ruleset = format!(
            "table ip6 {URPF_TABLE} {{\n counter drops {{ }}\n chain prerouting {{\n  \
             type filter hook prerouting priority filter;\n  iifname \"{iface}\" {} counter \
             name drops drop\n }}\n}}\n",
            self.fib_v6()
        );
        nft_load(router, &ruleset);
    }
}

fn nft_load(host: &Host, ruleset: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ruleset).unwrap();
    host.run_ok("nft", [std::ffi::OsStr::new("-f"), file.path().as_os_str()])
        .unwrap_or_else(|e| panic!("nft -f in {}: {e}\n{ruleset}", host.name()));
}

/// The packets counted by the named nftables counter `name` of `table` in `host`.
fn nft_counter(host: &Host, family: &str, table: &str, name: &str) -> u64 {
    let text = host
        .run_ok("nft", ["-j", "list", "counter", family, table, name])
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["nftables"]
        .as_array()
        .and_then(|list| list.iter().find_map(|o| o["counter"]["packets"].as_u64()))
        .unwrap_or_else(|| panic!("no counter {name} in {text}"))
}

/// The kernel's count of IPv4 packets dropped by rp_filter in `host` (TcpExt
/// IPReversePathFilter in /proc/net/netstat, per namespace).
fn rp_filter_drops(host: &Host) -> u64 {
    let text = host.run_ok("cat", ["/proc/net/netstat"]).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (names, values) = (lines[0], lines[1]);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "IPReversePathFilter")
        .and_then(|(_, value)| value.parse().ok())
        .expect("IPReversePathFilter in /proc/net/netstat")
}

/// The senders whose datagrams the server counts, with their counter names.
const SENDERS: [(&str, &str); 4] = [
    (Edge::ATTACKER_V4, "attacker_v4"),
    (Edge::ATTACKER_V6, "attacker_v6"),
    (Edge::CLIENT_V4, "client_v4"),
    (Edge::CLIENT_V6, "client_v6"),
];

/// Counts, on the server, the datagrams to [`UDP_PORT`] from each of [`SENDERS`].
fn install_server_counters(server: &Host) {
    let mut ruleset = format!("table inet {COUNT_TABLE} {{\n");
    for (_, name) in SENDERS {
        ruleset.push_str(&format!(" counter {name} {{ }}\n"));
    }
    ruleset.push_str(" chain input {\n  type filter hook input priority filter;\n");
    for (addr, name) in SENDERS {
        let family = if addr.contains(':') { "ip6" } else { "ip" };
        ruleset.push_str(&format!(
            "  {family} saddr {addr} udp dport {UDP_PORT} counter name {name}\n"
        ));
    }
    ruleset.push_str(" }\n}\n");
    nft_load(server, &ruleset);
}

/// Datagrams the server received from each sender so far: [attacker v4, attacker v6,
/// client v4, client v6].
fn arrived(server: &Host) -> [u64; 4] {
    SENDERS.map(|(_, name)| nft_counter(server, "inet", COUNT_TABLE, name))
}

/// [`SENT`] datagrams from the attacker, then from the client, each to both server addresses.
fn send_from_both(edge: &Edge) {
    for host in [&edge.attacker, &edge.client] {
        for server in [Edge::SERVER_V4, Edge::SERVER_V6] {
            host.send_udp(server, UDP_PORT, SENT as u32).unwrap();
        }
    }
}

fn daemon_config(speaker: &Host) -> String {
    format!(
        "[policy]\nprotect_own_addresses = false\n\n\
         [reconciler]\nresync_secs = 3600\nretry_min_secs = 1\nretry_max_secs = 2\n\n\
         [[targets]]\nname = \"edge\"\ntype = \"bgp\"\nlocal_as = {SPEAKER_AS}\n\
         router_id = \"{SPEAKER_LINK_V4}\"\n\
         peers = [{{ address = \"{ROUTER_LINK_V4}\", remote_as = {ROUTER_AS} }}]\n\
         next_hop_v6 = \"{SPEAKER_LINK_V6}\"\nnetns = \"{}\"\n\
         connect_timeout_secs = 3\nconnect_retry_max_secs = 2\n",
        speaker.name()
    )
}

fn wait_for_blackholes(router: &Router, host: &Host, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let ok = wait_until(WAIT, Duration::from_millis(5), || blackholes(host) == want);
    assert!(
        ok,
        "{:?}: blackholes {:?}, want {want:?}{}",
        router.kind,
        blackholes(host),
        router.logs()
    );
}

fn source_rtbh_drops_the_attacker(kind: Kind, urpf: Urpf, tag: &str) {
    let started = Instant::now();
    let lab = rtbh(tag);
    let edge = &lab.edge;
    let router = Router::start(kind, &edge.router, lab.dir.path());
    install_server_counters(&edge.server);
    // No reverse-path filtering to begin with, whatever the host's defaults.
    edge.router
        .sysctl(&[
            ("net.ipv4.conf.all.rp_filter", "0"),
            (
                format!("net.ipv4.conf.{}.rp_filter", Edge::LAN_BRIDGE).as_str(),
                "0",
            ),
        ])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        &Binaries::locate(),
        &dir.path().join("netban"),
        &daemon_config(&lab.speaker),
    )
    .expect("daemon");
    let up = wait_until(WAIT, Duration::from_millis(20), || router.established());
    assert!(
        up,
        "{kind:?}: no session\n{}{}",
        daemon.log(),
        router.logs()
    );

    let banned = Instant::now();
    daemon.client_ok(&[
        "ban",
        "--source",
        "sshd",
        "--bantime",
        "3600",
        Edge::ATTACKER_V4,
        Edge::ATTACKER_V6,
    ]);
    wait_for_blackholes(
        &router,
        &edge.router,
        &[Edge::ATTACKER_V4, Edge::ATTACKER_V6],
    );
    eprintln!(
        "{kind:?}: ban → kernel blackhole routes for the /32 and /128 in {:?}",
        banned.elapsed()
    );

    // 1. Banned, no uRPF: the attacker's one-way packets still reach the server; only the
    //    answers die (its TCP connections fail), the client is untouched.
    send_from_both(edge);
    let all_arrived = wait_until(WAIT, Duration::from_millis(10), || {
        arrived(&edge.server) == [SENT; 4]
    });
    assert!(
        all_arrived,
        "{kind:?}, no uRPF: arrived {:?}, want {SENT} from each",
        arrived(&edge.server)
    );
    for server in [Edge::SERVER_V4, Edge::SERVER_V6] {
        assert!(
            !edge.attacker.tcp_connects(server, PORT, BLOCKED_WAIT),
            "{kind:?}: the attacker's TCP to {server} got answers through the blackhole"
        );
        assert!(
            edge.client
                .tcp_connects(server, PORT, Duration::from_secs(2)),
            "{kind:?}: client blocked from {server}"
        );
    }
    eprintln!("{kind:?}: banned, no uRPF: attacker's datagrams arrive ({SENT}/{SENT} per family), its TCP fails");

    // 2. uRPF on the LAN interface: dropped at the router, counted as reverse-path drops.
    urpf.enable(&edge.router);
    let rp_before = rp_filter_drops(&edge.router);
    send_from_both(edge);
    // The drop counters may count more than the datagrams (the attacker's IPv6 neighbour
    // solicitations carry its address too); the arrivals are the proof.
    let settled = wait_until(WAIT, Duration::from_millis(10), || {
        let [_, _, client_v4, client_v6] = arrived(&edge.server);
        client_v4 == 2 * SENT
            && client_v6 == 2 * SENT
            && rp_filter_drops(&edge.router) - rp_before >= SENT
            && nft_counter(&edge.router, "ip6", URPF_TABLE, "drops") >= SENT
    });
    let counts = arrived(&edge.server);
    let (rp_drops, nft_drops) = (
        rp_filter_drops(&edge.router) - rp_before,
        nft_counter(&edge.router, "ip6", URPF_TABLE, "drops"),
    );
    assert!(
        settled,
        "{kind:?}, {urpf:?} uRPF: arrived {counts:?}, rp_filter drops {rp_drops}, nft drops \
         {nft_drops}"
    );
    assert_eq!(
        counts,
        [SENT, SENT, 2 * SENT, 2 * SENT],
        "{kind:?}, {urpf:?} uRPF: the attacker's datagrams must not arrive, the client's must"
    );
    eprintln!(
        "{kind:?}: banned, {urpf:?} uRPF: attacker's datagrams dropped at the router (rp_filter \
         drops {rp_drops}, nft `{}` drops {nft_drops}), client's arrive",
        urpf.fib_v6()
    );

    // 3. Unban: the routes go; with uRPF still on, the attacker gets through again.
    let unbanned = Instant::now();
    daemon.client_ok(&[
        "unban",
        "--source",
        "sshd",
        Edge::ATTACKER_V4,
        Edge::ATTACKER_V6,
    ]);
    wait_for_blackholes(&router, &edge.router, &[]);
    eprintln!("{kind:?}: unban → routes gone in {:?}", unbanned.elapsed());
    send_from_both(edge);
    let through = wait_until(WAIT, Duration::from_millis(10), || {
        arrived(&edge.server) == [2 * SENT, 2 * SENT, 3 * SENT, 3 * SENT]
    });
    assert!(
        through,
        "{kind:?}, {urpf:?} uRPF after unban: arrived {:?}",
        arrived(&edge.server)
    );
    for server in [Edge::SERVER_V4, Edge::SERVER_V6] {
        assert!(
            edge.attacker
                .tcp_connects(server, PORT, Duration::from_secs(2)),
            "{kind:?}: attacker's TCP to {server} after unban"
        );
    }
    eprintln!("{kind:?}: whole run {:?}", started.elapsed());
}

#[test]
fn bird_source_rtbh_with_strict_rp_filter_drops_the_attackers_packets() {
    require_netns!();
    source_rtbh_drops_the_attacker(Kind::Bird, Urpf::Strict, "nsrbird");
}

#[test]
fn frr_source_rtbh_with_loose_rp_filter_drops_the_attackers_packets() {
    require_netns!();
    source_rtbh_drops_the_attacker(Kind::Frr, Urpf::Loose, "nsrfrr");
}
