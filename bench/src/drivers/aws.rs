//! AWS: the NACL and WAF drivers against moto 5.2.5 beside the seed's approach, a Python
//! process with boto3 per ban (`bench/reference/aws_ban.py`). The NACL burst runs the real
//! daemon with 20 NACL slots and the overflow to nftables in a router namespace.

use super::apply_all;
use crate::table::{Row, Table};
use crate::Context;
use netban_core::plan::Plan;
use netban_targets::aws_nacl::{AwsNacl, AwsNaclConfig};
use netban_targets::aws_waf::{AwsWaf, AwsWafConfig};
use netban_targets::Target;
use netban_testlab::netban::Daemon;
use netban_testlab::peers::moto::{self, Moto};
use netban_testlab::plans::adds;
use netban_testlab::{nft, output_ok, venv_bin, wait_until, Lab};
use serde_json::json;
use std::time::{Duration, Instant};

/// Reference bans run for the burst figures: one process per ban costs the same every time,
/// so the 1,000-ban figure is extrapolated from this many (and said so in the table).
const REFERENCE_SAMPLE: usize = 100;

pub fn run(context: &Context, table: &mut Table) -> Result<(), String> {
    nacl(context, table);
    waf(context, table);
    Ok(())
}

fn reference(context: &Context, moto: &Moto, args: &[&str]) -> Duration {
    let started = Instant::now();
    output_ok(
        std::process::Command::new(venv_bin("aws", "python"))
            .arg(context.reference("aws_ban.py"))
            .args(["--endpoint", &moto.url()])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing"),
    );
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// 203.0.113.1 + i: the attackers' range, running on into 203.0.114.x for large i (ban
/// entries only; no traffic is sent to them).
fn v4(i: usize) -> String {
    format!("{}", std::net::Ipv4Addr::from(0xcb00_7101 + i as u32))
}

fn nacl_config(moto: &Moto, acl: &str) -> AwsNaclConfig {
    serde_json::from_value(moto.settings(json!({ "network_acl_id": acl }))).unwrap()
}

fn waf_config(moto: &Moto, name: &str, id: &str) -> AwsWafConfig {
    let settings = json!({
        "waf_scope": "REGIONAL", "ipset_v4": { "name": name, "id": id },
        "min_write_interval_ms": 0, "max_addresses": 10_000,
    });
    serde_json::from_value(moto.settings(settings)).unwrap()
}

fn nacl(context: &Context, table: &mut Table) {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = moto.ec2();
    let acl = rt.block_on(moto::default_acl(&ec2));
    const PER_BAN: usize = 15;

    // Per ban: one apply of one add (DescribeNetworkAcls + CreateNetworkAclEntry).
    let mut nacl = AwsNacl::new("vpc", nacl_config(&moto, &acl)).unwrap();
    rt.block_on(nacl.prepare()).unwrap();
    let started = Instant::now();
    for i in 0..PER_BAN {
        rt.block_on(apply_all(&mut nacl, &adds(&[&v4(i)])));
    }
    let ours_one = started.elapsed() / PER_BAN as u32;
    let seen = rt.block_on(nacl.observe()).unwrap();
    let removes = Plan {
        remove: seen,
        ..Plan::default()
    };
    rt.block_on(apply_all(&mut nacl, &removes));
    let db = moto.dir.path().join("ref.db");
    let db = db.to_str().unwrap();
    let mut theirs = Duration::ZERO;
    for i in 0..PER_BAN {
        theirs += reference(
            context,
            &moto,
            &["nacl", "--acl", &acl, "--db", db, &v4(100 + i)],
        );
    }
    let theirs_one = theirs / PER_BAN as u32;
    moto.reset();

    // Burst: 1,000 bans, 20 NACL slots, the rest to nftables in a namespace.
    let acl = rt.block_on(moto::default_acl(&ec2));
    let edge = Lab::edge_topology("awsbench").expect("lab");
    let dir = tempfile::tempdir().unwrap();
    let config = moto.nacl_overflowing_to_nftables(&acl, edge.router.name());
    let daemon = Daemon::start(&context.bins, &dir.path().join("netban"), &config).expect("daemon");
    let input: String = (0..1_000).map(|i| format!("{}\n", v4(i))).collect();
    let started = Instant::now();
    let out = daemon.client_with_stdin(&["ban", "--stdin", "--bantime", "600"], Some(&input));
    assert!(out.status.success(), "{out:?}");
    let converged = wait_until(Duration::from_secs(120), Duration::from_millis(20), || {
        rt.block_on(moto::netban_rows(&ec2, &acl)).len() == 20
            && nft::elements(&edge.router).len() == 980
    });
    let ours_burst = started.elapsed();
    assert!(converged, "{}", daemon.log());
    drop(daemon);
    moto.reset();

    // The reference: one process per ban; past 20 blocks it runs the fallback command.
    let acl = rt.block_on(moto::default_acl(&ec2));
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
            context,
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
    assert_eq!(rt.block_on(moto::netban_rows(&ec2, &acl)).len(), 20);
    let per_host = to_host / (REFERENCE_SAMPLE - 20) as u32;
    let theirs_burst = to_nacl + per_host * 980;
    table.section(
        "aws_nacl: moto 5.2.5 on loopback; reference: bench/reference/aws_ban.py, boto3, one \
         process per ban",
    );
    table.row(Row::versus(
        "one ban (driver apply vs one process)",
        ours_one,
        theirs_one,
    ));
    table.row(Row::versus(
        "burst of 1,000 bans: 20 NACL + 980 fallback",
        ours_burst,
        theirs_burst,
    ));
    table.text(&format!(
        "netban's burst: the real daemon, `netban ban --stdin` to both targets converged \
         (placement + 20 CreateNetworkAclEntry + one nft transaction of 980).\n\
         reference burst: measured {REFERENCE_SAMPLE} processes (20 to the NACL: {:.0} ms, \
         {} to nftables: {:.0} ms each) and extrapolated to 980 fallback bans",
        ms(to_nacl),
        REFERENCE_SAMPLE - 20,
        ms(per_host)
    ));
}

fn waf(context: &Context, table: &mut Table) {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let waf = moto.waf();
    let id = rt.block_on(moto::create_set(&waf, "nb4", false, vec![]));
    const PER_BAN: usize = 15;
    // Pacing off to time the work of one write (GetIPSet + UpdateIPSet).
    let mut target = AwsWaf::new("waf", waf_config(&moto, "nb4", &id)).unwrap();
    rt.block_on(target.prepare()).unwrap();
    let started = Instant::now();
    for i in 0..PER_BAN {
        rt.block_on(apply_all(&mut target, &adds(&[&v4(i)])));
    }
    let ours_one = started.elapsed() / PER_BAN as u32;
    let mut theirs = Duration::ZERO;
    for i in 0..PER_BAN {
        theirs += reference(
            context,
            &moto,
            &["waf", "--name", "nb4", "--id", &id, &v4(100 + i)],
        );
    }
    let theirs_one = theirs / PER_BAN as u32;

    // Burst: 1,000 addresses into a fresh set, with the default pacing (1 write/s).
    let id = rt.block_on(moto::create_set(&waf, "burst", false, vec![]));
    let mut config = waf_config(&moto, "burst", &id);
    config.min_write_interval_ms = 1_000;
    let mut target = AwsWaf::new("waf", config).unwrap();
    rt.block_on(target.prepare()).unwrap();
    let bans: Vec<String> = (0..1_000).map(v4).collect();
    let bans: Vec<&str> = bans.iter().map(String::as_str).collect();
    let started = Instant::now();
    rt.block_on(apply_all(&mut target, &adds(&bans)));
    let ours_burst = started.elapsed();
    assert_eq!(
        rt.block_on(moto::set_addresses(&waf, "burst", &id)).0.len(),
        1_000
    );
    let rid = rt.block_on(moto::create_set(&waf, "ref", false, vec![]));
    let mut sample = Duration::ZERO;
    for ban in bans.iter().take(REFERENCE_SAMPLE) {
        sample += reference(context, &moto, &["waf", "--name", "ref", "--id", &rid, ban]);
    }
    let theirs_burst = sample / REFERENCE_SAMPLE as u32 * 1_000;
    table.section(
        "aws_waf: WAFv2 IP set, moto 5.2.5 on loopback; reference: boto3, one process per ban",
    );
    table.row(Row::versus(
        "one ban (GetIPSet + UpdateIPSet)",
        ours_one,
        theirs_one,
    ));
    table.row(Row::versus(
        "burst of 1,000 addresses",
        ours_burst,
        theirs_burst,
    ));
    table.text(&format!(
        "netban's burst: one apply, {} write(s). reference burst: {REFERENCE_SAMPLE} processes \
         measured ({:.0} ms), extrapolated to 1,000 (and it makes 1,000 writes where AWS allows \
         about one per second)",
        target.writes(),
        ms(sample)
    ));
}
