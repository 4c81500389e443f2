//! The `[[targets]]` keys of a BGP blackhole target, and their validation.
//!
//! ```toml
//! [[targets]]
//! name = "edge-rtbh"
//! type = "bgp"
//! local_as = 65001
//! router_id = "198.18.0.2"
//! peers = [{ address = "198.18.0.1", remote_as = 65000 }]
//! # per peer: md5_password_file = "/etc/netban/rtbh.md5"  (TCP MD5, RFC 2385; mode 0600)
//! #           ttl_security_hops = 1                       (GTSM, RFC 5082; 1 = directly connected)
//! # communities = ["65535:666", "no-export"]   # the default: RFC 7999 BLACKHOLE + NO_EXPORT
//! # next_hop_v4 = "198.18.0.2"                  # default: the session's own IPv4 address
//! # next_hop_v6 = "2001:db8:ff::2"              # default: the session's own IPv6 address
//! # hold_time_secs = 90
//! # netns = "mgmt"                              # open the sessions from this network namespace
//! # mode = "rtbh"                               # or "flowspec" (discard FROM the prefix), "both"
//!
//! # With mode = "flowspec" or "both", optionally narrow the rule (default: every packet from
//! # the banned prefix is dropped):
//! # [targets.flowspec]
//! # protocol = "tcp"                            # "tcp", "udp" or a number 0-255
//! # destination_ports = [22]                    # with tcp or udp; at most 32
//!
//! # ... and per source (jail), overriding the above for that source's bans:
//! # [targets.flowspec.sources.sshd]
//! # protocol = "tcp"
//! # destination_ports = [22]
//! # A prefix banned by several sources gets ONE rule: the union of their shapes (any
//! # unrestricted source → every packet from the prefix; see `RuleShapes::for_sources`).
//! ```

use super::flowspec::{RuleShapes, SourceMatch};
use crate::TargetError;
use netban_core::Source;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// RFC 7999 BLACKHOLE.
pub const BLACKHOLE: u32 = 0xffff_029a;
/// RFC 1997 NO_EXPORT.
pub const NO_EXPORT: u32 = 0xffff_ff01;
/// RFC 1997 NO_ADVERTISE.
pub const NO_ADVERTISE: u32 = 0xffff_ff02;

/// The most destination ports one rule matches: each costs 2–3 bytes of every rule, and the
/// routers that enforce rules in hardware spend filter entries on each.
pub const MAX_DESTINATION_PORTS: usize = 32;

/// What a ban becomes on the routers.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A route to the prefix tagged with `communities` (BLACKHOLE): the router discards
    /// traffic TO the prefix (and, with uRPF, from it).
    #[default]
    Rtbh,
    /// A flow specification rule (RFC 8955/8956) "source = the prefix → traffic-rate 0": the
    /// router discards traffic FROM the prefix.
    Flowspec,
    /// Both, for each ban.
    Both,
}

impl Mode {
    /// Whether bans become blackhole routes (IPv4/IPv6 unicast).
    pub fn rtbh(self) -> bool {
        matches!(self, Mode::Rtbh | Mode::Both)
    }

    /// Whether bans become flow specification rules (SAFI 133).
    pub fn flowspec(self) -> bool {
        matches!(self, Mode::Flowspec | Mode::Both)
    }
}

/// `[targets.flowspec]`: what a rule matches besides the banned source prefix, by default
/// and per source.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FlowspecConfig {
    /// Only this IP protocol (IPv6: Next Header): `"tcp"`, `"udp"` or a number 0–255. Default:
    /// every protocol.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Only these destination ports (needs protocol tcp or udp). Default: every port.
    #[serde(default)]
    pub destination_ports: Vec<u16>,
    /// `[targets.flowspec.sources.NAME]`: the match for bans of source (jail) NAME, in place
    /// of the two keys above.
    #[serde(default)]
    pub sources: BTreeMap<String, FlowspecMatch>,
}

