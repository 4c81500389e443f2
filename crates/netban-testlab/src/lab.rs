//! The lab: a unique name prefix, the namespaces made under it, and their cleanup.

use crate::host::Host;
use crate::wait_until;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Every lab namespace name starts with this, then the owning PID and a dash.
const NAME_PREFIX: &str = "nbl";
/// Where iproute2 keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// Longest host label; keeps namespace names well under 64 characters.
const LABEL_MAX: usize = 16;

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// What a lab and its hosts share: what to clean up.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Namespaces created, in creation order (deleted in reverse).
    namespaces: Vec<String>,
    /// Labels in use, so two hosts cannot share a namespace.
    labels: HashSet<String>,
    /// PIDs of processes started through `Host::spawn*`.
    pids: Vec<u32>,
    /// Links made so far; numbers interface names.
    links: usize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock must not stop cleanup.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn track_pid(&self, pid: u32) {
        self.state().pids.push(pid);
    }
}

/// A set of throwaway network namespaces with one unique name prefix. Dropping it kills the
/// processes started in its namespaces and deletes the namespaces.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    shared: Arc<Shared>,
}

/// The two interface names of a veth link (`a` in the first host, `b` in the second).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub a: String,
    pub b: String,
}

impl Lab {
    /// A new, empty lab. `tag` (letters and digits are kept, up to 12) makes its namespaces
    /// recognisable in `ip netns list`: `nbl{pid}-{n}-{tag}-{host}`. Also sweeps namespaces
    /// left by labs of test processes that no longer exist.
    pub fn new(tag: &str) -> io::Result<Lab> {
        sweep_stale();
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .take(12)
            .collect();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NAME_PREFIX}{}-{n}-{tag}", std::process::id());
        Ok(Lab {
            prefix,
            shared: Arc::default(),
        })
    }

    /// The unique prefix of this lab's namespace names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates a host: a namespace named `{prefix}-{label}` with `lo` up and IPv6 duplicate
    /// address detection off (addresses usable at once). `label`: lowercase letters, digits
    /// and '-', at most 16 characters, unique in the lab.
    pub fn host(&self, label: &str) -> io::Result<Host> {
        let label_ok = !label.is_empty()
            && label.len() <= LABEL_MAX
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !label_ok {
            return Err(invalid(format!(
                "host label {label:?}: use 1-{LABEL_MAX} lowercase letters, digits or '-'"
            )));
        }
        let netns = format!("{}-{label}", self.prefix);
        {
            let mut state = self.shared.state();
            if !state.labels.insert(label.to_string()) {
                return Err(invalid(format!(
                    "host {label:?} already exists in this lab"
                )));
            }
            // Recorded before it exists, so a failure halfway is still cleaned up.
            state.namespaces.push(netns.clone());
        }
        ip(&["netns", "add", &netns])?;
        let host = Host::new(label, &netns, Arc::clone(&self.shared));
        host.ip(&["link", "set", "lo", "up"])?;
        host.sysctl(&[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ])?;
        Ok(host)
    }

    /// Connects two hosts with a veth pair, created directly inside their namespaces, gives
    /// each end the CIDR addresses listed ("203.0.113.10/24", "2001:db8:1::10/64") and brings
    /// both up. Interface names are `v{n}-{peer label}` (cut to 15 characters).
    pub fn link(&self, a: &Host, a_addrs: &[&str], b: &Host, b_addrs: &[&str]) -> io::Result<Link> {
        let link = self.veth(a, b)?;
        a.add_addrs(&link.a, a_addrs)?;
        b.add_addrs(&link.b, b_addrs)?;
        a.ip(&["link", "set", &link.a, "up"])?;
        b.ip(&["link", "set", &link.b, "up"])?;
        Ok(link)
    }

    /// Connects host `a` to the bridge `bridge` of host `b` (see [`Host::add_bridge`]): a veth
    /// pair whose `b` end is a port of the bridge. `a` gets `a_addrs`.
    pub fn link_to_bridge(
        &self,
        a: &Host,
        a_addrs: &[&str],
        b: &Host,
        bridge: &str,
    ) -> io::Result<Link> {
        let link = self.veth(a, b)?;
        a.add_addrs(&link.a, a_addrs)?;
        b.ip(&["link", "set", &link.b, "master", bridge])?;
        a.ip(&["link", "set", &link.a, "up"])?;
        b.ip(&["link", "set", &link.b, "up"])?;
        Ok(link)
    }

    fn veth(&self, a: &Host, b: &Host) -> io::Result<Link> {
        let n = {
            let mut state = self.shared.state();
            state.links += 1;
            state.links - 1
        };
        let link = Link {
            a: ifname(n, b.label()),
            b: ifname(n, a.label()),
        };
        ip(&[
            "link",
            "add",
            &link.a,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &link.b,
            "netns",
            b.name(),
        ])?;
        Ok(link)
    }

    /// Kills every process running in the lab's namespaces (those it started first, then any
    /// other, all by PID) and deletes the namespaces. Idempotent; also run on drop. Returns
    /// the first error met, after trying everything.
    pub fn cleanup(&self) -> io::Result<()> {
        let (namespaces, pids) = {
            let mut state = self.shared.state();
            (
                std::mem::take(&mut state.namespaces),
                std::mem::take(&mut state.pids),
            )
        };
        destroy(&namespaces, &pids)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("netban-testlab: cleanup of lab {} failed: {e}", self.prefix);
        }
    }
}

