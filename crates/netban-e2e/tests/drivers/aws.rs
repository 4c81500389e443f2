//! The daemon through the AWS drivers, against moto 5.2.5 (`netban_testlab::peers::moto`):
//! placement fills the NACL's twenty slots and overflows to nftables in a router namespace;
//! WAF IP sets are filled, repaired after drift, and keep foreign entries across a restart.

use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::nft;
use netban_testlab::peers::moto::aws_sdk_wafv2::types::Scope as WafScope;
use netban_testlab::peers::moto::{
    create_set, default_acl, netban_rows, operator_rows, set_addresses, strings, Moto, KEY_ID,
    REGION, SECRET,
};
use netban_testlab::{require_netns, wait_until, Edge, Lab};
use std::collections::BTreeSet;
use std::time::Duration;

const PORT: u16 = 8080;

/// 203.0.113.1 + i: the attackers' range, running on into 203.0.114.x for large i (ban
/// entries only; no traffic is sent to them).
fn v4(i: usize) -> String {
    format!("{}", std::net::Ipv4Addr::from(0xcb00_7101 + i as u32))
}

#[test]
fn sixty_bans_fill_twenty_nacl_slots_and_overflow_to_nftables() {
    require_netns!();
    let bins = Binaries::locate();
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = moto.ec2();
    let acl = rt.block_on(default_acl(&ec2));
    let operator = rt.block_on(operator_rows(&ec2, &acl));
    let edge = Lab::edge_topology("awsnacl").expect("lab");
    let _listener = edge.server.spawn_tcp_listener(PORT).expect("listener");
    assert!(edge
        .attacker
        .tcp_connects(Edge::SERVER_V4, PORT, Duration::from_secs(2)));
    let dir = tempfile::tempdir().unwrap();
    // A NACL whose quota was raised to 40, limited to 20 netban slots by the common key.
    let config = moto.nacl_overflowing_to_nftables(&acl, edge.router.name());
    let daemon = Daemon::start(&bins, &dir.path().join("netban"), &config).expect("daemon");
    // 59 bans for 600 s in one request (one expiry), 20 of them then extended to 2 h, and the
    // attacker's short one: the 20 long bans belong in the NACL, the attacker overflows.
    let input: String = (0..59)
        .map(|i| format!("203.0.113.{}\n", 100 + i))
        .collect();
    let out = daemon.client_with_stdin(&["ban", "--stdin", "--bantime", "600"], Some(&input));
    assert!(out.status.success(), "{out:?}");
    let long: String = (0..20)
        .map(|i| format!("203.0.113.{}\n", 100 + i))
        .collect();
    let out = daemon.client_with_stdin(&["ban", "--stdin", "--bantime", "7200"], Some(&long));
    assert!(out.status.success(), "{out:?}");
    let out = daemon.client(&["ban", Edge::ATTACKER_V4, "--bantime", "300"]);
    assert!(out.status.success(), "{out:?}");

    let in_nacl = || -> BTreeSet<String> {
        rt.block_on(netban_rows(&ec2, &acl))
            .into_iter()
            .map(|(_, cidr)| cidr.trim_end_matches("/32").to_string())
            .collect()
    };
    let want: BTreeSet<String> = (0..20).map(|i| format!("203.0.113.{}", 100 + i)).collect();
    let placed = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        in_nacl() == want && nft::elements(&edge.router).len() == 40
    });
    let on_router = nft::elements(&edge.router);
    assert!(
        placed,
        "nacl {:?}\nrouter {} {on_router:?}\n{}",
        in_nacl(),
        on_router.len(),
        daemon.log()
    );
    assert!(on_router.contains(Edge::ATTACKER_V4) && on_router.is_disjoint(&want));
    assert!(
        !edge
            .attacker
            .tcp_connects(Edge::SERVER_V4, PORT, Duration::from_millis(800)),
        "the overflowed attacker is dropped on the fallback"
    );
    assert!(edge
        .client
        .tcp_connects(Edge::SERVER_V4, PORT, Duration::from_secs(2)));

    // An unban frees a slot: the best overflowing ban (equal expiries: lowest) moves in.
    assert!(daemon.client(&["unban", "203.0.113.100"]).status.success());
    let mut want2 = want.clone();
    want2.remove("203.0.113.100");
    want2.insert("203.0.113.120".to_string());
    let promoted = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let router = nft::elements(&edge.router);
        in_nacl() == want2 && router.len() == 39 && !router.contains("203.0.113.120")
    });
    assert!(promoted, "nacl {:?}\n{}", in_nacl(), daemon.log());
    assert_eq!(rt.block_on(operator_rows(&ec2, &acl)), operator);
    let status = daemon.status();
    assert_eq!(status["targets"][0]["overflow"], 39, "{status}");
}

