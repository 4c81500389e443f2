//! NETCONF target against the real peer: Debian's netconfd (yuma123, an RFC 6241 server)
//! behind OpenSSH's sshd as its `netconf` subsystem, each test with its own sshd on a free
//! loopback port, its own netconfd (own Unix socket, home and startup file) and its own keys,
//! loading netban's test schema (netban-testlab's peers/netconf/t128-test*.yang, which mirrors the
//! SSR path and namespaces). Another administrator is played by OpenSSH's `ssh -s netconf`
//! client speaking raw NETCONF, independent of netban's client. The peer's harness is
//! `netban_testlab::peers::netconfd`; installed by scripts/setup.d/netconf.sh. The daemon
//! through this driver is tested in netban-e2e (`drivers`), its benchmark is in bench/.
#![cfg(feature = "netconf")]

#[path = "common/report.rs"]
mod report;

use netban_core::plan::{plan, Ownership};
use netban_core::{Expiry, Prefix};
use netban_targets::netconf::{Netconf, NetconfConfig};
use netban_targets::{ItemOutcome, Step, Target};
use netban_testlab::peers::netconfd::Server;
use netban_testlab::plans::{adds, prefix as p, removes};
use report::assert_all_done;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The driver on a test server, from the peer's settings.
trait Driver {
    fn config(&self, extra: &str) -> NetconfConfig;
    fn generic_ipv4_list(&self, tenant: &str, neighborhood: &str) -> NetconfConfig;
    fn target(&self, extra: &str) -> Netconf;
}

impl Driver for Server {
    fn config(&self, extra: &str) -> NetconfConfig {
        serde_json::from_value(self.driver_settings(extra)).expect("NETCONF settings")
    }

    fn generic_ipv4_list(&self, tenant: &str, neighborhood: &str) -> NetconfConfig {
        let settings = self.generic_ipv4_list_settings(tenant, neighborhood);
        serde_json::from_value(settings).expect("generic NETCONF settings")
    }

    fn target(&self, extra: &str) -> Netconf {
        Netconf::new("conductor", self.config(extra)).unwrap()
    }
}

