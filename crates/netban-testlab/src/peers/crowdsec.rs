//! CrowdSec's real parts (Debian's crowdsec 1.4.6 and crowdsec-firewall-bouncer 0.0.25,
//! installed by `scripts/setup.d/crowdsec.sh`): a throwaway Local API per test, with its own
//! directory, SQLite database and port, and the firewall bouncer in nftables mode inside a lab
//! namespace.
//!
//! The LAPI is started LAPI-only (`-no-cs -no-capi`: no agent, no acquisition, no community
//! API), with a machine login for `cscli decisions …` (which go through the LAPI) and
//! Prometheus off. It can be stopped and started again on the same database.

use crate::{output_ok, wait_until, Host, Process};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the LAPI may take to answer `/health` (0.5 s measured with 110k decisions).
const LAPI_READY: Duration = Duration::from_secs(20);

/// A running (or stopped) CrowdSec Local API.
pub struct Lapi {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// The lab namespace it runs in (`None`: this process's).
    netns: Option<Host>,
    child: Option<Child>,
}

impl Lapi {
    /// Writes a configuration into `dir` (created), registers a machine for `cscli`, starts
    /// the LAPI on `listen` (127.0.0.1 and a free port, say) and waits until it answers.
    pub fn start(dir: &Path, listen: SocketAddr) -> io::Result<Lapi> {
        Lapi::start_with(dir, listen, None)
    }

    /// Like [`Lapi::start`], inside the lab namespace `host` (its `cscli` too).
    pub fn start_in(host: &Host, dir: &Path, listen: SocketAddr) -> io::Result<Lapi> {
        Lapi::start_with(dir, listen, Some(host.clone()))
    }

