//! Running the real netban binaries in tests and in the lab: a daemon with its own config,
//! ledger and socket in a scratch directory, and the client pointed at it.

use crate::wait_until;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Where the built `netban` and `netban-daemon` are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub client: PathBuf,
    pub daemon: PathBuf,
}

impl Binaries {
    /// `$NETBAN_BIN_DIR`, or the cargo profile directory the running test binary was built in
    /// (`target/debug/deps/..`). Run `cargo build --workspace --bins` first.
    pub fn locate() -> Binaries {
        let dir = std::env::var_os("NETBAN_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let exe = std::env::current_exe().expect("current_exe");
                let mut dir = exe.parent().expect("exe dir").to_path_buf();
                if dir.ends_with("deps") {
                    dir.pop();
                }
                dir
            });
        Binaries::in_dir(&dir)
    }

    pub fn in_dir(dir: &Path) -> Binaries {
        let b = Binaries {
            client: dir.join("netban"),
            daemon: dir.join("netban-daemon"),
        };
        assert!(
            b.client.exists() && b.daemon.exists(),
            "netban binaries not found in {} — run `cargo build --workspace --bins` first",
            dir.display()
        );
        b
    }
}

/// A running `netban-daemon` with its own directory.
pub struct Daemon {
    pub bins: Binaries,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub ledger: PathBuf,
    /// The network namespace it runs in (`None`: this process's).
    netns: Option<String>,
    child: Option<Child>,
    /// Extra environment for the daemon's next start (`NETBAN_FAULT`, say).
    env: Vec<(String, String)>,
    /// The umask the daemon starts with (inherited from the test when `None`).
    umask: Option<String>,
}

impl Daemon {
    /// Writes `netban.toml` into `dir` from `body` (the `[policy]`, `[reconciler]` and
    /// `[[targets]]` sections; the `[daemon]` section with socket and ledger in `dir` is added
    /// here), starts the daemon and waits until it answers.
    pub fn start(bins: &Binaries, dir: &Path, body: &str) -> io::Result<Daemon> {
        let ledger = dir.join("ledger.db");
        Daemon::start_as(bins, dir, &ledger.display().to_string(), "lab", body)
    }

    /// Like [`Daemon::start`], for host `host` of a fleet sharing the ledger `ledger` (a
    /// `postgres://` URL).
    pub fn start_as(
        bins: &Binaries,
        dir: &Path,
        ledger_spec: &str,
        host: &str,
        body: &str,
    ) -> io::Result<Daemon> {
        Daemon::start_with(bins, dir, ledger_spec, host, body, None)
    }

    /// Like [`Daemon::start_as`], with the daemon running inside `netns` (`ip netns exec`):
    /// it reaches the ledger over that namespace's links, so cutting a link cuts it off. Its
    /// socket, configuration and logs are files as usual, reachable from any namespace.
    pub fn start_in(
        netns: &crate::Host,
        bins: &Binaries,
        dir: &Path,
        ledger_spec: &str,
        host: &str,
        body: &str,
    ) -> io::Result<Daemon> {
        Daemon::start_with(
            bins,
            dir,
            ledger_spec,
            host,
            body,
            Some(netns.name().to_string()),
        )
    }

