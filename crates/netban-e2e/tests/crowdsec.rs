//! CrowdSec both ways, with the real parts: Debian's crowdsec 1.4.6 (a throwaway Local API per
//! test, `cscli` to add and delete decisions) and crowdsec-firewall-bouncer 0.0.25 (nftables
//! mode, in a lab namespace), against the real daemon.
//!
//! - As a source: a `cscli decisions add` is dropped at the router (nftables target) and
//!   announced to BIRD 2 (BGP target: a kernel blackhole route on the router); its delete
//!   withdraws it and lifts only the CrowdSec source; the LAPI stopped lifts nothing and shows
//!   in `status`; a decision deleted while it was down is lifted when it returns, and nothing
//!   is recorded twice. Many decisions at start (`cscli decisions import`) are all enforced.
//! - As a decision server: netban's bans reach the bouncer's nftables set; an unban of the
//!   last source removes it; a range is served as its addresses; the bouncer restarted
//!   resyncs; netban restarted keeps each key's cursor (an unban made meanwhile reaches the
//!   bouncer); bad keys are refused.

use super::nftables_target;
use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::peers::bgp_routers::{
    blackholes, rtbh, Kind, Router, ROUTER_AS, ROUTER_LINK_V4, SPEAKER_AS, SPEAKER_LINK_V4,
    SPEAKER_LINK_V6,
};
use netban_testlab::peers::crowdsec::{FirewallBouncer, Lapi};
use netban_testlab::{free_port, nft, require_netns, wait_until, Edge, Host, Lab};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// The sources of `address`'s ban in `netban list --json` (empty when not banned).
fn sources_of(daemon: &Daemon, address: &str) -> Vec<String> {
    let out = daemon.client_ok(&["list", "--json"]);
    let bans: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prefix = format!("{address}/32");
    bans.as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["prefix"] == prefix.as_str())
        .flat_map(|b| b["sources"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["source"].as_str().map(String::from))
        .collect()
}