#[test]
fn daemon_fills_waf_sets_repairs_drift_and_keeps_foreign_entries() {
    let bins = Binaries::locate();
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let waf = moto.waf();
    let id4 = rt.block_on(create_set(
        &waf,
        "nb4",
        false,
        strings(&["198.51.100.0/24"]),
    ));
    let id6 = rt.block_on(create_set(&waf, "nb6", true, strings(&["2001:db8:b::/64"])));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[policy.escalation]\nenabled = false\n\n\
         [reconciler]\nresync_secs = 3600\nretry_min_secs = 1\nretry_max_secs = 2\n\n\
         [[targets]]\nname = \"waf\"\ntype = \"aws_waf\"\nwaf_scope = \"REGIONAL\"\n\
         ipset_v4 = {{ name = \"nb4\", id = \"{id4}\" }}\n\
         ipset_v6 = {{ name = \"nb6\", id = \"{id6}\" }}\n\
         min_write_interval_ms = 200\nregion = \"{REGION}\"\nendpoint_url = \"{}\"\n\
         credentials_file = \"{}\"\n",
        moto.url(),
        moto.credentials_file(KEY_ID, SECRET).display(),
    );
    let mut daemon = Daemon::start(&bins, &dir.path().join("netban"), &config).expect("daemon");
    let contents = |name: &str, id: &str| -> BTreeSet<String> {
        rt.block_on(set_addresses(&waf, name, id))
            .0
            .into_iter()
            .collect()
    };

    // 500 IPv4 and 100 IPv6 bans in one request each.
    let v4s: Vec<String> = (0..500).map(v4).collect();
    let v6s: Vec<String> = (1..=100).map(|i| format!("2001:db8:a::{i:x}")).collect();
    for list in [&v4s, &v6s] {
        let input: String = list.iter().map(|a| format!("{a}\n")).collect();
        let out = daemon.client_with_stdin(&["ban", "--stdin", "--bantime", "3600"], Some(&input));
        assert!(out.status.success(), "{out:?}");
    }
    let mut want4: BTreeSet<String> = v4s.iter().map(|a| format!("{a}/32")).collect();
    want4.insert("198.51.100.0/24".into());
    let mut want6: BTreeSet<String> = v6s.iter().map(|a| format!("{a}/128")).collect();
    want6.insert("2001:db8:b::/64".into());
    let filled = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        contents("nb4", &id4) == want4 && contents("nb6", &id6) == want6
    });
    assert!(filled, "{}", daemon.log());

    // Drift: another tool drops one of netban's addresses (and adds its own).
    let drifted: Vec<String> = want4
        .iter()
        .filter(|a| *a != "203.0.113.7/32")
        .cloned()
        .chain(["198.51.101.1/32".to_string()])
        .collect();
    rt.block_on(async {
        let out = waf
            .get_ip_set()
            .name("nb4")
            .id(&id4)
            .scope(WafScope::Regional)
            .send()
            .await
            .unwrap();
        waf.update_ip_set()
            .name("nb4")
            .id(&id4)
            .scope(WafScope::Regional)
            .set_addresses(Some(drifted))
            .lock_token(out.lock_token().unwrap())
            .send()
            .await
            .unwrap();
    });
    assert!(!contents("nb4", &id4).contains("203.0.113.7/32"));
    let out = daemon.client(&["sync"]);
    assert!(out.status.success(), "{out:?}");
    want4.insert("198.51.101.1/32".into());
    assert_eq!(
        contents("nb4", &id4),
        want4,
        "sync restores the dropped address"
    );

    // After a restart (kill -9), netban still knows which entries are its own: unbanning
    // everything leaves exactly the foreign entries.
    daemon.restart().expect("restart");
    let input: String = v4s.iter().chain(&v6s).map(|a| format!("{a}\n")).collect();
    let out = daemon.client_with_stdin(&["unban", "--stdin"], Some(&input));
    assert!(out.status.success(), "{out:?}");
    let emptied = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        contents("nb4", &id4) == set_of(&["198.51.100.0/24", "198.51.101.1/32"])
            && contents("nb6", &id6) == set_of(&["2001:db8:b::/64"])
    });
    assert!(emptied, "{:?}\n{}", contents("nb4", &id4), daemon.log());
    // The worker publishes its health after its apply returns, so just after the device
    // changed it may still read "starting".
    let healthy = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        daemon.status()["targets"][0]["health"] == "ok"
    });
    assert!(healthy, "{}", daemon.status());
}

fn set_of(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}