/// `[targets.flowspec.sources.NAME]`: what a rule for a ban of that source matches.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FlowspecMatch {
    /// As `[targets.flowspec] protocol`; absent: every protocol.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// As `[targets.flowspec] destination_ports`.
    #[serde(default)]
    pub destination_ports: Vec<u16>,
}

/// An IP protocol as written in the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Protocol {
    Number(u8),
    Name(String),
}

impl Protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;

    /// The protocol number, or a configuration error saying what is accepted.
    pub fn number(&self) -> Result<u8, TargetError> {
        match self {
            Protocol::Number(n) => Ok(*n),
            Protocol::Name(name) => match name.as_str() {
                "tcp" => Ok(Protocol::TCP),
                "udp" => Ok(Protocol::UDP),
                other => Err(TargetError::config(format!(
                    "bgp target: flowspec protocol {other:?} is not \"tcp\", \"udp\" nor a \
                     protocol number 0-255"
                ))),
            },
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// netban's AS number (4-octet ASNs welcome). Equal to a peer's `remote_as` makes that
    /// session iBGP.
    pub local_as: u32,
    /// netban's BGP identifier (an IPv4 address, unique among the router's neighbours).
    pub router_id: Ipv4Addr,
    /// The routers netban announces its blackhole routes to; each gets the same routes.
    pub peers: Vec<PeerConfig>,
    /// Communities on every route: `"ASN:VALUE"` or the names `blackhole` (65535:666),
    /// `no-export`, `no-advertise`.
    #[serde(default = "default_communities")]
    pub communities: Vec<String>,
    /// NEXT_HOP of IPv4 routes; default: the session's own IPv4 address.
    #[serde(default)]
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop of IPv6 routes; default: the session's own IPv6 address. Required when a
    /// peer is reached over IPv4.
    #[serde(default)]
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Hold time proposed in OPEN (3 or more); the session uses the smaller of this and the
    /// peer's. Keepalives go every third of it, and a write that makes no progress for this
    /// long ends the session. 0 (no hold timer, allowed by RFC 4271) is refused, here and from
    /// the router: a dead router would never be noticed.
    #[serde(default = "default_hold_time")]
    pub hold_time_secs: u16,
    /// LOCAL_PREF of routes on iBGP sessions.
    #[serde(default = "default_local_pref")]
    pub local_pref: u32,
    /// A network namespace (`/run/netns/NAME`) to open the sessions from, when the routers
    /// are reached through one; default: the daemon's own.
    #[serde(default)]
    pub netns: Option<String>,
    /// How long one TCP connect may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Longest wait between connection attempts (the wait starts at 1 s and doubles).
    #[serde(default = "default_connect_retry_max")]
    pub connect_retry_max_secs: u64,
    /// How long `apply` waits for established sessions to send a change before calling the
    /// target unreachable.
    #[serde(default = "default_send_timeout")]
    pub send_timeout_secs: u64,
    /// What a ban becomes: `"rtbh"` (a blackhole route; the default), `"flowspec"` (a flow
    /// specification rule discarding traffic from the prefix) or `"both"`.
    #[serde(default)]
    pub mode: Mode,
    /// What flow specification rules match besides the source (mode flowspec or both).
    #[serde(default)]
    pub flowspec: Option<FlowspecConfig>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub remote_as: u32,
    /// The router's BGP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The address to connect from (the one configured as neighbour on the router); default:
    /// chosen by the kernel's routing.
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    /// A file holding the TCP MD5 signature password (RFC 2385) configured on the router for
    /// this neighbour (BIRD: `password`, FRR: `neighbor … password`); one line, 1 to 80
    /// bytes, the file readable by its owner only. Read again at every connection attempt,
    /// so replacing the file changes the key without a reload.
    #[serde(default)]
    pub md5_password_file: Option<PathBuf>,
    /// GTSM (RFC 5082): netban sends with TTL 255 and drops packets from the router that
    /// crossed more than this many hops (1: directly connected; BIRD: `ttl security on`, FRR:
    /// `neighbor … ttl-security hops N`). Default: off.
    #[serde(default)]
    pub ttl_security_hops: Option<u8>,
}

impl PeerConfig {
    /// A peer with the defaults for everything optional.
    pub fn new(address: IpAddr, remote_as: u32) -> PeerConfig {
        PeerConfig {
            address,
            remote_as,
            port: default_port(),
            local_address: None,
            md5_password_file: None,
            ttl_security_hops: None,
        }
    }
}

/// Why the TCP MD5 password could not be read; each says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordFileError {
    #[error("cannot read the TCP MD5 password file {path} (md5_password_file): {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the TCP MD5 password file {path} may be read by others (mode {mode:03o}); run `chmod \
         600 {path}`"
    )]
    OthersMayRead { path: String, mode: u32 },
    #[error(
        "the TCP MD5 password in {path} must be one line of 1 to {max} bytes (Linux's limit)",
        max = super::socket::MD5_MAX_KEY_LEN
    )]
    BadLength { path: String },
}

/// Reads a TCP MD5 password: the file's content without its line ending, refused if group or
/// others may read the file.
pub fn read_md5_password(path: &Path) -> Result<Vec<u8>, PasswordFileError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| PasswordFileError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(PasswordFileError::OthersMayRead { path: shown, mode });
    }
    let mut bytes = std::fs::read(path).map_err(unreadable)?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() || bytes.len() > super::socket::MD5_MAX_KEY_LEN || bytes.contains(&b'\n') {
        return Err(PasswordFileError::BadLength { path: shown });
    }
    Ok(bytes)
}

fn default_communities() -> Vec<String> {
    vec!["blackhole".into(), "no-export".into()]
}
fn default_hold_time() -> u16 {
    90
}
fn default_local_pref() -> u32 {
    100
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_connect_retry_max() -> u64 {
    30
}
fn default_send_timeout() -> u64 {
    10
}
fn default_port() -> u16 {
    179
}

impl BgpConfig {
    /// A configuration with the defaults for everything optional.
    pub fn new(local_as: u32, router_id: Ipv4Addr, peers: Vec<PeerConfig>) -> BgpConfig {
        BgpConfig {
            local_as,
            router_id,
            peers,
            communities: default_communities(),
            next_hop_v4: None,
            next_hop_v6: None,
            hold_time_secs: default_hold_time(),
            local_pref: default_local_pref(),
            netns: None,
            connect_timeout_secs: default_connect_timeout(),
            connect_retry_max_secs: default_connect_retry_max(),
            send_timeout_secs: default_send_timeout(),
            mode: Mode::default(),
            flowspec: None,
        }
    }

    /// What the flow specification rules match besides the source, by default and per
    /// source, or a configuration error saying what to fix.
    pub fn rule_shapes(&self) -> Result<RuleShapes, TargetError> {
        let Some(fs) = &self.flowspec else {
            return Ok(RuleShapes::default());
        };
        if !self.mode.flowspec() {
            return Err(TargetError::config(
                "bgp target: [targets.flowspec] is set but mode is \"rtbh\": set mode = \
                 \"flowspec\" or \"both\", or remove the table",
            ));
        }
        let default = source_match(
            "[targets.flowspec]",
            fs.protocol.as_ref(),
            &fs.destination_ports,
        )?;
        let mut by_source = BTreeMap::new();
        for (name, m) in &fs.sources {
            let table = format!("[targets.flowspec.sources.{name}]");
            let source = Source::new(name)
                .map_err(|e| TargetError::config(format!("bgp target: {table}: {e}")))?;
            let shape = source_match(&table, m.protocol.as_ref(), &m.destination_ports)?;
            by_source.insert(source, shape);
        }
        Ok(RuleShapes { default, by_source })
    }

    /// The communities as 32-bit values, or a configuration error naming the bad one.
    pub fn community_values(&self) -> Result<Vec<u32>, TargetError> {
        self.communities
            .iter()
            .map(|c| parse_community(c))
            .collect()
    }

    /// Checks everything that can be checked without a router.
    pub fn validate(&self) -> Result<(), TargetError> {
        let err = |m: String| Err(TargetError::config(format!("bgp target: {m}")));
        if self.local_as == 0 {
            return err("local_as must not be 0".into());
        }
        if self.router_id.is_unspecified() || self.router_id.is_broadcast() {
            return err(format!("router_id {} is not usable", self.router_id));
        }
        if self.peers.is_empty() {
            return err("no peers: add at least one `peers = [{ address, remote_as }]`".into());
        }
        if self.hold_time_secs < 3 {
            return err(
                "hold_time_secs must be at least 3 (RFC 4271 also allows 0, no hold timer, \
                 which netban refuses: a dead router would never be noticed)"
                    .into(),
            );
        }
        if self.connect_timeout_secs == 0 || self.send_timeout_secs == 0 {
            return err("connect_timeout_secs and send_timeout_secs must be positive".into());
        }
        if self.connect_retry_max_secs == 0 {
            return err("connect_retry_max_secs must be positive".into());
        }
        if let Some(ns) = &self.netns {
            if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
                return err(format!("netns {ns:?} is not a namespace name"));
            }
        }
        self.community_values()?;
        self.rule_shapes()?;
        let mut seen = std::collections::BTreeSet::new();
        for peer in &self.peers {
            if !seen.insert((peer.address, peer.port)) {
                return err(format!("peer {} is listed twice", peer.address));
            }
            if peer.remote_as == 0 {
                return err(format!("peer {}: remote_as must not be 0", peer.address));
            }
            if peer.port == 0 {
                return err(format!("peer {}: port must not be 0", peer.address));
            }
            if matches!(peer.ttl_security_hops, Some(0 | 255..)) {
                return err(format!(
                    "peer {}: ttl_security_hops must be 1 (directly connected) to 254",
                    peer.address
                ));
            }
            if let Some(local) = peer.local_address {
                if local.is_ipv4() != peer.address.is_ipv4() {
                    return err(format!(
                        "peer {}: local_address {local} is of the other address family",
                        peer.address
                    ));
                }
            }
            // Flow specification rules carry no next hop.
            if !self.mode.rtbh() {
                continue;
            }
            if peer.address.is_ipv4() && self.next_hop_v6.is_none() {
                return err(format!(
                    "peer {} is reached over IPv4, so IPv6 routes need an explicit next hop: \
                     set next_hop_v6 (an IPv6 address of this host on the link, or one the \
                     router blackholes)",
                    peer.address
                ));
            }
            if peer.address.is_ipv6() && self.next_hop_v4.is_none() {
                return err(format!(
                    "peer {} is reached over IPv6, so IPv4 routes need an explicit next hop: \
                     set next_hop_v4",
                    peer.address
                ));
            }
        }
        Ok(())
    }
}

/// One match (`table` names where it was written, for the error), checked.
fn source_match(
    table: &str,
    protocol: Option<&Protocol>,
    ports: &[u16],
) -> Result<SourceMatch, TargetError> {
    let err = |m: String| Err(TargetError::config(format!("bgp target: {table}: {m}")));
    let protocol = protocol.map(Protocol::number).transpose()?;
    if !ports.is_empty() {
        if !matches!(protocol, Some(Protocol::TCP | Protocol::UDP)) {
            return err(
                "flowspec destination_ports need protocol = \"tcp\" or \"udp\" (ports mean \
                 nothing for other protocols)"
                    .into(),
            );
        }
        if ports.contains(&0) {
            return err("flowspec destination_ports must be 1-65535".into());
        }
        if ports.len() > MAX_DESTINATION_PORTS {
            return err(format!(
                "flowspec destination_ports lists {} ports, more than {MAX_DESTINATION_PORTS}: \
                 block the whole protocol instead (leave destination_ports out)",
                ports.len()
            ));
        }
    }
    Ok(SourceMatch::new(protocol, ports.to_vec()))
}

/// `"65535:666"`, `"blackhole"`, `"no-export"` or `"no-advertise"` as a 32-bit community.
pub fn parse_community(text: &str) -> Result<u32, TargetError> {
    match text {
        "blackhole" => return Ok(BLACKHOLE),
        "no-export" => return Ok(NO_EXPORT),
        "no-advertise" => return Ok(NO_ADVERTISE),
        _ => {}
    }
    let bad = || {
        TargetError::config(format!(
            "bgp target: community {text:?} is not ASN:VALUE (two numbers 0-65535) nor one of \
             blackhole, no-export, no-advertise"
        ))
    };
    let (high, low) = text.split_once(':').ok_or_else(bad)?;
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u16>().ok()
    };
    let (high, low) = (number(high).ok_or_else(bad)?, number(low).ok_or_else(bad)?);
    Ok(u32::from(high) << 16 | u32::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(address: &str) -> PeerConfig {
        PeerConfig::new(address.parse().unwrap(), 65000)
    }

    #[test]
    fn defaults_from_toml_and_unknown_keys_refused() {
        let c: BgpConfig = serde_json::from_value(serde_json::json!({
            "local_as": 65001,
            "router_id": "198.18.0.2",
            "next_hop_v6": "2001:db8:ff::2",
            "peers": [{ "address": "198.18.0.1", "remote_as": 65000 }],
        }))
        .unwrap();
        assert_eq!(c.community_values().unwrap(), vec![BLACKHOLE, NO_EXPORT]);
        assert_eq!(c.hold_time_secs, 90);
        assert_eq!(c.peers[0].port, 179);
        c.validate().unwrap();
        let unknown = serde_json::from_value::<BgpConfig>(serde_json::json!({
            "local_as": 65001, "router_id": "198.18.0.2", "peers": [], "communitys": []
        }));
        assert!(unknown.is_err());
        let unknown_peer_key = serde_json::from_value::<BgpConfig>(serde_json::json!({
            "local_as": 65001, "router_id": "198.18.0.2",
            "peers": [{ "address": "198.18.0.1", "remote_as": 1, "password": "x" }]
        }));
        assert!(unknown_peer_key.is_err());
    }

    #[test]
    fn communities_parse_strictly() {
        assert_eq!(parse_community("65535:666").unwrap(), BLACKHOLE);
        assert_eq!(parse_community("no-export").unwrap(), NO_EXPORT);
        assert_eq!(parse_community("64512:0").unwrap(), 0xfc00_0000);
        for bad in ["", "666", "65536:1", "1:-1", "a:b", " 1:1", "1:1:1", "+1:1"] {
            assert!(parse_community(bad).is_err(), "{bad:?}");
        }
    }

    /// A configuration that validates, for the tests to spoil one field of.
    fn valid_config() -> BgpConfig {
        BgpConfig {
            next_hop_v6: Some("2001:db8:ff::2".parse().unwrap()),
            ..BgpConfig::new(
                65001,
                Ipv4Addr::new(198, 18, 0, 2),
                vec![peer("198.18.0.1")],
            )
        }
    }

    #[test]
    fn validation_says_what_to_fix() {
        let ok = valid_config;
        ok().validate().unwrap();
        let cases: Vec<(BgpConfig, &str)> = vec![
            (
                BgpConfig {
                    peers: vec![],
                    ..ok()
                },
                "no peers",
            ),
            (
                BgpConfig {
                    next_hop_v6: None,
                    ..ok()
                },
                "next_hop_v6",
            ),
            (
                BgpConfig {
                    hold_time_secs: 2,
                    ..ok()
                },
                "hold_time_secs",
            ),
            (
                BgpConfig {
                    local_as: 0,
                    ..ok()
                },
                "local_as",
            ),
            (
                BgpConfig {
                    communities: vec!["x".into()],
                    ..ok()
                },
                "\"x\"",
            ),
            (
                BgpConfig {
                    peers: vec![peer("198.18.0.1"), peer("198.18.0.1")],
                    ..ok()
                },
                "twice",
            ),
            (
                BgpConfig {
                    peers: vec![peer("2001:db8:ff::1")],
                    ..ok()
                },
                "next_hop_v4",
            ),
            (
                BgpConfig {
                    netns: Some("../x".into()),
                    ..ok()
                },
                "netns",
            ),
        ];
        for (config, needle) in cases {
            match config.validate() {
                Err(TargetError::Config(m)) => {
                    assert!(m.to_string().contains(needle), "{m} lacks {needle}")
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
    }

    #[test]
    fn flowspec_mode_and_match_read_from_toml_shaped_json() {
        let c: BgpConfig = serde_json::from_value(serde_json::json!({
            "local_as": 65001,
            "router_id": "198.18.0.2",
            "peers": [{ "address": "198.18.0.1", "remote_as": 65000 }],
            "mode": "flowspec",
            "flowspec": { "protocol": "tcp", "destination_ports": [443, 22] },
        }))
        .unwrap();
        // No next_hop_v6 needed: rules carry no next hop.
        c.validate().unwrap();
        assert_eq!((c.mode.rtbh(), c.mode.flowspec()), (false, true));
        assert_eq!(
            c.rule_shapes().unwrap(),
            RuleShapes {
                default: SourceMatch::new(Some(6), vec![22, 443]),
                by_source: BTreeMap::new(),
            }
        );
        assert_eq!(valid_config().mode, Mode::Rtbh);
        assert_eq!(valid_config().rule_shapes().unwrap(), RuleShapes::default());
        for bad in [
            serde_json::json!({ "mode": "blackhole" }),
            serde_json::json!({ "mode": "both", "flowspec": { "ports": [22] } }),
            serde_json::json!({ "mode": "both", "flowspec": { "protocol": 256 } }),
        ] {
            let mut json = serde_json::json!({
                "local_as": 65001, "router_id": "198.18.0.2", "next_hop_v6": "2001:db8:ff::2",
                "peers": [{ "address": "198.18.0.1", "remote_as": 65000 }],
            });
            json.as_object_mut()
                .unwrap()
                .extend(bad.as_object().unwrap().clone());
            assert!(serde_json::from_value::<BgpConfig>(json).is_err(), "{bad}");
        }
    }

    #[test]
    fn flowspec_shapes_per_source_read_from_toml() {
        // As TOML: [flowspec.sources.sshd] protocol = "tcp", destination_ports = [22] and
        // [flowspec.sources.named] protocol = 17.
        let c: BgpConfig = serde_json::from_value(serde_json::json!({
            "local_as": 65001,
            "router_id": "198.18.0.2",
            "peers": [{ "address": "198.18.0.1", "remote_as": 65000 }],
            "mode": "flowspec",
            "flowspec": { "sources": {
                "sshd": { "protocol": "tcp", "destination_ports": [22] },
                "named": { "protocol": 17 },
            } },
        }))
        .unwrap();
        c.validate().unwrap();
        let shapes = c.rule_shapes().unwrap();
        assert_eq!(shapes.default, SourceMatch::default());
        assert_eq!(
            shapes.by_source,
            BTreeMap::from([
                (
                    Source::new("named").unwrap(),
                    SourceMatch::new(Some(17), vec![])
                ),
                (
                    Source::new("sshd").unwrap(),
                    SourceMatch::new(Some(6), vec![22])
                ),
            ])
        );
        // A source's table is checked like the target's, and says which table is wrong.
        let bad = |name: &str, m: FlowspecMatch| BgpConfig {
            mode: Mode::Flowspec,
            flowspec: Some(FlowspecConfig {
                sources: BTreeMap::from([(name.to_string(), m)]),
                ..FlowspecConfig::default()
            }),
            ..valid_config()
        };
        let ports_without_protocol = FlowspecMatch {
            protocol: None,
            destination_ports: vec![22],
        };
        for (config, needle) in [
            (
                bad("sshd", ports_without_protocol),
                "[targets.flowspec.sources.sshd]: flowspec destination_ports need protocol",
            ),
            (
                bad("no spaces", FlowspecMatch::default()),
                "[targets.flowspec.sources.no spaces]",
            ),
        ] {
            match config.validate() {
                Err(TargetError::Config(m)) => {
                    assert!(m.to_string().contains(needle), "{m} lacks {needle}")
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
        assert!(serde_json::from_value::<FlowspecConfig>(
            serde_json::json!({ "sources": { "sshd": { "ports": [22] } } })
        )
        .is_err());
    }

    #[test]
    fn flowspec_settings_that_cannot_work_say_what_to_fix() {
        let with = |mode: Mode, protocol: Option<Protocol>, ports: Vec<u16>| BgpConfig {
            mode,
            flowspec: Some(FlowspecConfig {
                protocol,
                destination_ports: ports,
                ..FlowspecConfig::default()
            }),
            ..valid_config()
        };
        let tcp = || Some(Protocol::Name("tcp".into()));
        let cases = [
            (with(Mode::Rtbh, tcp(), vec![]), "mode is \"rtbh\""),
            (
                with(Mode::Both, Some(Protocol::Name("gre".into())), vec![]),
                "\"gre\" is not",
            ),
            (with(Mode::Flowspec, None, vec![22]), "need protocol"),
            (
                with(Mode::Flowspec, Some(Protocol::Number(1)), vec![22]),
                "need protocol",
            ),
            (with(Mode::Flowspec, tcp(), vec![0]), "1-65535"),
            (
                with(Mode::Flowspec, tcp(), (1..=33).collect()),
                "more than 32",
            ),
        ];
        for (config, needle) in cases {
            match config.validate() {
                Err(TargetError::Config(m)) => {
                    assert!(m.to_string().contains(needle), "{m} lacks {needle}")
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
        with(Mode::Both, Some(Protocol::Number(17)), vec![53])
            .validate()
            .unwrap();
        // Blackhole routes still need their next hop.
        let both_without_v6_next_hop = BgpConfig {
            next_hop_v6: None,
            ..with(Mode::Both, None, vec![])
        };
        assert!(both_without_v6_next_hop.validate().is_err());
    }

    #[test]
    fn hold_time_zero_and_bad_ttl_hops_are_refused() {
        let ok = valid_config;
        for hold in [0, 1, 2] {
            let c = BgpConfig {
                hold_time_secs: hold,
                ..ok()
            };
            assert!(c.validate().is_err(), "hold time {hold}");
        }
        for (hops, good) in [(0, false), (1, true), (254, true), (255, false)] {
            let mut c = ok();
            c.peers[0].ttl_security_hops = Some(hops);
            assert_eq!(c.validate().is_ok(), good, "ttl_security_hops {hops}");
        }
    }

    #[test]
    fn the_md5_password_file_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &[u8], mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        assert_eq!(
            read_md5_password(&write("ok", b"s3cret word\r\n", 0o600)).unwrap(),
            b"s3cret word"
        );
        assert!(matches!(
            read_md5_password(&write("open", b"s3cret\n", 0o640)),
            Err(PasswordFileError::OthersMayRead { mode: 0o640, .. })
        ));
        for (name, content) in [
            ("empty", &b"\n"[..]),
            ("long", &[b'x'; 81][..]),
            ("two-lines", b"a\nb\n"),
        ] {
            assert!(
                matches!(
                    read_md5_password(&write(name, content, 0o600)),
                    Err(PasswordFileError::BadLength { .. })
                ),
                "{name}"
            );
        }
        assert!(read_md5_password(&write("max", &[b'x'; 80], 0o400)).is_ok());
        let missing = read_md5_password(&dir.path().join("missing")).unwrap_err();
        assert!(
            missing.to_string().contains("md5_password_file"),
            "{missing}"
        );
    }
}