    fn start_with(dir: &Path, listen: SocketAddr, netns: Option<Host>) -> io::Result<Lapi> {
        for sub in ["etc", "data", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for file in ["profiles.yaml", "simulation.yaml"] {
            std::fs::copy(
                Path::new("/etc/crowdsec").join(file),
                dir.join("etc").join(file),
            )?;
        }
        let d = dir.display();
        let config = format!(
            "common: {{daemonize: false, log_media: file, log_level: info, log_dir: {d}/log/, working_dir: .}}
config_paths:
  config_dir: {d}/etc/
  data_dir: {d}/data/
  simulation_path: {d}/etc/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: {d}/etc/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service: {{acquisition_path: {d}/etc/acquis.yaml}}
cscli: {{output: human, color: \"no\"}}
db_config: {{type: sqlite, db_path: {d}/data/crowdsec.db, use_wal: true, flush: {{max_items: 5000, max_age: 7d}}}}
api:
  client: {{credentials_path: {d}/etc/local_api_credentials.yaml}}
  server: {{listen_uri: \"{listen}\", profiles_path: {d}/etc/profiles.yaml, console_path: {d}/etc/console.yaml}}
prometheus: {{enabled: false}}
"
        );
        std::fs::write(dir.join("etc/config.yaml"), config)?;
        let mut lapi = Lapi {
            dir: dir.into(),
            listen,
            netns,
            child: None,
        };
        let credentials = dir.join("etc/local_api_credentials.yaml");
        lapi.cscli_ok(&[
            "machines",
            "add",
            "netban-test",
            "--auto",
            "--force",
            "-f",
            &credentials.display().to_string(),
        ]);
        lapi.resume()?;
        Ok(lapi)
    }

    fn config(&self) -> PathBuf {
        self.dir.join("etc/config.yaml")
    }

    /// Its base URL (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.listen)
    }

    /// `program`, in the LAPI's namespace.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(host) => host.command(program),
            None => Command::new(program),
        }
    }

    fn cscli_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("cscli");
        cmd.arg("-c").arg(self.config()).arg("--error").args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `cscli -c CONFIG ARGS…`, whatever its exit status.
    pub fn cscli(&self, args: &[&str]) -> std::process::Output {
        self.cscli_command(args)
            .output()
            .expect("cscli runs (scripts/setup.d/crowdsec.sh installs it)")
    }

    /// `cscli …`, which must succeed; returns its stdout.
    pub fn cscli_ok(&self, args: &[&str]) -> String {
        output_ok(&mut self.cscli_command(args))
    }

    /// Registers a bouncer and returns its key (`cscli bouncers add NAME -k KEY`; works with
    /// the LAPI stopped: cscli writes the database itself).
    pub fn add_bouncer(&self, name: &str) -> String {
        let key: String = format!("ncs{name}{:x}", std::process::id())
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        self.cscli_ok(&["bouncers", "add", name, "-k", &key]);
        key
    }

    /// Stops it (SIGTERM, then waits: ~1.2 s measured).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM (a clean stop), by kill(1): this crate has no unsafe code.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same directory and database, and waits until it answers.
    pub fn resume(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log/stdout.log"))?;
        let child = self
            .command("crowdsec")
            .arg("-c")
            .arg(self.config())
            .args(["-no-cs", "-no-capi"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let listen = self.listen;
        let up = wait_until(LAPI_READY, Duration::from_millis(50), || {
            match &self.netns {
                Some(host) => host.enter(|| health(listen)).unwrap_or(false),
                None => health(listen),
            }
        });
        if !up {
            let log = std::fs::read_to_string(self.dir.join("log/crowdsec_api.log"))
                .or_else(|_| std::fs::read_to_string(self.dir.join("log/stdout.log")))
                .unwrap_or_default();
            return Err(io::Error::other(format!(
                "the CrowdSec LAPI did not answer on {listen}; its log:\n{log}"
            )));
        }
        Ok(())
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `GET /health` answers 200.
fn health(listen: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {listen}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// crowdsec-firewall-bouncer in nftables mode, running in a lab namespace.
pub struct FirewallBouncer {
    pub host: Host,
    config: PathBuf,
    process: Option<Process>,
}

/// Its IPv4 table and set.
pub const BOUNCER_TABLE_V4: &str = "crowdsec";
pub const BOUNCER_SET_V4: &str = "crowdsec-blacklists";

impl FirewallBouncer {
    /// Writes its configuration into `dir` (pointed at `api_url` with `key`, polling every
    /// `interval_secs`) and starts it in `host`. `daemonize: true` makes SIGTERM remove its
    /// tables (it never forks either way).
    pub fn start(
        host: &Host,
        dir: &Path,
        api_url: &str,
        key: &str,
        interval_secs: u64,
    ) -> io::Result<FirewallBouncer> {
        std::fs::create_dir_all(dir)?;
        let d = dir.display();
        let config = dir.join("bouncer.yaml");
        std::fs::write(
            &config,
            format!(
                "mode: nftables
pid_dir: {d}/
update_frequency: {interval_secs}s
daemonize: true
log_mode: file
log_dir: {d}/
log_level: info
api_url: {api_url}
api_key: {key}
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: {BOUNCER_SET_V4}
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: {BOUNCER_TABLE_V4}
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60601
"
            ),
        )?;
        let mut bouncer = FirewallBouncer {
            host: host.clone(),
            config,
            process: None,
        };
        bouncer.resume()?;
        Ok(bouncer)
    }

    /// Starts it (again) and waits until its IPv4 set exists.
    pub fn resume(&mut self) -> io::Result<()> {
        let config = self.config.display().to_string();
        let process = self
            .host
            .spawn("crowdsec-firewall-bouncer", ["-c", config.as_str()])?;
        self.process = Some(process);
        let ready = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            self.host
                .run(
                    "nft",
                    ["list", "set", "ip", BOUNCER_TABLE_V4, BOUNCER_SET_V4],
                )
                .is_ok_and(|o| o.status.success())
        });
        if !ready {
            let log = std::fs::read_to_string(
                self.config.with_file_name("crowdsec-firewall-bouncer.log"),
            )
            .unwrap_or_default();
            return Err(io::Error::other(format!(
                "crowdsec-firewall-bouncer made no set in {}; its log:\n{log}",
                self.host.name()
            )));
        }
        Ok(())
    }

    /// Stops it (SIGTERM: with `daemonize: true` it removes its tables) and waits.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            let mut child = process.into_child();
            // SIGTERM: with `daemonize: true` it removes its tables.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The IPv4 addresses in its set (empty when the set does not exist).
    pub fn elements_v4(&self) -> Vec<String> {
        let Ok(out) = self.host.run(
            "nft",
            ["-j", "list", "set", "ip", BOUNCER_TABLE_V4, BOUNCER_SET_V4],
        ) else {
            return Vec::new();
        };
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut found = Vec::new();
        for item in json["nftables"].as_array().into_iter().flatten() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                let value = if elem.get("elem").is_some() {
                    &elem["elem"]["val"]
                } else {
                    elem
                };
                if let Some(s) = value.as_str() {
                    found.push(s.to_string());
                }
            }
        }
        found
    }

    /// The log it wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_file_name("crowdsec-firewall-bouncer.log"))
            .unwrap_or_default()
    }
}

impl Drop for FirewallBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}
