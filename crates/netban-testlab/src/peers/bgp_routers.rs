//! The real routers the BGP target is tested against, each run inside the router namespace of a
//! test lab with its own configuration, control socket, pid file and log in the test's temp
//! dir: BIRD 2 (Debian `bird2`), FRR 8 (Debian `frr`: zebra, staticd and bgpd) and GoBGP 3
//! (Debian `gobgpd`). BIRD and FRR are configured the way docs/targets/bgp.md tells operators
//! to: a route tagged BLACKHOLE (65535:666) becomes a blackhole route in the kernel, anything
//! else is refused, and the session is passive (netban connects). With
//! [`RouterOptions::flowspec`] they also take IPv4 and IPv6 flow specification rules into a
//! table of their own (no stock Linux router installs those in the kernel), which
//! [`Router::flowspec_rules`] reads back; GoBGP (a RIB only, no kernel routes) is for that use.

use crate::{wait_until, Edge, Host, Lab, Process};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The router's side of the link to netban.
pub const ROUTER_LINK_V4: &str = "198.18.0.1";
pub const ROUTER_AS: u32 = 65000;
/// netban's side.
pub const SPEAKER_LINK_V4: &str = "198.18.0.2";
pub const SPEAKER_LINK_V6: &str = "2001:db8:ff::2";
pub const SPEAKER_AS: u32 = 65001;
/// FRR's discard next hops (static routes to Null0), from the link ranges.
const FRR_DISCARD_V4: &str = "198.18.255.1";
const FRR_DISCARD_V6: &str = "2001:db8:ffff::1";

const START_WAIT: Duration = Duration::from_secs(15);
/// GoBGP's gRPC API port, on the router namespace's loopback.
const GOBGP_API_PORT: &str = "50051";

/// The route a router started with [`RouterOptions::confederation`] announces to netban.
pub const CONFED_ROUTE_V4: &str = "10.99.0.0/24";
/// The confederation identifier of [`RouterOptions::confederation`]; the router (AS
/// [`ROUTER_AS`]) and netban (AS [`SPEAKER_AS`]) are its member ASes.
pub const CONFED_ID: u32 = 64999;

/// The server's TCP port that [`rtbh`] listens on.
pub const PORT: u16 = 8080;

/// The lab BGP tests run in: the edge topology plus a "netban" namespace (the speaker) linked
/// to the router on 198.18.0.0/30 and 2001:db8:ff::/64, a listener on the server, and a
/// scratch directory for the router's files.
pub struct Rtbh {
    pub edge: Edge,
    pub speaker: Host,
    pub dir: tempfile::TempDir,
    _listener: Process,
}

/// Builds the [`Rtbh`] lab tagged `tag` and checks the attacker reaches the server before any
/// ban.
pub fn rtbh(tag: &str) -> Rtbh {
    let edge = Lab::edge_topology(tag).unwrap();
    let speaker = edge.lab.host("netban").unwrap();
    edge.lab
        .link(
            &edge.router,
            &["198.18.0.1/30", "2001:db8:ff::1/64"],
            &speaker,
            &["198.18.0.2/30", "2001:db8:ff::2/64"],
        )
        .unwrap();
    let listener = edge.server.spawn_tcp_listener(PORT).unwrap();
    for to in [Edge::SERVER_V4, Edge::SERVER_V6] {
        let reached = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            edge.attacker.tcp_connects(to, PORT, Duration::from_secs(1))
        });
        assert!(reached, "attacker -> {to} before any ban");
    }
    Rtbh {
        edge,
        speaker,
        dir: tempfile::tempdir().unwrap(),
        _listener: listener,
    }
}

/// The lab flowspec tests and benchmarks run in: a router namespace and netban's (the
/// speaker), linked on 198.18.0.0/30 and 2001:db8:ff::/64 (no edge topology: no kernel
/// installs flowspec rules, so there is no traffic to prove), and a scratch directory.
pub struct FlowLab {
    _lab: Lab,
    pub router: Host,
    pub speaker: Host,
    pub dir: tempfile::TempDir,
}

