//! The AWS targets (`aws_nacl`, `aws_waf`) against moto 5.2.5's server
//! (`netban_testlab::peers::moto`: installed by scripts/setup.d/aws.sh, one server per test on
//! a free loopback port). The tests call the `Target` methods directly and check the result
//! with the test's own SDK client. The daemon through these drivers (placement with overflow
//! to nftables, WAF sets across a restart) is tested in netban-e2e (`drivers`); the
//! benchmarks against the seed's boto3-per-ban approach are in bench/.
#![cfg(feature = "aws")]

#[path = "common/report.rs"]
mod report;

use aws_sdk_ec2::types::{Filter, RuleAction};
use aws_sdk_wafv2::types::Scope as WafScope;
use netban_core::placement::Capacity;
use netban_core::plan::{self, Held, Ownership, Plan};
use netban_core::{Expiry, Prefix};
use netban_targets::aws_nacl::{AwsNacl, AwsNaclConfig};
use netban_targets::aws_waf::{AwsWaf, AwsWafConfig};
use netban_targets::{ItemOutcome, OwnershipKind, Step, Target, TargetError};
use netban_testlab::peers::imds;
use netban_testlab::peers::moto::{
    add_entry, create_set, default_acl, delete_entry, netban_rows, operator_rows, rows,
    set_addresses, strings, Moto, Row,
};
use netban_testlab::plans::{adds, prefix as p};
use report::assert_all_done;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn removes(held: &[Held]) -> Plan {
    Plan {
        remove: held.to_vec(),
        ..Plan::default()
    }
}

fn held(prefix: &str, rule: u16) -> Held {
    Held {
        prefix: p(prefix),
        expiry: None,
        handle: Some(rule.to_string()),
    }
}

// ---- NACL helpers ---------------------------------------------------------------------------

fn nacl_config(moto: &Moto, acl: Option<&str>) -> AwsNaclConfig {
    serde_json::from_value(moto.settings(json!({ "network_acl_id": acl }))).unwrap()
}

// ---- NACL -----------------------------------------------------------------------------------

#[tokio::test]
async fn nacl_bans_and_unbans_v4_and_v6_leaving_operator_rules_alone() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let acl = default_acl(&ec2).await;
    // The operator's IPv6 allow rule, as on a default NACL of a VPC with IPv6.
    add_entry(&ec2, &acl, 101, RuleAction::Allow, "::/0").await;
    let operator = operator_rows(&ec2, &acl).await;
    assert!(operator.len() >= 3, "{operator:?}");

    let mut nacl = AwsNacl::new("vpc", nacl_config(&moto, Some(&acl))).unwrap();
    let capacity = Capacity {
        v4: Some(18),
        v6: Some(18),
    };
    assert_eq!(nacl.info().capacity, capacity);
    assert_eq!(nacl.info().ownership, OwnershipKind::Exclusive);
    nacl.prepare().await.unwrap();
    assert!(nacl.observe().await.unwrap().is_empty());

    let report = nacl
        .apply(&adds(&["203.0.113.7", "2001:db8:a::7", "198.51.100.0/24"]))
        .await
        .unwrap();
    assert_all_done(&report);
    let handles: Vec<_> = report
        .items
        .iter()
        .map(|i| match &i.result {
            ItemOutcome::Done { held: Some(h) } => h.handle.clone().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(handles, ["1", "2", "3"]);
    assert_eq!(
        netban_rows(&ec2, &acl).await,
        vec![
            (1, "203.0.113.7/32".to_string()),
            (2, "2001:db8:a::7/128".to_string()),
            (3, "198.51.100.0/24".to_string()),
        ]
    );
    let seen = nacl.observe().await.unwrap();
    assert_eq!(
        seen,
        vec![
            held("203.0.113.7", 1),
            held("2001:db8:a::7", 2),
            held("198.51.100.0/24", 3)
        ]
    );

    // Adding what is there already changes nothing and answers with its rule number.
    let again = nacl.apply(&adds(&["198.51.100.0/24"])).await.unwrap();
    assert_eq!(
        again.items[0].result,
        ItemOutcome::Done {
            held: Some(held("198.51.100.0/24", 3))
        }
    );

    let report = nacl.apply(&removes(&seen[..2])).await.unwrap();
    assert_all_done(&report);
    assert_eq!(
        netban_rows(&ec2, &acl).await,
        vec![(3, "198.51.100.0/24".to_string())]
    );
    assert_eq!(
        operator_rows(&ec2, &acl).await,
        operator,
        "operator rules untouched"
    );
}

#[tokio::test]
async fn nacl_rule_numbers_are_read_from_the_device_and_drift_is_repaired() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let acl = default_acl(&ec2).await;
    let mut nacl = AwsNacl::new("vpc", nacl_config(&moto, Some(&acl))).unwrap();
    nacl.prepare().await.unwrap();
    let a = "203.0.113.1/32";
    let b = "203.0.113.2/32";
    let c = "203.0.113.3/32";
    assert_all_done(&nacl.apply(&adds(&[a, b, c])).await.unwrap());

    // Behind netban's back: b deleted, c renumbered from 3 to 40, a stray deny for d at 5.
    delete_entry(&ec2, &acl, 2).await;
    delete_entry(&ec2, &acl, 3).await;
    add_entry(&ec2, &acl, 40, RuleAction::Deny, c).await;
    add_entry(&ec2, &acl, 5, RuleAction::Deny, "203.0.113.4/32").await;
    let seen = nacl.observe().await.unwrap();
    assert_eq!(
        seen,
        vec![held(a, 1), held("203.0.113.4", 5), held(c, 40)],
        "rule numbers as they are now"
    );

    // A remove naming c's old number deletes nothing there (nothing of c's is at 3).
    let stale = nacl.apply(&removes(&[held(c, 3)])).await.unwrap();
    assert_all_done(&stale);
    assert!(netban_rows(&ec2, &acl).await.contains(&(40, c.to_string())));

    // The reconciler's full sync: plan against what is held now.
    let desired: BTreeMap<Prefix, Expiry> =
        [a, b, c].iter().map(|s| (p(s), Expiry::Never)).collect();
    let repair = plan::plan(&desired, &seen, &Ownership::Exclusive, nacl.info().expiry);
    assert_eq!(repair.add.len(), 1);
    assert_eq!(repair.remove, vec![held("203.0.113.4", 5)]);
    let report = nacl.apply(&repair).await.unwrap();
    assert_all_done(&report);
    // The stray went first, then b took the lowest free number (2), colliding with nothing.
    assert_eq!(
        netban_rows(&ec2, &acl).await,
        vec![(1, a.to_string()), (2, b.to_string()), (40, c.to_string())]
    );
    let seen = nacl.observe().await.unwrap();
    assert!(plan::plan(&desired, &seen, &Ownership::Exclusive, nacl.info().expiry).is_empty());
}

