//! The AWS targets (`aws_nacl`, `aws_waf`) against moto 5.2.5's server (see `aws/moto.rs`:
//! installed by scripts/setup.d/aws.sh, one server per test on a free loopback port).
//! Driver-level tests call the `Target` methods directly and check the result with the test's
//! own SDK client; the placement test runs the real `netban-daemon` with an `aws_nacl` target
//! whose overflow goes to nftables in a router namespace (build the binaries first:
//! `cargo build --workspace --bins`). The benchmarks (`--ignored`) compare with the seed's
//! approach, a Python process with boto3 per ban (bench/reference/aws_ban.py).
#![cfg(feature = "aws")]

#[path = "common/report.rs"]
mod report;

#[path = "aws/imds.rs"]
mod imds;
#[path = "aws/moto.rs"]
mod moto;

use aws_sdk_ec2::types::{Filter, RuleAction};
use aws_sdk_wafv2::types::{IpAddressVersion, Scope as WafScope};
use moto::{Moto, KEY_ID, REGION, SECRET};
use netban_core::placement::Capacity;
use netban_core::plan::{self, Held, Ownership, Plan};
use netban_core::{Expiry, Prefix};
use netban_targets::aws_nacl::{AwsNacl, AwsNaclConfig};
use netban_targets::aws_waf::{AwsWaf, AwsWafConfig, IpSetRef};
use netban_targets::{ItemOutcome, OwnershipKind, Step, Target, TargetError};
use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::plans::{adds, prefix as p};
use netban_testlab::{require_netns, wait_until, Edge, Host, Lab};
use report::assert_all_done;
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

/// One NACL entry as the test reads it: (rule, egress, deny, protocol, cidr).
type Row = (i32, bool, bool, String, String);