/// Builds the [`FlowLab`] tagged `tag`.
pub fn flow_lab(tag: &str) -> FlowLab {
    let lab = Lab::new(tag).unwrap();
    let router = lab.host("router").unwrap();
    let speaker = lab.host("netban").unwrap();
    lab.link(
        &router,
        &["198.18.0.1/30", "2001:db8:ff::1/64"],
        &speaker,
        &["198.18.0.2/30", "2001:db8:ff::2/64"],
    )
    .unwrap();
    FlowLab {
        _lab: lab,
        router,
        speaker,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// The BGP driver's settings (the keys of its `[[targets]]` table) for a speaker in the
/// namespace `speaker` (netban's side of the link) peering with `peer_address` as `remote_as`,
/// with short connect timeouts for tests.
pub fn speaker_settings(speaker: &Host, peer_address: &str, remote_as: u32) -> serde_json::Value {
    serde_json::json!({
        "local_as": SPEAKER_AS,
        "router_id": SPEAKER_LINK_V4,
        "peers": [{ "address": peer_address, "remote_as": remote_as, "port": 179 }],
        "next_hop_v6": SPEAKER_LINK_V6,
        "netns": speaker.name(),
        "connect_timeout_secs": 3,
        "connect_retry_max_secs": 2,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bird,
    Frr,
    /// GoBGP: a RIB only; the blackhole tests do not use it (it installs nothing).
    Gobgp,
}

/// How a router's session with netban is configured beyond the defaults (the protocol-edge
/// tests).
#[derive(Clone, Debug, Default)]
pub struct RouterOptions {
    /// The AS the router expects netban to have; default [`SPEAKER_AS`].
    pub peer_as: Option<u32>,
    /// A TCP MD5 password on the session (BIRD `password`, FRR `neighbor … password`).
    pub md5_password: Option<String>,
    /// GTSM, directly connected (BIRD `ttl security on`, FRR `neighbor … ttl-security hops 1`).
    pub ttl_security: bool,
    /// The hold time the router proposes (BIRD `hold time`, FRR `neighbor … timers`).
    pub hold_time: Option<u16>,
    /// The router is member AS [`ROUTER_AS`] of confederation [`CONFED_ID`], netban a member
    /// peer, and it announces [`CONFED_ROUTE_V4`] to netban: that UPDATE's AS_PATH holds an
    /// AS_CONFED_SEQUENCE (RFC 5065).
    pub confederation: bool,
    /// The session also carries IPv4 and IPv6 flowspec (BIRD: `flow4`/`flow6` channels into
    /// tables `flowtab4`/`flowtab6`, validation off; FRR: `address-family ipv4/ipv6
    /// flowspec`; GoBGP: afi-safis `ipv4-flowspec`/`ipv6-flowspec`). GoBGP always does.
    pub flowspec: bool,
}

/// A flow specification rule as a router shows it, in the few terms netban sends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowRule {
    /// The source prefix as the router prints it ("203.0.113.7/32", "2001:db8:a::7/128").
    pub source: String,
    pub protocol: Option<u8>,
    pub destination_ports: Vec<u16>,
    /// Whether it carries traffic-rate 0 (discard).
    pub discard: bool,
}

impl FlowRule {
    /// A discard rule for `source` matching `protocol` and `destination_ports`.
    pub fn discard(source: &str, protocol: Option<u8>, destination_ports: &[u16]) -> FlowRule {
        FlowRule {
            source: source.to_string(),
            protocol,
            destination_ports: destination_ports.to_vec(),
            discard: true,
        }
    }
}

/// One router daemon set, running in `host`.
pub struct Router {
    pub kind: Kind,
    host: Host,
    dir: PathBuf,
    processes: Vec<Process>,
    /// The AS the router expects netban to have.
    peer_as: u32,
    options: RouterOptions,
}

impl Router {
    pub fn start(kind: Kind, host: &Host, dir: &Path) -> Router {
        Router::start_with(kind, host, dir, RouterOptions::default())
    }

    /// Starts the router configured with `peer_as` as netban's AS.
    pub fn start_expecting(kind: Kind, host: &Host, dir: &Path, peer_as: u32) -> Router {
        let options = RouterOptions {
            peer_as: Some(peer_as),
            ..RouterOptions::default()
        };
        Router::start_with(kind, host, dir, options)
    }

    /// Starts the router with `options`.
    pub fn start_with(kind: Kind, host: &Host, dir: &Path, options: RouterOptions) -> Router {
        let dir = dir.join(match kind {
            Kind::Bird => "bird",
            Kind::Frr => "frr",
            Kind::Gobgp => "gobgp",
        });
        std::fs::create_dir_all(&dir).unwrap();
        let mut router = Router {
            kind,
            host: host.clone(),
            dir,
            processes: Vec::new(),
            peer_as: options.peer_as.unwrap_or(SPEAKER_AS),
            options,
        };
        router.write_config();
        router.run();
        router
    }

    fn write_config(&self) {
        match self.kind {
            Kind::Bird => std::fs::write(self.dir.join("bird.conf"), self.bird_conf()).unwrap(),
            Kind::Gobgp => {
                std::fs::write(self.dir.join("gobgpd.toml"), self.gobgpd_conf()).unwrap()
            }
            Kind::Frr => {
                // FRR drops privileges to user frr: it must be able to use its directory.
                let _ = Command::new("chown")
                    .args(["-R", "frr:frr"])
                    .arg(&self.dir)
                    .status();
                std::fs::write(
                    self.dir.join("zebra.conf"),
                    format!(
                        "hostname router\nlog file {}/zebra.log\n",
                        self.dir.display()
                    ),
                )
                .unwrap();
                std::fs::write(
                    self.dir.join("staticd.conf"),
                    format!(
                        "ip route {FRR_DISCARD_V4}/32 Null0\nipv6 route {FRR_DISCARD_V6}/128 Null0\n"
                    ),
                )
                .unwrap();
                std::fs::write(self.dir.join("bgpd.conf"), self.frr_bgpd_conf()).unwrap();
                let _ = Command::new("chown")
                    .args(["-R", "frr:frr"])
                    .arg(&self.dir)
                    .status();
            }
        }
    }

    fn bird_conf(&self) -> String {
        let o = &self.options;
        let mut session = String::new();
        let mut v4_export = "none".to_string();
        let mut statics = String::new();
        if let Some(password) = &o.md5_password {
            session.push_str(&format!("  password \"{password}\";\n"));
        }
        if o.ttl_security {
            session.push_str("  ttl security on;\n");
        }
        if let Some(hold) = o.hold_time {
            session.push_str(&format!("  hold time {hold};\n"));
        }
        let mut tables = String::new();
        if o.flowspec {
            tables.push_str("flow4 table flowtab4;\nflow6 table flowtab6;\n");
            session.push_str(
                "  flow4 { table flowtab4; import all; export none; };\n  \
                 flow6 { table flowtab6; import all; export none; };\n",
            );
        }
        if o.confederation {
            session.push_str(&format!(
                "  confederation {CONFED_ID};\n  confederation member yes;\n"
            ));
            v4_export = format!("where net = {CONFED_ROUTE_V4}");
            statics = format!(
                "protocol static announced {{ ipv4; route {CONFED_ROUTE_V4} blackhole; }}\n"
            );
        }
        format!(
            r#"log "{dir}/bird.log" all;
router id {ROUTER_LINK_V4};
protocol device {{ }}
protocol kernel kernel4 {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol kernel kernel6 {{ ipv6 {{ import none; export where source = RTS_BGP; }}; }}
filter rtbh_in {{
  if (65535, 666) ~ bgp_community then {{ dest = RTD_BLACKHOLE; accept; }}
  reject;
}}
{tables}protocol bgp netban {{
  local {ROUTER_LINK_V4} as {ROUTER_AS};
  neighbor {SPEAKER_LINK_V4} as {peer_as};
  passive on;
  error wait time 1, 5;
{session}  ipv4 {{ import filter rtbh_in; export {v4_export}; }};
  ipv6 {{ import filter rtbh_in; export none; }};
}}
{statics}"#,
            dir = self.dir.display(),
            peer_as = self.peer_as,
        )
    }

    fn frr_bgpd_conf(&self) -> String {
        let o = &self.options;
        let n = SPEAKER_LINK_V4;
        let mut global = String::new();
        let mut neighbor = String::new();
        let mut v4 = String::new();
        let mut flowspec = String::new();
        if o.flowspec {
            for family in ["ipv4", "ipv6"] {
                flowspec.push_str(&format!(
                    " address-family {family} flowspec\n  neighbor {n} activate\n \
                     exit-address-family\n"
                ));
            }
        }
        if let Some(password) = &o.md5_password {
            neighbor.push_str(&format!(" neighbor {n} password {password}\n"));
        }
        if o.ttl_security {
            neighbor.push_str(&format!(" neighbor {n} ttl-security hops 1\n"));
        }
        if let Some(hold) = o.hold_time {
            neighbor.push_str(&format!(" neighbor {n} timers {} {hold}\n", hold / 3));
        }
        if o.confederation {
            global.push_str(&format!(
                " bgp confederation identifier {CONFED_ID}\n bgp confederation peers {}\n \
                 no bgp network import-check\n",
                self.peer_as
            ));
            v4.push_str(&format!("  network {CONFED_ROUTE_V4}\n"));
        }
        format!(
            r#"log file {dir}/bgpd.log
bgp community-list standard BLACKHOLE permit 65535:666
route-map RTBH-V4 permit 10
 match community BLACKHOLE
 set ip next-hop {FRR_DISCARD_V4}
route-map RTBH-V4 deny 20
route-map RTBH-V6 permit 10
 match community BLACKHOLE
 set ipv6 next-hop global {FRR_DISCARD_V6}
route-map RTBH-V6 deny 20
router bgp {ROUTER_AS}
 bgp router-id {ROUTER_LINK_V4}
 no bgp ebgp-requires-policy
{global} neighbor {SPEAKER_LINK_V4} remote-as {peer_as}
 neighbor {SPEAKER_LINK_V4} passive
 neighbor {SPEAKER_LINK_V4} disable-connected-check
{neighbor} address-family ipv4 unicast
{v4}  neighbor {SPEAKER_LINK_V4} activate
  neighbor {SPEAKER_LINK_V4} route-map RTBH-V4 in
 exit-address-family
 address-family ipv6 unicast
  neighbor {SPEAKER_LINK_V4} activate
  neighbor {SPEAKER_LINK_V4} route-map RTBH-V6 in
 exit-address-family
{flowspec}"#,
            dir = self.dir.display(),
            peer_as = self.peer_as,
        )
    }

    /// GoBGP as a passive neighbour taking unicast and flowspec from netban into its RIB.
    fn gobgpd_conf(&self) -> String {
        let families: String = [
            "ipv4-unicast",
            "ipv6-unicast",
            "ipv4-flowspec",
            "ipv6-flowspec",
        ]
        .iter()
        .map(|f| {
            format!(
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      \
                     afi-safi-name = \"{f}\"\n"
            )
        })
        .collect();
        format!(
            r#"[global.config]
  as = {ROUTER_AS}
  router-id = "{ROUTER_LINK_V4}"
  port = 179
  local-address-list = ["{ROUTER_LINK_V4}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{SPEAKER_LINK_V4}"
    peer-as = {peer_as}
  [neighbors.transport.config]
    passive-mode = true
{families}"#,
            peer_as = self.peer_as,
        )
    }

    fn spawn_logged(&mut self, program: &str, args: &[String], log: &str) {
        let out = std::fs::File::create(self.dir.join(log)).unwrap();
        let mut cmd = self.host.command(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        self.processes.push(self.host.spawn_command(cmd).unwrap());
    }

    fn run(&mut self) {
        let d = self.dir.display().to_string();
        match self.kind {
            Kind::Bird => {
                let args = [
                    "-f".to_string(),
                    "-c".into(),
                    format!("{d}/bird.conf"),
                    "-s".into(),
                    format!("{d}/bird.ctl"),
                    "-P".into(),
                    format!("{d}/bird.pid"),
                ];
                self.spawn_logged("bird", &args, "bird.out");
            }
            Kind::Gobgp => {
                let args = [
                    "-f".to_string(),
                    format!("{d}/gobgpd.toml"),
                    "-l".into(),
                    "info".into(),
                    "--api-hosts".into(),
                    format!("127.0.0.1:{GOBGP_API_PORT}"),
                    "--pprof-disable".into(),
                ];
                self.spawn_logged("gobgpd", &args, "gobgpd.out");
            }
            Kind::Frr => {
                for daemon in ["zebra", "staticd", "bgpd"] {
                    let args = vec![
                        "-f".to_string(),
                        format!("{d}/{daemon}.conf"),
                        "-i".into(),
                        format!("{d}/{daemon}.pid"),
                        "-z".into(),
                        format!("{d}/zserv.api"),
                        "--vty_socket".into(),
                        d.clone(),
                        "-P".into(),
                        "0".into(),
                        "-u".into(),
                        "frr".into(),
                        "-g".into(),
                        "frr".into(),
                    ];
                    self.spawn_logged(
                        &format!("/usr/lib/frr/{daemon}"),
                        &args,
                        &format!("{daemon}.out"),
                    );
                    if daemon == "zebra" {
                        let api = self.dir.join("zserv.api");
                        assert!(
                            wait_until(START_WAIT, Duration::from_millis(20), || api.exists()),
                            "zebra did not create {api:?}: {}",
                            self.logs()
                        );
                    }
                }
            }
        }
        assert!(
            wait_until(START_WAIT, Duration::from_millis(50), || self.responds()),
            "{:?} did not come up: {}",
            self.kind,
            self.logs()
        );
    }

    /// Whether the control interface answers.
    fn responds(&self) -> bool {
        match self.kind {
            Kind::Bird => self
                .control(&["show", "status"])
                .is_some_and(|s| s.contains("Daemon is up")),
            Kind::Frr => self.control(&["show bgp summary"]).is_some_and(|s| {
                s.contains("BGP router identifier") || s.contains("No BGP neighbors")
            }),
            Kind::Gobgp => self
                .control(&["global"])
                .is_some_and(|s| s.contains(ROUTER_LINK_V4)),
        }
    }

    /// Runs a command on the control interface (birdc or vtysh); `None` if it failed.
    pub fn control(&self, args: &[&str]) -> Option<String> {
        let d = self.dir.display().to_string();
        let out = match self.kind {
            Kind::Bird => {
                let mut all = vec!["-s".to_string(), format!("{d}/bird.ctl")];
                all.extend(args.iter().map(|s| s.to_string()));
                self.host.run("birdc", &all)
            }
            Kind::Frr => {
                let mut all = vec!["--vty_socket".to_string(), d];
                for a in args {
                    all.push("-c".into());
                    all.push(a.to_string());
                }
                self.host.run("vtysh", &all)
            }
            Kind::Gobgp => {
                let mut all = vec!["-p".to_string(), GOBGP_API_PORT.into()];
                all.extend(args.iter().map(|s| s.to_string()));
                self.host.run("gobgp", &all)
            }
        }
        .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether the router has sent [`CONFED_ROUTE_V4`] to netban, as the router says.
    pub fn advertised_confed_route(&self) -> bool {
        let text = match self.kind {
            Kind::Bird => self.control(&["show", "route", "export", "netban.ipv4"]),
            Kind::Frr => self.control(&[&format!(
                "show bgp ipv4 unicast neighbors {SPEAKER_LINK_V4} advertised-routes"
            )]),
            Kind::Gobgp => self.control(&["neighbor", SPEAKER_LINK_V4, "adj-out"]),
        };
        text.is_some_and(|t| t.contains(CONFED_ROUTE_V4))
    }

    /// How many times the session with netban has come up, and went down, by the router's own
    /// count (FRR: "Connections established N; dropped M"; BIRD does not count, so for BIRD:
    /// 1 and 0 unless `show protocols all` reports a last error).
    pub fn session_counts(&self) -> (u32, u32) {
        match self.kind {
            Kind::Frr => {
                let text = self
                    .control(&[&format!("show bgp neighbor {SPEAKER_LINK_V4}")])
                    .unwrap_or_default();
                let number_after = |label: &str| {
                    text.split(label)
                        .nth(1)
                        .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(0)
                };
                (
                    number_after("Connections established"),
                    number_after("dropped"),
                )
            }
            Kind::Bird => {
                let text = self
                    .control(&["show", "protocols", "all", "netban"])
                    .unwrap_or_default();
                let up = u32::from(text.contains("Established"));
                (up, u32::from(text.contains("Last error")))
            }
            Kind::Gobgp => (u32::from(self.established()), 0),
        }
    }

    /// Whether the session with netban is established, as the router says.
    pub fn established(&self) -> bool {
        match self.kind {
            Kind::Bird => self
                .control(&["show", "protocols", "netban"])
                .is_some_and(|s| s.contains("Established")),
            Kind::Frr => self
                .control(&[&format!("show bgp neighbor {SPEAKER_LINK_V4}")])
                .is_some_and(|s| s.contains("BGP state = Established")),
            // session_state 6 is ESTABLISHED in GoBGP's API.
            Kind::Gobgp => self
                .control(&["neighbor", SPEAKER_LINK_V4, "-j"])
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .is_some_and(|v| v["state"]["session_state"] == 6),
        }
    }

    /// The flow specification rules the router holds (both families), as it shows them: BIRD
    /// `show route table flowtab4/flowtab6 all`, FRR `show bgp ipv4/ipv6 flowspec detail`,
    /// GoBGP `gobgp global rib -a ipv4-flowspec/ipv6-flowspec -j`. `None` if the control
    /// interface did not answer.
    pub fn flowspec_rules(&self) -> Option<BTreeSet<FlowRule>> {
        let mut out = BTreeSet::new();
        for v6 in [false, true] {
            match self.kind {
                Kind::Bird => {
                    let table = if v6 { "flowtab6" } else { "flowtab4" };
                    let text = self.control(&["show", "route", "table", table, "all"])?;
                    out.extend(parse_bird_flows(&text));
                }
                Kind::Frr => {
                    let family = if v6 { "ipv6" } else { "ipv4" };
                    let text = self.control(&[&format!("show bgp {family} flowspec detail")])?;
                    out.extend(parse_frr_flows(&text));
                }
                Kind::Gobgp => {
                    let family = if v6 { "ipv6-flowspec" } else { "ipv4-flowspec" };
                    let text = self.control(&["global", "rib", "-a", family, "-j"])?;
                    out.extend(parse_gobgp_flows(&text)?);
                }
            }
        }
        Some(out)
    }

    /// Stops the daemons gracefully (SIGTERM): BIRD withdraws its kernel routes on the way
    /// out, zebra removes bgpd's when bgpd goes.
    pub fn stop(&mut self) {
        for p in self.processes.iter().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.id().to_string()])
                .status();
        }
        for mut p in self.processes.drain(..).rev() {
            let exited = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                matches!(p.try_wait(), Ok(Some(_)))
            });
            assert!(exited, "{:?} did not stop on SIGTERM", self.kind);
        }
    }

    /// Sends `signal` ("-STOP", "-CONT") to every daemon of the router.
    pub fn signal(&self, signal: &str) {
        for p in &self.processes {
            let status = Command::new("kill")
                .args([signal, &p.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} {:?}", self.kind);
        }
    }

    /// Starts the daemons again after [`Router::stop`], with the same configuration.
    pub fn start_again(&mut self) {
        self.run();
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") || name.ends_with(".out") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    all.push_str(&format!("\n--- {name}\n"));
                    for line in tail.into_iter().rev() {
                        all.push_str(line);
                        all.push('\n');
                    }
                }
            }
        }
        all
    }
}

