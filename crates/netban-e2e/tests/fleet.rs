//! The fleet: several daemons on one PostgreSQL ledger (a real PostgreSQL 15 server started
//! by the harness). Each daemon is a host with its own nftables (`scope = "host"`, in a
//! namespace of its own) and all share the edge router's nftables (`scope = "fleet"`), which
//! exactly one of them drives at a time through a lease.

use super::*;
use netban_testlab::postgres::{PgDatabase, PgOptions, PgServer};

/// A host of the fleet: its own namespace (its nftables) and its daemon.
struct FleetHost {
    name: &'static str,
    local: Host,
    daemon: Daemon,
}

impl FleetHost {
    /// Status of target `name` on this host.
    fn target(&self, name: &str) -> serde_json::Value {
        let status = self.daemon.status();
        status["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether this host drives the shared router now.
    fn drives_router(&self) -> bool {
        let router = self.target("router");
        router["driver"] == self.name && router["health"] != "standby"
    }
}

fn fleet_config(router: &Host, local: &Host) -> String {
    format!(
        "[reconciler]\npoll_millis = 50\n\n\
         [[targets]]\nname = \"router\"\ntype = \"nftables\"\nnetns = \"{}\"\nscope = \"fleet\"\n\n\
         [[targets]]\nname = \"local\"\ntype = \"nftables\"\nnetns = \"{}\"\n",
        router.name(),
        local.name()
    )
}

fn fleet_database() -> PgDatabase {
    PgServer::shared()
        .expect("PostgreSQL 15 (scripts/setup.d/postgres.sh installs it)")
        .create_database()
        .expect("a fresh database")
}

fn start_host(world: &World, db: &PgDatabase, name: &'static str, local: Host) -> FleetHost {
    let daemon = Daemon::start_as(
        &world.bins,
        &world.dir.path().join(name),
        &db.url(),
        name,
        &fleet_config(&world.edge.router, &local),
    )
    .expect("daemon");
    FleetHost {
        name,
        local,
        daemon,
    }
}

/// Waits until exactly one host drives the router and every host agrees which.
fn one_driver(hosts: &[&FleetHost], within: Duration) -> Option<&'static str> {
    let mut driver = None;
    wait_until(within, Duration::from_millis(50), || {
        let driving: Vec<&'static str> = hosts
            .iter()
            .filter(|h| h.drives_router())
            .map(|h| h.name)
            .collect();
        if driving.len() == 1
            && hosts
                .iter()
                .all(|h| h.target("router")["driver"] == driving[0])
        {
            driver = Some(driving[0]);
        }
        driver.is_some()
    });
    driver
}

#[test]
fn a_ban_on_one_host_is_enforced_by_every_host_and_at_the_shared_router() {
    require_netns!();
    let world = World::new("fl");
    let edge = &world.edge;
    let _listener = edge.server.spawn_tcp_listener(PORT).expect("listener");
    let db = fleet_database();
    let a = start_host(
        &world,
        &db,
        "host-a",
        edge.lab.host("hosta").expect("host a"),
    );
    let b = start_host(
        &world,
        &db,
        "host-b",
        edge.lab.host("hostb").expect("host b"),
    );
    assert!(
        one_driver(&[&a, &b], Duration::from_secs(10)).is_some(),
        "one host drives the router: a {} b {}",
        a.target("router"),
        b.target("router")
    );
    let attacker = Edge::ATTACKER_V4;
    let enforced_everywhere = |present: bool| {
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            [&edge.router, &a.local, &b.local]
                .iter()
                .all(|ns| nft_elements(ns).contains(attacker) == present)
        })
    };

    // Host A's recidive jail bans: every host's own firewall and the router drop it.
    let out = a
        .daemon
        .client(&["ban", attacker, "--source", "recidive", "--bantime", "3600"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        enforced_everywhere(true),
        "in the router's and both hosts' sets"
    );
    assert!(
        blocked(&edge.attacker, Edge::SERVER_V4),
        "the router drops it"
    );
    assert!(edge.client.tcp_connects(Edge::SERVER_V4, PORT, SHORT));

    // Host B's sshd jail bans and unbans the same address: A's recidive ban keeps it.
    for args in [
        &["ban", attacker, "--source", "sshd", "--bantime", "60"][..],
        &["unban", attacker, "--source", "sshd"][..],
    ] {
        let out = b.daemon.client(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let b_knows = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let out = b.daemon.client(&["history", attacker, "--json"]);
        let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        events.as_array().is_some_and(|e| e.len() == 3)
    });
    assert!(
        b_knows,
        "B's history shows A's ban and its own ban and unban"
    );
    let history: serde_json::Value =
        serde_json::from_slice(&a.daemon.client(&["history", attacker, "--json"]).stdout)
            .expect("history JSON");
    let hosts: BTreeSet<&str> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["origin_host"].as_str())
        .collect();
    assert_eq!(hosts, BTreeSet::from(["host-a", "host-b"]), "{history}");
    assert!(
        [&edge.router, &a.local, &b.local]
            .iter()
            .all(|ns| nft_elements(ns).contains(attacker)),
        "recidive still bans it everywhere"
    );
    assert!(blocked(&edge.attacker, Edge::SERVER_V4));

    // A lifts its own ban: gone everywhere, the attacker gets through.
    let out = a
        .daemon
        .client(&["unban", attacker, "--source", "recidive"]);
    assert!(out.status.success());
    assert!(enforced_everywhere(false), "lifted everywhere");
    assert!(edge.attacker.tcp_connects(Edge::SERVER_V4, PORT, SHORT));
}

