//! The Cisco IOS driver's peer: a real SSH server presenting IOS's CLI, PyPI fakenos 1.2.1
//! with netban's own stateful ACL shell plugin (`peers/cisco_ios/ios_acl_shell.py`: the
//! project's test emulator, not Cisco's code), and netmiko 4.8 as an independent client (the
//! "operator by hand"). Both come from `scripts/setup.d/cisco_ios.sh` (venv `.venv-cisco_ios`).
//! One emulator per test on a free loopback port, killed on drop.

use crate::{output_ok, venv_bin};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const EMULATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/peers/cisco_ios/ios_acl_shell.py"
);
const NETMIKO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/peers/cisco_ios/netmiko_client.py"
);
/// The emulator's login and enable secret.
pub const USER: &str = "netban";
pub const PASSWORD: &str = "netban-pw";
pub const SECRET: &str = "en-s3cret";

/// The venv's Python (fakenos and netmiko are installed there).
pub fn python() -> PathBuf {
    venv_bin("cisco_ios", "python")
}

/// Writes a new RSA client key pair to `path` and `path.pub` with the emulator's own helper.
pub fn make_client_key(path: &Path) {
    let made = Command::new(python())
        .arg(EMULATOR)
        .arg("--make-client-key")
        .arg(path)
        .status()
        .expect("running the IOS emulator");
    assert!(made.success(), "the emulator could not make a client key");
}

/// One running emulator (one router).
pub struct Router {
    child: Child,
    pub port: u16,
    /// The host key's SHA256 fingerprint.
    pub fingerprint: String,
    /// `ssh-rsa AAAA…` of the router's host key.
    pub host_key: String,
    /// The emulator's scratch directory (its log; free for the test's files).
    pub dir: tempfile::TempDir,
}

impl Router {
    /// Starts one emulated router (`extra`: more emulator arguments) and waits until it
    /// listens.
    pub fn start(extra: &[&str]) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(EMULATOR)
            .args([
                "--hostname",
                "edge-r1",
                "--username",
                USER,
                "--password",
                PASSWORD,
            ])
            .args(["--enable-secret", SECRET])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("emulator.log")).unwrap(),
            ))
            .spawn()
            .expect("starting the IOS emulator");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        let (Some(port), Some(fingerprint)) = (field("port="), field("fingerprint=")) else {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.path().join("emulator.log")).unwrap_or_default();
            panic!("the emulator did not start: {line:?}\n{log}");
        };
        let host_key = line.split_once(" key=").unwrap().1.trim().to_string();
        Router {
            child,
            port: port.parse().unwrap(),
            fingerprint,
            host_key,
            dir,
        }
    }

    /// Runs steps over one netmiko connection (the "operator by hand").
    pub fn netmiko(&self, steps: serde_json::Value) -> Vec<serde_json::Value> {
        let out = output_ok(
            Command::new(python())
                .arg(NETMIKO)
                .args(["--port", &self.port.to_string(), "--username", USER])
                .args(["--password", PASSWORD, "--secret", SECRET])
                .arg(steps.to_string()),
        );
        serde_json::from_str(&out).expect("netmiko_client.py prints JSON")
    }

    /// A `show` command's output, with match counters dropped (every read counts as traffic
    /// in the emulator, so they vary).
    pub fn show(&self, command: &str) -> String {
        let r = self.netmiko(serde_json::json!([["show", command]]));
        let out = r[0]["output"].as_str().unwrap();
        out.lines()
            .map(|l| match l.find(" (") {
                Some(i) if l.contains("match") => {
                    let close = l[i..].find(')').map_or(l.len(), |j| i + j + 1);
                    format!("{}{}", &l[..i], &l[close..])
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends a signal (`-HUP`: reload, `-STOP`/`-CONT`: freeze) to the emulator.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