/// BIRD's `show route … all` of a flow table: a `flow4 { src P; proto N; dport A,B; }` (IPv6:
/// `flow6 { src P; next header N; dport A; }`) line per rule, then its attributes, among them
/// `BGP.ext_community: (generic, 0x80060000, 0x0)` for traffic-rate 0.
fn parse_bird_flows(text: &str) -> Vec<FlowRule> {
    let mut out: Vec<FlowRule> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed
            .strip_prefix("flow4 {")
            .or_else(|| trimmed.strip_prefix("flow6 {"))
        {
            let body = rest.split('}').next().unwrap_or_default();
            let mut rule = FlowRule::discard("", None, &[]);
            rule.discard = false;
            for part in body.split(';').map(str::trim) {
                if let Some(p) = part.strip_prefix("src ") {
                    rule.source = p.to_string();
                } else if let Some(n) = part
                    .strip_prefix("proto ")
                    .or_else(|| part.strip_prefix("next header "))
                {
                    rule.protocol = n.trim().parse().ok();
                } else if let Some(ports) = part.strip_prefix("dport ") {
                    rule.destination_ports = ports
                        .split(',')
                        .filter_map(|p| p.trim().parse().ok())
                        .collect();
                }
            }
            out.push(rule);
        } else if trimmed.starts_with("BGP.ext_community:")
            && trimmed.contains("(generic, 0x80060000, 0x0)")
        {
            if let Some(last) = out.last_mut() {
                last.discard = true;
            }
        }
    }
    out
}

