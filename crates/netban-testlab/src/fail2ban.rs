//! Running the real fail2ban (Debian's 1.0.2) in tests and in the lab: its own copy of the
//! configuration with netban's action installed, its own socket, database and log, and a log
//! file of failed SSH logins to feed it.

use crate::wait_until;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The action file shipped in the repository (`fail2ban/action.d/netban.conf`).
pub const NETBAN_ACTION: &str = include_str!("../../../fail2ban/action.d/netban.conf");

/// The in-process Python action shipped in the repository (`fail2ban/action.d/netban.py`).
pub const NETBAN_PYTHON_ACTION: &str = include_str!("../../../fail2ban/action.d/netban.py");

/// Which of netban's two fail2ban actions a jail bans with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetbanAction {
    /// `action.d/netban.conf`: fail2ban runs `netban ban …` through a shell per ban.
    Shell,
    /// `action.d/netban.py`: loaded into fail2ban, speaks the daemon's socket protocol.
    Python,
}

impl NetbanAction {
    /// The `banaction` value for a jail.local of a fail2ban started in `dir` by
    /// [`Fail2ban::start`] with the same client and configuration (the Python action gets
    /// them as options, and its spool in `dir/spool`).
    pub fn banaction(self, dir: &Path, netban_client: &Path, netban_config: &Path) -> String {
        match self {
            NetbanAction::Shell => "netban".into(),
            NetbanAction::Python => format!(
                "netban.py[config=\"{}\", netban=\"{}\", spool_dir=\"{}\"]",
                netban_config.display(),
                netban_client.display(),
                dir.join("spool").display()
            ),
        }
    }
}

/// A running `fail2ban-server`.
pub struct Fail2ban {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// The log the `sshd` jail reads.
    pub auth_log: PathBuf,
    /// fail2ban's own log (read by the `recidive` jail).
    pub own_log: PathBuf,
    child: Option<Child>,
}

static SSHD_PID: AtomicU32 = AtomicU32::new(20_000);

impl Fail2ban {
    /// Starts fail2ban with a copy of `/etc/fail2ban` in `dir/conf`, netban's action installed
    /// (calling `netban --config NETBAN_CONFIG`), and `jails` as `jail.local`. In `jails`,
    /// `{auth_log}` and `{own_log}` are replaced with the log paths.
    pub fn start(
        dir: &Path,
        netban_client: &Path,
        netban_config: &Path,
        jails: &str,
    ) -> io::Result<Fail2ban> {
        Fail2ban::start_with(None, dir, netban_client, netban_config, jails)
    }

    /// Like [`Fail2ban::start`], with `fail2ban-server` running inside `host`'s namespace: its
    /// actions (`nft`, `iptables`…) change that namespace's firewall. Its socket and files are
    /// reachable from any namespace.
    pub fn start_in(
        host: &crate::Host,
        dir: &Path,
        netban_client: &Path,
        netban_config: &Path,
        jails: &str,
    ) -> io::Result<Fail2ban> {
        Fail2ban::start_with(Some(host), dir, netban_client, netban_config, jails)
    }

    fn start_with(
        host: Option<&crate::Host>,
        dir: &Path,
        netban_client: &Path,
        netban_config: &Path,
        jails: &str,
    ) -> io::Result<Fail2ban> {
        let conf = dir.join("conf");
        std::fs::create_dir_all(dir)?;
        if conf.exists() {
            std::fs::remove_dir_all(&conf)?;
        }
        let status = Command::new("cp")
            .arg("-r")
            .arg("/etc/fail2ban")
            .arg(&conf)
            .status()?;
        if !status.success() {
            return Err(io::Error::other(
                "copying /etc/fail2ban failed (is fail2ban installed?)",
            ));
        }
        // Only our jail.local: drop the distribution's jail.d (it enables sshd with systemd).
        let _ = std::fs::remove_dir_all(conf.join("jail.d"));
        std::fs::create_dir_all(conf.join("jail.d"))?;
        let action = NETBAN_ACTION
            .replace(
                "netban = /usr/local/bin/netban",
                &format!("netban = {}", netban_client.display()),
            )
            .replace(
                "netban_opts =\n",
                &format!("netban_opts = --config {}\n", netban_config.display()),
            );
        std::fs::write(conf.join("action.d/netban.conf"), action)?;
        std::fs::write(conf.join("action.d/netban.py"), NETBAN_PYTHON_ACTION)?;

        let auth_log = dir.join("auth.log");
        let own_log = dir.join("fail2ban.log");
        std::fs::write(&auth_log, "")?;
        std::fs::write(&own_log, "")?;
        std::fs::write(
            conf.join("fail2ban.local"),
            format!(
                "[DEFAULT]\nallowipv6 = auto\n\n[Definition]\nloglevel = INFO\nlogtarget = {}\ndbfile = {}\n",
                own_log.display(),
                dir.join("fail2ban.sqlite3").display()
            ),
        )?;
        let jails = jails
            .replace("{auth_log}", &auth_log.display().to_string())
            .replace("{own_log}", &own_log.display().to_string());
        std::fs::write(conf.join("jail.local"), jails)?;

        let socket = dir.join("fail2ban.sock");
        let mut server = match host {
            Some(host) => host.command("fail2ban-server"),
            None => Command::new("fail2ban-server"),
        };
        let child = server
            .args(["-f", "-x", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-p")
            .arg(dir.join("fail2ban.pid"))
            .arg("--logtarget")
            .arg(&own_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("fail2ban.stderr"))?)
            .spawn()?;
        let mut f2b = Fail2ban {
            dir: dir.into(),
            socket,
            auth_log,
            own_log,
            child: Some(child),
        };
        let ready = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            f2b.client(&["ping"]).status.success()
        });
        if !ready {
            let log = std::fs::read_to_string(&f2b.own_log).unwrap_or_default();
            f2b.kill();
            return Err(io::Error::other(format!(
                "fail2ban did not start; its log:\n{log}"
            )));
        }
        Ok(f2b)
    }

    pub fn client(&self, args: &[&str]) -> Output {
        Command::new("fail2ban-client")
            .arg("-c")
            .arg(self.dir.join("conf"))
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running fail2ban-client")
    }

    /// Appends `count` failed SSH password lines from `ip` to the auth log, each with its own
    /// sshd PID (the filter groups lines by it).
    pub fn fail_ssh(&self, ip: &str, count: usize) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.auth_log)?;
        let mut text = String::new();
        for _ in 0..count {
            let pid = SSHD_PID.fetch_add(1, Ordering::Relaxed);
            let stamp = syslog_now();
            text.push_str(&format!(
                "{stamp} lab sshd[{pid}]: Failed password for root from {ip} port {} ssh2\n",
                40_000 + pid % 20_000
            ));
        }
        file.write_all(text.as_bytes())?;
        file.flush()
    }

    /// The addresses a jail has banned now.
    pub fn banned(&self, jail: &str) -> Vec<String> {
        let out = self.client(&["get", jail, "banned"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(|c: char| c == '[' || c == ']' || c == ',' || c == '\'' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.own_log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops fail2ban the normal way (its jails run actionflush).
    pub fn stop(&mut self) {
        let _ = self.client(&["stop"]);
        if let Some(mut child) = self.child.take() {
            let done = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !done {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The current time as a syslog prefix (`Nov 21 04:12:11`), in local time as fail2ban reads it.
fn syslog_now() -> String {
    let out = Command::new("date").arg("+%b %e %H:%M:%S").output().ok();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
        .unwrap_or_default()
}
