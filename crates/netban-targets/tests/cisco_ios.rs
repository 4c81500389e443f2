//! The Cisco IOS target against a real SSH server presenting IOS's CLI: PyPI fakenos 1.2.1 with
//! netban's own stateful ACL shell plugin (netban-testlab's peers/cisco_ios/ios_acl_shell.py,
//! the project's test emulator), cross-checked with netmiko 4.8 as an independent client. Both
//! come from `scripts/setup.d/cisco_ios.sh` (venv `.venv-cisco_ios` at the repo root).
//!
//! Every test starts its own emulator on a free loopback port and kills it on drop (the peer's
//! harness is `netban_testlab::peers::ios`). The daemon through this driver is tested in
//! netban-e2e (`drivers`), its benchmark is in bench/.
#![cfg(feature = "cisco-ios")]

use netban_core::plan::{self, ExpiryTracking, Held, Ownership, Plan};
use netban_core::{Expiry, Prefix};
use netban_targets::cisco_ios::{Action, CiscoIos, CiscoIosConfig, Mode, TAIL_SEQUENCE};
use netban_targets::{ItemOutcome, Step, Target, TargetError};
use netban_testlab::peers::ios::{make_client_key, Router, PASSWORD, SECRET, USER};
use netban_testlab::plans::{adds, prefix as p};
use netban_testlab::wait_until;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The driver on an emulated router.
trait Driver {
    fn config(&self) -> CiscoIosConfig;
    fn target(&self) -> CiscoIos;
}

impl Driver for Router {
    fn config(&self) -> CiscoIosConfig {
        CiscoIosConfig {
            password: Some(PASSWORD.into()),
            enable_secret: Some(SECRET.into()),
            host_key_fingerprint: Some(self.fingerprint.clone()),
            timeout_secs: 10,
            ..CiscoIosConfig::new("127.0.0.1", self.port, USER)
        }
    }

    fn target(&self) -> CiscoIos {
        CiscoIos::new("edge", self.config()).unwrap()
    }
}

async fn apply_ok(t: &mut CiscoIos, plan: &Plan) -> Vec<Held> {
    let report = t.apply(plan).await.unwrap();
    assert_eq!(report.items.len(), plan.len());
    report
        .items
        .into_iter()
        .map(|i| match i.result {
            ItemOutcome::Done { held } => held.unwrap_or(Held {
                prefix: i.prefix,
                expiry: None,
                handle: None,
            }),
            other => panic!("{} {:?}: {other:?}", i.prefix, i.step),
        })
        .collect()
}

async fn observed(t: &mut CiscoIos) -> BTreeMap<Prefix, Held> {
    let held = t.observe().await.unwrap();
    let n = held.len();
    let map: BTreeMap<_, _> = held.into_iter().map(|h| (h.prefix, h)).collect();
    assert_eq!(map.len(), n, "a prefix held twice");
    map
}

/// One reconciler round: observe, plan everything against `desired`, apply.
async fn sync(t: &mut CiscoIos, desired: &[&str]) -> Result<Plan, TargetError> {
    let desired: BTreeMap<Prefix, Expiry> = desired.iter().map(|s| (p(s), Expiry::Never)).collect();
    let held = t.observe().await?;
    let plan = plan::plan(&desired, &held, &Ownership::Exclusive, ExpiryTracking::None);
    if !plan.is_empty() {
        let report = t.apply(&plan).await?;
        for item in &report.items {
            assert!(matches!(item.result, ItemOutcome::Done { .. }), "{item:?}");
        }
    }
    Ok(plan)
}

fn keys(map: &BTreeMap<Prefix, Held>) -> Vec<String> {
    map.keys().map(|p| p.to_string()).collect()
}

