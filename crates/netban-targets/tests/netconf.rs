//! NETCONF target against the real peer: Debian's netconfd (yuma123, an RFC 6241 server)
//! behind OpenSSH's sshd as its `netconf` subsystem, each test with its own sshd on a free
//! loopback port, its own netconfd (own Unix socket, home and startup file) and its own keys,
//! loading netban's test schema (tests/netconf/t128-test*.yang, which mirrors the SSR path and
//! namespaces). Another administrator is played by OpenSSH's `ssh -s netconf` client speaking
//! raw NETCONF, independent of netban's client. Installed by scripts/setup.d/netconf.sh.
#![cfg(feature = "netconf")]

#[path = "common/report.rs"]
mod report;

use netban_core::plan::{plan, Ownership};
use netban_core::{Expiry, Prefix};
use netban_targets::netconf::{Netconf, NetconfConfig};
use netban_targets::{ItemOutcome, Step, Target};
use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::plans::{adds, prefix as p, removes};
use report::assert_all_done;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netconf");
const T128: &str = "http://128technology.com/t128";
const AUTHY: &str = "http://128technology.com/t128/config/authority-config";
const NC: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";

/// A child process killed and reaped on drop.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One netconfd behind one sshd, on a free loopback port.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    fingerprint: String,
    _sshd: Guard,
    _netconfd: Guard,
}

impl Drop for Server {
    /// A failing test shows what the server logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server on port {} ---\n{}", self.port, self.logs());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Server {
    fn start() -> Server {
        for program in [
            "/usr/sbin/sshd",
            "/usr/sbin/netconfd",
            "/usr/sbin/netconf-subsystem",
        ] {
            assert!(
                Path::new(program).exists(),
                "{program} missing: run scripts/setup.d/netconf.sh (as root)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("nb-netconf")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let port = free_port();
        for key in ["hostkey", "clientkey"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(d.join(key)));
        }
        std::fs::copy(d.join("clientkey.pub"), d.join("authorized_keys")).unwrap();
        let fingerprint = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(d.join("hostkey.pub")))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
        let sock = d.join("ncxserver.sock");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {d}/hostkey\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n\
                 PidFile {d}/sshd.pid\nMaxStartups 100\nMaxSessions 100\n\
                 Subsystem netconf \"/usr/sbin/netconf-subsystem --ncxserver-sockname={port}@{s}\"\n",
                d = d.display(),
                s = sock.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("startup-cfg.xml"),
            format!("<config xmlns=\"{NC}\"/>\n"),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("home")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let sshd = Guard(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-f"])
                .arg(d.join("sshd_config"))
                .arg("-E")
                .arg(d.join("sshd.log"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let netconfd = Guard(
            Command::new("/usr/sbin/netconfd")
                .arg(format!("--port={port}"))
                .arg(format!("--ncxserver-sockname={}", sock.display()))
                .arg(format!("--home={}", d.join("home").display()))
                .arg(format!("--modpath={SCHEMA_DIR}:/usr/share/yuma/modules"))
                .args([
                    "--module=t128-test",
                    "--target=candidate",
                    "--superuser=root",
                ])
                .arg(format!("--startup={}", d.join("startup-cfg.xml").display()))
                .arg(format!("--log={}", d.join("netconfd.log").display()))
                .arg(format!(
                    "--log-level={}",
                    std::env::var("NETCONFD_LOG_LEVEL").unwrap_or("info".into())
                ))
                .env("HOME", d.join("home"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let server = Server {
            dir,
            port,
            fingerprint,
            _sshd: sshd,
            _netconfd: netconfd,
        };
        let ready =
            netban_testlab::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
                sock.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        assert!(ready, "netconfd/sshd not ready: {}", server.logs());
        server
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "sshd.log: {}\nnetconfd.log: {}",
            read("sshd.log"),
            read("netconfd.log")
        )
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("clientkey")
    }

    fn config(&self, extra: &str) -> NetconfConfig {
        let toml = format!(
            r#"{{"host": "127.0.0.1", "port": {}, "username": "root", "private_key": {:?},
                "host_key_fingerprint": "{}", "timeout_secs": 20, "preset": "ssr",
                "tenant": "blacklist-fail2ban", "neighborhood": "internet" {extra}}}"#,
            self.port,
            self.key(),
            self.fingerprint
        );
        serde_json::from_str(&toml).unwrap_or_else(|e| panic!("{e}: {toml}"))
    }

    /// The generic preset pointed at the test schema's IPv4-only `ipv4-prefix` leaf-list of
    /// the given tenant member.
    fn generic_ipv4_list(&self, tenant: &str, neighborhood: &str) -> NetconfConfig {
        let member = format!(
            "<config xmlns=\\\"{T128}\\\"><authority xmlns=\\\"{AUTHY}\\\"><tenant><name>{tenant}</name>\
             <member><neighborhood>{neighborhood}</neighborhood>"
        );
        let close = "</member></tenant></authority></config>";
        let generic = format!(
            r#", "generic": {{
                "filter": "{member}<ipv4-prefix/>{close}",
                "path": ["config", "authority", "tenant", "member", "ipv4-prefix"],
                "edit": "{member}{{{{entries}}}}{close}",
                "add_entry": "<ipv4-prefix>{{{{prefix}}}}</ipv4-prefix>",
                "remove_entry": "<ipv4-prefix nc:operation=\"remove\">{{{{prefix}}}}</ipv4-prefix>"
            }}"#
        );
        let mut config = self.config(&generic);
        config.preset = netban_targets::netconf::Preset::Generic;
        config.tenant = None;
        config.neighborhood = None;
        config
    }

    fn target(&self, extra: &str) -> Netconf {
        Netconf::new("conductor", self.config(extra)).unwrap()
    }

    /// A second administrator: OpenSSH's client, raw NETCONF base:1.0.
    async fn admin(&self) -> Admin {
        Admin::open(self).await
    }
}

/// Raw NETCONF over `ssh -s netconf` (our own minimal framing code, independent of netban's).
struct Admin {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    buf: Vec<u8>,
    session_id: u32,
    next_id: u32,
    chunked: bool,
}

impl Admin {
    /// Opens the other administrator's session and proves it answers. The OpenSSH-client
    /// session sometimes gets no hello from the server at all (about one start in four on one
    /// run here), and once in CI a session that had said hello never answered its first
    /// request: an attempt that gets no hello, or no answer to a harmless `<get-config>`
    /// probe, within 5 s is dropped and a new session opened, up to 5 times.
    async fn open(server: &Server) -> Admin {
        for _ in 0..5 {
            if let Some(admin) = Admin::try_open(server).await {
                return admin;
            }
        }
        panic!("admin session: no hello from the server in 5 attempts");
    }

