//! BGP: ban → blackhole route in BIRD's kernel table, netban beside GoBGP driven the
//! one-command-per-ban way (`gobgp global rib add`); then 100,000 routes through netban. In
//! the RTBH lab (`netban_testlab::peers::bgp_routers`), every speaker inside its namespace.

use super::apply_all;
use crate::table::{median, ms, p95, secs, verdict, Row, Table};
use crate::Context;
use netban_core::plan::{Desired, Held, Plan};
use netban_core::{Expiry, Prefix};
use netban_targets::bgp::Bgp;
use netban_targets::Target;
use netban_testlab::peers::bgp_routers::{
    rtbh, speaker_settings, Kind, Router, ROUTER_AS, ROUTER_LINK_V4, SPEAKER_AS, SPEAKER_LINK_V4,
};
use netban_testlab::plans::{adds, removes};
use netban_testlab::{wait_until, Host, Process};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a route may take to reach (or leave) the router's kernel.
const ROUTE_WAIT: Duration = Duration::from_secs(15);

pub fn run(_context: &Context, table: &mut Table) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(measure(table));
    Ok(())
}

/// Watches the router's kernel routing table (`ip monitor route`) and hands each line over
/// with the instant it was read.
struct RouteMonitor {
    lines: std::sync::mpsc::Receiver<(Instant, String)>,
    _process: Process,
}

impl RouteMonitor {
    fn start(router: &Host) -> RouteMonitor {
        use std::io::BufRead;
        let mut cmd = router.command("ip");
        cmd.args(["monitor", "route"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut process = router.spawn_command(cmd).unwrap();
        let stdout = process.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        RouteMonitor {
            lines: rx,
            _process: process,
        }
    }

    /// When the blackhole route to `dest` ("198.19.200.1") appeared.
    fn wait_added(&self, dest: &str) -> Instant {
        let want = format!("blackhole {dest} ");
        loop {
            let (at, line) = self
                .lines
                .recv_timeout(ROUTE_WAIT)
                .unwrap_or_else(|_| panic!("no route to {dest} within {ROUTE_WAIT:?}"));
            if line.starts_with(&want) {
                return at;
            }
        }
    }
}

/// Counts BGP blackhole routes in the router's kernel tables.
fn count_blackholes(router: &Host) -> usize {
    let mut n = 0;
    for family in ["-4", "-6"] {
        let out = router
            .run_ok(
                "ip",
                [
                    family,
                    "route",
                    "show",
                    "type",
                    "blackhole",
                    "proto",
                    "bird",
                ],
            )
            .unwrap_or_default();
        n += out.lines().count();
    }
    n
}

fn wait_count(router: &Host, want: usize, within: Duration) -> Instant {
    let ok = wait_until(within, Duration::from_millis(100), || {
        count_blackholes(router) == want
    });
    assert!(
        ok,
        "{} blackhole routes, want {want}",
        count_blackholes(router)
    );
    Instant::now()
}

/// Ban → blackhole route in BIRD's kernel table, netban beside GoBGP driven the
/// one-command-per-ban way (`gobgp global rib add`); then 100,000 routes through netban.
async fn measure(table: &mut Table) {
    const BANS: u32 = 100;
    const GOBGP_BULK: u32 = 1_000;
    const BULK_V4: u32 = 50_000;
    const BULK_V6: u128 = 50_000;
    let lab = rtbh("bgp-bench");
    let router = Router::start(Kind::Bird, &lab.edge.router, lab.dir.path());
    let monitor = RouteMonitor::start(&lab.edge.router);

    // netban: one apply per ban, as the reconciler does for a single new ban.
    let settings = speaker_settings(&lab.speaker, ROUTER_LINK_V4, ROUTER_AS);
    let mut t = Bgp::new("rtbh", serde_json::from_value(settings).unwrap()).unwrap();
    t.prepare().await.unwrap();
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        t.all_established() && router.established()
    });
    assert!(up, "session not established{}", router.logs());
    let mut netban_times = Vec::new();
    for i in 0..BANS {
        let dest = format!("198.19.200.{i}");
        let started = Instant::now();
        apply_all(&mut t, &adds(&[&dest])).await;
        netban_times.push(monitor.wait_added(&dest) - started);
    }
    let all: Vec<String> = (0..BANS).map(|i| format!("198.19.200.{i}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    apply_all(&mut t, &removes(&all)).await;
    wait_count(&lab.edge.router, 0, ROUTE_WAIT);

    // netban: 100,000 routes (50,000 IPv4 /32 + 50,000 IPv6 /128) in one apply.
    let bulk: Vec<Prefix> = (0..BULK_V4)
        .map(|i| Prefix::host(std::net::Ipv4Addr::from(0xc613_0000 + i).into()))
        .chain((0..BULK_V6).map(|i| {
            Prefix::host(std::net::Ipv6Addr::from(0x2001_0db8_dead_u128 << 80 | i).into())
        }))
        .collect();
    let plan = Plan {
        add: bulk
            .iter()
            .map(|&prefix| Desired::new(prefix, Expiry::Never))
            .collect(),
        ..Plan::default()
    };
    let started = Instant::now();
    apply_all(&mut t, &plan).await;
    let sent = started.elapsed();
    let installed = wait_count(&lab.edge.router, bulk.len(), Duration::from_secs(300)) - started;
    let withdraw = Plan {
        remove: bulk
            .iter()
            .map(|&prefix| Held {
                prefix,
                expiry: None,
                handle: None,
            })
            .collect(),
        ..Plan::default()
    };
    let started = Instant::now();
    apply_all(&mut t, &withdraw).await;
    let removed = wait_count(&lab.edge.router, 0, Duration::from_secs(300)) - started;
    t.shutdown().await;
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || !router.established()
    ));

