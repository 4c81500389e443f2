//! The fleet benchmarks (issue 13): four hosts' daemons on one PostgreSQL 15 ledger (a server of
//! the run's own, `fsync` on), each host with its own nftables in a namespace (`scope =
//! "host"`), all sharing the router's nftables (`scope = "fleet"`, driven by one lease holder).
//! Every host runs the default `poll_millis` (1 s): a ban crosses to other hosts through the
//! ledger's change feed and its NOTIFY wake-up. Arrival times are the kernel's own
//! (`nft monitor` in the receiving namespace), and each host writes the router with an `nft`
//! of its own name, so the router's change log says which host made each write.
//!
//! The reference: how fail2ban bans are shared between hosts today — host A's action runs
//! `ssh B fail2ban-client set JAIL banip IP` for each peer B. Here with a real OpenSSH server in
//! host B's namespace (reached over a veth link from host A's, key authentication, a fresh
//! connection per ban as an action would make) and a real fail2ban 1.0.2 there whose jail bans
//! with Debian's `nftables-multiport` action: the time until host B's nftables holds the
//! address. (The other common way, a shared SQLite file that every host's fail2ban reads,
//! only works on one machine or a network file system, and fail2ban reads its database only
//! at start: it does not propagate bans at all while running.)
//!
//! Targets (issue 13): ban on A → B's set and the router's set p50 ≤ 50 ms, p99 ≤ 200 ms;
//! 10,000 bans from 4 hosts enforced at the router ≤ 2 s; driver killed → first write by the
//! new driver ≤ 5 s; per-ban acknowledgement with PostgreSQL ≤ 5 ms median.

use crate::table::{median, ms, ratio, secs, verdict, Row, Table};
use crate::Context;
use netban_testlab::fail2ban::Fail2ban;
use netban_testlab::netban::{self, Daemon};
use netban_testlab::nft::{self, Monitor};
use netban_testlab::postgres::{PgOptions, PgServer};
use netban_testlab::{wait_until, Host, Lab};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Hosts in the fleet.
const HOSTS: usize = 4;
/// Host B's address on its link to host A (the reference's SSH connection).
const B_SSH_ADDRESS: &str = "198.19.251.2";