#[test]
fn netmiko_cross_checks_the_emulator() {
    // The emulator seen by an independent client: IOS's output formats, sequence numbers,
    // normalisation of host bits, error detection by netmiko's own error pattern.
    let r = Router::start(&[]);
    let res = r.netmiko(serde_json::json!([
        [
            "config",
            [
                "ip access-list extended XCHECK",
                "deny ip host 203.0.113.10 any",
                "deny ip 198.51.100.7 0.0.0.255 any",
                "permit ip any any"
            ]
        ],
        ["show", "show ip access-lists XCHECK"],
        [
            "config",
            [
                "ip access-list extended XCHECK",
                "no 20",
                "15 deny ip host 203.0.113.15 any"
            ]
        ],
        ["show", "show ip access-lists XCHECK"],
        [
            "config_checked",
            [
                "ip access-list extended XCHECK",
                "deny ip hostt 203.0.113.11 any"
            ]
        ],
        [
            "config",
            [
                "ipv6 access-list XCHECK6",
                "deny ipv6 host 2001:db8::10 any",
                "deny ipv6 2001:db8:1::/48 any",
                "permit ipv6 any any sequence 100"
            ]
        ],
        ["show", "show ipv6 access-list XCHECK6"],
        [
            "config",
            [
                "object-group network XGROUP",
                "host 203.0.113.20",
                "198.51.100.0 255.255.255.0"
            ]
        ],
        ["show", "show object-group name XGROUP"],
        [
            "config_checked",
            ["ip access-list extended XCHECK", "deny ip host"]
        ],
    ]));
    let out = |i: usize| res[i]["output"].as_str().unwrap().to_string();
    assert_eq!(
        out(1),
        "Extended IP access list XCHECK\n    10 deny ip host 203.0.113.10 any\n    \
         20 deny ip 198.51.100.0 0.0.0.255 any\n    30 permit ip any any"
    );
    // Counters appear once entries have seen traffic (each show counts as some here).
    assert_eq!(
        out(3),
        "Extended IP access list XCHECK\n    10 deny ip host 203.0.113.10 any (1 match)\n    \
         15 deny ip host 203.0.113.15 any\n    30 permit ip any any (1 match)"
    );
    assert_eq!(res[4]["ok"], false, "{:?}", res[4]);
    assert!(res[4]["error"].as_str().unwrap().contains("hostt"));
    // netmiko stayed in the ACL sub-mode after the error; the next global command leaves it.
    assert_eq!(
        out(6),
        "IPv6 access list XCHECK6\n    deny ipv6 host 2001:DB8::10 any sequence 10\n    \
         deny ipv6 2001:DB8:1::/48 any sequence 20\n    permit ipv6 any any sequence 100"
    );
    assert_eq!(
        out(8),
        "Network object group XGROUP\n host 203.0.113.20\n 198.51.100.0 255.255.255.0"
    );
    assert_eq!(res[9]["ok"], false);
}

#[tokio::test]
async fn bans_and_unbans_ipv4_and_ipv6_with_a_tail_that_stays_last() {
    let r = Router::start(&[]);
    let mut t = r.target();
    t.prepare().await.unwrap();
    assert!(observed(&mut t).await.is_empty());
    let want = [
        "203.0.113.7",
        "198.51.100.0/24",
        "2001:db8::7",
        "2001:db8:1::/48",
    ];
    let held = apply_ok(&mut t, &adds(&want)).await;
    assert!(held.iter().all(|h| h.handle.is_some()), "{held:?}");

    let acl = r.show("show ip access-lists NETBAN");
    assert_eq!(
        acl,
        format!(
            "Extended IP access list NETBAN\n    10 deny ip host 203.0.113.7 any\n    \
             20 deny ip 198.51.100.0 0.0.0.255 any\n    {TAIL_SEQUENCE} permit ip any any"
        )
    );
    let acl6 = r.show("show ipv6 access-list NETBAN6");
    assert!(
        acl6.contains("deny ipv6 host 2001:DB8::7 any sequence 10"),
        "{acl6}"
    );
    assert!(
        acl6.trim_end()
            .ends_with(&format!("permit ipv6 any any sequence {TAIL_SEQUENCE}")),
        "{acl6}"
    );

    // Read back (now with match counters) as the same four, with their sequence numbers.
    let seen = observed(&mut t).await;
    assert_eq!(
        keys(&seen),
        [
            "198.51.100.0/24",
            "203.0.113.7/32",
            "2001:db8::7/128",
            "2001:db8:1::/48"
        ]
    );
    assert_eq!(seen[&p("203.0.113.7")].handle.as_deref(), Some("10"));

    // Unban two; the rest and the tails stay.
    let plan = Plan {
        remove: vec![
            seen[&p("203.0.113.7")].clone(),
            seen[&p("2001:db8::7")].clone(),
        ],
        ..Plan::default()
    };
    apply_ok(&mut t, &plan).await;
    assert_eq!(
        keys(&observed(&mut t).await),
        ["198.51.100.0/24", "2001:db8:1::/48"]
    );
    let acl = r.show("show ip access-lists NETBAN");
    assert!(
        !acl.contains("203.0.113.7") && acl.contains("permit ip any any"),
        "{acl}"
    );

    // Applying what is already there sends nothing and reports it done.
    apply_ok(&mut t, &adds(&["198.51.100.0/24"])).await;
    t.shutdown().await;
}