async fn rows(ec2: &aws_sdk_ec2::Client, acl: &str) -> Vec<Row> {
    let out = ec2
        .describe_network_acls()
        .network_acl_ids(acl)
        .send()
        .await
        .unwrap();
    let mut rows: Vec<Row> = out.network_acls()[0]
        .entries()
        .iter()
        .map(|e| {
            (
                e.rule_number().unwrap(),
                e.egress().unwrap(),
                e.rule_action() == Some(&RuleAction::Deny),
                e.protocol().unwrap_or("").to_string(),
                e.cidr_block()
                    .or(e.ipv6_cidr_block())
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Ingress entries inside 1..=99 as (rule, cidr), checking they are deny-all entries.
async fn netban_rows(ec2: &aws_sdk_ec2::Client, acl: &str) -> Vec<(i32, String)> {
    rows(ec2, acl)
        .await
        .into_iter()
        .filter(|r| !r.1 && (1..=99).contains(&r.0))
        .map(|(rule, _, deny, proto, cidr)| {
            assert!(deny && proto == "-1", "rule {rule} is not deny-all");
            (rule, cidr)
        })
        .collect()
}

async fn operator_rows(ec2: &aws_sdk_ec2::Client, acl: &str) -> Vec<Row> {
    rows(ec2, acl)
        .await
        .into_iter()
        .filter(|r| r.1 || !(1..=99).contains(&r.0))
        .collect()
}

async fn default_acl(ec2: &aws_sdk_ec2::Client) -> String {
    let out = ec2
        .describe_network_acls()
        .filters(Filter::builder().name("default").values("true").build())
        .send()
        .await
        .unwrap();
    out.network_acls()[0].network_acl_id().unwrap().to_string()
}

async fn add_entry(
    ec2: &aws_sdk_ec2::Client,
    acl: &str,
    rule: i32,
    action: RuleAction,
    cidr: &str,
) {
    let call = ec2
        .create_network_acl_entry()
        .network_acl_id(acl)
        .rule_number(rule)
        .protocol("-1")
        .rule_action(action)
        .egress(false);
    let call = if cidr.contains(':') {
        call.ipv6_cidr_block(cidr)
    } else {
        call.cidr_block(cidr)
    };
    call.send().await.unwrap();
}

async fn delete_entry(ec2: &aws_sdk_ec2::Client, acl: &str, rule: i32) {
    ec2.delete_network_acl_entry()
        .network_acl_id(acl)
        .rule_number(rule)
        .egress(false)
        .send()
        .await
        .unwrap();
}

fn nacl_config(moto: &Moto, acl: Option<&str>) -> AwsNaclConfig {
    AwsNaclConfig {
        network_acl_id: acl.map(str::to_string),
        region: Some(REGION.into()),
        endpoint_url: Some(moto.url()),
        credentials_file: Some(moto.credentials_file(KEY_ID, SECRET).display().to_string()),
        ..AwsNaclConfig::default()
    }
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
    assert!(m.contains("rule 100 sits below"), "{m}");

    // Fewer reserved rules than the operator keeps: the real quota would overflow.
    let tight = AwsNaclConfig {
        reserved_v4: 1,
        ..nacl_config(&moto, Some(&acl))
    };
    let m = config_error(AwsNacl::new("vpc", tight).unwrap().prepare().await);
    assert!(m.contains("reserved_v4 = 2"), "{m}");

    // A NACL that does not exist.
    let missing = nacl_config(&moto, Some("acl-00000000"));
    let m = config_error(AwsNacl::new("vpc", missing).unwrap().prepare().await);
    assert!(m.contains("acl-00000000"), "{m}");

    // An operator's allow rule inside netban's range: refused, and nothing is written.
    add_entry(&ec2, &acl, 50, RuleAction::Allow, "198.51.100.0/24").await;
    let mut nacl = AwsNacl::new("vpc", nacl_config(&moto, Some(&acl))).unwrap();
    let m = config_error(nacl.prepare().await);
    assert!(m.contains("rule 50"), "{m}");
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
    let out = std::process::Command::new(format!("{}/bin/python", moto::VENV))
        .args(["-c", script, &moto.url()])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
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

// ---- placement through the daemon -----------------------------------------------------------

const PORT: u16 = 8080;

fn nft_elements(host: &Host) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for set in ["ban4", "ban6", "net4", "net6"] {
        let Ok(out) = host.run("nft", ["-j", "list", "set", "inet", "netban", set]) else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for item in value["nftables"].as_array().into_iter().flatten() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                let inner = if elem.get("elem").is_some() {
                    &elem["elem"]["val"]
                } else {
                    elem
                };
                if let Some(s) = inner.as_str() {
                    all.insert(s.to_string());
                }
            }
        }
    }
    all
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
    let credentials = moto.credentials_file(KEY_ID, SECRET);
    // A NACL whose quota was raised to 40, limited to 20 netban slots by the common key.
    let config = format!(
        "[policy.escalation]\nenabled = false\n\n\
         [[targets]]\nname = \"vpc\"\ntype = \"aws_nacl\"\nnetwork_acl_id = \"{acl}\"\n\
         region = \"{REGION}\"\nendpoint_url = \"{}\"\ncredentials_file = \"{}\"\n\
         max_rules_v4 = 40\ncapacity_v4 = 20\nfallback = \"host\"\n\n\
         [[targets]]\nname = \"host\"\ntype = \"nftables\"\nnetns = \"{}\"\nfallback_only = true\n",
        moto.url(),
        credentials.display(),
        edge.router.name()
    );
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
        in_nacl() == want && nft_elements(&edge.router).len() == 40
    });
    let on_router = nft_elements(&edge.router);
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
        let router = nft_elements(&edge.router);
        in_nacl() == want2 && router.len() == 39 && !router.contains("203.0.113.120")
    });
    assert!(promoted, "nacl {:?}\n{}", in_nacl(), daemon.log());
    assert_eq!(rt.block_on(operator_rows(&ec2, &acl)), operator);
    let status = daemon.status();
    assert_eq!(status["targets"][0]["overflow"], 39, "{status}");
}

// ---- WAF ------------------------------------------------------------------------------------

fn waf_config(moto: &Moto, v4: Option<(&str, &str)>, v6: Option<(&str, &str)>) -> AwsWafConfig {
    let set = |s: Option<(&str, &str)>| {
        s.map(|(name, id)| IpSetRef {
            name: name.into(),
            id: id.into(),
        })
    };
    AwsWafConfig {
        scope: netban_targets::aws_waf::Scope::Regional,
        ipset_v4: set(v4),
        ipset_v6: set(v6),
        min_write_interval_ms: 0,
        max_addresses: 10_000,
        region: Some(REGION.into()),
        endpoint_url: Some(moto.url()),
        profile: None,
        credentials_file: Some(moto.credentials_file(KEY_ID, SECRET).display().to_string()),
    }
}

/// Creates an IP set; returns its id.
async fn create_set(
    waf: &aws_sdk_wafv2::Client,
    name: &str,
    v6: bool,
    addresses: Vec<String>,
) -> String {
    let out = waf
        .create_ip_set()
        .name(name)
        .scope(WafScope::Regional)
        .ip_address_version(if v6 {
            IpAddressVersion::Ipv6
        } else {
            IpAddressVersion::Ipv4
        })
        .set_addresses(Some(addresses))
        .description("the operator's set")
        .send()
        .await
        .unwrap();
    out.summary().unwrap().id().unwrap().to_string()
}