/// FRR's `show bgp ipv4|ipv6 flowspec detail`: per rule a `BGP flowspec entry` block with
/// `Source Address P` (IPv6: `P/off 0`), `IP Protocol = N`, `Destination Port = A , = B` and
/// `FS:rate 0.000000` for traffic-rate 0.
fn parse_frr_flows(text: &str) -> Vec<FlowRule> {
    let mut out: Vec<FlowRule> = Vec::new();
    let numbers = |s: &str| -> Vec<u16> {
        s.split(',')
            .filter_map(|t| t.trim().trim_start_matches('=').trim().parse().ok())
            .collect()
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with("BGP flowspec entry") {
            let mut rule = FlowRule::discard("", None, &[]);
            rule.discard = false;
            out.push(rule);
            continue;
        }
        let Some(rule) = out.last_mut() else { continue };
        if let Some(p) = line.strip_prefix("Source Address ") {
            rule.source = p.trim_end_matches("/off 0").to_string();
        } else if let Some(n) = line.strip_prefix("IP Protocol ") {
            rule.protocol = numbers(n).first().and_then(|&n| u8::try_from(n).ok());
        } else if let Some(ports) = line.strip_prefix("Destination Port ") {
            rule.destination_ports = numbers(ports);
        } else if line.starts_with("FS:rate 0.000000") {
            rule.discard = true;
        }
    }
    out
}

