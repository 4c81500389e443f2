//! Throwaway hosts in network namespaces, for netban's integration tests and demo lab.
//!
//! A [`Lab`] owns a set of network namespaces ("hosts") with one unique name prefix, the veth
//! links between them and every process started in them. Dropping the lab (or calling
//! [`Lab::cleanup`]) kills those processes by PID and deletes the namespaces, so a failing
//! test leaves nothing behind. [`Lab::edge_topology`] builds the standard picture netban is
//! tested in: an attacker and a legitimate client behind a router that protects a server.
//!
//! What it is not: a network emulator or a general container tool. It shells out to
//! `ip` (iproute2) and `sysctl`, needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), and probes with
//! small `python3` one-liners run inside the namespaces (the machine has no `ping`).
//!
//! Safety rules it keeps (see the project's field notes):
//! - every address and link lives inside the lab's namespaces: veth pairs are created directly
//!   in their namespaces, nothing is added to the root namespace, and topologies use only
//!   specific routes (no default route), from 203.0.113.0/24 (attackers), 198.51.100.0/24
//!   (servers), 198.18.0.0/15 (links) and 2001:db8::/32. 192.0.2.0/24 is never used;
//! - readiness is waited for by bounded polling ([`wait_until`]), never by fixed sleeps;
//! - namespaces left behind by a lab whose test process died are swept by the next
//!   [`Lab::new`] (names carry the owning PID).
//!
//! [`peers`] runs the real peer of each driver (ExaFS, moto, BIRD/FRR, the IOS emulator,
//! netconfd) for the driver tests, the end-to-end tests and the benchmarks alike; [`nft`] reads
//! back what netban's nftables table holds.
//!
//! Tests that need namespaces start with [`require_netns!`], which skips the test with a
//! printed line where namespaces cannot be created, except under `CI=true` or
//! `NETBAN_REQUIRE_NETNS=1`, where it fails instead so that a broken CI machine is noticed.

mod edge;
pub mod fail2ban;
mod host;
mod lab;
pub mod netban;
pub mod nft;
pub mod peers;
pub mod plans;
pub mod postgres;
mod probe;

pub use edge::Edge;
pub use host::{Host, Process};
pub use lab::{Lab, Link};

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that the kernel handed out a moment ago and is free again, for a
/// peer that must be told its port on its command line.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A program in the Python venv of a driver's peer (`.venv-DRIVER` at the repository root,
/// made by `scripts/setup.d/DRIVER.sh`).
///
/// # Panics
/// If it is not there, saying which setup script installs it.
pub fn venv_bin(driver: &str, program: &str) -> PathBuf {
    let path = repo_root()
        .join(format!(".venv-{driver}"))
        .join("bin")
        .join(program);
    assert!(
        path.exists(),
        "{} missing: run scripts/setup.d/{driver}.sh (or scripts/setup.sh)",
        path.display()
    );
    path
}

/// Runs `cmd` to completion (stdin empty) and returns its stdout.
///
/// # Panics
/// When it cannot start or exits non-zero, with its stderr: in a test or a benchmark a failing
/// helper program is a broken setup.
pub fn output_ok(cmd: &mut std::process::Command) -> String {
    let what = format!("{cmd:?}");
    lab::run_checked(cmd, &what).unwrap_or_else(|e| panic!("{e}"))
}

/// The repository's root directory (for its scripts and reference files).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Polls `condition` every `poll_interval` until it returns true or `timeout` has passed.
/// Returns whether it became true. The condition is always checked at least once, and once more
/// at the deadline, so a slow poll never loses the last chance.
pub fn wait_until(
    timeout: Duration,
    poll_interval: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll_interval.min(deadline - now));
    }
}

/// Whether this process may create network namespaces: `Ok(())`, or why not. Checked once
/// (by creating and deleting a probe namespace) and remembered.
pub fn netns_available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(lab::probe_netns).clone()
}

/// True when namespace tests must run rather than skip (`CI=true` or `NETBAN_REQUIRE_NETNS=1`).
pub fn netns_required() -> bool {
    let set = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v == value);
    set("CI", "true") || set("NETBAN_REQUIRE_NETNS", "1")
}

/// Skips the calling test (prints why and returns) when network namespaces cannot be created
/// here; panics instead when [`netns_required`] says they must be available.
#[macro_export]
macro_rules! require_netns {
    () => {
        if let Err(why) = $crate::netns_available() {
            if $crate::netns_required() {
                panic!("network namespaces are required here (CI) but unavailable: {why}");
            }
            eprintln!("skipping: network namespaces unavailable ({why})");
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn wait_until_returns_as_soon_as_true() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let ok = wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
            calls.set(calls.get() + 1);
            calls.get() == 3
        });
        assert!(ok);
        assert_eq!(calls.get(), 3);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn wait_until_gives_up_at_the_deadline() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let ok = wait_until(Duration::from_millis(50), Duration::from_millis(10), || {
            calls.set(calls.get() + 1);
            false
        });
        assert!(!ok);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(calls.get() >= 2, "checked at the start and at the deadline");
    }
}
