//! The daemon through the Cisco IOS driver, against the IOS emulator
//! (`netban_testlab::peers::ios`): bans reach the router's ACLs, a hand edit is repaired by
//! `netban sync`, unbans leave.

use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::peers::ios::{Router, PASSWORD, SECRET, USER};
use netban_testlab::wait_until;
use std::time::Duration;

#[test]
fn the_daemon_enforces_bans_on_the_router_and_repairs_a_hand_edit() {
    let r = Router::start(&[]);
    let bins = Binaries::locate();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[reconciler]\nresync_secs = 600\nretry_min_secs = 1\nretry_max_secs = 2\n\n\
         [[targets]]\nname = \"edge-router\"\ntype = \"cisco_ios\"\nhost = \"127.0.0.1\"\n\
         port = {}\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         enable_secret = \"{SECRET}\"\nhost_key_fingerprint = \"{}\"\n",
        r.port, r.fingerprint
    );
    let daemon = Daemon::start(&bins, dir.path(), &body).unwrap();
    daemon.client_ok(&[
        "ban",
        "203.0.113.50",
        "2001:db8::50",
        "--source",
        "sshd",
        "--bantime",
        "3600",
    ]);
    let acl = || r.show("show ip access-lists NETBAN");
    let on_router = |acl: &str| acl.contains("deny ip host 203.0.113.50 any");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            on_router(&acl())
        }),
        "ban not on the router: {}\n{}",
        acl(),
        daemon.log()
    );
    assert!(r
        .show("show ipv6 access-list NETBAN6")
        .contains("deny ipv6 host 2001:DB8::50 any"));

    // An operator removes the entry by hand; `netban sync` observes and restores it.
    let seq = acl()
        .lines()
        .find(|l| l.contains("203.0.113.50"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap();
    r.netmiko(serde_json::json!([[
        "config",
        ["ip access-list extended NETBAN", format!("no {seq}")]
    ]]));
    assert!(!on_router(&acl()));
    daemon.client_ok(&["sync"]);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            on_router(&acl())
        }),
        "not restored: {}\n{}",
        acl(),
        daemon.log()
    );

    daemon.client_ok(&["unban", "203.0.113.50", "2001:db8::50", "--source", "sshd"]);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            !acl().contains("203.0.113.50")
                && !r
                    .show("show ipv6 access-list NETBAN6")
                    .contains("2001:DB8::50")
        }),
        "unban not applied: {}\n{}",
        acl(),
        daemon.log()
    );
    let status = daemon.status();
    assert!(status.to_string().contains("edge-router"), "{status}");
}
