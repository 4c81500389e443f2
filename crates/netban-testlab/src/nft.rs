//! What netban's nftables table (`inet netban`) holds on a host, read back with `nft -j`:
//! independent of the driver's own parser, for tests and benchmarks to check it with; and
//! [`Monitor`], the kernel's log of changes to a host's nftables (when an element arrived,
//! which process wrote each generation).

use crate::Host;
use std::collections::BTreeSet;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// netban's sets: single addresses (hash sets) and prefixes (interval sets), per family.
const SETS: [&str; 4] = ["ban4", "ban6", "net4", "net6"];

/// A change made to netban's set `set` on `host` by hand (a person or another tool, not
/// netban): `nft add|delete element inet netban SET { ELEMENTS }`.
#[derive(Clone, Copy, Debug)]
pub enum ByHand {
    Add,
    Delete,
}

/// Makes `change` of `elements` (nft's element list syntax, e.g. `203.0.113.7`) in `set`.
pub fn by_hand(host: &Host, change: ByHand, set: &str, elements: &str) -> io::Result<()> {
    let verb = match change {
        ByHand::Add => "add",
        ByHand::Delete => "delete",
    };
    host.run_ok(
        "nft",
        [
            verb,
            "element",
            "inet",
            "netban",
            set,
            &format!("{{ {elements} }}"),
        ],
    )
    .map(drop)
}

/// Every address or prefix in netban's sets on `host` (prefixes as `ADDR/LEN`); empty where
/// the table does not exist.
pub fn elements(host: &Host) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for set in SETS {
        for elem in set_elements(host, set) {
            let inner = if elem.get("elem").is_some() {
                &elem["elem"]["val"]
            } else {
                &elem
            };
            if let Some(s) = inner.as_str() {
                all.insert(s.to_string());
            } else if let Some(p) = inner.get("prefix") {
                all.insert(format!("{}/{}", p["addr"].as_str().unwrap_or(""), p["len"]));
            }
        }
    }
    all
}

/// How many elements one of netban's sets holds on `host` (0 where it does not exist).
pub fn count(host: &Host, set: &str) -> usize {
    set_elements(host, set).len()
}

fn set_elements(host: &Host, set: &str) -> Vec<serde_json::Value> {
    let Ok(out) = host.run("nft", ["-j", "list", "set", "inet", "netban", set]) else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j is JSON");
    value["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["elem"].as_array())
        .flatten()
        .cloned()
        .collect()
}

/// A write to a host's nftables, as `nft monitor` reports it: the ruleset generation it made
/// and the process that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// When the monitor read the line.
    pub at: Instant,
    pub number: u64,
    pub pid: u32,
    /// The writer's command name (`comm`: the name of the program it ran, symlinks not
    /// resolved, at most 15 characters): give each writer an `nft` symlink of its own name to
    /// tell writers apart.
    pub process: String,
}

/// `nft monitor` in a host's namespace: the kernel's own log of every change to its
/// nftables, each line with when it was read. It tells when an element arrived without the
/// cost of polling `nft list` (tens of milliseconds per call under load), and who wrote each
/// ruleset generation (`# new generation N by process PID (COMM)`). Killed on drop.
pub struct Monitor {
    _process: crate::Process,
    lines: MonitorLog,
    /// How far [`Monitor::added`] has read.
    cursor: Mutex<usize>,
}

/// The lines a monitor read, each with when, and the signal that more arrived.
type MonitorLog = Arc<(Mutex<Vec<(Instant, String)>>, Condvar)>;

/// The table a monitor writes (and deletes in the same transaction) to see it is listening.
const PROBE_TABLE: &str = "nbmonitorprobe";

impl Monitor {
    /// Starts the monitor and returns once it reports changes (it sees a probe transaction
    /// that adds and deletes a table of its own, which leaves nothing behind).
    pub fn start(host: &Host) -> io::Result<Monitor> {
        use std::io::BufRead;
        let mut cmd = host.command("nft");
        cmd.arg("monitor")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        let mut process = host.spawn_command(cmd)?;
        let stdout = process.stdout.take().expect("piped");
        let lines: MonitorLog = Arc::default();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let (log, arrived) = &*sink;
                log.lock()
                    .expect("monitor log")
                    .push((Instant::now(), line));
                arrived.notify_all();
            }
        });
        let monitor = Monitor {
            _process: process,
            lines,
            cursor: Mutex::new(0),
        };
        let probe = format!("add table inet {PROBE_TABLE}; delete table inet {PROBE_TABLE}");
        let listening =
            crate::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
                let _ = host.run("nft", [&probe]);
                monitor
                    .lines_now()
                    .iter()
                    .any(|(_, l)| l.contains(PROBE_TABLE))
            });
        if !listening {
            return Err(io::Error::other(format!(
                "nft monitor in {} reported nothing within 30 s",
                host.name()
            )));
        }
        *monitor.cursor.lock().expect("cursor") = monitor.lines_now().len();
        Ok(monitor)
    }

    /// Every line so far.
    pub fn lines_now(&self) -> Vec<(Instant, String)> {
        self.lines.0.lock().expect("monitor log").clone()
    }

    /// When the next element `address` (an IPv4 address) was added, reading on from where the
    /// last call stopped, waiting up to `timeout` from now.
    pub fn added(&self, address: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let (log, arrived) = &*self.lines;
        let mut cursor = self.cursor.lock().expect("cursor");
        let mut lines = log.lock().expect("monitor log");
        loop {
            while *cursor < lines.len() {
                let (at, line) = &lines[*cursor];
                *cursor += 1;
                let names_it = line
                    .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .any(|token| token == address);
                if line.starts_with("add element") && names_it {
                    return Some(*at);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = arrived.wait_timeout(lines, left).expect("monitor log").0;
        }
    }

    /// Every ruleset generation written since the monitor started (its own probe excluded),
    /// in order.
    pub fn generations(&self) -> Vec<Generation> {
        let lines = self.lines_now();
        let probe = lines
            .iter()
            .rposition(|(_, l)| l.contains(PROBE_TABLE))
            .map_or(0, |i| i + 1);
        lines[probe..]
            .iter()
            .filter_map(|(at, line)| parse_generation(*at, line))
            .collect()
    }
}

/// `# new generation 42 by process 1234 (nft)`.
fn parse_generation(at: Instant, line: &str) -> Option<Generation> {
    let rest = line.strip_prefix("# new generation ")?;
    let (number, rest) = rest.split_once(" by process ")?;
    let (pid, rest) = rest.split_once(" (")?;
    Some(Generation {
        at,
        number: number.parse().ok()?,
        pid: pid.parse().ok()?,
        process: rest.strip_suffix(')')?.to_string(),
    })
}