/// The ledger events of `address` (`netban history --json`), as "kind source".
fn history_of(daemon: &Daemon, address: &str) -> Vec<String> {
    let out = daemon.client_ok(&["history", address, "--json"]);
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap_or("?"),
                e["source"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

/// Deletes `value`'s decisions straight from the LAPI's SQLite database (the LAPI stopped):
/// what an operator's cleanup or a flush does while netban cannot ask.
fn delete_in_database(lapi: &Lapi, value: &str) {
    let db = lapi.dir.join("data/crowdsec.db");
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
                  n=c.execute('DELETE FROM decisions WHERE value=?',(sys.argv[2],)).rowcount\n\
                  c.commit()\nassert n>0, n\n";
    netban_testlab::output_ok(
        std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&db)
            .arg(value),
    );
}

/// A BGP target in the lab's speaker namespace, peering with the router (BIRD).
fn bgp_target(speaker: &Host) -> String {
    format!(
        "[[targets]]\nname = \"bird\"\ntype = \"bgp\"\nlocal_as = {SPEAKER_AS}\n\
         router_id = \"{SPEAKER_LINK_V4}\"\n\
         peers = [{{ address = \"{ROUTER_LINK_V4}\", remote_as = {ROUTER_AS} }}]\n\
         next_hop_v6 = \"{SPEAKER_LINK_V6}\"\nnetns = \"{}\"\n\
         connect_timeout_secs = 3\nconnect_retry_max_secs = 2\n",
        speaker.name()
    )
}

/// Decisions imported at once, before netban starts (100,000 in the benchmark, which is too
/// slow for a test: `cscli decisions import` alone takes ~13 s for 100k).
const IMPORTED: u32 = 5_000;

#[test]
fn crowdsec_decisions_are_enforced_lifted_per_source_and_reconciled_after_an_outage() {
    require_netns!();
    let lab = rtbh("ncs-src");
    let edge = &lab.edge;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let router = Router::start(Kind::Bird, &edge.router, lab.dir.path());
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut lapi = Lapi::start(&dir.join("lapi"), listen).expect("LAPI");
    let key_file = dir.join("crowdsec.key");
    std::fs::write(&key_file, lapi.add_bouncer("netban")).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // Many decisions before netban starts: all reach the nftables set from the start-up set.
    let csv = dir.join("decisions.csv");
    let mut rows = String::from("duration,scope,value,reason\n");
    for i in 0..IMPORTED {
        rows.push_str(&format!("4h,ip,100.64.{}.{},bulk\n", i >> 8, i & 255));
    }
    std::fs::write(&csv, rows).unwrap();
    lapi.cscli_ok(&["decisions", "import", "-i", &csv.display().to_string()]);
    let config = format!(
        "{}\n{}\n\
         [[sources]]\ntype = \"crowdsec\"\nname = \"lapi\"\nurl = \"{}\"\napi_key_file = \"{}\"\ninterval_secs = 1\n",
        nftables_target(&edge.router),
        bgp_target(&lab.speaker),
        lapi.url(),
        key_file.display()
    );
    let started = Instant::now();
    let daemon = Daemon::start(&Binaries::locate(), &dir.join("netban"), &config).expect("daemon");
    assert!(
        wait_until(Duration::from_secs(30), POLL, || nft::count(
            &edge.router,
            "ban4"
        ) >= IMPORTED as usize),
        "{IMPORTED} imported decisions in the nftables set: {}\n{}",
        nft::count(&edge.router, "ban4"),
        daemon.log()
    );
    eprintln!(
        "{IMPORTED} decisions in the LAPI → in the nftables set {:?} after netban's start",
        started.elapsed()
    );
    assert!(
        wait_until(WAIT, POLL, || router.established()),
        "BIRD session\n{}{}",
        daemon.log(),
        router.logs()
    );
    // The imported bans are announced as well (checked on a few: the kernel table is big).
    assert!(
        wait_until(WAIT, POLL, || blackholes(&edge.router).len()
            >= IMPORTED as usize),
        "{IMPORTED} blackhole routes from BIRD: {}",
        blackholes(&edge.router).len()
    );
    lapi.cscli_ok(&["decisions", "delete", "--all"]);
    assert!(
        wait_until(WAIT, POLL, || nft::count(&edge.router, "ban4") == 0
            && blackholes(&edge.router).is_empty()),
        "`decisions delete --all` lifts them everywhere: {} in the set, {} routes",
        nft::count(&edge.router, "ban4"),
        blackholes(&edge.router).len()
    );

    let (attacker, other) = (Edge::ATTACKER_V4, "203.0.113.9");
    assert!(
        edge.attacker.pings(Edge::SERVER_V4),
        "the lab works before any ban"
    );

    // cscli decisions add → recorded as crowdsec:cscli → dropped at the router (nftables) and
    // announced to BIRD (a blackhole route in the router's kernel).
    lapi.cscli_ok(&["decisions", "add", "-i", attacker, "-d", "1h", "-R", "test"]);
    lapi.cscli_ok(&["decisions", "add", "-i", other, "-d", "2h"]);
    assert!(
        wait_until(WAIT, POLL, || !edge
            .attacker
            .pings_within(Edge::SERVER_V4, Duration::from_millis(300))),
        "the decision is enforced at the router\n{}",
        daemon.log()
    );
    assert!(
        wait_until(WAIT, POLL, || blackholes(&edge.router) == [attacker, other]),
        "announced to BIRD: {:?}{}",
        blackholes(&edge.router),
        router.logs()
    );
    assert_eq!(sources_of(&daemon, attacker), ["crowdsec:cscli"]);
    assert!(
        edge.client.pings(Edge::SERVER_V4),
        "the client still passes"
    );
    let status = daemon.status();
    let source = &status["sources"][0];
    assert_eq!(source["name"], "lapi");
    assert!(source["down_since"].is_null(), "{status}");
    assert_eq!(source["decisions"], 2, "{status}");

    // A fail2ban jail bans the same address; the CrowdSec delete lifts only its own source.
    daemon.client_ok(&["ban", attacker, "--source", "sshd", "--bantime", "3600"]);
    lapi.cscli_ok(&["decisions", "delete", "-i", attacker]);
    assert!(
        wait_until(WAIT, POLL, || sources_of(&daemon, attacker) == ["sshd"]),
        "the delete lifts crowdsec:cscli only: {:?}",
        sources_of(&daemon, attacker)
    );
    assert!(
        !edge.attacker.pings(Edge::SERVER_V4),
        "sshd's ban still drops"
    );
    assert_eq!(
        blackholes(&edge.router),
        [attacker, other],
        "and is still announced"
    );
    daemon.client_ok(&["unban", attacker, "--source", "sshd"]);
    assert!(
        wait_until(WAIT, POLL, || edge.attacker.pings(Edge::SERVER_V4)),
        "lifted once no source holds it"
    );
    // A decision deleted with no other source: withdrawn from BIRD.
    let third = "203.0.113.10";
    lapi.cscli_ok(&["decisions", "add", "-i", third, "-d", "1h"]);
    assert!(wait_until(WAIT, POLL, || blackholes(&edge.router) == [third, other]));
    lapi.cscli_ok(&["decisions", "delete", "-i", third]);
    assert!(
        wait_until(WAIT, POLL, || blackholes(&edge.router) == [other]),
        "`cscli decisions delete` withdraws it: {:?}",
        blackholes(&edge.router)
    );
    assert!(sources_of(&daemon, third).is_empty());

    // The LAPI down: nothing is lifted, status says so (and exits non-zero).
    lapi.cscli_ok(&["decisions", "add", "-i", attacker, "-d", "1h"]);
    assert!(wait_until(WAIT, POLL, || sources_of(&daemon, attacker)
        == ["crowdsec:cscli"]));
    // Two earlier bans of the address: a fail2ban ban would be escalated now; CrowdSec's
    // duration is kept.
    let out = daemon.client_ok(&["list", "--json"]);
    let bans: Value = serde_json::from_slice(&out.stdout).unwrap();
    let until = bans
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["prefix"] == format!("{attacker}/32"))
        .and_then(|b| b["expiry"]["at"].as_i64())
        .expect("an expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (3590..=3602).contains(&(until - now)),
        "not escalated: {} s",
        until - now
    );
    lapi.stop();
    assert!(
        wait_until(WAIT, POLL, || !daemon.status()["sources"][0]["down_since"]
            .is_null()),
        "status shows the LAPI down"
    );
    let status = daemon.client(&["status"]);
    assert_ne!(status.status.code(), Some(0), "status exits non-zero");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("source lapi (crowdsec"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert_eq!(
        sources_of(&daemon, attacker),
        ["crowdsec:cscli"],
        "nothing lifted"
    );
    assert_eq!(
        sources_of(&daemon, other),
        ["crowdsec:cscli"],
        "nothing lifted"
    );
    assert!(
        !edge.attacker.pings(Edge::SERVER_V4),
        "still dropped while the LAPI is down"
    );

    // Deleted while it was down; on return the start-up set reconciles: lifted, and the
    // decision still active is not recorded again.
    delete_in_database(&lapi, attacker);
    let before = history_of(&daemon, other);
    lapi.resume().expect("the LAPI starts again");
    assert!(
        wait_until(WAIT, POLL, || sources_of(&daemon, attacker).is_empty()),
        "the decision deleted meanwhile is lifted on return\n{}",
        daemon.log()
    );
    assert!(wait_until(WAIT, POLL, || edge
        .attacker
        .pings(Edge::SERVER_V4)));
    assert!(daemon.status()["sources"][0]["down_since"].is_null());
    assert_eq!(history_of(&daemon, other), before, "nothing recorded twice");
    assert_eq!(sources_of(&daemon, other), ["crowdsec:cscli"]);
}

/// A plain HTTP/1.1 GET from inside `host` (the daemon's API listens on that namespace's
/// loopback): the status and the body; status 0 when nothing listens.
fn get(
    host: &netban_testlab::Host,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    host.enter(move || {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return (0, String::new()); // not listening (yet)
        };
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    })
    .expect("entering the namespace")
}

