//! Cisco IOS: 1,000 bans on one router (the IOS emulator), netban's way (one persistent
//! session) beside the seed's way (`bench/reference/ios_netmiko_ban.py`: a Python process and
//! a netmiko connection per ban). The reference costs over a second per ban, so it runs on
//! `NETBAN_BENCH_REF_BANS` bans (default 20) and its per-ban cost is scaled: every reference ban
//! is an independent process, so 1,000 of them cost 1,000 times as much.

use super::{adds, apply_all, size_from_env};
use crate::table::{Row, Table};
use crate::Context;
use netban_core::Expiry;
use netban_targets::cisco_ios::{Action, CiscoIos, CiscoIosConfig};
use netban_targets::Target;
use netban_testlab::peers::ios::{self, Router, PASSWORD, SECRET, USER};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BANS: usize = 1_000;

pub fn run(context: &Context, table: &mut Table) -> Result<(), String> {
    let ref_bans: usize = size_from_env("NETBAN_BENCH_REF_BANS", 20);
    let r = Router::start(&[]);
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    // 198.18.0.0/15: the benchmarking range.
    let addrs = |base: usize, n: usize| -> Vec<String> {
        (base..base + n)
            .map(|i| format!("198.18.{}.{}", i / 250, 1 + i % 250))
            .collect()
    };
    // Like the seed: permit entries in an ACL a class-map matches, IPv4 only.
    let target = |acl: &str| {
        CiscoIos::new(
            "bench",
            CiscoIosConfig {
                action: Action::Permit,
                acl: acl.into(),
                acl6: String::new(),
                timeout_secs: 60,
                password: Some(PASSWORD.into()),
                enable_secret: Some(SECRET.into()),
                host_key_fingerprint: Some(r.fingerprint.clone()),
                ..CiscoIosConfig::new("127.0.0.1", r.port, USER)
            },
        )
        .unwrap()
    };

    // netban: all bans in one apply, session opening included.
    let batch = addrs(0, BANS);
    let started = Instant::now();
    let batched = rt.block_on(async {
        let mut t = target("NBBATCH");
        apply_all(&mut t, &adds(&batch, Expiry::Never)).await;
        let elapsed = started.elapsed();
        assert_eq!(t.observe().await.unwrap().len(), BANS);
        elapsed
    });

    // netban: one apply per ban (bans arriving one at a time), on the persistent session.
    let single = addrs(BANS, BANS);
    let one_by_one = rt.block_on(async {
        let mut t = target("NBSINGLE");
        t.prepare().await.unwrap();
        let started = Instant::now();
        for ip in &single {
            apply_all(&mut t, &adds(std::slice::from_ref(ip), Expiry::Never)).await;
        }
        let elapsed = started.elapsed();
        assert_eq!(t.observe().await.unwrap().len(), BANS);
        elapsed
    });

    // The seed's way.
    let script = context.reference("ios_netmiko_ban.py");
    let reference = addrs(2 * BANS, ref_bans);
    let started = Instant::now();
    for ip in &reference {
        let ok = Command::new(ios::python())
            .arg(&script)
            .args(["--port", &r.port.to_string(), "--username", USER])
            .args([
                "--password",
                PASSWORD,
                "--secret",
                SECRET,
                "--acl",
                "SEED",
                "ban",
                ip,
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "reference ban of {ip} failed");
    }
    let reference_time = started.elapsed();
    let seed_acl = r.show("show ip access-lists SEED");
    assert_eq!(
        seed_acl
            .lines()
            .filter(|l| l.contains("permit ip host"))
            .count(),
        ref_bans
    );
    let per_ban = reference_time / ref_bans as u32;
    let scaled = per_ban * BANS as u32;

    table.section(
        "cisco_ios: bans applied to one router (fakenos 1.2.1 + netban's IOS emulator, \
         loopback); reference: netmiko, one process + SSH login per ban",
    );
    let per = |d: Duration| d / BANS as u32;
    table.row(
        Row::versus(
            "1,000 bans, one config session, per ban",
            per(batched),
            per_ban,
        )
        .note(format!("netban total {:.2} s", batched.as_secs_f64())),
    );
    table.row(
        Row::versus(
            "one apply per ban, persistent session, per ban",
            per(one_by_one),
            per_ban,
        )
        .note(format!("netban total {:.2} s", one_by_one.as_secs_f64())),
    );
    table.row(
        Row::versus("1,000 bans, one config session, total", batched, scaled).note(format!(
            "reference: {ref_bans} bans run ({:.2} s), scaled to 1,000",
            reference_time.as_secs_f64()
        )),
    );
    Ok(())
}
