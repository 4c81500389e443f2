//! The real ExaFS 1.4.1 and exabgp-process 1.0.5 (from PyPI, installed in .venv-exafs by
//! scripts/setup.d/exafs.sh), started per test on free loopback ports in a scratch directory.
//!
//! Layout of the directory: `config.py` (what `exafs-db-init` and the app read from their
//! working directory), `exafs.db` (SQLite, seeded below), `process.conf` (exabgp-process's
//! HTTP listener), `exabgp.out` (exabgp-process's stdout: one `announce route …` or
//! `withdraw route …` line per RTBH command ExaFS sends, `announce flow route { … }` or
//! `withdraw flow route { … }` per flowspec command), `app.log`.
//!
//! ExaFS's seed data offers the user four flowspec actions: 1-3 rate limits and 4 "Discard"
//! ([`DISCARD_ACTION`]).
//!
//! The app is started with a three-line Python launcher using ExaFS's own factory
//! (`flowapp.scripts._create_app`, the one `exafs-db-init` uses) and Flask's server; both run
//! with TZ=UTC, and everything is killed by PID on drop.
//!
//! [`Peer::start_tls`] serves the API over https instead, with a certificate for 127.0.0.1
//! signed by a throwaway CA made with `openssl` in the same directory ([`Peer::ca_file`]).

use crate::{free_port, output_ok, venv_bin, wait_until};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The read-write key of the seeded user (bound to 127.0.0.1).
pub const KEY: &str = "netban-test-key-rw-5b1f0c9e";
/// A read-only key of the same user.
pub const READ_ONLY_KEY: &str = "netban-test-key-ro-0d3a6e21";
/// The organisation's ranges.
pub const RANGES: &str = "203.0.113.0/24 2001:db8::/32";
/// Community id 1 is "65535:65283" in ExaFS's seed data.
pub const COMMUNITY: u32 = 1;
pub const COMMUNITY_NAME: &str = "65535:65283";
/// The flowspec action "Discard" (`then { discard; }`) in ExaFS's seed data.
pub const DISCARD_ACTION: u32 = 4;

const SEED: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
c = db.cursor()
c.execute("INSERT INTO organization (name, arange, limit_flowspec4, limit_flowspec6, limit_rtbh) VALUES ('netban-test', ?, 0, 0, 0)", (sys.argv[2],))
org = c.lastrowid
c.execute("INSERT INTO user (uuid, comment, email, name, phone) VALUES ('netban@example.org', 'netban tests', 'netban@example.org', 'netban', '')")
user = c.lastrowid
c.execute("INSERT INTO user_role (user_id, role_id) VALUES (?, 2)", (user,))
c.execute("INSERT INTO user_organization (user_id, organization_id) VALUES (?, ?)", (user, org))
for key, ro in ((sys.argv[3], 0), (sys.argv[4], 1)):
    c.execute("INSERT INTO api_key (machine, key, readonly, expires, comment, user_id, org_id) VALUES ('127.0.0.1', ?, ?, NULL, 'netban', ?, ?)", (key, ro, user, org))
db.commit()
"#;

const LAUNCHER: &str = r#"
import sys
from flowapp.scripts import _create_app
tls = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else None
_create_app().run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True, ssl_context=tls)
"#;