async fn set_addresses(
    waf: &aws_sdk_wafv2::Client,
    name: &str,
    id: &str,
) -> (Vec<String>, Option<String>) {
    let out = waf
        .get_ip_set()
        .name(name)
        .id(id)
        .scope(WafScope::Regional)
        .send()
        .await
        .unwrap();
    let set = out.ip_set().unwrap();
    (
        set.addresses().to_vec(),
        set.description().map(str::to_string),
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
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

// ---- benchmarks (run with --ignored --nocapture, in release) ------------------------------

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bench/reference/aws_ban.py"
);
/// Reference bans run for the burst figures: one process per ban costs the same every time,
/// so the 1,000-ban figure is extrapolated from this many (and said so in the table).
const REFERENCE_SAMPLE: usize = 100;

fn reference(moto: &Moto, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = std::process::Command::new(format!("{}/bin/python", moto::VENV))
        .arg(REFERENCE)
        .args(["--endpoint", &moto.url()])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn table(title: &str, rows: &[(&str, Duration, Duration)]) {
    println!("\n{title}");
    println!(
        "{:<46} {:>12} {:>14} {:>8}",
        "", "netban ms", "reference ms", "ratio"
    );
    for (name, ours, theirs) in rows {
        println!(
            "{:<46} {:>12.1} {:>14.1} {:>7.1}x",
            name,
            ms(*ours),
            ms(*theirs),
            theirs.as_secs_f64() / ours.as_secs_f64().max(1e-9)
        );
    }
}

fn v4(i: usize) -> String {
    // 203.0.113.1 + i: the attackers' range, running on into 203.0.114.x for large i (ban
    // entries only; no traffic is sent to them).
    format!("{}", std::net::Ipv4Addr::from(0xcb00_7101 + i as u32))
}

#[test]
#[ignore]
fn bench_aws_nacl() {
    require_netns!();
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = moto.ec2();
    let acl = rt.block_on(default_acl(&ec2));
    const PER_BAN: usize = 15;

    // Per ban: one apply of one add (DescribeNetworkAcls + CreateNetworkAclEntry).
    let mut nacl = AwsNacl::new("vpc", nacl_config(&moto, Some(&acl))).unwrap();
    rt.block_on(nacl.prepare()).unwrap();
    let started = Instant::now();
    for i in 0..PER_BAN {
        let report = rt.block_on(nacl.apply(&adds(&[&v4(i)]))).unwrap();
        assert_all_done(&report);
    }
    let ours_one = started.elapsed() / PER_BAN as u32;
    let seen = rt.block_on(nacl.observe()).unwrap();
    assert_all_done(&rt.block_on(nacl.apply(&removes(&seen))).unwrap());
    let db = moto.dir.path().join("ref.db");
    let db = db.to_str().unwrap();
    let mut theirs = Duration::ZERO;
    for i in 0..PER_BAN {
        theirs += reference(&moto, &["nacl", "--acl", &acl, "--db", db, &v4(100 + i)]);
    }
    let theirs_one = theirs / PER_BAN as u32;
    moto.reset();

    // Burst: 1,000 bans, 20 NACL slots, the rest to nftables in a namespace.
    let acl = rt.block_on(default_acl(&ec2));
    let edge = Lab::edge_topology("awsbench").expect("lab");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[policy.escalation]\nenabled = false\n\n\
         [[targets]]\nname = \"vpc\"\ntype = \"aws_nacl\"\nnetwork_acl_id = \"{acl}\"\n\
         region = \"{REGION}\"\nendpoint_url = \"{}\"\ncredentials_file = \"{}\"\n\
         max_rules_v4 = 40\ncapacity_v4 = 20\nfallback = \"host\"\n\n\
         [[targets]]\nname = \"host\"\ntype = \"nftables\"\nnetns = \"{}\"\nfallback_only = true\n",
        moto.url(),
        moto.credentials_file(KEY_ID, SECRET).display(),
        edge.router.name()
    );
    let bins = Binaries::locate();
    let daemon = Daemon::start(&bins, &dir.path().join("netban"), &config).expect("daemon");
    let input: String = (0..1_000).map(|i| format!("{}\n", v4(i))).collect();
    let started = Instant::now();
    let out = daemon.client_with_stdin(&["ban", "--stdin", "--bantime", "600"], Some(&input));
    assert!(out.status.success(), "{out:?}");
    let converged = wait_until(Duration::from_secs(120), Duration::from_millis(20), || {
        rt.block_on(netban_rows(&ec2, &acl)).len() == 20 && nft_elements(&edge.router).len() == 980
    });
    let ours_burst = started.elapsed();
    assert!(converged, "{}", daemon.log());
    drop(daemon);
    moto.reset();

    // The reference: one process per ban; past 20 blocks it runs the fallback command.
    let acl = rt.block_on(default_acl(&ec2));
    edge.server
        .run_ok(
            "nft",
            ["add table inet ref; add set inet ref ban4 { type ipv4_addr; }"],
        )
        .expect("reference table");
    let fallback = format!(
        "ip netns exec {} nft add element inet ref ban4 {{ {{ip}} }}",
        edge.server.name()
    );
    let rdb = moto.dir.path().join("burst.db");
    let rdb = rdb.to_str().unwrap();
    let (mut to_nacl, mut to_host) = (Duration::ZERO, Duration::ZERO);
    for i in 0..REFERENCE_SAMPLE {
        let d = reference(
            &moto,
            &[
                "nacl",
                "--acl",
                &acl,
                "--db",
                rdb,
                "--fallback",
                &fallback,
                &v4(i),
            ],
        );
        if i < 20 {
            to_nacl += d;
        } else {
            to_host += d;
        }
    }
    assert_eq!(rt.block_on(netban_rows(&ec2, &acl)).len(), 20);
    let per_host = to_host / (REFERENCE_SAMPLE - 20) as u32;
    let theirs_burst = to_nacl + per_host * 980;
    table(
        "AWS NACL (moto 5.2.5 on loopback; reference: bench/reference/aws_ban.py, boto3, one process per ban)",
        &[
            ("one ban (driver apply vs one process)", ours_one, theirs_one),
            (
                "burst of 1,000 bans: 20 NACL + 980 fallback",
                ours_burst,
                theirs_burst,
            ),
        ],
    );
    println!(
        "netban's burst: the real daemon, `netban ban --stdin` to both targets converged \
         (placement + 20 CreateNetworkAclEntry + one nft transaction of 980).\n\
         reference burst: measured {REFERENCE_SAMPLE} processes (20 to the NACL: {:.0} ms, \
         {} to nftables: {:.0} ms each) and extrapolated to 980 fallback bans",
        ms(to_nacl),
        REFERENCE_SAMPLE - 20,
        ms(per_host)
    );
}

#[test]
#[ignore]
fn bench_aws_waf() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let waf = moto.waf();
    let id = rt.block_on(create_set(&waf, "nb4", false, vec![]));
    const PER_BAN: usize = 15;
    // Pacing off to time the work of one write (GetIPSet + UpdateIPSet).
    let mut target = AwsWaf::new("waf", waf_config(&moto, Some(("nb4", &id)), None)).unwrap();
    rt.block_on(target.prepare()).unwrap();
    let started = Instant::now();
    for i in 0..PER_BAN {
        assert_all_done(&rt.block_on(target.apply(&adds(&[&v4(i)]))).unwrap());
    }
    let ours_one = started.elapsed() / PER_BAN as u32;
    let mut theirs = Duration::ZERO;
    for i in 0..PER_BAN {
        theirs += reference(&moto, &["waf", "--name", "nb4", "--id", &id, &v4(100 + i)]);
    }
    let theirs_one = theirs / PER_BAN as u32;

    // Burst: 1,000 addresses into a fresh set, with the default pacing (1 write/s).
    let id = rt.block_on(create_set(&waf, "burst", false, vec![]));
    let mut config = waf_config(&moto, Some(("burst", &id)), None);
    config.min_write_interval_ms = 1_000;
    let mut target = AwsWaf::new("waf", config).unwrap();
    rt.block_on(target.prepare()).unwrap();
    let bans: Vec<String> = (0..1_000).map(v4).collect();
    let bans: Vec<&str> = bans.iter().map(String::as_str).collect();
    let started = Instant::now();
    assert_all_done(&rt.block_on(target.apply(&adds(&bans))).unwrap());
    let ours_burst = started.elapsed();
    assert_eq!(
        rt.block_on(set_addresses(&waf, "burst", &id)).0.len(),
        1_000
    );
    let rid = rt.block_on(create_set(&waf, "ref", false, vec![]));
    let mut sample = Duration::ZERO;
    for ban in bans.iter().take(REFERENCE_SAMPLE) {
        sample += reference(&moto, &["waf", "--name", "ref", "--id", &rid, ban]);
    }
    let theirs_burst = sample / REFERENCE_SAMPLE as u32 * 1_000;
    table(
        "AWS WAFv2 IP set (moto 5.2.5 on loopback; reference: boto3, one process per ban)",
        &[
            ("one ban (GetIPSet + UpdateIPSet)", ours_one, theirs_one),
            ("burst of 1,000 addresses", ours_burst, theirs_burst),
        ],
    );
    println!(
        "netban's burst: one apply, {} write(s). reference burst: {REFERENCE_SAMPLE} processes \
         measured ({:.0} ms), extrapolated to 1,000 (and it makes 1,000 writes where AWS allows \
         about one per second)",
        target.writes(),
        ms(sample)
    );
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
         [[targets]]\nname = \"waf\"\ntype = \"aws_waf\"\nscope = \"REGIONAL\"\n\
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
    assert_eq!(daemon.status()["targets"][0]["health"], "ok");
}

fn set_of(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}