/// GoBGP's `global rib -a ipv4-flowspec -j`: a map from the rule's text to its paths, each with
/// `nlri.value` (components: type 2 `{prefix}`, types 3 and 5 `[{op, value}]`) and `attrs`
/// (type 16 holds `{type: 128, subtype: 6, rate: 0}` for traffic-rate 0). `None` if it is not
/// that JSON.
fn parse_gobgp_flows(text: &str) -> Option<Vec<FlowRule>> {
    let rib: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut out = Vec::new();
    for paths in rib.as_object()?.values() {
        let path = paths.as_array()?.first()?;
        let mut rule = FlowRule::discard("", None, &[]);
        rule.discard = false;
        for c in path["nlri"]["value"].as_array()? {
            let values = || -> Vec<u64> {
                c["value"]
                    .as_array()
                    .map(|terms| terms.iter().filter_map(|t| t["value"].as_u64()).collect())
                    .unwrap_or_default()
            };
            match c["type"].as_u64()? {
                2 => rule.source = c["value"]["prefix"].as_str()?.to_string(),
                3 => rule.protocol = values().first().and_then(|&v| u8::try_from(v).ok()),
                5 => {
                    rule.destination_ports = values()
                        .iter()
                        .filter_map(|&v| u16::try_from(v).ok())
                        .collect()
                }
                _ => {}
            }
        }
        rule.discard = path["attrs"].as_array()?.iter().any(|a| {
            a["type"] == 16
                && a["value"].as_array().is_some_and(|v| {
                    v.iter()
                        .any(|e| e["type"] == 128 && e["subtype"] == 6 && e["rate"] == 0)
                })
        });
        out.push(rule);
    }
    Some(out)
}