#[tokio::test]
async fn an_entry_removed_by_hand_is_restored_by_the_next_sync() {
    let r = Router::start(&[]);
    let mut t = r.target();
    let desired = ["203.0.113.30", "203.0.113.31", "2001:db8::31"];
    sync(&mut t, &desired).await.unwrap();
    // The operator removes one IPv4 and one IPv6 entry and adds one of their own.
    let res = r.netmiko(serde_json::json!([[
        "config",
        [
            "ip access-list extended NETBAN",
            "no 10",
            "15 deny ip host 203.0.113.99 any",
            "ipv6 access-list NETBAN6",
            "no deny ipv6 host 2001:db8::31 any"
        ]
    ],]));
    assert_eq!(res[0]["ok"], true);
    let seen = observed(&mut t).await;
    assert_eq!(keys(&seen), ["203.0.113.31/32", "203.0.113.99/32"]);
    // netban owns the ACL: it restores its entries and removes the stray one.
    let plan = sync(&mut t, &desired).await.unwrap();
    assert_eq!((plan.add.len(), plan.remove.len()), (2, 1));
    assert_eq!(
        keys(&observed(&mut t).await),
        ["203.0.113.30/32", "203.0.113.31/32", "2001:db8::31/128"]
    );
    assert!(sync(&mut t, &desired).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_line_is_rejected_and_the_rest_of_the_batch_applied() {
    let r = Router::start(&["--refuse", "203.0.113.66"]);
    let mut t = r.target();
    let report = t
        .apply(&adds(&["203.0.113.65", "203.0.113.66", "203.0.113.67"]))
        .await
        .unwrap();
    let results: BTreeMap<String, &ItemOutcome> = report
        .items
        .iter()
        .map(|i| (i.prefix.to_string(), &i.result))
        .collect();
    assert!(matches!(
        results["203.0.113.65/32"],
        ItemOutcome::Done { .. }
    ));
    assert!(matches!(
        results["203.0.113.67/32"],
        ItemOutcome::Done { .. }
    ));
    match results["203.0.113.66/32"] {
        ItemOutcome::Rejected { reason } => {
            assert!(reason.contains("% Invalid input detected"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        keys(&observed(&mut t).await),
        ["203.0.113.65/32", "203.0.113.67/32"]
    );
}

#[tokio::test]
async fn a_session_dropped_mid_batch_reconnects_and_converges() {
    // The router drops every session at every 8th ACL line it processes.
    let r = Router::start(&["--drop-every-lines", "8"]);
    let mut t = r.target();
    t.prepare().await.unwrap();
    let want: Vec<String> = (1..=20).map(|i| format!("203.0.113.{}", 100 + i)).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    // First attempt: a few lines pass, drop; the driver re-reads on a new session and sends
    // what is missing, 7 lines of which pass before the next drop: that one surfaces.
    match t.apply(&adds(&want)).await {
        Err(TargetError::Unreachable(m)) => assert!(m.to_string().contains("closed"), "{m}"),
        other => panic!("expected the second drop to surface as unreachable: {other:?}"),
    }
    assert!(r.log().contains("closed 1 sessions"), "{}", r.log());
    let partial = observed(&mut t).await.len();
    assert!(partial > 7 && partial < want.len(), "{partial}");
    // What the reconciler does next: observe and apply what is missing, until it converges.
    let mut rounds = 0;
    while sync(&mut t, &want)
        .await
        .map(|plan| !plan.is_empty())
        .unwrap_or(true)
    {
        rounds += 1;
        assert!(rounds < 5, "did not converge");
    }
    assert_eq!(observed(&mut t).await.len(), want.len());

    // A session the router closed while idle is replaced transparently for reads.
    let drops = r.log().matches("closed 1 sessions").count();
    r.signal("-USR2");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || r
            .log()
            .matches("closed 1 sessions")
            .count()
            > drops),
        "{}",
        r.log()
    );
    assert_eq!(observed(&mut t).await.len(), want.len());
}

#[tokio::test]
async fn a_reload_renumbers_and_netban_restores_what_was_not_saved() {
    let r = Router::start(&[]);
    let mut t = r.target();
    sync(&mut t, &["203.0.113.1", "203.0.113.2", "2001:db8::2"])
        .await
        .unwrap();
    // Saved, then more bans, then the router reloads: the unsaved ones are gone and every
    // sequence is renumbered 10, 20, … (the tail too).
    let res = r.netmiko(serde_json::json!([["show", "write memory"]]));
    assert!(res[0]["output"].as_str().unwrap().contains("[OK]"));
    let before = observed(&mut t).await;
    sync(
        &mut t,
        &[
            "203.0.113.1",
            "203.0.113.2",
            "2001:db8::2",
            "203.0.113.3",
            "203.0.113.4",
        ],
    )
    .await
    .unwrap();
    let stale = observed(&mut t).await; // handles from before the reload
    r.signal("-USR1");
    let reloaded = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        r.show("show ip access-lists NETBAN")
            .contains("30 permit ip any any")
    });
    assert!(reloaded, "reload not seen: {}", r.log());
    assert_eq!(before[&p("203.0.113.1")].handle.as_deref(), Some("10"));

    // The stale handle of 203.0.113.2 (20) still names it after renumbering, but that of
    // 203.0.113.4 (40) would now be the tail's old number: removals go by a fresh read.
    let plan = Plan {
        remove: vec![
            stale[&p("203.0.113.4")].clone(),
            stale[&p("203.0.113.2")].clone(),
        ],
        ..Plan::default()
    };
    t.apply(&plan).await.unwrap();
    let seen = observed(&mut t).await;
    assert_eq!(keys(&seen), ["203.0.113.1/32", "2001:db8::2/128"]);
    let acl = r.show("show ip access-lists NETBAN");
    assert!(
        acl.trim_end()
            .ends_with(&format!("{TAIL_SEQUENCE} permit ip any any"))
            && !acl.contains(" 30 permit"),
        "the tail was not moved back to the top: {acl}"
    );
    sync(&mut t, &["203.0.113.1", "2001:db8::2", "203.0.113.3"])
        .await
        .unwrap();
    assert_eq!(observed(&mut t).await.len(), 3);
}

#[tokio::test]
async fn write_memory_is_batched_and_never_per_ban() {
    let r = Router::start(&[]);
    // No saving: a reload loses netban's entries (netban restores them on its next sync).
    let mut t = r.target();
    sync(&mut t, &["203.0.113.40"]).await.unwrap();
    t.shutdown().await;
    r.signal("-USR1");
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || !r
            .show("show ip access-lists NETBAN")
            .contains("203.0.113.40")
    ));

    // With an interval: no save right after a change (the interval has not passed since the
    // target started), one save at shutdown.
    let mut t = CiscoIos::new(
        "edge",
        CiscoIosConfig {
            save_interval_secs: 3600,
            ..r.config()
        },
    )
    .unwrap();
    for ip in ["203.0.113.41", "203.0.113.42"] {
        apply_ok(&mut t, &adds(&[ip])).await;
    }
    r.signal("-USR1");
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || !r
            .show("show ip access-lists NETBAN")
            .contains("203.0.113.41")
    ));
    sync(&mut t, &["203.0.113.41", "203.0.113.42"])
        .await
        .unwrap();
    t.shutdown().await;
    r.signal("-USR1");
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || r.show("show ip access-lists NETBAN")
            .contains("20 deny ip host 203.0.113.42 any")
    ));
}