#[tokio::test]
async fn nacl_is_found_by_subnet_and_through_imdsv2() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let vpc = ec2
        .create_vpc()
        .cidr_block("198.18.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("198.18.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let acl = ec2.create_network_acl().vpc_id(&vpc).send().await.unwrap();
    let acl = acl
        .network_acl()
        .unwrap()
        .network_acl_id()
        .unwrap()
        .to_string();
    // Move the subnet from the VPC's default NACL to the new one.
    let current = ec2
        .describe_network_acls()
        .filters(
            Filter::builder()
                .name("association.subnet-id")
                .values(&subnet)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let association = current.network_acls()[0]
        .associations()
        .iter()
        .find(|a| a.subnet_id() == Some(subnet.as_str()))
        .and_then(|a| a.network_acl_association_id())
        .unwrap()
        .to_string();
    assert_ne!(
        current.network_acls()[0].network_acl_id(),
        Some(acl.as_str())
    );
    ec2.replace_network_acl_association()
        .association_id(association)
        .network_acl_id(&acl)
        .send()
        .await
        .unwrap();

    let by_subnet = AwsNaclConfig {
        subnet_id: Some(subnet.clone()),
        ..nacl_config(&moto, None)
    };
    let mut nacl = AwsNacl::new("vpc", by_subnet).unwrap();
    nacl.prepare().await.unwrap();
    assert_eq!(nacl.network_acl_id(), Some(acl.as_str()));

    let imds = imds::Imds::start("0e:49:61:0f:c3:11", &subnet);
    let by_imds = AwsNaclConfig {
        imds_endpoint: imds.url(),
        ..nacl_config(&moto, None)
    };
    let mut nacl = AwsNacl::new("vpc", by_imds).unwrap();
    nacl.prepare().await.unwrap();
    assert_eq!(nacl.network_acl_id(), Some(acl.as_str()));
    assert_eq!(
        imds.refused.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "every metadata read carried the IMDSv2 token"
    );
    assert_all_done(&nacl.apply(&adds(&["203.0.113.9"])).await.unwrap());
    assert_eq!(
        netban_rows(&ec2, &acl).await,
        vec![(1, "203.0.113.9/32".to_string())]
    );

    // No metadata service at all (not on EC2): unreachable, saying what to set instead.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let off_ec2 = AwsNaclConfig {
        imds_endpoint: nobody,
        ..nacl_config(&moto, None)
    };
    match AwsNacl::new("vpc", off_ec2).unwrap().prepare().await {
        Err(TargetError::Unreachable(m)) => {
            assert!(m.to_string().contains("set network_acl_id"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nacl_refuses_rules_that_would_defeat_it() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let acl = default_acl(&ec2).await;
    let config_error = |r: Result<(), TargetError>| match r {
        Err(TargetError::Config(m)) => m.to_string(),
        other => panic!("expected a configuration error, got {other:?}"),
    };

    // netban's range above the operator's allow rule 100: its denies would never match.
    let above = AwsNaclConfig {
        rule_range: [150, 200],
        ..nacl_config(&moto, Some(&acl))
    };
    let m = config_error(AwsNacl::new("vpc", above).unwrap().prepare().await);
    assert!(m.to_string().contains("rule 100 sits below"), "{m}");

    // Fewer reserved rules than the operator keeps: the real quota would overflow.
    let tight = AwsNaclConfig {
        reserved_v4: 1,
        ..nacl_config(&moto, Some(&acl))
    };
    let m = config_error(AwsNacl::new("vpc", tight).unwrap().prepare().await);
    assert!(m.to_string().contains("reserved_v4 = 2"), "{m}");

    // A NACL that does not exist.
    let missing = nacl_config(&moto, Some("acl-00000000"));
    let m = config_error(AwsNacl::new("vpc", missing).unwrap().prepare().await);
    assert!(m.to_string().contains("acl-00000000"), "{m}");

    // An operator's allow rule inside netban's range: refused, and nothing is written.
    add_entry(&ec2, &acl, 50, RuleAction::Allow, "198.51.100.0/24").await;
    let mut nacl = AwsNacl::new("vpc", nacl_config(&moto, Some(&acl))).unwrap();
    let m = config_error(nacl.prepare().await);
    assert!(m.to_string().contains("rule 50"), "{m}");
    assert!(matches!(
        nacl.apply(&adds(&["203.0.113.7"])).await,
        Err(TargetError::Config(_))
    ));
    let in_range: Vec<Row> = rows(&ec2, &acl)
        .await
        .into_iter()
        .filter(|r| !r.1 && (1..=99).contains(&r.0))
        .collect();
    assert_eq!(
        in_range,
        vec![(
            50,
            false,
            false,
            "-1".to_string(),
            "198.51.100.0/24".to_string()
        )],
        "nothing written"
    );
}

/// Creates, while moto still lets unauthenticated calls through, an IAM user allowed only to
/// read (ec2:DescribeNetworkAcls, wafv2:GetIPSet); returns its key id and secret and the
/// default NACL. Uses boto3 from the venv: 4 actions.
fn iam_reader(moto: &Moto) -> (String, String, String) {
    let script = r#"
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="unused")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="netban")
key = iam.create_access_key(UserName="netban")["AccessKey"]
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
          "Action": ["ec2:DescribeNetworkAcls", "wafv2:GetIPSet"], "Resource": "*"}]}