#[test]
fn a_crowdsec_bouncer_enforces_netbans_bans_and_resyncs() {
    require_netns!();
    let lab = Lab::new("ncs-srv").expect("lab");
    let fw = lab.host("fw").expect("host");
    let dir = tempfile::tempdir().unwrap();
    let bins = Binaries::locate();
    let port = free_port();
    let config = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\ntokens = \"{}\"\nrate_per_second = 1000\n",
        dir.path().join("tokens.toml").display()
    );
    let mut daemon = Daemon::start_in(
        &fw,
        &bins,
        &dir.path().join("netban"),
        &dir.path().join("netban/ledger.db").display().to_string(),
        "fw",
        &config,
    )
    .expect("daemon");
    let token = |name: &str, role: &str| {
        let out = daemon.client_ok(&["token", "add", name, "--role", role]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let key = token("fwbouncer", "bouncer");
    let reader = token("reader", "read");
    assert!(wait_until(WAIT, POLL, || get(
        &fw,
        port,
        "/v1/decisions?ip=203.0.113.50",
        &[("X-Api-Key", &key)]
    )
    .0 == 200));

    // Bad keys: refused as the LAPI refuses them, and nothing moves.
    let stream = "/v1/decisions/stream?startup=true";
    assert_eq!(get(&fw, port, stream, &[]).0, 403);
    assert_eq!(get(&fw, port, stream, &[("X-Api-Key", "nbt_00")]).0, 403);
    assert_eq!(
        get(&fw, port, stream, &[("X-Api-Key", &reader)]).0,
        403,
        "a read token is no bouncer key"
    );
    let bearer = format!("Bearer {key}");
    assert_eq!(
        get(&fw, port, "/v1/status", &[("Authorization", &bearer)]).0,
        401,
        "a bouncer key is no bearer token"
    );

    let banned_at = Instant::now();
    daemon.client_ok(&[
        "ban",
        "203.0.113.50",
        "--source",
        "sshd",
        "--bantime",
        "600",
    ]);
    daemon.client_ok(&[
        "ban",
        "198.51.100.0/30",
        "--source",
        "sshd",
        "--bantime",
        "600",
    ]);
    let mut bouncer = FirewallBouncer::start(
        &fw,
        &dir.path().join("bouncer"),
        &format!("http://127.0.0.1:{port}/"),
        &key,
        1,
    )
    .expect("bouncer");
    let has = |b: &FirewallBouncer, a: &str| b.elements_v4().iter().any(|e| e == a);
    assert!(
        wait_until(WAIT, POLL, || has(&bouncer, "203.0.113.50")
            && has(&bouncer, "198.51.100.3")),
        "the bouncer holds netban's bans (a /30 as its four addresses): {:?}\n{}",
        bouncer.elements_v4(),
        bouncer.log()
    );
    assert_eq!(bouncer.elements_v4().len(), 5);
    eprintln!("ban → bouncer's set: {:?}", banned_at.elapsed());

    // A ban that ends by itself: netban sends it as `deleted` at the first poll after its
    // expiry (seen by a second key), and the bouncer takes it whether its element has timed
    // out already (it skips a value its set no longer has) or not, and goes on.
    let probe = token("probe", "bouncer");
    let deltas = |key: &str, path: &str| -> (Vec<String>, Vec<String>) {
        let (status, body) = get(&fw, port, path, &[("X-Api-Key", key)]);
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let values = |list: &Value| -> Vec<String> {
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["value"].as_str().map(String::from))
                .collect()
        };
        (values(&answer["new"]), values(&answer["deleted"]))
    };
    let short = "203.0.113.70";
    daemon.client_ok(&["ban", short, "--source", "sshd", "--bantime", "4"]);
    let (new, _) = deltas(&probe, "/v1/decisions/stream?startup=true");
    assert!(new.iter().any(|v| v == short), "{new:?}");
    assert!(wait_until(WAIT, POLL, || has(&bouncer, short)));
    assert!(
        wait_until(WAIT, POLL, || deltas(&probe, "/v1/decisions/stream")
            .1
            .iter()
            .any(|v| v == short)),
        "an ended ban is sent as deleted"
    );
    assert!(
        wait_until(WAIT, POLL, || bouncer.log().contains("1 decision deleted")),
        "the bouncer took the delete of an element it no longer had\n{}",
        bouncer.log()
    );
    assert!(!has(&bouncer, short));

    // A ban made now reaches it within its interval; a second source keeps the address when
    // the first is lifted; the last source's unban removes it.
    let t = Instant::now();
    daemon.client_ok(&[
        "ban",
        "203.0.113.51",
        "--source",
        "sshd",
        "--bantime",
        "600",
    ]);
    daemon.client_ok(&[
        "ban",
        "203.0.113.50",
        "--source",
        "recidive",
        "--bantime",
        "3600",
    ]);
    assert!(wait_until(WAIT, POLL, || has(&bouncer, "203.0.113.51")));
    eprintln!(
        "one CLI ban → bouncer's set at update_frequency 1s: {:?}",
        t.elapsed()
    );
    daemon.client_ok(&["unban", "203.0.113.50", "--source", "sshd"]);
    daemon.client_ok(&[
        "ban",
        "203.0.113.52",
        "--source",
        "sshd",
        "--bantime",
        "600",
    ]);
    assert!(
        wait_until(WAIT, POLL, || has(&bouncer, "203.0.113.52")),
        "the bouncer polled after the unban"
    );
    assert!(has(&bouncer, "203.0.113.50"), "recidive still holds it");
    daemon.client_ok(&["unban", "203.0.113.50", "--source", "recidive"]);
    assert!(
        wait_until(WAIT, POLL, || !has(&bouncer, "203.0.113.50")),
        "the last source's unban removes it"
    );

    // The bouncer restarted (its tables removed): it resyncs with a start-up set.
    bouncer.stop();
    daemon.client_ok(&[
        "ban",
        "203.0.113.60",
        "--source",
        "sshd",
        "--bantime",
        "600",
    ]);
    bouncer.resume().expect("bouncer again");
    assert!(
        wait_until(WAIT, POLL, || {
            let e = bouncer.elements_v4();
            [
                "203.0.113.51",
                "203.0.113.52",
                "203.0.113.60",
                "198.51.100.0",
            ]
            .iter()
            .all(|a| e.iter().any(|x| x == a))
        }),
        "resynced: {:?}",
        bouncer.elements_v4()
    );

    // netban restarted, an unban recorded meanwhile (the client's fallback): the key's cursor
    // survived, so the bouncer (which never asks for a start-up set again) is told.
    daemon.stop();
    daemon.client_ok(&["unban", "203.0.113.51", "--source", "sshd"]);
    daemon.restart().expect("daemon again");
    assert!(
        wait_until(WAIT, POLL, || !has(&bouncer, "203.0.113.51")),
        "an unban made while netban was down reaches the bouncer: {:?}\n{}",
        bouncer.elements_v4(),
        daemon.log()
    );
    assert!(has(&bouncer, "203.0.113.60"));
    let (status, body) = get(
        &fw,
        port,
        "/v1/decisions?ip=198.51.100.2",
        &[("X-Api-Key", &key)],
    );
    assert_eq!(status, 200);
    let found: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(found[0]["value"], "198.51.100.0/30", "{body}");
    assert_eq!(found[0]["scope"], "Range");
    let (_, none) = get(
        &fw,
        port,
        "/v1/decisions?ip=203.0.113.99",
        &[("X-Api-Key", &key)],
    );
    assert_eq!(none, "null");
    drop(bouncer);
    drop(daemon);
    drop(lab);
}
