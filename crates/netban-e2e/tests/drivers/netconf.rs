//! The daemon through the NETCONF driver, against two netconfd servers
//! (`netban_testlab::peers::netconfd`) as two conductors: one ban reaches both, drift made by
//! another administrator is repaired, the operator's own entries stay.

use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::peers::netconfd::{Admin, Server};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// One `[[targets]]` section for `server` (SSR preset).
fn daemon_target(name: &str, server: &Server) -> String {
    format!(
        "[[targets]]\nname = \"{name}\"\ntype = \"netconf\"\nhost = \"127.0.0.1\"\nport = {}\n\
         username = \"root\"\nprivate_key = \"{}\"\nhost_key_fingerprint = \"{}\"\n\
         timeout_secs = 20\npreset = \"ssr\"\ntenant = \"blacklist-fail2ban\"\n\
         neighborhood = \"internet\"\n\n",
        server.port,
        server.key().display(),
        server.fingerprint
    )
}

/// Runs the client (blocking, outside the runtime's async threads) and insists on success.
fn run_ok(daemon: &Daemon, args: &[&str]) {
    tokio::task::block_in_place(|| daemon.client_ok(args));
}

/// Polls `admin`'s view of running until it equals `want` (at most 20 s).
async fn wait_for_running(admin: &mut Admin, want: &BTreeSet<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if &admin.running_addresses().await == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_bans_on_two_conductors_and_repairs_drift() {
    let (a, b) = (Server::start(), Server::start());
    let (mut admin_a, mut admin_b) = (a.admin().await, b.admin().await);
    // An operator's own entry on conductor b, committed before netban starts: it stays.
    admin_b
        .commit_member("<address>198.51.100.10/32</address>")
        .await;

    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[policy]\nprotect_own_addresses = false\n\n\
         [reconciler]\nresync_secs = 3600\nretry_min_secs = 1\nretry_max_secs = 2\n\n{}{}",
        daemon_target("conductor-a", &a),
        daemon_target("conductor-b", &b)
    );
    let daemon = tokio::task::block_in_place(|| {
        Daemon::start(&Binaries::locate(), &dir.path().join("netban"), &body)
    })
    .expect("daemon");

    // One ban reaches both conductors (each one commit reaching its routers).
    run_ok(&daemon, &["ban", "203.0.113.60", "--source", "sshd"]);
    run_ok(&daemon, &["ban", "2001:db8::60", "--source", "sshd"]);
    let banned = set(&["203.0.113.60/32", "2001:db8::60/128"]);
    let mut with_foreign = banned.clone();
    with_foreign.insert("198.51.100.10/32".into());
    assert!(
        wait_for_running(&mut admin_a, &banned).await,
        "{}",
        daemon.log()
    );
    assert!(
        wait_for_running(&mut admin_b, &with_foreign).await,
        "{}",
        daemon.log()
    );

    // Drift: another administrator deletes netban's address on conductor a and commits.
    admin_a
        .commit_member("<address nc:operation=\"remove\">203.0.113.60/32</address>")
        .await;
    assert_eq!(
        admin_a.running_addresses().await,
        set(&["2001:db8::60/128"])
    );
    // The next sync reads it back and repairs it.
    run_ok(&daemon, &["sync"]);
    assert_eq!(admin_a.running_addresses().await, banned);

    // The unban lifts it on both; the operator's entry on b stays.
    run_ok(&daemon, &["unban", "203.0.113.60", "--source", "sshd"]);
    run_ok(&daemon, &["unban", "2001:db8::60", "--source", "sshd"]);
    assert!(
        wait_for_running(&mut admin_a, &BTreeSet::new()).await,
        "{}",
        daemon.log()
    );
    assert!(
        wait_for_running(&mut admin_b, &set(&["198.51.100.10/32"])).await,
        "{}",
        daemon.log()
    );
    let status = tokio::task::block_in_place(|| daemon.status());
    for target in status["targets"].as_array().unwrap() {
        assert_eq!(target["health"], "ok", "{status}");
    }
    admin_a.close().await;
    admin_b.close().await;
}