fn wait_port(port: u16, what: &str, log: &Path) {
    let up = wait_until(Duration::from_secs(30), Duration::from_millis(25), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "{what} did not listen on 127.0.0.1:{port}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub struct Peer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    exa: Child,
    app: Option<Child>,
    /// Whether the API is served over https (see [`Peer::start_tls`]).
    tls: bool,
}

/// Makes a CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it (`server.pem`,
/// `server.key`) in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        output_ok(Command::new("openssl").current_dir(dir).args(args));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=netban test CA"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

impl Peer {
    /// A fresh ExaFS with its database seeded and exabgp-process listening, serving plain
    /// http.
    pub fn start() -> Peer {
        Peer::start_serving(false)
    }

    /// Like [`Peer::start`], serving https with a certificate signed by [`Peer::ca_file`].
    pub fn start_tls() -> Peer {
        Peer::start_serving(true)
    }

    fn start_serving(tls: bool) -> Peer {
        let dir = tempfile::Builder::new()
            .prefix("netban-exafs-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let exa_port = free_port();
        let d = dir.path();
        std::fs::write(
            d.join("config.py"),
            format!(
                "class Config:\n    TESTING = False\n    DEBUG = False\n    \
                 SQLALCHEMY_DATABASE_URI = 'sqlite:///{db}'\n    \
                 SQLALCHEMY_TRACK_MODIFICATIONS = False\n    JWT_SECRET = 'netban-test-jwt'\n    \
                 SECRET_KEY = 'netban-test-secret'\n    EXA_API = 'HTTP'\n    \
                 EXA_API_URL = 'http://127.0.0.1:{exa_port}/'\n    USE_RD = False\n    \
                 USE_MULTI_NEIGHBOR = False\n    LOCAL_IP = '127.0.0.1'\n    LOCAL_IP6 = '::1'\n    \
                 SSO_AUTH = False\n    LOCAL_AUTH = True\n    HEADER_AUTH = False\n    \
                 LOCAL_USER_UUID = 'netban@example.org'\n    ALLOWED_COMMUNITIES = [1, 2, 3]\n    \
                 LOG_FILE = '{log}'\n    LOG_LEVEL = 'WARNING'\n    SESSION_TYPE = 'filesystem'\n\
                 class ProductionConfig(Config):\n    pass\n\
                 class DevelopmentConfig(Config):\n    DEBUG = True\n",
                db = d.join("exafs.db").display(),
                log = d.join("app.log").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("process.conf"),
            format!(
                "[api]\ntype = http\n[logging]\nlog_dir = {}\nlog_file = exabgp_process.log\n\
                 [http]\nhost = 127.0.0.1\nport = {exa_port}\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(d.join("launch.py"), LAUNCHER).unwrap();
        output_ok(
            Command::new(venv_bin("exafs", "exafs-db-init"))
                .current_dir(d)
                .env("TZ", "UTC"),
        );
        output_ok(
            Command::new(venv_bin("exafs", "python"))
                .args(["-c", SEED])
                .arg(d.join("exafs.db"))
                .args([RANGES, KEY, READ_ONLY_KEY]),
        );
        let exa = Command::new(venv_bin("exafs", "exabgp-process"))
            .current_dir(d)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("exabgp.out")).unwrap())
            .stderr(std::fs::File::create(d.join("exabgp.err")).unwrap())
            .spawn()
            .expect("exabgp-process");
        if tls {
            make_certificates(d);
        }
        let mut peer = Peer {
            dir,
            port,
            exa,
            app: None,
            tls,
        };
        wait_port(
            exa_port,
            "exabgp-process",
            &peer.dir.path().join("exabgp.err"),
        );
        peer.start_app();
        peer
    }

    /// Starts the ExaFS app (again) on the same port and database.
    pub fn start_app(&mut self) {
        assert!(self.app.is_none(), "app already running");
        let d = self.dir.path();
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("app.err"))
            .unwrap();
        let mut command = Command::new(venv_bin("exafs", "python"));
        command
            .current_dir(d)
            .env("TZ", "UTC")
            .arg(d.join("launch.py"))
            .arg(self.port.to_string());
        if self.tls {
            command.arg(d.join("server.pem")).arg(d.join("server.key"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(err.try_clone().unwrap())
            .stderr(err)
            .spawn()
            .expect("ExaFS app");
        self.app = Some(child);
        wait_port(self.port, "ExaFS", &d.join("app.err"));
    }

    /// Kills the ExaFS app (exabgp-process keeps running).
    pub fn stop_app(&mut self) {
        if let Some(mut app) = self.app.take() {
            let _ = app.kill();
            let _ = app.wait();
        }
        let down = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
        assert!(down, "ExaFS still listening after kill");
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the https certificate (PEM), after [`Peer::start_tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A key file with `mode` holding `key`.
    pub fn key_file(&self, name: &str, key: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{key}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Every line exabgp-process printed so far (what ExaBGP would receive).
    pub fn exabgp_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("exabgp.out"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("announce ") || l.starts_with("withdraw "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// How many times exabgp-process printed exactly `line` (whitespace runs read as one
    /// space: ExaFS writes `{  match {` and `discard;  }`).
    pub fn count_exact(&self, line: &str) -> usize {
        let want: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
        self.exabgp_lines().iter().filter(|l| **l == want).count()
    }

    /// Waits (bounded) until exabgp-process printed exactly `line` `n` times.
    pub fn wait_exact(&self, line: &str, n: usize) -> bool {
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            self.count_exact(line) >= n
        })
    }

    /// How many times exabgp-process printed `action route PREFIX …`.
    pub fn count_lines(&self, action: &str, prefix: &str) -> usize {
        let head = format!("{action} route {prefix} ");
        self.exabgp_lines()
            .iter()
            .filter(|l| l.starts_with(&head))
            .count()
    }

    /// Waits (bounded) until exabgp-process printed `action route PREFIX` `n` times.
    pub fn wait_lines(&self, action: &str, prefix: &str, n: usize) -> bool {
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            self.count_lines(action, prefix) >= n
        })
    }

    pub fn api(&self) -> Api {
        let mut http = reqwest::Client::builder();
        if self.tls {
            let pem = std::fs::read(self.ca_file()).unwrap();
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        Api {
            http: http.build().unwrap(),
            root: self.url(),
            base: format!("{}/api/v3", self.url()),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut app) = self.app.take() {
            let _ = app.kill();
            let _ = app.wait();
        }
        let _ = self.exa.kill();
        let _ = self.exa.wait();
    }
}

/// The ExaFS API as an operator (or another tool) uses it, independent of the driver.
pub struct Api {
    http: reqwest::Client,
    /// The app's base URL (its non-API pages).
    root: String,
    /// `…/api/v3`.
    base: String,
}

impl Api {
    async fn token(&self) -> String {
        let answer: Value = self
            .http
            .get(format!("{}/auth", self.base))
            .header("x-api-key", KEY)
            .send()
            .await
            .expect("auth")
            .json()
            .await
            .expect("auth json");
        answer["token"].as_str().expect("token").to_string()
    }

    /// The rules of the named lists of `GET /rules`, times as epoch seconds.
    async fn lists(&self, lists: &[&str]) -> Vec<Value> {
        let token = self.token().await;
        let answer: Value = self
            .http
            .get(format!("{}/rules?time_format=timestamp", self.base))
            .header("x-access-token", token)
            .send()
            .await
            .expect("rules")
            .json()
            .await
            .expect("rules json");
        lists
            .iter()
            .flat_map(|l| answer[*l].as_array().expect("rule list").clone())
            .collect()
    }

    /// Every RTBH rule (`rtbh_any_rw`), times as epoch seconds.
    pub async fn rules(&self) -> Vec<Value> {
        self.lists(&["rtbh_any_rw"]).await
    }

    /// Every flowspec rule, IPv4 then IPv6 (`flowspec_ipv4_rw`, `flowspec_ipv6_rw`).
    pub async fn flow_rules(&self) -> Vec<Value> {
        self.lists(&["flowspec_ipv4_rw", "flowspec_ipv6_rw"]).await
    }

    /// The flowspec rules with source `addr`/`mask`, in any state.
    pub async fn flow_rules_for(&self, addr: &str, mask: u8) -> Vec<Value> {
        self.flow_rules()
            .await
            .into_iter()
            .filter(|r| r["source"] == addr && r["source_mask"] == mask)
            .collect()
    }

    /// Creates a flowspec rule as an operator would: `body` is the rule's JSON without
    /// expiry and comment; IPv6 if `source` is. Returns the rule as ExaFS answers it.
    pub async fn create_flow(&self, mut body: Value, expires: i64) -> Value {
        let token = self.token().await;
        let family = if body["source"].as_str().unwrap_or("").contains(':') {
            "ipv6"
        } else {
            "ipv4"
        };
        body["expires"] = json!(expires);
        body["comment"] = json!("operator");
        let response = self
            .http
            .post(format!("{}/rules/{family}", self.base))
            .header("x-access-token", token)
            .json(&body)
            .send()
            .await
            .expect("create flow");
        assert_eq!(response.status().as_u16(), 201);
        let answer: Value = response.json().await.expect("create flow json");
        answer["rule"].clone()
    }

    /// Deletes flowspec rule `id` (`v6`: of the IPv6 rules); the HTTP status.
    pub async fn delete_flow(&self, v6: bool, id: i64) -> u16 {
        let token = self.token().await;
        let family = if v6 { "ipv6" } else { "ipv4" };
        self.http
            .delete(format!("{}/rules/{family}/{id}", self.base))
            .header("x-access-token", token)
            .send()
            .await
            .expect("delete flow")
            .status()
            .as_u16()
    }

    /// Runs ExaFS's cleaning job as its cron entry does (`GET /rules/withdraw_expired`, from
    /// localhost): active rules whose expiry has passed are withdrawn (ExaBGP is told) and
    /// marked so.
    pub async fn withdraw_expired(&self) {
        let response = self
            .http
            .get(format!("{}/rules/withdraw_expired", self.root))
            .send()
            .await
            .expect("withdraw_expired");
        assert_eq!(response.status().as_u16(), 200);
    }

    /// The rule for `addr`/`mask`, if any.
    pub async fn rule_for(&self, addr: &str, mask: u8) -> Option<Value> {
        self.rules().await.into_iter().find(|r| {
            (r["ipv4"] == addr && r["ipv4_mask"] == mask)
                || (r["ipv6"] == addr && r["ipv6_mask"] == mask)
        })
    }

    pub async fn create(&self, addr: &str, mask: u8, expires: i64) -> Value {
        let token = self.token().await;
        let body = if addr.contains(':') {
            json!({"ipv6": addr, "ipv6_mask": mask, "community": COMMUNITY, "expires": expires, "comment": "operator"})
        } else {
            json!({"ipv4": addr, "ipv4_mask": mask, "community": COMMUNITY, "expires": expires, "comment": "operator"})
        };
        let response = self
            .http
            .post(format!("{}/rules/rtbh", self.base))
            .header("x-access-token", token)
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(response.status().as_u16(), 201);
        let answer: Value = response.json().await.expect("create json");
        answer["rule"].clone()
    }

    pub async fn delete(&self, id: i64) -> u16 {
        let token = self.token().await;
        self.http
            .delete(format!("{}/rules/rtbh/{id}", self.base))
            .header("x-access-token", token)
            .send()
            .await
            .expect("delete")
            .status()
            .as_u16()
    }
}