iam.put_user_policy(UserName="netban", PolicyName="read", PolicyDocument=json.dumps(policy))
ec2 = boto3.client("ec2", **kw)
acls = ec2.describe_network_acls(Filters=[{"Name": "default", "Values": ["true"]}])
print(key["AccessKeyId"], key["SecretAccessKey"], acls["NetworkAcls"][0]["NetworkAclId"])
"#;
    let text = netban_testlab::output_ok(
        std::process::Command::new(netban_testlab::venv_bin("aws", "python")).args([
            "-c",
            script,
            &moto.url(),
        ]),
    );
    let v: Vec<&str> = text.split_whitespace().collect();
    (v[0].to_string(), v[1].to_string(), v[2].to_string())
}

#[tokio::test]
async fn wrong_credentials_and_missing_permissions_are_configuration_errors() {
    let moto = Moto::start_with_auth(4);
    let (key, secret, acl) = iam_reader(&moto);
    let with_secret = |secret: &str| AwsNaclConfig {
        credentials_file: Some(moto.credentials_file(&key, secret).display().to_string()),
        ..nacl_config(&moto, Some(&acl))
    };

    let mut wrong = AwsNacl::new("vpc", with_secret("not-the-secret")).unwrap();
    match wrong.prepare().await {
        Err(TargetError::Config(m)) => assert!(m.to_string().contains("credentials"), "{m}"),
        other => panic!("wrong secret: {other:?}\n{}", moto.log()),
    }

    // Right secret, read-only policy: reading works, writing names the missing permission.
    let mut reader = AwsNacl::new("vpc", with_secret(&secret)).unwrap();
    reader.prepare().await.unwrap();
    match reader.apply(&adds(&["203.0.113.7"])).await {
        Err(TargetError::Config(m)) => {
            assert!(m.to_string().contains("ec2:CreateNetworkAclEntry"), "{m}")
        }
        other => panic!("read-only user: {other:?}"),
    }

    let waf_config = AwsWafConfig {
        credentials_file: Some(
            moto.credentials_file(&key, "not-the-secret")
                .display()
                .to_string(),
        ),
        ..waf_config(&moto, Some(("nb4", "0000")), None)
    };
    match AwsWaf::new("waf", waf_config).unwrap().prepare().await {
        Err(TargetError::Config(m)) => assert!(m.to_string().contains("credentials"), "{m}"),
        other => panic!("wrong secret (WAF): {other:?}"),
    }
}

