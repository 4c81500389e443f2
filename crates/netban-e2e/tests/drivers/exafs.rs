//! The daemon through the ExaFS driver, against the real ExaFS 1.4.1 and exabgp-process 1.0.5
//! (`netban_testlab::peers::exafs`): the longest source wins, deleted rules come back, rule ids
//! survive a restart, an outage loses nothing, a wrong key shows in `netban status`, flowspec
//! targets split by jail.

use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::peers::exafs::{Peer, COMMUNITY, KEY};
use netban_testlab::plans::now;
use netban_testlab::wait_until;
use std::time::Duration;

fn daemon_config(peer: &Peer, key_file: &std::path::Path, resync_secs: u64) -> String {
    format!(
        "[policy]\nprotect_own_addresses = false\n\
         escalation = {{ enabled = false, factor = 2.0, max_secs = 604800, window_secs = 2592000 }}\n\n\
         [reconciler]\nresync_secs = {resync_secs}\nretry_min_secs = 1\nretry_max_secs = 2\n\n\
         [[targets]]\nname = \"rtbh\"\ntype = \"exafs\"\nurl = \"{}\"\napi_key_file = \"{}\"\n\
         community = {COMMUNITY}\nallow_insecure_http = true\n",
        peer.url(),
        key_file.display()
    )
}

#[test]
fn daemon_restores_deleted_rules_keeps_ids_across_restarts_and_honours_the_longest_source() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = Peer::start();
    let api = peer.api();
    let key = peer.key_file("daemon.key", KEY, 0o600);
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        &Binaries::locate(),
        &dir.path().join("netban"),
        &daemon_config(&peer, &key, 3_600),
    )
    .expect("daemon");
    let rule_of = |addr: &str| rt.block_on(api.rule_for(addr, 32));

    // An operator's rule netban has nothing to do with.
    rt.block_on(api.create("203.0.113.99", 32, now().0 + 86_400));

    // Two jails on one address: the short one, then the long one.
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
        "203.0.113.50",
        "--source",
        "recidive",
        "--bantime",
        "86400",
    ]);
    let long_end = now().0 + 86_400;
    let held_long = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        rule_of("203.0.113.50").is_some_and(|r| r["expires"].as_i64().unwrap() >= long_end - 5)
    });
    assert!(
        held_long,
        "ExaFS holds the later expiry: {:?}",
        rule_of("203.0.113.50")
    );
    let rule = rule_of("203.0.113.50").unwrap();

    // The short jail's unban neither deletes nor shortens the rule.
    daemon.client_ok(&["unban", "203.0.113.50", "--source", "sshd"]);
    daemon.client_ok(&["sync"]);
    assert_eq!(rule_of("203.0.113.50").as_ref(), Some(&rule));

    // Deleted in ExaFS behind netban's back: the next sync puts it back.
    let announced = peer.count_lines("announce", "203.0.113.50/32");
    assert_eq!(rt.block_on(api.delete(rule["id"].as_i64().unwrap())), 201);
    assert!(rule_of("203.0.113.50").is_none());
    daemon.client_ok(&["sync"]);
    let restored = rule_of("203.0.113.50").expect("restored by sync");
    assert_eq!(restored["rstate"], "active rule");
    assert!(restored["expires"].as_i64().unwrap() >= long_end - 5);
    assert!(peer.wait_lines("announce", "203.0.113.50/32", announced + 1));

    // Plain http is allowed in this lab (loopback) and warned about at every start.
    // (The log is appended to across restarts: one warning per start.)
    let warned = |daemon: &Daemon, starts: usize| {
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            daemon
                .log()
                .matches("plain http (allow_insecure_http = true)")
                .count()
                >= starts
        })
    };
    assert!(
        warned(&daemon, 1),
        "no plain-http warning\n{}",
        daemon.log()
    );

    // The rule id is in the ledger: after a restart (kill -9), the last unban deletes it.
    daemon.restart().expect("restart");
    assert!(
        warned(&daemon, 2),
        "no plain-http warning after the restart"
    );
    daemon.client_ok(&["unban", "203.0.113.50", "--source", "recidive"]);
    let gone = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        rule_of("203.0.113.50").is_none()
    });
    assert!(
        gone,
        "netban deletes its rule after a restart\n{}",
        daemon.log()
    );
    assert!(peer.wait_lines("withdraw", "203.0.113.50/32", 1));

    // The operator's rule was never touched.
    daemon.client_ok(&["sync"]);
    assert!(rule_of("203.0.113.99").is_some());
    assert_eq!(peer.count_lines("withdraw", "203.0.113.99/32"), 0);
    let status = daemon.status();
    assert_eq!(status["targets"][0]["health"], "ok", "{status}");
}

