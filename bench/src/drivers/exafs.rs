//! ExaFS: netban's driver beside the seed's way (one Python process per ban,
//! `bench/reference/exafs_ban.py`), each against a fresh ExaFS 1.4.1: the cost of one ban, and
//! a burst of 1,000 bans until all rules exist. `NETBAN_BENCH_BURST` changes the burst size.

use super::{adds, apply_all, size_from_env};
use crate::table::{Row, Table};
use crate::Context;
use netban_core::plan::Plan;
use netban_targets::exafs::{Exafs, ExafsConfig, KeySetting, MAX_BATCH};
use netban_targets::Target;
use netban_testlab::peers::exafs::{Peer, COMMUNITY, KEY};
use netban_testlab::plans::in_secs;
use netban_testlab::{output_ok, venv_bin};
use std::path::Path;
use std::time::Instant;

fn target(peer: &Peer) -> Exafs {
    let key = peer.key_file("key-netban", KEY, 0o600);
    Exafs::new(
        "rtbh",
        ExafsConfig {
            // The lab's ExaFS serves plain http on loopback.
            allow_insecure_http: true,
            ..ExafsConfig::new(&peer.url(), KeySetting::File(key), COMMUNITY)
        },
    )
    .expect("driver")
}

pub fn run(context: &Context, table: &mut Table) -> Result<(), String> {
    let burst: u32 = size_from_env("NETBAN_BENCH_BURST", 1_000);
    let singles = 20u32;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let addr = |i: u32| -> String {
        if i < 250 {
            format!("203.0.113.{}", i + 1)
        } else {
            format!("2001:db8::{:x}", i + 1)
        }
    };

    // netban: one driver, one apply per single ban, then one plan for the burst.
    let peer = Peer::start();
    let mut t = target(&peer);
    rt.block_on(t.prepare()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..singles {
        rt.block_on(apply_all(&mut t, &adds(&[addr(i)], in_secs(3_600))));
    }
    let netban_single = started.elapsed() / singles;
    drop(t);
    drop(peer);

    let peer = Peer::start();
    let mut t = target(&peer);
    rt.block_on(t.prepare()).map_err(|e| e.to_string())?;
    let all: Vec<String> = (0..burst).map(addr).collect();
    let plans: Vec<Plan> = all
        .chunks(MAX_BATCH)
        .map(|chunk| adds(chunk, in_secs(3_600)))
        .collect();
    let started = Instant::now();
    for plan in &plans {
        rt.block_on(apply_all(&mut t, plan));
    }
    let netban_burst = started.elapsed();
    assert_eq!(rt.block_on(peer.api().rules()).len(), burst as usize);
    drop(t);
    drop(peer);

    // The seed's way: one Python process per ban (as fail2ban runs its action), sequential.
    let script = context.reference("exafs_ban.py");
    let run_reference = |peer: &Peer, state: &Path, ip: &str| {
        output_ok(
            std::process::Command::new(venv_bin("exafs", "python"))
                .arg(&script)
                .args(["--url", &peer.url(), "--community", &COMMUNITY.to_string()])
                .arg("--key-file")
                .arg(peer.dir.path().join("key-ref"))
                .arg("--state-dir")
                .arg(state)
                .args(["ban", ip, "3600"]),
        );
    };
    let peer = Peer::start();
    peer.key_file("key-ref", KEY, 0o600);
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..singles {
        run_reference(&peer, state.path(), &addr(i));
    }
    let seed_single = started.elapsed() / singles;
    drop(peer);

    let peer = Peer::start();
    peer.key_file("key-ref", KEY, 0o600);
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..burst {
        run_reference(&peer, state.path(), &addr(i));
    }
    let seed_burst = started.elapsed();
    assert_eq!(rt.block_on(peer.api().rules()).len(), burst as usize);

    table.section(
        "exafs: ExaFS 1.4.1 (Flask dev server, SQLite) on loopback; reference: \
         bench/reference/exafs_ban.py, one Python process per ban",
    );
    table.row(Row::versus(
        format!("one ban (mean of {singles})"),
        netban_single,
        seed_single,
    ));
    table.row(Row::versus(
        format!("burst of {burst} until all exist"),
        netban_burst,
        seed_burst,
    ));
    table.row(Row::versus(
        "per ban in the burst",
        netban_burst / burst,
        seed_burst / burst,
    ));
    Ok(())
}