fn ifname(n: usize, peer_label: &str) -> String {
    let mut name = format!("v{n}-{peer_label}");
    name.truncate(IFNAME_MAX);
    name
}

pub(crate) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Runs `ip ARGS` in the root namespace, turning a failure into an error with its stderr.
pub(crate) fn ip(args: &[&str]) -> io::Result<()> {
    run_checked(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
    .map(drop)
}

/// Runs a command to completion; a non-zero exit becomes an error carrying `what` and stderr.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> io::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The (device, inode) of a namespace file, which is what `/proc/PID/ns/net` resolves to for
/// the processes inside it.
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// PIDs of processes (other than zombies) whose network namespace is one of `ids`.
fn pids_in(ids: &HashSet<(u64, u64)>) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            ns_id(Path::new(&format!("/proc/{pid}/ns/net"))).is_some_and(|id| ids.contains(&id))
        })
        .collect()
}

/// The parent PID of `pid`, if it exists.
fn parent_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// True while `pid` exists and is not a zombie (state `Z`) or dead (`X`).
fn still_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !(state.starts_with('Z') || state.starts_with('X'))
    })
}

#[allow(unsafe_code)] // kill(2): see the SAFETY comment
fn kill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills what runs in `namespaces` (the `tracked` PIDs first, each only if it is still inside
/// one of them, so a reused PID is never hit) and deletes the namespaces.
fn destroy(namespaces: &[String], tracked: &[u32]) -> io::Result<()> {
    if namespaces.is_empty() {
        return Ok(());
    }
    let ids: HashSet<(u64, u64)> = namespaces
        .iter()
        .filter_map(|ns| ns_id(&Path::new(NETNS_DIR).join(ns)))
        .collect();
    let mut first_error = None;
    if !ids.is_empty() {
        let inside: HashSet<u32> = pids_in(&ids).into_iter().collect();
        // A tracked process still starting (`ip netns exec` before its setns) is not inside
        // yet, but while it is our unreaped child its PID cannot have been reused.
        let own = std::process::id();
        let mut killed: HashSet<u32> = tracked
            .iter()
            .copied()
            .filter(|&pid| inside.contains(&pid) || parent_of(pid) == Some(own))
            .collect();
        killed.iter().for_each(|&pid| kill(pid));
        // A killed process leaves its namespace before it has finished dying: wait until
        // nothing is left inside and every process killed here is dead (zombie or reaped).
        let all_gone = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
            let left = pids_in(&ids);
            left.iter().for_each(|&pid| kill(pid));
            killed.extend(left.iter().copied());
            left.is_empty() && !killed.iter().any(|&pid| still_running(pid))
        });
        if !all_gone {
            first_error = Some(io::Error::other(format!(
                "processes still running in {namespaces:?} after SIGKILL: {:?}",
                pids_in(&ids)
            )));
        }
    }
    for ns in namespaces.iter().rev() {
        if !Path::new(NETNS_DIR).join(ns).exists() {
            continue;
        }
        if let Err(e) = ip(&["netns", "delete", ns]) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Deletes lab namespaces whose owning process (the PID in the name) no longer exists.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    let own = std::process::id();
    let stale: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
                return false;
            };
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            match digits.parse::<u32>() {
                Ok(pid) => {
                    rest[digits.len()..].starts_with('-')
                        && pid != own
                        && !Path::new(&format!("/proc/{pid}")).exists()
                }
                Err(_) => false,
            }
        })
        .collect();
    if !stale.is_empty() {
        if let Err(e) = destroy(&stale, &[]) {
            eprintln!("netban-testlab: sweeping stale namespaces {stale:?}: {e}");
        }
    }
}

/// Creates and deletes a probe namespace: `Ok(())` if this process may use namespaces.
pub(crate) fn probe_netns() -> Result<(), String> {
    let name = format!("{NAME_PREFIX}{}-probe", std::process::id());
    ip(&["netns", "add", &name]).map_err(|e| e.to_string())?;
    ip(&["netns", "delete", &name]).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_ifnamsiz() {
        assert_eq!(ifname(0, "router"), "v0-router");
        assert_eq!(ifname(12, "averyverylonglabel"), "v12-averyverylo");
        assert!(ifname(99999, "x".repeat(16).as_str()).len() <= IFNAME_MAX);
    }

    #[test]
    fn lab_prefixes_are_unique_and_tidy() {
        let a = Lab::new("My Test!").unwrap();
        let b = Lab::new("My Test!").unwrap();
        assert_ne!(a.prefix(), b.prefix());
        assert!(a
            .prefix()
            .starts_with(&format!("nbl{}-", std::process::id())));
        assert!(a.prefix().ends_with("-mytest"), "{}", a.prefix());
    }

    #[test]
    fn bad_labels_are_refused_without_touching_the_system() {
        let lab = Lab::new("labels").unwrap();
        for bad in ["", "Router", "a b", "x/y", "seventeen-chars-x"] {
            let err = lab.host(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