pub fn run(o: &Context, table: &mut Table) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("netban-bench-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = benchmarks(o, &work, table);
    // NETBAN_BENCH_KEEP=1 keeps the daemons' directories (configs, logs) for inspection.
    if std::env::var_os("NETBAN_BENCH_KEEP").is_some() {
        eprintln!("fleet: kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// One host of the fleet: its namespace (its own nftables) and its daemon.
struct FleetHost {
    label: String,
    local: Host,
    daemon: Daemon,
    /// The command name its router writes carry in `nft monitor`.
    writer: String,
}

/// The fleet. Fields drop in order: daemons, then the database, then the namespaces.
struct Fleet {
    hosts: Vec<FleetHost>,
    pg: PgServer,
    router: Host,
    lab: Lab,
}

impl Fleet {
    fn start(o: &Context, work: &Path) -> Result<Fleet, String> {
        let lab = Lab::new("ffbench").map_err(|e| e.to_string())?;
        let router = lab.host("router").map_err(|e| e.to_string())?;
        let pg = PgServer::start(PgOptions { fsync: true }).map_err(|e| e.to_string())?;
        let db = pg.create_database().map_err(|e| e.to_string())?;
        let nft = nft_program()?;
        let mut hosts = Vec::new();
        for i in 0..HOSTS {
            let label = format!("host{}", char::from(b'a' + i as u8));
            let local = lab.host(&label).map_err(|e| e.to_string())?;
            let writer = format!("nft-{label}");
            let writer_path = work.join(&writer);
            std::os::unix::fs::symlink(&nft, &writer_path).map_err(|e| e.to_string())?;
            let config = format!(
                "[[targets]]\nname = \"router\"\ntype = \"nftables\"\nnetns = \"{}\"\n\
                 scope = \"fleet\"\nnft_path = \"{}\"\n\n{}",
                router.name(),
                writer_path.display(),
                local_target(&local)
            );
            let daemon = Daemon::start_as(&o.bins, &work.join(&label), &db.url(), &label, &config)
                .map_err(|e| e.to_string())?;
            hosts.push(FleetHost {
                label,
                local,
                daemon,
                writer,
            });
        }
        let fleet = Fleet {
            hosts,
            pg,
            router,
            lab,
        };
        fleet
            .driver(Duration::from_secs(15))
            .ok_or("no host took the router's lease")?;
        Ok(fleet)
    }

    /// The index of the host that drives the router, once exactly one does and all agree.
    fn driver(&self, within: Duration) -> Option<usize> {
        let mut driver = None;
        wait_until(within, Duration::from_millis(20), || {
            let views: Vec<serde_json::Value> = self
                .hosts
                .iter()
                .map(|h| router_status(&h.daemon))
                .collect();
            let driving: Vec<usize> = (0..self.hosts.len())
                .filter(|&i| {
                    views[i]["driver"] == self.hosts[i].label.as_str()
                        && views[i]["health"] != "standby"
                })
                .collect();
            driver = match driving[..] {
                [d] if views
                    .iter()
                    .all(|v| v["driver"] == self.hosts[d].label.as_str()) =>
                {
                    Some(d)
                }
                _ => None,
            };
            driver.is_some()
        });
        driver
    }
}

/// A host's own nftables target, `local`, in the namespace `host`.
fn local_target(host: &Host) -> String {
    format!(
        "[[targets]]\nname = \"local\"\ntype = \"nftables\"\nnetns = \"{}\"\n",
        host.name()
    )
}

/// The router target's entry in `netban status` (null while the daemon does not answer).
fn router_status(daemon: &Daemon) -> serde_json::Value {
    target_status(daemon, "router")
}

/// The entry of target `name` in `netban status` (null while the daemon does not answer).
fn target_status(daemon: &Daemon, name: &str) -> serde_json::Value {
    let Some(status) = netban::request(&daemon.socket, &json!({"op": "status"})) else {
        return serde_json::Value::Null;
    };
    status["body"]["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_default()
}

/// Waits until every host's own nftables target holds `want` entries (polling `netban status`),
/// then counts each host's set with nft: a ban seen anywhere is enforced everywhere, not only
/// at the router. Answers when they were all there (after `start`), or an error naming the
/// hosts behind after 55 s (under the 60 s resync period, after which a worker that missed
/// bans would be repaired by its resync and the miss hidden).
fn all_local_sets(fleet: &Fleet, want: u64, start: Instant) -> Result<Duration, String> {
    let behind = || -> Vec<String> {
        fleet
            .hosts
            .iter()
            .filter_map(|h| {
                let held = target_status(&h.daemon, "local")["held"].as_u64();
                (held.is_none_or(|n| n < want)).then(|| format!("{} holds {held:?}", h.label))
            })
            .collect()
    };
    if !wait_until(Duration::from_secs(55), Duration::from_millis(5), || {
        behind().is_empty()
    }) {
        return Err(format!(
            "hosts' own sets behind after 55 s: {}",
            behind().join(", ")
        ));
    }
    let at = start.elapsed();
    for host in &fleet.hosts {
        let in_set = nft::count(&host.local, "ban4");
        if (in_set as u64) < want {
            return Err(format!(
                "{}'s worker reports {want} held, its set has {in_set}",
                host.label
            ));
        }
    }
    Ok(at)
}

fn nft_program() -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nft"))
        .find(|p| p.exists())
        .ok_or_else(|| "nft not found in PATH".to_string())
}

/// Addresses only ever placed in sets (198.18.0.0/15 is the benchmarking range), from block
/// `block` on: 200 per /24.
fn addresses(block: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("198.18.{}.{}", block + i / 200, 1 + i % 200))
        .collect()
}

fn ban_one(socket: &Path, address: &str) -> bool {
    netban::ban_over_socket(socket, &[address.to_string()], "sshd", 3600).len() == 1
}

/// `netban ban --stdin` of `list` (one address a line) through the daemon of `config`.
fn bulk_ban(client: &Path, config: &Path, list: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(client)
        .arg("--config")
        .arg(config)
        .args(["ban", "--stdin", "--source", "bulk", "--bantime", "3600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(list.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn benchmarks(o: &Context, work: &Path, table: &mut Table) -> Result<(), String> {
    let mut fleet = Fleet::start(o, work)?;
    let driver = fleet.driver(Duration::from_secs(5)).ok_or("no driver")?;
    // Host A bans; host B receives. Neither drives the router: a ban crosses the feed twice.
    let standby: Vec<usize> = (0..HOSTS).filter(|&i| i != driver).collect();
    let (a, b) = (standby[0], standby[1]);

    // (a) and (e): a ban on host A until host B's set (and the router's) holds it.
    table.section(&format!(
        "fleet 1. Ban on host A → enforced on host B and at the router ({HOSTS} hosts, PostgreSQL 15 \
         fsync on, router driven by {}; A = {}, B = {})",
        fleet.hosts[driver].label, fleet.hosts[a].label, fleet.hosts[b].label
    ));
    let b_monitor = Monitor::start(&fleet.hosts[b].local).map_err(|e| e.to_string())?;
    let router_monitor = Monitor::start(&fleet.router).map_err(|e| e.to_string())?;
    // Not fewer with --quick: the tail (p99) needs the samples.
    let n = 200;
    let (mut ack, mut to_b, mut to_router) = (Vec::new(), Vec::new(), Vec::new());
    for (i, address) in addresses(0, n + 1).iter().enumerate() {
        let start = Instant::now();
        if !ban_one(&fleet.hosts[a].daemon.socket, address) {
            return Err(format!("host A did not acknowledge {address}"));
        }
        let acked = start.elapsed();
        let at_b = b_monitor.added(address, Duration::from_secs(5));
        let at_router = router_monitor.added(address, Duration::from_secs(5));
        let (Some(at_b), Some(at_router)) = (at_b, at_router) else {
            return Err(format!(
                "{address} did not reach host B ({at_b:?}) or the router ({at_router:?})"
            ));
        };
        // The first ban warms the path up; it is not counted.
        if i > 0 {
            ack.push(acked);
            to_b.push(at_b - start);
            to_router.push(at_router - start);
        }
    }
    let reference = ssh_reference(o, work, &fleet, a, b, &b_monitor)?;
    let (b50, b99) = (quantile(&to_b, 0.5), quantile(&to_b, 0.99));
    let (r50, r99) = (quantile(&to_router, 0.5), quantile(&to_router, 0.99));
    let ref50 = quantile(&reference.to_b, 0.5);
    table.row(
        Row::versus(
            format!("ban on A → in B's nft set, p50 ({n} bans)"),
            b50,
            ref50,
        )
        .note(format!(
            "p99 {} (reference p99 {})",
            ms(b99),
            ms(quantile(&reference.to_b, 0.99))
        )),
    );
    table.row(
        Row::versus("ban on A → in the router's nft set, p50", r50, ref50)
            .note(format!("p99 {}; reference: B's set, as above", ms(r99))),
    );
    let slow = |samples: &[Duration]| {
        samples
            .iter()
            .filter(|d| **d > Duration::from_millis(100))
            .count()
    };
    table.row(
        Row::netban(
            "… tail: p90 / max to B's set",
            format!(
                "{} / {}",
                ms(quantile(&to_b, 0.9)),
                ms(quantile(&to_b, 1.0))
            ),
        )
        .note(format!(
            "over 100 ms: {} of {n} to B, {} to the router; router max {}",
            slow(&to_b),
            slow(&to_router),
            ms(quantile(&to_router, 1.0))
        )),
    );
    table.row(
        Row::netban("… ban acknowledged by host A, p50", ms(quantile(&ack, 0.5)))
            .note(format!("p99 {}", ms(quantile(&ack, 0.99)))),
    );
    table.row(
        Row::netban("target: A → B and router p50 ≤ 50 ms, p99 ≤ 200 ms", "").note(verdict(
            b50.max(r50) <= Duration::from_millis(50) && b99.max(r99) <= Duration::from_millis(200),
        )),
    );
    table.text(&format!(
        "reference: `ssh root@B fail2ban-client set sshd banip IP` from A's namespace (OpenSSH, \
         a new connection per ban, {} bans) until fail2ban's nftables-multiport action on B has \
         added it (nft monitor on B); the ssh command itself returned after {} (p50). With N \
         peers an action does this N times.",
        reference.to_b.len(),
        ms(quantile(&reference.ssh_returned, 0.5))
    ));
    drop(b_monitor);
    drop(router_monitor);

    // (c): failover (before the burst: `nft monitor` is slow to start on a router holding
    // tens of thousands of elements).
    let rounds = if o.quick { 2 } else { 3 };
    table.section(&format!(
        "fleet 2. The driver killed (SIGKILL) while bans flow → first router write by the new \
         driver ({rounds} rounds; lease 3 s, renewed every 0.5 s)"
    ));
    let mut failovers = Vec::new();
    for round in 0..rounds {
        let driver = fleet.driver(Duration::from_secs(15)).ok_or("no driver")?;
        let source = (driver + 1) % HOSTS;
        let writes = Monitor::start(&fleet.router).map_err(|e| e.to_string())?;
        let steady = SteadyBans::start(
            fleet.hosts[source].daemon.socket.clone(),
            addresses(140 + 10 * round, 2000),
        );
        fleet.hosts[driver].daemon.kill9();
        let killed_at = Instant::now();
        let old_writer = fleet.hosts[driver].writer.clone();
        let mut first = None;
        let taken = wait_until(Duration::from_secs(15), Duration::from_millis(5), || {
            first = writes.generations().into_iter().find(|g| {
                g.at > killed_at && g.process != old_writer && g.process.starts_with("nft-host")
            });
            first.is_some()
        });
        steady.stop();
        let Some(first) = first.filter(|_| taken) else {
            return Err(format!(
                "round {round}: no new driver wrote the router within 15 s"
            ));
        };
        failovers.push(first.at - killed_at);
        fleet.hosts[driver]
            .daemon
            .restart()
            .map_err(|e| e.to_string())?;
        table.row(Row::netban(
            format!(
                "round {}: {} killed → first write by {}",
                round + 1,
                fleet.hosts[driver].label,
                first.process.trim_start_matches("nft-")
            ),
            secs(first.at - killed_at),
        ));
    }
    let worst = failovers.iter().max().copied().unwrap_or_default();
    table.row(
        Row::netban("target: failover ≤ 5 s (worst round)", secs(worst)).note(format!(
            "{}; fail2ban has no shared device to fail over",
            verdict(worst <= Duration::from_secs(5))
        )),
    );

    // (b): a burst from every host.
    let burst = if o.quick { 2_000 } else { 10_000 };
    table.section(&format!(
        "fleet 3. Burst of {burst} bans from {HOSTS} hosts (2 clients each, one ban per request) \
         until all are in the router's set"
    ));
    let all = addresses(20, burst);
    let start = Instant::now();
    let clients: Vec<_> = all
        .chunks(burst / (2 * HOSTS))
        .enumerate()
        .map(|(i, chunk)| {
            let (socket, chunk) = (fleet.hosts[i % HOSTS].daemon.socket.clone(), chunk.to_vec());
            std::thread::spawn(move || {
                netban::ban_over_socket(&socket, &chunk, "burst", 3600).len()
            })
        })
        .collect();
    let acked: usize = clients.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let acked_at = start.elapsed();
    // What the router's driver holds there (whichever host drives it now).
    let held = || {
        fleet
            .hosts
            .iter()
            .map(|h| (h, router_status(&h.daemon)))
            .filter(|(h, s)| s["driver"] == h.label.as_str() && s["health"] != "standby")
            .find_map(|(_, s)| s["held"].as_u64())
    };
    let done = wait_until(Duration::from_secs(60), Duration::from_millis(5), || {
        held().is_some_and(|h| h >= (n + 1 + burst) as u64)
    });
    let enforced_at = start.elapsed();
    let in_set = nft::count(&fleet.router, "ban4");
    if acked != burst || !done || in_set < n + 1 + burst {
        return Err(format!(
            "burst incomplete: acknowledged {acked}, router target holds {:?}, set {in_set}",
            held()
        ));
    }
    table.row(Row::netban(
        format!("all {burst} acknowledged"),
        ms(acked_at),
    ));
    table.row(
        Row::versus(
            "… and all in the router's set (verified by nft)",
            enforced_at,
            ref50 * burst as u32,
        )
        .note("reference: fleet 1.'s p50 × bans, one ssh after another, one peer"),
    );
    let everywhere = all_local_sets(&fleet, (n + 1 + burst) as u64, start)?;
    table.row(Row::netban(
        format!("… and in every host's own set ({HOSTS} hosts, per `netban status`)"),
        ms(everywhere),
    ));
    // The same burst as one bulk request per host (`netban ban --stdin`: a host replaying
    // its fail2ban jails' bans, or a block list).
    let bulk = addresses(80, burst);
    let start = Instant::now();
    let requests: Vec<_> = bulk
        .chunks(burst / HOSTS)
        .zip(&fleet.hosts)
        .map(|(chunk, host)| {
            let (config, client, list) = (
                host.daemon.config.clone(),
                host.daemon.bins.client.clone(),
                chunk.join("\n"),
            );
            std::thread::spawn(move || bulk_ban(&client, &config, &list))
        })
        .collect();
    let bulk_ok = requests
        .into_iter()
        .all(|t| t.join().unwrap_or_else(|_| Err("panicked".into())).is_ok());
    let bulk_acked = start.elapsed();
    let want = (n + 1 + 2 * burst) as u64;
    let done = wait_until(Duration::from_secs(60), Duration::from_millis(5), || {
        held().is_some_and(|h| h >= want)
    });
    let bulk_enforced = start.elapsed();
    let in_set = nft::count(&fleet.router, "ban4");
    if !bulk_ok || !done || (in_set as u64) < want {
        return Err(format!(
            "bulk burst incomplete: router target holds {:?}, set {in_set}",
            held()
        ));
    }
    table.row(Row::netban(
        format!(
            "one `ban --stdin` of {} per host, all acknowledged",
            burst / HOSTS
        ),
        ms(bulk_acked),
    ));
    table.row(
        Row::versus(
            "… and all in the router's set (verified by nft)",
            bulk_enforced,
            ref50 * burst as u32,
        )
        .note("reference: as above"),
    );
    let everywhere = all_local_sets(&fleet, want, start)?;
    table.row(Row::netban(
        format!("… and in every host's own set ({HOSTS} hosts, per `netban status`)"),
        ms(everywhere),
    ));
    table.row(
        Row::netban(
            format!("target: {burst} bans from {HOSTS} hosts enforced ≤ 2 s (requests / bulk)"),
            "",
        )
        .note(format!(
            "{} / {}",
            verdict(enforced_at <= Duration::from_secs(2)),
            verdict(bulk_enforced <= Duration::from_secs(2))
        )),
    );

    // (d): per-ban acknowledgement, PostgreSQL beside SQLite, once the fleet is at rest: every
    // host's own targets hold every ban of the bursts and nothing is pending (a host still
    // enforcing them competes for the same two cores and would be measured instead).
    let at_rest = wait_until(Duration::from_secs(120), Duration::from_millis(50), || {
        fleet.hosts.iter().all(|host| {
            netban::request(&host.daemon.socket, &json!({"op": "status"})).is_some_and(|s| {
                s["body"]["targets"].as_array().is_some_and(|targets| {
                    targets.iter().all(|t| {
                        t["pending"] == 0 && (t["scope"] != "host" || t["held"] == t["desired"])
                    })
                })
            })
        })
    });
    if !at_rest {
        return Err("the fleet did not come to rest after the bursts".into());
    }
    let per = if o.quick { 100 } else { 300 };
    table.section(&format!(
        "fleet 4. Per-ban acknowledgement, one ban per request, {per} each, interleaved: \
         PostgreSQL ledger (fsync on), a host of the fleet and a host alone on its own database of \
         the same server, vs the same daemon on SQLite (synchronous=FULL)"
    ));
    // Each host enforces on its own nftables, as the fleet's hosts do.
    let own_namespace = |name: &str| fleet.lab.host(name).map_err(|e| e.to_string());
    let solo = Daemon::start(
        &o.bins,
        &work.join("solo"),
        &local_target(&own_namespace("solo")?),
    )
    .map_err(|e| e.to_string())?;
    let lone_db = fleet.pg.create_database().map_err(|e| e.to_string())?;
    let lone = Daemon::start_as(
        &o.bins,
        &work.join("lone"),
        &lone_db.url(),
        "lone",
        &local_target(&own_namespace("lone")?),
    )
    .map_err(|e| e.to_string())?;
    let (mut fleet_acks, mut lone_acks, mut sqlite_acks) = (Vec::new(), Vec::new(), Vec::new());
    let host = &fleet.hosts[a].daemon;
    for (i, address) in addresses(200, per).iter().enumerate() {
        for (daemon, samples) in [
            (host, &mut fleet_acks),
            (&lone, &mut lone_acks),
            (&solo, &mut sqlite_acks),
        ] {
            let start = Instant::now();
            if !ban_one(&daemon.socket, address) {
                return Err(format!("ban #{i} of {address} not acknowledged"));
            }
            samples.push(start.elapsed());
        }
    }
    let sqlite50 = median(sqlite_acks.clone());
    let mut verdicts = Vec::new();
    for (what, acks) in [
        ("a host of the 4-host fleet", &fleet_acks),
        ("a host alone on PostgreSQL", &lone_acks),
    ] {
        let pg50 = median(acks.clone());
        table.row(Row {
            what: format!("ban acknowledged, PostgreSQL, {what}, median (vs SQLite)"),
            netban: ms(pg50),
            reference: ms(sqlite50),
            ratio: Some(ratio(sqlite50, pg50)),
            note: format!(
                "p99 {}; reference column: SQLite (ratio < 1: PostgreSQL slower)",
                ms(quantile(acks, 0.99))
            ),
        });
        verdicts.push(format!(
            "{what}: {}",
            verdict(pg50 <= Duration::from_millis(5))
        ));
    }
    table.row(
        Row::netban("ban acknowledged, SQLite ledger, median", ms(sqlite50))
            .note(format!("p99 {}", ms(quantile(&sqlite_acks, 0.99)))),
    );
    table.row(
        Row::netban(
            "target: per-ban acknowledgement with PostgreSQL ≤ 5 ms median",
            "",
        )
        .note(format!(
            "{} (each ban of the fleet's host is also enforced by 3 other daemons and the \
             router's driver on the same 2 cores)",
            verdicts.join("; ")
        )),
    );
    drop(lone);
    drop(solo);
    Ok(())
}

/// Bans addresses one after another through one socket until stopped (a fail2ban host's pace:
/// each acknowledged before the next).
struct SteadyBans {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl SteadyBans {
    fn start(socket: PathBuf, addresses: Vec<String>) -> SteadyBans {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for address in addresses {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let _ = ban_one(&socket, &address);
                // A load generator's pace, not a synchronisation.
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        SteadyBans { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// The reference's measurements.
struct SshReference {
    /// From starting `ssh` on A until B's nftables holds the address.
    to_b: Vec<Duration>,
    /// From starting `ssh` until it returned.
    ssh_returned: Vec<Duration>,
}

/// The reference (see the module documentation): sshd and fail2ban in host B's namespace,
/// `ssh … fail2ban-client set sshd banip IP` from host A's.
fn ssh_reference(
    o: &Context,
    work: &Path,
    fleet: &Fleet,
    a: usize,
    b: usize,
    b_monitor: &Monitor,
) -> Result<SshReference, String> {
    let (host_a, host_b) = (&fleet.hosts[a], &fleet.hosts[b]);
    let dir = work.join("ssh-reference");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    fleet
        .lab
        .link(
            &host_a.local,
            &["198.19.251.1/24"],
            &host_b.local,
            &[&format!("{B_SSH_ADDRESS}/24")],
        )
        .map_err(|e| e.to_string())?;
    let f2b = Fail2ban::start_in(
        &host_b.local,
        &dir.join("f2b"),
        &o.bins.client,
        &host_b.daemon.config,
        "[DEFAULT]\nbanaction = nftables-multiport\n\n[sshd]\nenabled = true\nfilter = sshd\n\
         backend = polling\nlogpath = {auth_log}\nmaxretry = 3\nfindtime = 600\nbantime = 3600\n",
    )
    .map_err(|e| e.to_string())?;
    let _sshd = start_sshd(&host_b.local, &dir)?;
    let remote = format!(
        "/usr/bin/fail2ban-client -c {} -s {} set sshd banip",
        f2b.dir.join("conf").display(),
        f2b.socket.display()
    );
    let ssh = |address: &str| -> Result<Duration, String> {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i")
            .arg(dir.join("client_key"))
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                &format!("root@{B_SSH_ADDRESS}"),
            ])
            .arg(format!("{remote} {address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let out = host_a
            .local
            .enter(|| cmd.output())
            .and_then(|r| r)
            .map_err(|e| format!("ssh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ssh … fail2ban-client banip {address}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(start.elapsed())
    };
    let n = if o.quick { 10 } else { 30 };
    let mut reference = SshReference {
        to_b: Vec::new(),
        ssh_returned: Vec::new(),
    };
    // The first ban starts fail2ban's nftables action (its table and set); not counted.
    for (i, address) in addresses(5, n + 1).iter().enumerate() {
        let start = Instant::now();
        let returned = ssh(address)?;
        let Some(at_b) = b_monitor.added(address, Duration::from_secs(10)) else {
            return Err(format!(
                "fail2ban on host B did not add {address}; its log:\n{}",
                f2b.log()
            ));
        };
        if i > 0 {
            reference.to_b.push(at_b - start);
            reference.ssh_returned.push(returned);
        }
    }
    Ok(reference)
}

/// A real OpenSSH server in `host`'s namespace on port 22 of [`B_SSH_ADDRESS`], letting root in
/// with the key `dir/client_key` (made here) only. Killed on drop (and by the lab's cleanup).
fn start_sshd(host: &Host, dir: &Path) -> Result<netban_testlab::Process, String> {
    let keygen = |path: &Path| -> Result<(), String> {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("ssh-keygen: {e}"))?
            .success();
        ok.then_some(())
            .ok_or_else(|| "ssh-keygen failed".to_string())
    };
    keygen(&dir.join("host_key"))?;
    keygen(&dir.join("client_key"))?;
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
        .map_err(|e| e.to_string())?;
    // sshd's privilege separation directory.
    std::fs::create_dir_all("/run/sshd").map_err(|e| e.to_string())?;
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {B_SSH_ADDRESS}\nPort 22\nHostKey {}\nPidFile {}\n\
             AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
            dir.join("host_key").display(),
            dir.join("sshd.pid").display(),
            dir.join("authorized_keys").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = host.command("/usr/sbin/sshd");
    cmd.arg("-D")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut sshd = host.spawn_command(cmd).map_err(|e| e.to_string())?;
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        matches!(sshd.try_wait(), Ok(None))
            && host.tcp_connects(B_SSH_ADDRESS, 22, Duration::from_millis(500))
    });
    if !up {
        return Err("sshd did not start in host B's namespace".into());
    }
    Ok(sshd)
}