// ---- WAF ------------------------------------------------------------------------------------

fn waf_config(moto: &Moto, v4: Option<(&str, &str)>, v6: Option<(&str, &str)>) -> AwsWafConfig {
    let set = |s: Option<(&str, &str)>| s.map(|(name, id)| json!({ "name": name, "id": id }));
    let settings = json!({
        "waf_scope": "REGIONAL", "ipset_v4": set(v4), "ipset_v6": set(v6),
        "min_write_interval_ms": 0, "max_addresses": 10_000,
    });
    serde_json::from_value(moto.settings(settings)).unwrap()
}

#[tokio::test]
async fn waf_adds_and_removes_keeping_foreign_entries() {
    let moto = Moto::start();
    let waf = moto.waf();
    let id4 = create_set(&waf, "nb4", false, strings(&["198.51.100.0/24"])).await;
    let id6 = create_set(&waf, "nb6", true, strings(&["2001:db8:b::/64"])).await;
    let mut config = waf_config(&moto, Some(("nb4", &id4)), Some(("nb6", &id6)));
    config.min_write_interval_ms = 400;
    let mut target = AwsWaf::new("waf", config).unwrap();
    assert_eq!(target.info().ownership, OwnershipKind::Recorded);
    assert_eq!(
        target.info().capacity,
        Capacity {
            v4: Some(10_000),
            v6: Some(10_000)
        }
    );
    target.prepare().await.unwrap();
    let seen = target.observe().await.unwrap();
    assert_eq!(seen.len(), 2, "foreign entries are read back: {seen:?}");

    let started = Instant::now();
    let report = target
        .apply(&adds(&["203.0.113.7", "203.0.113.8", "2001:db8:a::7"]))
        .await
        .unwrap();
    assert_all_done(&report);
    assert_eq!(report.items.len(), 3);
    let (v4, description) = set_addresses(&waf, "nb4", &id4).await;
    assert_eq!(
        v4,
        strings(&["198.51.100.0/24", "203.0.113.7/32", "203.0.113.8/32"])
    );
    assert_eq!(description.as_deref(), Some("the operator's set"));
    let (v6, _) = set_addresses(&waf, "nb6", &id6).await;
    assert_eq!(v6, strings(&["2001:db8:b::/64", "2001:db8:a::7/128"]));

    // The reconciler removes only what it recorded adding; the foreign entries stay.
    let records: BTreeSet<(Prefix, Option<String>)> =
        ["203.0.113.7", "203.0.113.8", "2001:db8:a::7"]
            .iter()
            .map(|s| (p(s), None))
            .collect();
    let seen = target.observe().await.unwrap();
    let unban_all = plan::plan(
        &BTreeMap::new(),
        &seen,
        &Ownership::Recorded(&records),
        target.info().expiry,
    );
    assert_eq!(unban_all.remove.len(), 3);
    let report = target.apply(&unban_all).await.unwrap();
    assert_all_done(&report);
    // Pacing: the second write to a set came at least min_write_interval_ms after the first.
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        set_addresses(&waf, "nb4", &id4).await.0,
        strings(&["198.51.100.0/24"])
    );
    assert_eq!(
        set_addresses(&waf, "nb6", &id6).await.0,
        strings(&["2001:db8:b::/64"])
    );
    assert_eq!(target.writes(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waf_lock_conflicts_are_retried_and_lose_nobodys_entries() {
    let moto = Moto::start();
    let waf = moto.waf();
    let id = create_set(&waf, "nb4", false, vec![]).await;
    let mut target = AwsWaf::new("waf", waf_config(&moto, Some(("nb4", &id)), None)).unwrap();
    target.prepare().await.unwrap();

    // Another writer updates the same set as fast as it can, with its own entries, using the
    // lock token properly (retrying its own conflicts).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (waf, id, stop) = (moto.waf(), id.clone(), stop.clone());
        tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 2_000 {
                let out = waf
                    .get_ip_set()
                    .name("nb4")
                    .id(&id)
                    .scope(WafScope::Regional)
                    .send()
                    .await
                    .unwrap();
                let mut list = out.ip_set().unwrap().addresses().to_vec();
                let entry = format!("198.51.{}.{}/32", 100 + i / 250, i % 250 + 1);
                list.push(entry.clone());
                let sent = waf
                    .update_ip_set()
                    .name("nb4")
                    .id(&id)
                    .scope(WafScope::Regional)
                    .set_addresses(Some(list))
                    .lock_token(out.lock_token().unwrap())
                    .send()
                    .await;
                if sent.is_ok() {
                    mine.push(entry);
                }
                i += 1;
                // Another tool writing about 50 times a second (AWS itself allows about one):
                // a rate, not a synchronisation.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            mine
        })
    };
    let mut ours = Vec::new();
    for i in 0..200u32 {
        let prefix = format!("203.0.113.{}", i % 250 + 1);
        let report = target.apply(&adds(&[&prefix])).await.unwrap();
        assert_all_done(&report);
        ours.push(format!("{prefix}/32"));
        if target.lock_conflicts() > 0 && i >= 20 {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let theirs = writer.await.unwrap();
    assert!(
        target.lock_conflicts() > 0,
        "no conflict happened in {} writes",
        ours.len()
    );
    let (list, _) = set_addresses(&waf, "nb4", &id).await;
    let list: BTreeSet<String> = list.into_iter().collect();
    for entry in ours.iter().chain(theirs.iter()) {
        assert!(list.contains(entry), "{entry} was lost");
    }
    println!(
        "{} netban writes, {} lock conflicts retried, {} writes by the other writer",
        ours.len(),
        target.lock_conflicts(),
        theirs.len()
    );
}

#[tokio::test]
async fn waf_holds_at_most_ten_thousand_addresses() {
    let moto = Moto::start();
    let waf = moto.waf();
    // 9,995 foreign entries: 198.18.0.0 + i (198.18.0.0/15 has room).
    let foreign: Vec<String> = (0..9_995u32)
        .map(|i| format!("{}/32", std::net::Ipv4Addr::from(0xc612_0000 + i)))
        .collect();
    let id = create_set(&waf, "nb4", false, foreign).await;
    let mut target = AwsWaf::new("waf", waf_config(&moto, Some(("nb4", &id)), None)).unwrap();
    assert_eq!(target.info().capacity.v4, Some(10_000));
    target.prepare().await.unwrap();
    let bans: Vec<String> = (1..=10).map(|i| format!("203.0.113.{i}")).collect();
    let bans: Vec<&str> = bans.iter().map(String::as_str).collect();
    let report = target.apply(&adds(&bans)).await.unwrap();
    let done: Vec<Prefix> = report
        .items
        .iter()
        .filter(|i| i.step == Step::Add && matches!(i.result, ItemOutcome::Done { .. }))
        .map(|i| i.prefix)
        .collect();
    let failed = report
        .items
        .iter()
        .filter(|i| matches!(&i.result, ItemOutcome::Failed { reason } if reason.contains("full")))
        .count();
    assert_eq!((done.len(), failed), (5, 5), "{report:?}");
    let (list, _) = set_addresses(&waf, "nb4", &id).await;
    assert_eq!(list.len(), 10_000);
    // Room frees: the rest fit.
    let report = target
        .apply(&Plan {
            remove: done
                .iter()
                .map(|prefix| Held {
                    prefix: *prefix,
                    expiry: None,
                    handle: None,
                })
                .collect(),
            add: adds(&bans[5..]).add,
            refresh: vec![],
        })
        .await
        .unwrap();
    assert_all_done(&report);
    assert_eq!(set_addresses(&waf, "nb4", &id).await.0.len(), 10_000);
}