    async fn try_open(server: &Server) -> Option<Admin> {
        let mut child = tokio::process::Command::new("ssh")
            .args([
                "-q",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-p",
            ])
            .arg(server.port.to_string())
            .arg("-i")
            .arg(server.key())
            .args(["root@127.0.0.1", "-s", "netconf"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut admin = Admin {
            child,
            stdin,
            stdout,
            buf: Vec::new(),
            session_id: 0,
            next_id: 1,
            chunked: false,
        };
        // Our hello first, before reading the server's (see Session::exchange_hellos).
        admin
            .send(&format!(
                "<hello xmlns=\"{NC}\"><capabilities><capability>urn:ietf:params:netconf:base:1.1\
                 </capability></capabilities></hello>"
            ))
            .await;
        let hello = admin.read_within(Duration::from_secs(5)).await?;
        let id = hello
            .split("<session-id>")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        admin.session_id = id.trim().parse().unwrap();
        admin.chunked = true;
        admin
            .send(&format!(
                "<rpc message-id=\"0\" xmlns=\"{NC}\"><get-config><source><running/></source>\
                 <filter type=\"subtree\"><config xmlns=\"{T128}\"/></filter></get-config></rpc>"
            ))
            .await;
        let probe = admin.read_within(Duration::from_secs(5)).await?;
        assert!(probe.contains("<data"), "probe: {probe}");
        Some(admin)
    }

    /// Sends one message (with an XML declaration): the hello in base:1.0 framing, everything
    /// after it chunked (base:1.1). netconfd acts on a base:1.0 message only once more bytes
    /// follow it, so a base:1.0 client waits forever for its last reply
    /// (see docs/targets/netconf.md).
    async fn send(&mut self, message: &str) {
        let doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{message}");
        let framed = if self.chunked {
            format!("\n#{}\n{doc}\n##\n", doc.len())
        } else {
            format!("{doc}]]>]]>")
        };
        self.stdin.write_all(framed.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn read(&mut self) -> String {
        self.read_within(Duration::from_secs(20))
            .await
            .expect("admin session: no answer within 20 s")
    }

    /// The next whole message, or `None` if none arrives within `limit`.
    async fn read_within(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(message) = self.take_message() {
                return Some(message);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout_at(deadline.into(), self.stdout.read(&mut chunk))
                .await
                .ok()?
                .unwrap();
            assert!(n > 0, "admin session closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One whole message from `buf`, if there is one.
    fn take_message(&mut self) -> Option<String> {
        if !self.chunked {
            let at = self.buf.windows(6).position(|w| w == b"]]>]]>")?;
            let message = String::from_utf8_lossy(&self.buf[..at]).into_owned();
            self.buf.drain(..at + 6);
            return Some(message);
        }
        let mut pos = 0;
        let mut message = Vec::new();
        loop {
            let rest = &self.buf[pos..];
            if rest.starts_with(b"\n##\n") {
                self.buf.drain(..pos + 4);
                return Some(String::from_utf8_lossy(&message).into_owned());
            }
            let nl = rest.iter().skip(2).position(|&b| b == b'\n')? + 2;
            assert!(
                rest.starts_with(b"\n#"),
                "bad chunk: {:?}",
                String::from_utf8_lossy(rest)
            );
            let len: usize = std::str::from_utf8(&rest[2..nl]).unwrap().parse().unwrap();
            if rest.len() < nl + 1 + len {
                return None;
            }
            message.extend_from_slice(&rest[nl + 1..nl + 1 + len]);
            pos += nl + 1 + len;
        }
    }

    /// Sends one operation, returns the reply text.
    async fn rpc(&mut self, operation: &str) -> String {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&format!(
            "<rpc message-id=\"{id}\" xmlns=\"{NC}\">{operation}</rpc>"
        ))
        .await;
        self.read().await
    }

    async fn ok(&mut self, operation: &str) {
        let reply = self.rpc(operation).await;
        assert!(reply.contains("<ok/>"), "{operation}: {reply}");
    }

    /// Edits the tenant member's addresses in the candidate (`entries` is raw XML).
    async fn edit_member(&mut self, entries: &str) {
        self.ok(&format!(
            "<edit-config><target><candidate/></target><config xmlns:nc=\"{NC}\">\
             <config xmlns=\"{T128}\"><authority xmlns=\"{AUTHY}\"><tenant><name>blacklist-fail2ban</name>\
             <member><neighborhood>internet</neighborhood>{entries}</member></tenant></authority>\
             </config></config></edit-config>"
        ))
        .await;
    }

    /// Edits the tenant member's addresses and commits them.
    async fn commit_member(&mut self, entries: &str) {
        self.edit_member(entries).await;
        self.ok("<commit/>").await;
    }

    /// The addresses in running, as text.
    async fn running_addresses(&mut self) -> BTreeSet<String> {
        let reply = self
            .rpc(&format!(
                "<get-config><source><running/></source><filter type=\"subtree\">\
                 <config xmlns=\"{T128}\"/></filter></get-config>"
            ))
            .await;
        reply
            .split("<address>")
            .skip(1)
            .map(|s| s.split('<').next().unwrap().trim().to_string())
            .collect()
    }

    async fn close(mut self) {
        let _ = self.rpc("<close-session/>").await;
        let _ = self.child.wait().await;
    }
}

async fn held(t: &mut Netconf) -> BTreeSet<String> {
    t.observe()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.prefix.to_string())
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_and_unban_v4_and_v6_leaving_foreign_entries() {
    let server = Server::start();
    let mut admin = server.admin().await;
    // An operator's own entry in the same member: netban must leave it.
    admin
        .commit_member("<address>198.51.100.50/32</address>")
        .await;

    let mut t = server.target("");
    t.prepare().await.unwrap();
    assert_eq!(held(&mut t).await, set(&["198.51.100.50/32"]));

    let report = t
        .apply(&adds(&["203.0.113.7", "2001:db8::7", "203.0.113.0/28"]))
        .await
        .unwrap();
    assert_eq!(report.items.len(), 3);
    assert_all_done(&report);
    let want = set(&[
        "198.51.100.50/32",
        "203.0.113.7/32",
        "2001:db8::7/128",
        "203.0.113.0/28",
    ]);
    assert_eq!(held(&mut t).await, want);
    // Committed to running, as another session sees it.
    assert_eq!(admin.running_addresses().await, want);

    let report = t
        .apply(&removes(&["203.0.113.7", "2001:db8::7"]))
        .await
        .unwrap();
    assert_all_done(&report);
    assert_eq!(report.items[0].step, Step::Remove);
    let want = set(&["198.51.100.50/32", "203.0.113.0/28"]);
    assert_eq!(held(&mut t).await, want);
    assert_eq!(admin.running_addresses().await, want);

    // Removing what is already gone and adding what is there are no-ops, reported done.
    let mut again = removes(&["203.0.113.7"]);
    again.add = adds(&["203.0.113.0/28"]).add;
    assert_all_done(&t.apply(&again).await.unwrap());
    assert_eq!(held(&mut t).await, want);
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_lock_held_by_another_session() {
    let server = Server::start();
    let mut admin = server.admin().await;
    admin.ok("<lock><target><candidate/></target></lock>").await;

    // A short wait: the items fail, naming the session that holds the lock.
    let mut t = server.target(r#", "lock_wait_secs": 1"#);
    let report = t.apply(&adds(&["203.0.113.8"])).await.unwrap();
    match &report.items[0].result {
        ItemOutcome::Failed { reason } => assert!(
            reason.contains(&format!("locked by session {}", admin.session_id)),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(held(&mut t).await.is_empty());

    // A long wait: netban keeps retrying while the lock is held and goes in once released.
    let mut t = server.target(r#", "lock_wait_secs": 30"#);
    let apply = tokio::spawn(async move {
        let report = t.apply(&adds(&["203.0.113.8"])).await;
        (t, report)
    });
    let mut apply = Box::pin(apply);
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut apply)
            .await
            .is_err(),
        "apply finished while the candidate was locked by another session"
    );
    admin
        .ok("<unlock><target><candidate/></target></unlock>")
        .await;
    let (mut t, report) = tokio::time::timeout(Duration::from_secs(30), apply)
        .await
        .expect("apply did not finish after the unlock")
        .unwrap();
    assert_all_done(&report.unwrap());
    assert_eq!(admin.running_addresses().await, set(&["203.0.113.8/32"]));
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_commits_another_sessions_uncommitted_edits() {
    let server = Server::start();
    let mut admin = server.admin().await;
    // Half-finished provisioning: in the candidate, not committed, not locked.
    admin
        .edit_member("<address>198.51.100.77/32</address>")
        .await;

    let mut t = server.target("");
    let report = t.apply(&adds(&["203.0.113.9"])).await.unwrap();
    match &report.items[0].result {
        ItemOutcome::Failed { reason } => {
            assert!(
                reason.contains("uncommitted changes of another session"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        admin.running_addresses().await.is_empty(),
        "someone committed the foreign edit"
    );

    admin.ok("<discard-changes/>").await;
    assert_all_done(&t.apply(&adds(&["203.0.113.9"])).await.unwrap());
    assert_eq!(admin.running_addresses().await, set(&["203.0.113.9/32"]));
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_elements_fails_the_adds_and_still_removes() {
    let server = Server::start();
    let mut t = server.target("");
    // The test schema allows 64 addresses in the member.
    let first: Vec<String> = (1..=62).map(|i| format!("203.0.113.{i}")).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    assert_all_done(&t.apply(&adds(&first)).await.unwrap());
    assert_eq!(held(&mut t).await.len(), 62);

    // One remove and four adds: the batch would make 65. The server refuses the batch's
    // edit; netban redoes it item by item (removes first): the remove and three adds fit,
    // the last add fails with a message that says what to configure.
    let mut plan = adds(&[
        "203.0.113.100",
        "203.0.113.101",
        "203.0.113.102",
        "203.0.113.103",
    ]);
    plan.remove = removes(&["203.0.113.1"]).remove;
    let report = t.apply(&plan).await.unwrap();
    let mut failed = Vec::new();
    for item in &report.items {
        match (item.step, &item.result) {
            (Step::Add, ItemOutcome::Failed { reason }) => {
                assert!(
                    reason.contains("max-elements") && reason.contains("capacity_v4"),
                    "{reason}"
                );
                failed.push(item.prefix.to_string());
            }
            (_, ItemOutcome::Done { .. }) => {}
            other => panic!("{}: {other:?}", item.prefix),
        }
    }
    assert_eq!(failed, ["203.0.113.103/32"]);
    let now = held(&mut t).await;
    assert_eq!(now.len(), 64);
    assert!(!now.contains("203.0.113.1/32") && now.contains("203.0.113.102/32"));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_preset_reports_entries_the_server_refuses() {
    let server = Server::start();
    // The generic preset pointed at the test schema's IPv4-only leaf-list: the server's own
    // validation refuses the IPv6 entry; the IPv4 one still goes in, in the same commit.
    let config = server.generic_ipv4_list("lists", "n");
    let mut t = Netconf::new("generic", config).unwrap();
    let report = t
        .apply(&adds(&["203.0.113.20", "2001:db8::20"]))
        .await
        .unwrap();
    for item in &report.items {
        match (item.prefix.to_string().as_str(), &item.result) {
            ("203.0.113.20/32", ItemOutcome::Done { .. }) => {}
            ("2001:db8::20/128", ItemOutcome::Rejected { reason }) => {
                assert!(reason.contains("2001:db8::20/128"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(held(&mut t).await, set(&["203.0.113.20/32"]));
    assert_all_done(&t.apply(&removes(&["203.0.113.20"])).await.unwrap());
    assert!(held(&mut t).await.is_empty());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_removed_by_another_session_is_restored() {
    let server = Server::start();
    let mut admin = server.admin().await;
    admin
        .commit_member("<address>198.51.100.50/32</address>")
        .await;

    let mut t = server.target("");
    let desired: BTreeMap<Prefix, Expiry> = [
        ("203.0.113.30", Expiry::Never),
        ("2001:db8::30", Expiry::Never),
    ]
    .into_iter()
    .map(|(s, e)| (p(s), e))
    .collect();
    // What the daemon does: observe, plan with the owned records, apply, record the adds.
    let mut owned: BTreeSet<(Prefix, Option<String>)> = BTreeSet::new();
    for round in 0..2 {
        let now = t.observe().await.unwrap();
        let plan = plan(
            &desired,
            &now,
            &Ownership::Recorded(&owned),
            t.info().expiry,
        );
        if round == 0 {
            assert_eq!(plan.add.len(), 2);
        } else {
            // Another session removed one of netban's entries: only that one comes back,
            // and the operator's entry is neither removed nor touched.
            assert_eq!(plan.add.len(), 1, "{plan:?}");
            assert_eq!(plan.add[0].prefix, p("2001:db8::30"));
            assert!(plan.remove.is_empty());
        }
        let report = t.apply(&plan).await.unwrap();
        assert_all_done(&report);
        owned.extend(report.items.iter().map(|i| (i.prefix, None)));
        if round == 0 {
            admin
                .commit_member("<address nc:operation=\"delete\">2001:db8::30/128</address>")
                .await;
            assert_eq!(
                admin.running_addresses().await,
                set(&["198.51.100.50/32", "203.0.113.30/32"])
            );
        }
    }
    assert_eq!(
        admin.running_addresses().await,
        set(&["198.51.100.50/32", "203.0.113.30/32", "2001:db8::30/128"])
    );
    t.shutdown().await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conductors_both_receive_the_ban() {
    let (a, b) = (Server::start(), Server::start());
    assert_ne!(a.port, b.port);
    let mut targets = [a.target(""), b.target("")];
    let ban = adds(&["203.0.113.40", "2001:db8::40"]);
    for t in &mut targets {
        assert_all_done(&t.apply(&ban).await.unwrap());
    }
    for server in [&a, &b] {
        let mut admin = server.admin().await;
        assert_eq!(
            admin.running_addresses().await,
            set(&["203.0.113.40/32", "2001:db8::40/128"]),
            "server on port {}",
            server.port
        );
        admin.close().await;
    }
    for mut t in targets {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_a_config_error() {
    let server = Server::start();
    let mut config = server.config("");
    config.host_key_fingerprint = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let mut t = Netconf::new("c", config).unwrap();
    match t.prepare().await {
        Err(netban_targets::TargetError::Config(m)) => {
            assert!(
                m.to_string().contains(&server.fingerprint) && m.to_string().contains("refused"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// 1,000 bans: netban's one session, one edit-config and one commit, beside the seed's way
/// (bench/reference/netconf_ban.py: a Python process per ban, each with its own ncclient
/// session, edit-config and commit). The reference runs `NETBAN_BENCH_REF_BANS` bans (default
/// 100, each costs a process start and an SSH session) and its 1,000-ban time is scaled from
/// its per-ban time. Both write the test schema's unbounded `ipv4-prefix` list.
#[test]
#[ignore]
fn bench_netconf() {
    const BANS: u32 = 1000;
    let python = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv-netconf/bin/python"
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/reference/netconf_ban.py"
    );
    assert!(
        Path::new(python).exists(),
        "{python} missing: run scripts/setup.d/netconf.sh"
    );
    let ref_bans: u32 = std::env::var("NETBAN_BENCH_REF_BANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let addr = |i: u32| format!("198.18.{}.{}", i / 250, i % 250 + 1);

    // netban: one target, one apply of 1,000 adds (generic preset on the ipv4-prefix list).
    let server = Server::start();
    let config = server.generic_ipv4_list("blacklist-fail2ban", "internet");
    let list: Vec<String> = (0..BANS).map(addr).collect();
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let plan = adds(&list);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let observed = rt.block_on(async {
        let mut t = Netconf::new("bench", config).unwrap();
        let report = t.apply(&plan).await.unwrap();
        assert_all_done(&report);
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
        let out = Command::new(python)
            .arg(script)
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
            .arg(addr(i))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "reference ban {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reference = started.elapsed();
    let per_ban = reference.as_secs_f64() / f64::from(ref_bans);
    let scaled = per_ban * f64::from(BANS);

    println!();
    println!("NETCONF (netconfd behind sshd on loopback), {BANS} bans");
    println!("| way | bans run | seconds | per ban (ms) | {BANS} bans (s) |");
    println!("|---|---|---|---|---|");
    println!(
        "| netban: 1 session, 1 edit-config, 1 commit | {BANS} | {:.3} | {:.2} | {:.3} |",
        netban.as_secs_f64(),
        netban.as_secs_f64() * 1000.0 / f64::from(BANS),
        netban.as_secs_f64()
    );
    println!(
        "| seed: ncclient process + session + commit per ban | {ref_bans} | {:.3} | {:.1} | {scaled:.1} (scaled) |",
        reference.as_secs_f64(),
        per_ban * 1000.0
    );
    println!(
        "ratio (seed / netban, {BANS} bans): {:.0}x",
        scaled / netban.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_commit_is_read_back_and_confirmed() {
    let server = Server::start();
    let mut t = server.target(r#", "confirmed_commit_secs": 5"#);
    assert_all_done(
        &t.apply(&adds(&["203.0.113.50", "2001:db8::50"]))
            .await
            .unwrap(),
    );
    assert_all_done(&t.apply(&removes(&["2001:db8::50"])).await.unwrap());
    t.shutdown().await;
    // netban's session is closed: an unconfirmed commit would now be rolled back by the
    // server (RFC 6241 8.4: session end cancels a confirmed commit without persist).
    let mut admin = server.admin().await;
    assert_eq!(admin.running_addresses().await, set(&["203.0.113.50/32"]));
    admin.close().await;
}

// ---- through the daemon -------------------------------------------------------------------

/// One `[[targets]]` section for `server` (SSR preset).
fn daemon_target(name: &str, server: &Server) -> String {
    format!(
        "[[targets]]\nname = \"{name}\"\ntype = \"netconf\"\nhost = \"127.0.0.1\"\nport = {}\n\
         username = \"root\"\nprivate_key = \"{}\"\nhost_key_fingerprint = \"{}\"\n\
         timeout_secs = 20\npreset = \"ssr\"\ntenant = \"blacklist-fail2ban\"\n\
         neighborhood = \"internet\"\n\n",
        server.port,
        server.key().display(),
        server.fingerprint
    )
}

/// Runs the client (blocking) and insists on success.
fn run_ok(daemon: &Daemon, args: &[&str]) {
    let out = tokio::task::block_in_place(|| daemon.client(args));
    assert!(
        out.status.success(),
        "netban {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
}

/// Polls `admin`'s view of running until it equals `want` (at most 20 s).
async fn wait_for_running(admin: &mut Admin, want: &BTreeSet<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if &admin.running_addresses().await == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_bans_on_two_conductors_and_repairs_drift() {
    let (a, b) = (Server::start(), Server::start());
    let (mut admin_a, mut admin_b) = (a.admin().await, b.admin().await);
    // An operator's own entry on conductor b, committed before netban starts: it stays.
    admin_b
        .commit_member("<address>198.51.100.10/32</address>")
        .await;

    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[policy]\nprotect_own_addresses = false\n\n\
         [reconciler]\nresync_secs = 3600\nretry_min_secs = 1\nretry_max_secs = 2\n\n{}{}",
        daemon_target("conductor-a", &a),
        daemon_target("conductor-b", &b)
    );
    let daemon = tokio::task::block_in_place(|| {
        Daemon::start(&Binaries::locate(), &dir.path().join("netban"), &body)
    })
    .expect("daemon");

    // One ban reaches both conductors (each one commit reaching its routers).
    run_ok(&daemon, &["ban", "203.0.113.60", "--source", "sshd"]);
    run_ok(&daemon, &["ban", "2001:db8::60", "--source", "sshd"]);
    let banned = set(&["203.0.113.60/32", "2001:db8::60/128"]);
    let mut with_foreign = banned.clone();
    with_foreign.insert("198.51.100.10/32".into());
    assert!(
        wait_for_running(&mut admin_a, &banned).await,
        "{}",
        daemon.log()
    );
    assert!(
        wait_for_running(&mut admin_b, &with_foreign).await,
        "{}",
        daemon.log()
    );

    // Drift: another administrator deletes netban's address on conductor a and commits.
    admin_a
        .commit_member("<address nc:operation=\"remove\">203.0.113.60/32</address>")
        .await;
    assert_eq!(
        admin_a.running_addresses().await,
        set(&["2001:db8::60/128"])
    );
    // The next sync reads it back and repairs it.
    run_ok(&daemon, &["sync"]);
    assert_eq!(admin_a.running_addresses().await, banned);

    // The unban lifts it on both; the operator's entry on b stays.
    run_ok(&daemon, &["unban", "203.0.113.60", "--source", "sshd"]);
    run_ok(&daemon, &["unban", "2001:db8::60", "--source", "sshd"]);
    assert!(
        wait_for_running(&mut admin_a, &BTreeSet::new()).await,
        "{}",
        daemon.log()
    );
    assert!(
        wait_for_running(&mut admin_b, &set(&["198.51.100.10/32"])).await,
        "{}",
        daemon.log()
    );
    let status = tokio::task::block_in_place(|| daemon.status());
    for target in status["targets"].as_array().unwrap() {
        assert_eq!(target["health"], "ok", "{status}");
    }
    admin_a.close().await;
    admin_b.close().await;
}