#[tokio::test]
async fn wrong_host_keys_are_refused_with_the_presented_fingerprint() {
    let r = Router::start(&[]);
    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let mut t = CiscoIos::new(
        "edge",
        CiscoIosConfig {
            host_key_fingerprint: Some(wrong.into()),
            ..r.config()
        },
    )
    .unwrap();
    match t.prepare().await {
        Err(TargetError::Config(m)) => {
            assert!(
                m.to_string().contains(&r.fingerprint)
                    && m.to_string().contains(wrong)
                    && m.to_string().contains("refused"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }

    // known_hosts: the right key is accepted, another key for this host is refused.
    let known = r.dir.path().join("known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{} {}\n", r.port, r.host_key)).unwrap();
    let with_known = |path: PathBuf| CiscoIosConfig {
        host_key_fingerprint: None,
        known_hosts: Some(path),
        ..r.config()
    };
    let mut t = CiscoIos::new("edge", with_known(known.clone())).unwrap();
    t.prepare().await.unwrap();
    let other = r.dir.path().join("known_hosts_other");
    let other_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    std::fs::write(&other, format!("[127.0.0.1]:{} {other_key}\n", r.port)).unwrap();
    let mut t = CiscoIos::new("edge", with_known(other)).unwrap();
    match t.prepare().await {
        Err(TargetError::Config(m)) => assert!(m.to_string().contains(&r.fingerprint), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn key_auth_works_and_wrong_credentials_are_config_errors() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_rsa");
    make_client_key(&key);
    let r = Router::start(&["--authorized-key", &format!("{}.pub", key.display())]);
    let mut t = CiscoIos::new(
        "edge",
        CiscoIosConfig {
            password: None,
            private_key: Some(key.clone()),
            ..r.config()
        },
    )
    .unwrap();
    apply_ok(&mut t, &adds(&["203.0.113.77"])).await;

    for (what, config) in [
        (
            "password",
            CiscoIosConfig {
                password: Some("wrong".into()),
                ..r.config()
            },
        ),
        (
            "enable",
            CiscoIosConfig {
                enable_secret: Some("wrong".into()),
                ..r.config()
            },
        ),
        (
            "enable",
            CiscoIosConfig {
                enable_secret: None,
                ..r.config()
            },
        ),
    ] {
        let mut t = CiscoIos::new("edge", config).unwrap();
        match t.observe().await {
            Err(TargetError::Config(m)) => assert!(m.to_string().contains(what), "{m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn object_group_mode_holds_ipv4_members() {
    let r = Router::start(&[]);
    let mut t = CiscoIos::new(
        "edge",
        CiscoIosConfig {
            mode: Mode::ObjectGroup,
            object_group: "F2B".into(),
            ..r.config()
        },
    )
    .unwrap();
    assert_eq!(t.info().families.len(), 1);
    apply_ok(&mut t, &adds(&["203.0.113.5", "198.51.100.0/25"])).await;
    assert_eq!(
        r.show("show object-group name F2B"),
        "Network object group F2B\n host 203.0.113.5\n 198.51.100.0 255.255.255.128"
    );
    let seen = observed(&mut t).await;
    let plan = Plan {
        remove: vec![seen[&p("203.0.113.5")].clone()],
        ..Plan::default()
    };
    apply_ok(&mut t, &plan).await;
    assert_eq!(keys(&observed(&mut t).await), ["198.51.100.0/25"]);
    let report = t.apply(&adds(&["2001:db8::5"])).await.unwrap();
    assert!(matches!(
        report.items[0].result,
        ItemOutcome::Rejected { .. }
    ));
}

#[tokio::test]
async fn class_map_variant_uses_permit_entries_without_a_tail() {
    let r = Router::start(&[]);
    let mut t = CiscoIos::new(
        "edge",
        CiscoIosConfig {
            action: Action::Permit,
            acl: "FAIL2BAN".into(),
            acl6: String::new(),
            ..r.config()
        },
    )
    .unwrap();
    apply_ok(&mut t, &adds(&["203.0.113.9"])).await;
    assert_eq!(
        r.show("show ip access-lists FAIL2BAN"),
        "Extended IP access list FAIL2BAN\n    10 permit ip host 203.0.113.9 any"
    );
    let seen = observed(&mut t).await;
    assert_eq!(keys(&seen), ["203.0.113.9/32"]);
    let report = t
        .apply(&Plan {
            remove: vec![seen[&p("203.0.113.9")].clone()],
            ..Plan::default()
        })
        .await
        .unwrap();
    assert_eq!(report.items[0].step, Step::Remove);
    assert!(observed(&mut t).await.is_empty());
}

/// A router that answers `show` with endless output and never a prompt (the emulator's
/// `--flood-show`): netban stops reading at its 64 MiB bound, closes the session and reports
/// a device error, instead of buffering without end.
#[tokio::test]
async fn endless_output_is_cut_off_at_the_bound() {
    let r = Router::start(&["--flood-show"]);
    let mut t = r.target();
    let started = std::time::Instant::now();
    let result = match t.prepare().await {
        Ok(()) => t.observe().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Err(TargetError::Device(m)) => {
            assert!(
                m.to_string().contains("sent more than 67108864 bytes"),
                "{m}"
            )
        }
        other => panic!("endless output: {other:?}\n{}", r.log()),
    }
    println!("cut off after {:?}", started.elapsed());
}