#[test]
fn exafs_down_during_a_burst_then_back_loses_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut peer = Peer::start();
    let key = peer.key_file("daemon.key", KEY, 0o600);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        &Binaries::locate(),
        &dir.path().join("netban"),
        &daemon_config(&peer, &key, 3_600),
    )
    .expect("daemon");

    // A first ban goes through, then ExaFS goes away in the middle of the burst.
    daemon.client_ok(&["ban", "203.0.113.100", "--bantime", "3600"]);
    assert!(peer.wait_lines("announce", "203.0.113.100/32", 1));
    peer.stop_app();
    let burst: Vec<String> = (101..141).map(|i| format!("203.0.113.{i}")).collect();
    let mut args = vec!["ban", "--bantime", "3600"];
    args.extend(burst.iter().map(String::as_str));
    daemon.client_ok(&args);
    let down = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let s = daemon.status();
        s["targets"][0]["health"] == "down"
            && s["targets"][0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot connect to ExaFS"))
    });
    assert!(down, "{}", daemon.status());

    peer.start_app();
    let api = peer.api();
    let all = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        rt.block_on(api.rules()).len() == 41
    });
    assert!(
        all,
        "{} rules\n{}",
        rt.block_on(api.rules()).len(),
        daemon.log()
    );
    for addr in &burst {
        assert_eq!(
            peer.count_lines("announce", &format!("{addr}/32")),
            1,
            "{addr}"
        );
    }
    let healthy = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        daemon.status()["targets"][0]["health"] == "ok"
    });
    assert!(healthy, "{}", daemon.status());
}

#[test]
fn a_wrong_key_shows_as_a_configuration_error_in_status() {
    let peer = Peer::start();
    let key = peer.key_file("wrong.key", "not-the-key", 0o600);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        &Binaries::locate(),
        &dir.path().join("netban"),
        &daemon_config(&peer, &key, 3_600),
    )
    .expect("daemon");
    daemon.client_ok(&["ban", "203.0.113.60", "--bantime", "3600"]);
    let shown = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let s = daemon.status();
        s["targets"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("configuration error") && e.contains("refused the API key"))
    });
    assert!(shown, "{}", daemon.status());
    let out = daemon.client(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused the API key"));
}

/// Two flowspec targets (`rule = "flowspec"`) on one ExaFS, split by the common `sources` key:
/// the sshd jail's bans become tcp/22 rules, the recidive jail's rules matching the source
/// alone. The daemon reads the driver keys (`rule`, `protocol`, `ports`) from netban.toml; an
/// unban withdraws and deletes.
#[test]
fn flowspec_targets_split_by_jail() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = Peer::start();
    let api = peer.api();
    let key = peer.key_file("daemon.key", KEY, 0o600);
    let dir = tempfile::tempdir().unwrap();
    let target = |name: &str, jail: &str, matching: &str| {
        format!(
            "[[targets]]\nname = \"{name}\"\ntype = \"exafs\"\nurl = \"{}\"\n\
             api_key_file = \"{}\"\nallow_insecure_http = true\nrule = \"flowspec\"\n\
             sources = [\"{jail}\"]\n{matching}\n",
            peer.url(),
            key.display()
        )
    };
    let config = format!(
        "[policy]\nprotect_own_addresses = false\n\n\
         [reconciler]\nresync_secs = 3600\nretry_min_secs = 1\nretry_max_secs = 2\n\n{}\n{}",
        target("exafs-ssh", "sshd", "protocol = \"tcp\"\nports = [22]"),
        target("exafs-recidive", "recidive", ""),
    );
    let daemon =
        Daemon::start(&Binaries::locate(), &dir.path().join("netban"), &config).expect("daemon");
    daemon.client_ok(&[
        "ban",
        "203.0.113.70",
        "--source",
        "sshd",
        "--bantime",
        "3600",
    ]);
    daemon.client_ok(&[
        "ban",
        "2001:db8:a::70",
        "--source",
        "recidive",
        "--bantime",
        "86400",
    ]);
    let ssh_line = "announce flow route { match { source 203.0.113.70/32; destination-port \
                    [=22]; protocol =tcp; } then { discard; } }";
    let recidive_line =
        "announce flow route { match { source 2001:db8:a::70/128; } then { discard; } }";
    for line in [ssh_line, recidive_line] {
        assert!(
            peer.wait_exact(line, 1),
            "{line}\n{:?}\n{}",
            peer.exabgp_lines(),
            daemon.log()
        );
    }
    let v4 = rt.block_on(api.flow_rules_for("203.0.113.70", 32));
    assert_eq!(v4.len(), 1, "{v4:?}");
    assert_eq!(v4[0]["protocol"], "tcp");
    assert_eq!(v4[0]["dest_port"], "22");
    let v6 = rt.block_on(api.flow_rules_for("2001:db8:a::70", 128));
    assert_eq!(v6.len(), 1, "{v6:?}");
    assert_eq!(v6[0]["next_header"], "all");
    assert_eq!(v6[0]["action"], "Discard");

    daemon.client_ok(&["unban", "203.0.113.70", "--source", "sshd"]);
    let withdraw = ssh_line.replacen("announce", "withdraw", 1);
    assert!(peer.wait_exact(&withdraw, 1), "{:?}", peer.exabgp_lines());
    let gone = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        rt.block_on(api.flow_rules_for("203.0.113.70", 32))
            .is_empty()
    });
    assert!(gone, "the rule is deleted");
    assert_eq!(rt.block_on(api.flow_rules()).len(), 1);
    let status = daemon.status();
    for t in status["targets"].as_array().unwrap() {
        assert_eq!(t["health"], "ok", "{status}");
    }
}