    // GoBGP 3.10 in the same namespace with the same AS and address, one CLI call per ban.
    let _gobgpd = reference_speaker(&lab.speaker, lab.dir.path(), "ipv4-unicast", "50051");
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            router.established()
        }),
        "gobgpd did not establish{}",
        router.logs()
    );
    let gobgp_add = |dest: &str| {
        let mut cmd = std::process::Command::new("gobgp");
        cmd.args([
            "-p",
            "50051",
            "global",
            "rib",
            "-a",
            "ipv4",
            "add",
            &format!("{dest}/32"),
        ])
        .args(["community", "65535:666,65535:65281"]);
        let out = lab.speaker.enter(|| cmd.output()).unwrap().unwrap();
        assert!(
            out.status.success(),
            "gobgp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut gobgp_times = Vec::new();
    for i in 0..BANS {
        let dest = format!("198.19.201.{i}");
        let started = Instant::now();
        gobgp_add(&dest);
        gobgp_times.push(monitor.wait_added(&dest) - started);
    }
    let started = Instant::now();
    for i in 0..GOBGP_BULK {
        gobgp_add(&std::net::Ipv4Addr::from(0xc613_4000 + i).to_string());
    }
    wait_count(
        &lab.edge.router,
        (BANS + GOBGP_BULK) as usize,
        Duration::from_secs(60),
    );
    let gobgp_bulk = started.elapsed();
    let gobgp_100k = gobgp_bulk.mul_f64(100_000.0 / f64::from(GOBGP_BULK));

    let (nb, gb) = (median(netban_times.clone()), median(gobgp_times.clone()));
    table.section(
        "bgp: BIRD 2.0.12 router, kernel table; reference: GoBGP 3.10, one CLI call per ban",
    );
    table.row(Row::versus(
        format!("ban → blackhole route, median of {BANS}"),
        nb,
        gb,
    ));
    table.row(Row::versus(
        "ban → blackhole route, p95",
        p95(netban_times),
        p95(gobgp_times),
    ));
    table.row(Row::netban(
        "100,000 routes announced (UPDATEs written)",
        ms(sent),
    ));
    table.row(
        Row::versus(
            "100,000 routes installed in the kernel",
            installed,
            gobgp_100k,
        )
        .note(format!(
            "reference extrapolated from {GOBGP_BULK}: {:.2} s",
            gobgp_bulk.as_secs_f64()
        )),
    );
    table.row(Row::netban(
        "100,000 routes withdrawn and removed",
        secs(removed),
    ));
    table.row(
        Row::netban("goal: ban → route ≤ 50 ms median", "")
            .note(verdict(nb <= Duration::from_millis(50))),
    );
}

/// GoBGP 3.10 speaking for netban (its AS and address, in `speaker`'s namespace) to the lab's
/// router for `afi_safi`, its API on 127.0.0.1:`api_port`: the reference that adds routes one
/// `gobgp` process each. Its config is written in `dir`.
pub(super) fn reference_speaker(
    speaker: &Host,
    dir: &Path,
    afi_safi: &str,
    api_port: &str,
) -> Process {
    let conf = dir.join(format!("gobgpd-{afi_safi}.toml"));
    std::fs::write(
        &conf,
        format!(
            r#"[global.config]
  as = {SPEAKER_AS}
  router-id = "{SPEAKER_LINK_V4}"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{ROUTER_LINK_V4}"
    peer-as = {ROUTER_AS}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{afi_safi}"
"#
        ),
    )
    .unwrap();
    let mut gobgpd = speaker.command("gobgpd");
    gobgpd
        .args([
            "-f",
            conf.to_str().unwrap(),
            "-l",
            "warn",
            "--api-hosts",
            &format!("127.0.0.1:{api_port}"),
            "--pprof-disable",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    speaker.spawn_command(gobgpd).unwrap()
}