/// The destinations of blackhole routes in `host`'s kernel tables (IPv4 and IPv6), as `ip`
/// prints them ("203.0.113.7", "2001:db8:a::7", "203.0.113.0/29").
pub fn blackholes(host: &Host) -> Vec<String> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let text = host
            .run_ok("ip", [family, "route", "show", "type", "blackhole"])
            .unwrap_or_default();
        for line in text.lines() {
            // Only routes from BGP: BIRD's are "proto bird", FRR's "proto bgp" (FRR's own
            // Null0 discard next hops are "proto static").
            let from_bgp = line.contains(" proto bird") || line.contains(" proto bgp");
            let dest = line
                .strip_prefix("blackhole ")
                .and_then(|r| r.split_whitespace().next());
            if let (true, Some(dest)) = (from_bgp, dest) {
                out.push(dest.to_string());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs captured from BIRD 2.0.12, FRR 8.4.4 and GoBGP 3.10 holding rules GoBGP sent.
    #[test]
    fn each_routers_listing_reads_as_the_same_rules() {
        let want: BTreeSet<FlowRule> = [
            FlowRule::discard("203.0.113.8/32", Some(6), &[22, 443]),
            FlowRule::discard("203.0.113.7/32", None, &[]),
            FlowRule::discard("2001:db8:a::7/128", Some(6), &[22]),
        ]
        .into_iter()
        .collect();
        let bird = "BIRD 2.0.12 ready.
Table flowtab4:
flow4 { src 203.0.113.8/32; proto 6; dport 22,443; }  [netban 04:02:32.058 from 198.18.0.2] * (100) [AS65001?]
\tType: BGP univ
\tBGP.ext_community: (generic, 0x80060000, 0x0)
flow4 { src 203.0.113.7/32; }  [netban 04:02:32.043 from 198.18.0.2] * (100) [AS65001?]
\tType: BGP univ
\tBGP.ext_community: (generic, 0x80060000, 0x0)
Table flowtab6:
flow6 { src 2001:db8:a::7/128; next header 6; dport 22; }  [netban 04:02:32.076 from 198.18.0.2] * (100) [AS65001?]
\tBGP.ext_community: (generic, 0x80060000, 0x0)
";
        let frr = "BGP flowspec entry: (flags 0x418)
\tSource Address 203.0.113.8/32
\tIP Protocol = 6 
\tDestination Port = 22 , = 443 
\tFS:rate 0.000000
\treceived for 00:00:16
\tnot installed in PBR
BGP flowspec entry: (flags 0x418)
\tSource Address 203.0.113.7/32
\tFS:rate 0.000000
BGP flowspec entry: (flags 0x418)
\tSource Address 2001:db8:a::7/128/off 0
\tIP Protocol = 6 
\tDestination Port = 22 
\tFS:rate 0.000000
";
        let gobgp = [
            r#"{"[source: 203.0.113.7/32]":[{"nlri":{"value":[{"type":2,"value":{"prefix":"203.0.113.7/32"}}]},"best":true,"attrs":[{"type":1,"value":2},{"type":16,"value":[{"type":128,"subtype":6,"as":0,"rate":0}]}]}],"[source: 203.0.113.8/32][protocol: ==tcp][destination-port: ==22 ==443]":[{"nlri":{"value":[{"type":2,"value":{"prefix":"203.0.113.8/32"}},{"type":3,"value":[{"op":129,"value":6}]},{"type":5,"value":[{"op":1,"value":22},{"op":145,"value":443}]}]},"attrs":[{"type":16,"value":[{"type":128,"subtype":6,"as":0,"rate":0}]}]}]}"#,
            r#"{"[source: 2001:db8:a::7/128/0][protocol: ==tcp][destination-port: ==22]":[{"nlri":{"value":[{"type":2,"value":{"prefix":"2001:db8:a::7/128"},"offset":0},{"type":3,"value":[{"op":129,"value":6}]},{"type":5,"value":[{"op":129,"value":22}]}]},"attrs":[{"type":16,"value":[{"type":128,"subtype":6,"as":0,"rate":0}]}]}]}"#,
        ];
        let collect = |rules: Vec<FlowRule>| rules.into_iter().collect::<BTreeSet<_>>();
        assert_eq!(collect(parse_bird_flows(bird)), want);
        assert_eq!(collect(parse_frr_flows(frr)), want);
        let mut from_gobgp = BTreeSet::new();
        for text in gobgp {
            from_gobgp.extend(parse_gobgp_flows(text).unwrap());
        }
        assert_eq!(from_gobgp, want);
        // Without the traffic-rate community a rule is not a discard rule.
        let no_action = frr.replace("FS:rate 0.000000", "FS:redirect IP 0x0");
        assert!(parse_frr_flows(&no_action).iter().all(|r| !r.discard));
        assert!(parse_gobgp_flows("{}").unwrap().is_empty());
        assert!(parse_gobgp_flows("Network not in table").is_none());
    }
}
