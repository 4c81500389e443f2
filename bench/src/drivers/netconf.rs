//! NETCONF: 1,000 bans, netban's one session, one edit-config and one commit, beside the seed's
//! way (`bench/reference/netconf_ban.py`: a Python process per ban, each with its own ncclient
//! session, edit-config and commit), against netconfd behind sshd on loopback. The reference
//! runs `NETBAN_BENCH_REF_BANS` bans (default 100, each costs a process start and an SSH
//! session) and its 1,000-ban time is scaled from its per-ban time. Both write the test
//! schema's unbounded `ipv4-prefix` list.

use super::{adds, apply_all, size_from_env};
use crate::table::{Row, Table};
use crate::Context;
use netban_core::Expiry;
use netban_targets::netconf::{Netconf, NetconfConfig};
use netban_targets::Target;
use netban_testlab::peers::netconfd::Server;
use netban_testlab::{output_ok, venv_bin};
use std::process::Command;
use std::time::Instant;

const BANS: u32 = 1000;

pub fn run(context: &Context, table: &mut Table) -> Result<(), String> {
    let python = venv_bin("netconf", "python");
    let script = context.reference("netconf_ban.py");
    let ref_bans: u32 = size_from_env("NETBAN_BENCH_REF_BANS", 100);
    let addr = |i: u32| format!("198.18.{}.{}", i / 250, i % 250 + 1);

    // netban: one target, one apply of 1,000 adds (generic preset on the ipv4-prefix list).
    let server = Server::start();
    let settings = server.generic_ipv4_list_settings("blacklist-fail2ban", "internet");
    let config: NetconfConfig = serde_json::from_value(settings).map_err(|e| e.to_string())?;
    let list: Vec<String> = (0..BANS).map(addr).collect();
    let plan = adds(&list, Expiry::Never);
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let observed = rt.block_on(async {
        let mut t = Netconf::new("bench", config).unwrap();
        apply_all(&mut t, &plan).await;
        let n = t.observe().await.unwrap().len();
        t.shutdown().await;
        n
    });
    let netban = started.elapsed();
    assert_eq!(observed, BANS as usize);

    // The seed's way, on a fresh server.
    let server = Server::start();
    let started = Instant::now();
    for i in 0..ref_bans {
        output_ok(
            Command::new(&python)
                .arg(&script)
                .args([
                    "--port",
                    &server.port.to_string(),
                    "--user",
                    "root",
                    "--key",
                ])
                .arg(server.key())
                .args([
                    "--tenant",
                    "blacklist-fail2ban",
                    "--neighborhood",
                    "internet",
                ])
                .args(["--leaf", "ipv4-prefix"])
                .arg(addr(i)),
        );
    }
    let reference = started.elapsed();
    let per_ban = reference / ref_bans;
    let scaled = per_ban * BANS;

    table.section(&format!(
        "netconf: netconfd behind sshd on loopback, {BANS} bans; reference: ncclient, one \
         process + session + commit per ban"
    ));
    table.row(
        Row::versus(
            format!("{BANS} bans: 1 session, 1 edit-config, 1 commit"),
            netban,
            scaled,
        )
        .note(format!(
            "reference: {ref_bans} bans run ({:.3} s), scaled to {BANS}",
            reference.as_secs_f64()
        )),
    );
    table.row(Row::versus("per ban", netban / BANS, per_ban));
    Ok(())
}