#[test]
fn the_driver_killed_mid_burst_is_replaced_within_5_s_and_loses_no_acknowledged_ban() {
    require_netns!();
    let world = World::new("fk");
    let edge = &world.edge;
    let db = fleet_database();
    let mut hosts = [
        start_host(
            &world,
            &db,
            "host-a",
            edge.lab.host("hosta").expect("host a"),
        ),
        start_host(
            &world,
            &db,
            "host-b",
            edge.lab.host("hostb").expect("host b"),
        ),
    ];
    let driver = one_driver(&[&hosts[0], &hosts[1]], Duration::from_secs(10)).expect("a driver");
    let (victim, survivor) = if hosts[0].name == driver {
        (0, 1)
    } else {
        (1, 0)
    };

    // 2,000 bans, half through each host's socket, concurrently.
    let all: Vec<String> = (0..2000)
        .map(|i| format!("198.18.{}.{}", i / 200, 1 + i % 200))
        .collect();
    let clients = all
        .chunks(all.len() / 2)
        .zip([&hosts[victim], &hosts[survivor]])
        .map(|(chunk, host)| (host.daemon.socket.clone(), chunk.to_vec()))
        .collect();
    let burst = netban::Burst::start(clients, "burst", 3600);
    let midway = wait_until(Duration::from_secs(60), Duration::from_millis(1), || {
        burst.acked_count() >= 600
    });
    assert!(midway, "the burst got going");
    hosts[victim].daemon.kill9();
    let killed_at = Instant::now();
    let taken_over = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        hosts[survivor].drives_router()
    });
    let takeover = killed_at.elapsed();
    let acked = burst.finish();
    assert!(taken_over, "{} took the router over", hosts[survivor].name);
    eprintln!(
        "failover: {} drives the router {takeover:?} after the kill",
        hosts[survivor].name
    );
    assert!(
        takeover < Duration::from_secs(5),
        "took over in {takeover:?}"
    );

    // Every acknowledged ban, from either host, is enforced at the router by the new driver
    // and in the survivor's own set.
    let want: BTreeSet<String> = acked.into_iter().collect();
    assert!(
        want.len() > 1000,
        "the survivor's half and part of the victim's: {}",
        want.len()
    );
    let all_enforced = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        want.is_subset(&nft_elements(&edge.router))
            && want.is_subset(&nft_elements(&hosts[survivor].local))
    });
    let missing: Vec<_> = want
        .difference(&nft_elements(&edge.router))
        .take(5)
        .cloned()
        .collect();
    assert!(all_enforced, "missing at the router, e.g. {missing:?}");
}

#[test]
fn bans_made_while_postgres_is_down_are_enforced_locally_and_reach_the_fleet_when_it_returns() {
    require_netns!();
    let world = World::new("fs");
    let edge = &world.edge;
    // A server of this test's own: it is stopped and started again.
    let pg = PgServer::start(PgOptions::default()).expect("PostgreSQL 15");
    let db = pg.create_database().expect("database");
    let a = start_host(
        &world,
        &db,
        "host-a",
        edge.lab.host("hosta").expect("host a"),
    );
    let b = start_host(
        &world,
        &db,
        "host-b",
        edge.lab.host("hostb").expect("host b"),
    );
    one_driver(&[&a, &b], Duration::from_secs(10)).expect("a driver");

    let batch = |first: u32, count: u32| -> Vec<String> {
        (first..first + count)
            .map(|i| format!("198.18.{}.{}", i / 200, 1 + i % 200))
            .collect()
    };
    let before_a = batch(0, 50);
    let before_b = batch(50, 50);
    let during_a = batch(100, 100);
    let during_b = batch(200, 100);
    for (host, bans) in [(&a, &before_a), (&b, &before_b)] {
        let acked = netban::ban_over_socket(&host.daemon.socket, bans, "sshd", 3600);
        assert_eq!(&acked, bans, "{} acknowledged every ban", host.name);
    }

    pg.crash().expect("stopping PostgreSQL");
    for (host, bans) in [(&a, &during_a), (&b, &during_b)] {
        let acked = netban::ban_over_socket(&host.daemon.socket, bans, "sshd", 3600);
        assert_eq!(
            &acked, bans,
            "{} acknowledged every ban while PostgreSQL was down",
            host.name
        );
    }
    // Enforced at once on each host's own firewall; the outage and the spool are visible.
    for (host, bans) in [(&a, &during_a), (&b, &during_b)] {
        let local = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            bans.iter().all(|p| nft_elements(&host.local).contains(p))
        });
        assert!(
            local,
            "{}'s own set holds its bans made during the outage",
            host.name
        );
        let health = &host.daemon.status()["ledger_health"];
        assert!(!health["unreachable_since"].is_null(), "{health}");
        assert_eq!(health["spooled"], 100, "{health}");
    }

    pg.restart().expect("starting PostgreSQL again");
    let everything: BTreeSet<String> = [&before_a, &before_b, &during_a, &during_b]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let agreed = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        [&edge.router, &a.local, &b.local]
            .iter()
            .all(|ns| everything.is_subset(&nft_elements(ns)))
    });
    for (name, ns) in [
        ("router", &edge.router),
        ("host-a", &a.local),
        ("host-b", &b.local),
    ] {
        let missing = everything.difference(&nft_elements(ns)).count();
        assert!(
            agreed,
            "{name} misses {missing} of {} bans",
            everything.len()
        );
    }
    for host in [&a, &b] {
        let health = &host.daemon.status()["ledger_health"];
        assert!(health["unreachable_since"].is_null(), "{health}");
        assert_eq!(health["spooled"], 0, "{health}");
        assert_eq!(
            host.daemon.listed().len(),
            everything.len(),
            "{} lists every ban",
            host.name
        );
    }
    assert_eq!(
        pg.psql(&db.name, "SELECT count(*) FROM bans")
            .expect("psql")
            .trim(),
        everything.len().to_string(),
        "the ledger holds every ban once"
    );
}