    fn start_with(
        bins: &Binaries,
        dir: &Path,
        ledger_spec: &str,
        host: &str,
        body: &str,
        netns: Option<String>,
    ) -> io::Result<Daemon> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("netban.sock");
        let ledger = dir.join("ledger.db");
        let config = dir.join("netban.toml");
        let text = format!(
            "[daemon]\nsocket = \"{}\"\nledger = \"{ledger_spec}\"\nspool = \"{}\"\nhost = \"{host}\"\n\n{body}\n",
            socket.display(),
            dir.join("spool.db").display(),
        );
        std::fs::write(&config, text)?;
        // Readable by its owner only: a test's body may hold a secret inline, which the daemon
        // refuses in a file every user can read.
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let mut daemon = Daemon {
            bins: bins.clone(),
            dir: dir.into(),
            config,
            socket,
            ledger,
            netns,
            child: None,
            env: Vec::new(),
            umask: None,
        };
        daemon.spawn()?;
        Ok(daemon)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        // Wrappers in front of the daemon, each exec'ing the next, so the child's PID is the
        // daemon's: `ip netns exec` for a daemon in a namespace, `sh -c 'umask …'`.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(netns) = &self.netns {
            argv.extend(["ip", "netns", "exec", netns].map(Into::into));
        }
        if let Some(mask) = &self.umask {
            argv.extend([
                "sh".into(),
                "-c".into(),
                format!("umask {mask} && exec \"$0\" \"$@\"").into(),
            ]);
        }
        argv.push(self.bins.daemon.clone().into());
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        let child = command
            .arg("--config")
            .arg(&self.config)
            .env("NETBAN_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let socket = self.socket.clone();
        let ready = wait_until(Duration::from_secs(20), Duration::from_millis(10), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        if !ready {
            let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
            return Err(io::Error::other(format!(
                "netban-daemon did not start; its log:\n{log}"
            )));
        }
        Ok(())
    }

    /// Runs the client against this daemon.
    pub fn client(&self, args: &[&str]) -> Output {
        self.client_with_stdin(args, None)
    }

    /// Runs the client and insists on success: panics with its output and the daemon's log
    /// otherwise.
    pub fn client_ok(&self, args: &[&str]) -> Output {
        let out = self.client(args);
        assert!(
            out.status.success(),
            "netban {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    pub fn client_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.bins.client)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running netban");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("writing stdin");
        }
        child.wait_with_output().expect("netban output")
    }

    /// `netban list --json`, parsed: the banned prefixes.
    pub fn listed(&self) -> Vec<String> {
        let out = self.client(&["list", "--json"]);
        assert!(
            out.status.success(),
            "netban list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("list --json is JSON");
        value
            .as_array()
            .expect("a list")
            .iter()
            .map(|b| b["prefix"].as_str().expect("prefix").to_string())
            .collect()
    }

    /// `netban status --json`, parsed (exit status 4, something broken, is an answer too).
    pub fn status(&self) -> serde_json::Value {
        let out = self.client(&["status", "--json"]);
        assert!(
            matches!(out.status.code(), Some(0 | 4)),
            "netban status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets `key=value` in the daemon's environment from its next start on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Starts the daemon under `umask` (octal, as the shell takes it) from its next start on.
    pub fn set_umask(&mut self, umask: &str) {
        self.umask = Some(umask.to_string());
    }

    /// The daemon's exit status, if it has exited (without waiting).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok()
    }

    /// Starts the daemon again with the same configuration and ledger.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill9();
        self.spawn()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Concurrent clients, each banning its own list one request at a time through a daemon's
/// socket (as fail2ban hosts would), recording every acknowledgement as it arrives, so a test
/// can kill the daemon mid-stream and know exactly what was acknowledged.
pub struct Burst {
    acked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Burst {
    /// Starts one client thread per (socket, prefixes) pair; bans are from `source` for
    /// `seconds`. A client stops at its first unacknowledged ban.
    pub fn start(clients: Vec<(PathBuf, Vec<String>)>, source: &str, seconds: u64) -> Burst {
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let clients = clients
            .into_iter()
            .map(|(socket, prefixes)| {
                let (acked, source) = (acked.clone(), source.to_string());
                std::thread::spawn(move || {
                    for p in prefixes {
                        if ban_over_socket(&socket, std::slice::from_ref(&p), &source, seconds)
                            .is_empty()
                        {
                            return;
                        }
                        acked.lock().expect("acked list").push(p);
                    }
                })
            })
            .collect();
        Burst { acked, clients }
    }

    /// How many bans were acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked list").len()
    }

    /// Waits for every client to finish; returns every acknowledged ban.
    pub fn finish(self) -> Vec<String> {
        for client in self.clients {
            client.join().expect("burst client");
        }
        let acked = self.acked.lock().expect("acked list");
        acked.clone()
    }
}

/// Sends one ban request per prefix over one socket connection, as a fail2ban host would,
/// and returns the prefixes the daemon acknowledged before the connection broke (or all).
pub fn ban_over_socket(
    socket: &Path,
    prefixes: &[String],
    source: &str,
    seconds: u64,
) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut acked = Vec::with_capacity(prefixes.len());
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return acked;
    };
    let Ok(mut writer) = stream.try_clone() else {
        return acked;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for p in prefixes {
        let request = serde_json::json!({
            "op": "ban", "prefixes": [p], "source": source, "duration": {"seconds": seconds},
            "reason": null, "failures": null, "origin_host": null,
        });
        let mut bytes = serde_json::to_vec(&request).expect("json");
        bytes.push(b'\n');
        if writer.write_all(&bytes).is_err() {
            return acked;
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => {
                let answer: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let ok =
                    answer["status"] == "ok" && answer["body"]["results"][0]["error"].is_null();
                if !ok {
                    return acked;
                }
                acked.push(p.clone());
            }
            _ => return acked,
        }
    }
    acked
}

/// One request over the socket, without starting the client; `None` if the daemon does not answer.
pub fn request(socket: &Path, request: &serde_json::Value) -> Option<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let mut bytes = serde_json::to_vec(request).ok()?;
    bytes.push(b'\n');
    stream.write_all(&bytes).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}