async fn held(t: &mut Netconf) -> BTreeSet<String> {
    t.observe()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.prefix.to_string())
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_and_unban_v4_and_v6_leaving_foreign_entries() {
    let server = Server::start();
    let mut admin = server.admin().await;
    // An operator's own entry in the same member: netban must leave it.
    admin
        .commit_member("<address>198.51.100.50/32</address>")
        .await;

    let mut t = server.target("");
    t.prepare().await.unwrap();
    assert_eq!(held(&mut t).await, set(&["198.51.100.50/32"]));

    let report = t
        .apply(&adds(&["203.0.113.7", "2001:db8::7", "203.0.113.0/28"]))
        .await
        .unwrap();
    assert_eq!(report.items.len(), 3);
    assert_all_done(&report);
    let want = set(&[
        "198.51.100.50/32",
        "203.0.113.7/32",
        "2001:db8::7/128",
        "203.0.113.0/28",
    ]);
    assert_eq!(held(&mut t).await, want);
    // Committed to running, as another session sees it.
    assert_eq!(admin.running_addresses().await, want);

    let report = t
        .apply(&removes(&["203.0.113.7", "2001:db8::7"]))
        .await
        .unwrap();
    assert_all_done(&report);
    assert_eq!(report.items[0].step, Step::Remove);
    let want = set(&["198.51.100.50/32", "203.0.113.0/28"]);
    assert_eq!(held(&mut t).await, want);
    assert_eq!(admin.running_addresses().await, want);

    // Removing what is already gone and adding what is there are no-ops, reported done.
    let mut again = removes(&["203.0.113.7"]);
    again.add = adds(&["203.0.113.0/28"]).add;
    assert_all_done(&t.apply(&again).await.unwrap());
    assert_eq!(held(&mut t).await, want);
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_lock_held_by_another_session() {
    let server = Server::start();
    let mut admin = server.admin().await;
    admin.ok("<lock><target><candidate/></target></lock>").await;

    // A short wait: the items fail, naming the session that holds the lock.
    let mut t = server.target(r#", "lock_wait_secs": 1"#);
    let report = t.apply(&adds(&["203.0.113.8"])).await.unwrap();
    match &report.items[0].result {
        ItemOutcome::Failed { reason } => assert!(
            reason.contains(&format!("locked by session {}", admin.session_id)),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(held(&mut t).await.is_empty());

    // A long wait: netban keeps retrying while the lock is held and goes in once released.
    let mut t = server.target(r#", "lock_wait_secs": 30"#);
    let apply = tokio::spawn(async move {
        let report = t.apply(&adds(&["203.0.113.8"])).await;
        (t, report)
    });
    let mut apply = Box::pin(apply);
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut apply)
            .await
            .is_err(),
        "apply finished while the candidate was locked by another session"
    );
    admin
        .ok("<unlock><target><candidate/></target></unlock>")
        .await;
    let (mut t, report) = tokio::time::timeout(Duration::from_secs(30), apply)
        .await
        .expect("apply did not finish after the unlock")
        .unwrap();
    assert_all_done(&report.unwrap());
    assert_eq!(admin.running_addresses().await, set(&["203.0.113.8/32"]));
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_commits_another_sessions_uncommitted_edits() {
    let server = Server::start();
    let mut admin = server.admin().await;
    // Half-finished provisioning: in the candidate, not committed, not locked.
    admin
        .edit_member("<address>198.51.100.77/32</address>")
        .await;

    let mut t = server.target("");
    let report = t.apply(&adds(&["203.0.113.9"])).await.unwrap();
    match &report.items[0].result {
        ItemOutcome::Failed { reason } => {
            assert!(
                reason.contains("uncommitted changes of another session"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        admin.running_addresses().await.is_empty(),
        "someone committed the foreign edit"
    );

    admin.ok("<discard-changes/>").await;
    assert_all_done(&t.apply(&adds(&["203.0.113.9"])).await.unwrap());
    assert_eq!(admin.running_addresses().await, set(&["203.0.113.9/32"]));
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_elements_fails_the_adds_and_still_removes() {
    let server = Server::start();
    let mut t = server.target("");
    // The test schema allows 64 addresses in the member.
    let first: Vec<String> = (1..=62).map(|i| format!("203.0.113.{i}")).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    assert_all_done(&t.apply(&adds(&first)).await.unwrap());
    assert_eq!(held(&mut t).await.len(), 62);

    // One remove and four adds: the batch would make 65. The server refuses the batch's
    // edit; netban redoes it item by item (removes first): the remove and three adds fit,
    // the last add fails with a message that says what to configure.
    let mut plan = adds(&[
        "203.0.113.100",
        "203.0.113.101",
        "203.0.113.102",
        "203.0.113.103",
    ]);
    plan.remove = removes(&["203.0.113.1"]).remove;
    let report = t.apply(&plan).await.unwrap();
    let mut failed = Vec::new();
    for item in &report.items {
        match (item.step, &item.result) {
            (Step::Add, ItemOutcome::Failed { reason }) => {
                assert!(
                    reason.contains("max-elements") && reason.contains("capacity_v4"),
                    "{reason}"
                );
                failed.push(item.prefix.to_string());
            }
            (_, ItemOutcome::Done { .. }) => {}
            other => panic!("{}: {other:?}", item.prefix),
        }
    }
    assert_eq!(failed, ["203.0.113.103/32"]);
    let now = held(&mut t).await;
    assert_eq!(now.len(), 64);
    assert!(!now.contains("203.0.113.1/32") && now.contains("203.0.113.102/32"));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_preset_reports_entries_the_server_refuses() {
    let server = Server::start();
    // The generic preset pointed at the test schema's IPv4-only leaf-list: the server's own
    // validation refuses the IPv6 entry; the IPv4 one still goes in, in the same commit.
    let config = server.generic_ipv4_list("lists", "n");
    let mut t = Netconf::new("generic", config).unwrap();
    let report = t
        .apply(&adds(&["203.0.113.20", "2001:db8::20"]))
        .await
        .unwrap();
    for item in &report.items {
        match (item.prefix.to_string().as_str(), &item.result) {
            ("203.0.113.20/32", ItemOutcome::Done { .. }) => {}
            ("2001:db8::20/128", ItemOutcome::Rejected { reason }) => {
                assert!(reason.contains("2001:db8::20/128"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(held(&mut t).await, set(&["203.0.113.20/32"]));
    assert_all_done(&t.apply(&removes(&["203.0.113.20"])).await.unwrap());
    assert!(held(&mut t).await.is_empty());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_removed_by_another_session_is_restored() {
    let server = Server::start();
    let mut admin = server.admin().await;
    admin
        .commit_member("<address>198.51.100.50/32</address>")
        .await;

    let mut t = server.target("");
    let desired: BTreeMap<Prefix, Expiry> = [
        ("203.0.113.30", Expiry::Never),
        ("2001:db8::30", Expiry::Never),
    ]
    .into_iter()
    .map(|(s, e)| (p(s), e))
    .collect();
    // What the daemon does: observe, plan with the owned records, apply, record the adds.
    let mut owned: BTreeSet<(Prefix, Option<String>)> = BTreeSet::new();
    for round in 0..2 {
        let now = t.observe().await.unwrap();
        let plan = plan(
            &desired,
            &now,
            &Ownership::Recorded(&owned),
            t.info().expiry,
        );
        if round == 0 {
            assert_eq!(plan.add.len(), 2);
        } else {
            // Another session removed one of netban's entries: only that one comes back,
            // and the operator's entry is neither removed nor touched.
            assert_eq!(plan.add.len(), 1, "{plan:?}");
            assert_eq!(plan.add[0].prefix, p("2001:db8::30"));
            assert!(plan.remove.is_empty());
        }
        let report = t.apply(&plan).await.unwrap();
        assert_all_done(&report);
        owned.extend(report.items.iter().map(|i| (i.prefix, None)));
        if round == 0 {
            admin
                .commit_member("<address nc:operation=\"delete\">2001:db8::30/128</address>")
                .await;
            assert_eq!(
                admin.running_addresses().await,
                set(&["198.51.100.50/32", "203.0.113.30/32"])
            );
        }
    }
    assert_eq!(
        admin.running_addresses().await,
        set(&["198.51.100.50/32", "203.0.113.30/32", "2001:db8::30/128"])
    );
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conductors_both_receive_the_ban() {
    let (a, b) = (Server::start(), Server::start());
    assert_ne!(a.port, b.port);
    let mut targets = [a.target(""), b.target("")];
    let ban = adds(&["203.0.113.40", "2001:db8::40"]);
    for t in &mut targets {
        assert_all_done(&t.apply(&ban).await.unwrap());
    }
    for server in [&a, &b] {
        let mut admin = server.admin().await;
        assert_eq!(
            admin.running_addresses().await,
            set(&["203.0.113.40/32", "2001:db8::40/128"]),
            "server on port {}",
            server.port
        );
        admin.close().await;
    }
    for mut t in targets {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_a_config_error() {
    let server = Server::start();
    let mut config = server.config("");
    config.host_key_fingerprint = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let mut t = Netconf::new("c", config).unwrap();
    match t.prepare().await {
        Err(netban_targets::TargetError::Config(m)) => {
            assert!(
                m.to_string().contains(&server.fingerprint) && m.to_string().contains("refused"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_commit_is_read_back_and_confirmed() {
    let server = Server::start();
    let mut t = server.target(r#", "confirmed_commit_secs": 5"#);
    assert_all_done(
        &t.apply(&adds(&["203.0.113.50", "2001:db8::50"]))
            .await
            .unwrap(),
    );
    assert_all_done(&t.apply(&removes(&["2001:db8::50"])).await.unwrap());
    t.shutdown().await;
    // netban's session is closed: an unconfirmed commit would now be rolled back by the
    // server (RFC 6241 8.4: session end cancels a confirmed commit without persist).
    let mut admin = server.admin().await;
    assert_eq!(admin.running_addresses().await, set(&["203.0.113.50/32"]));
    admin.close().await;
}
