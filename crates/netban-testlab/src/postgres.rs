//! Throwaway PostgreSQL 15 servers for tests: each its own data directory, port and socket
//! directory; never the system cluster, never port 5432.
//!
//! [`PgServer::start`] runs Debian's binaries from [`PG_BIN`] (installed by
//! `scripts/setup.d/postgres.sh`): `initdb` as the `postgres` user through `runuser` (initdb
//! refuses to run as root) in a fresh directory under the system temp dir, then `pg_ctl -w`
//! (a bounded readiness wait) with `-k <dir>/sock` and `listen_addresses=127.0.0.1` on a free
//! port. Dropping the server stops it (`pg_ctl -m immediate`) and deletes its directory.
//! [`PgServer::shared`] is one lazily started server per test process, stopped and deleted
//! when the process exits (an `atexit` hook, since statics are never dropped); each test takes
//! a fresh database from it with [`PgServer::create_database`]. Directories left by a test
//! process that died are swept (server stopped, directory deleted) by the next start; their
//! names carry the owning PID.
//!
//! [`PgServer::start_in`] starts one inside a lab namespace instead, listening on an address of
//! that namespace (and accepting [`ROLE`] from any address), for tests that cut a host's
//! network link to the database; the harness still reaches it over its socket directory.
//!
//! `fsync` is off by default, for speed; a test about durability starts its own server with
//! [`PgOptions::fsync`] on, and a benchmark does too.
//!
//! Clients log in over TCP as role [`ROLE`] with password [`PASSWORD`] (`scram-sha-256`),
//! the way a netban daemon would; the harness itself uses `psql` as `postgres` over the
//! socket (`trust`).

use crate::{wait_until, Host};
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Where Debian's PostgreSQL 15 server binaries are.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The login role every database of a test server belongs to.
pub const ROLE: &str = "netban";
/// Its password.
pub const PASSWORD: &str = "netban-test";

/// The role a streaming replica logs in as (password [`PASSWORD`]).
pub const REPLICATION_ROLE: &str = "netban_replication";

/// Every server directory's name starts with this, then the owning PID and a dash.
const DIR_PREFIX: &str = "netban-pg-";
/// How long `pg_ctl` may wait for the server to accept connections (or to stop).
const PG_CTL_WAIT_SECS: &str = "60";
/// Attempts at a free port (another process may take the one we picked before the server binds).
const PORT_ATTEMPTS: usize = 5;

static SERVER_COUNTER: AtomicUsize = AtomicUsize::new(0);
static DATABASE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How to start a server.
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// `fsync=on` (PostgreSQL's default): commits reach the disk. Off, commits are only
    /// written to the OS, which survives a server crash but not a machine crash.
    pub fsync: bool,
}

/// One running throwaway server.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    options: PgOptions,
    /// Where it listens for TCP clients.
    listen: Listen,
    /// `cluster_name`, also the `application_name` a standby reports to its primary (the name
    /// `synchronous_standby_names` uses). Letters, digits and `_` only: a `-` is a syntax error
    /// there unless quoted.
    name: String,
    stopped: AtomicBool,
}

/// Where a server listens for TCP clients.
#[derive(Clone, Debug)]
enum Listen {
    /// 127.0.0.1 of the root namespace.
    Loopback,
    /// `address` inside the network namespace `netns`.
    Namespace { netns: String, address: String },
}

impl Listen {
    fn address(&self) -> &str {
        match self {
            Listen::Loopback => "127.0.0.1",
            Listen::Namespace { address, .. } => address,
        }
    }
}

/// A fresh database on a [`PgServer`], owned by [`ROLE`].
#[derive(Clone, Debug)]
pub struct PgDatabase {
    pub name: String,
    pub port: u16,
    /// The address the server listens on (127.0.0.1 unless started with
    /// [`PgServer::start_in`]).
    pub host: String,
}

impl PgDatabase {
    /// A `postgres://` URL for [`ROLE`] naming several servers (this database's name on each),
    /// the way a fleet connects to a primary with streaming replicas: the client tries them in
    /// order and keeps the first that takes writes (`target_session_attrs=read-write`), giving
    /// each 2 s to answer.
    pub fn failover_url(&self, ports: &[u16]) -> String {
        let hosts: Vec<String> = ports.iter().map(|p| format!("{}:{p}", self.host)).collect();
        format!(
            "postgres://{ROLE}:{PASSWORD}@{}/{}?target_session_attrs=read-write&connect_timeout=2",
            hosts.join(","),
            self.name
        )
    }

    /// A `postgres://` URL for [`ROLE`] over TCP, password included.
    pub fn url(&self) -> String {
        format!(
            "postgres://{ROLE}:{PASSWORD}@{}:{}/{}",
            self.host, self.port, self.name
        )
    }

    /// A key=value connection string for [`ROLE`] over TCP, without the password.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user={ROLE} dbname={}",
            self.host, self.port, self.name
        )
    }
}

/// Whether PostgreSQL 15's server binaries are installed.
pub fn available() -> bool {
    Path::new(PG_BIN).join("initdb").exists()
}

/// Whether PostgreSQL tests must run rather than skip: under `CI=true` or
/// `NETBAN_REQUIRE_POSTGRES=1`.
pub fn required() -> bool {
    let set = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v == value);
    set("CI", "true") || set("NETBAN_REQUIRE_POSTGRES", "1")
}

/// A fresh database on the process's shared server ([`PgServer::shared`]), or `None` (after
/// printing why) where PostgreSQL 15 is not installed and not [`required`].
pub fn shared_database() -> Option<PgDatabase> {
    if !available() && !required() {
        eprintln!("skipping: PostgreSQL 15 not installed (scripts/setup.d/postgres.sh)");
        return None;
    }
    let server = PgServer::shared().expect("starting the test PostgreSQL server");
    Some(server.create_database().expect("creating a test database"))
}

impl PgServer {
    /// Starts a new server (see the module documentation).
    pub fn start(options: PgOptions) -> io::Result<PgServer> {
        PgServer::start_listening(options, Listen::Loopback)
    }

    /// Starts a new server inside `host`'s network namespace, listening on `address` (an
    /// address of that namespace, without a length), reachable only over the namespace's
    /// links: cutting a link cuts the clients behind it off, as a network failure would.
    /// [`ROLE`] may log in from any address (`scram-sha-256`). Killing the lab's processes
    /// at its cleanup kills this server too; dropping it deletes its directory.
    pub fn start_in(host: &Host, address: &str, options: PgOptions) -> io::Result<PgServer> {
        PgServer::start_listening(
            options,
            Listen::Namespace {
                netns: host.name().to_string(),
                address: address.to_string(),
            },
        )
    }

    fn start_listening(options: PgOptions, listen: Listen) -> io::Result<PgServer> {
        if !available() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{PG_BIN}/initdb not found: run scripts/setup.d/postgres.sh"),
            ));
        }
        sweep_stale();
        let mut server = PgServer::new_dir(options)?;
        server.listen = listen;
        run_ok(as_postgres("initdb").args([
            "-D",
            &server.data().to_string_lossy(),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-N",
        ]))?;
        if let Listen::Namespace { .. } = server.listen {
            use std::io::Write;
            let mut hba = fs::OpenOptions::new()
                .append(true)
                .open(server.data().join("pg_hba.conf"))?;
            writeln!(hba, "host all {ROLE} 0.0.0.0/0 scram-sha-256")?;
            writeln!(hba, "host all {ROLE} ::/0 scram-sha-256")?;
        }
        let server = server.start_on_a_free_port()?;
        server.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"),
        )?;
        Ok(server)
    }

    /// Starts a streaming replica of this server (a hot standby): `pg_basebackup -R -X stream`
    /// as role [`REPLICATION_ROLE`] over TCP into a directory of its own, started on its own
    /// port with its own `cluster_name`. Replication is asynchronous until
    /// [`PgServer::make_synchronous`] names it. Its databases are this server's (read-only
    /// until [`PgServer::promote`]); [`PgServer::database_on`] names one on it.
    pub fn start_replica(&self) -> io::Result<PgServer> {
        if let Listen::Namespace { netns, .. } = &self.listen {
            return Err(io::Error::other(format!(
                "replicas of a server in namespace {netns} are not supported"
            )));
        }
        self.psql(
            "postgres",
            &format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{REPLICATION_ROLE}') \
                 THEN CREATE ROLE {REPLICATION_ROLE} REPLICATION LOGIN PASSWORD '{PASSWORD}'; \
                 END IF; END $$"
            ),
        )?;
        let replica = PgServer::new_dir(self.options.clone())?;
        // `env`, not Command::env: runuser may reset the environment it passes on.
        let mut basebackup = Command::new("runuser");
        basebackup
            .args(["-u", "postgres", "--", "env"])
            .arg(format!("PGPASSWORD={PASSWORD}"))
            .arg(Path::new(PG_BIN).join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", REPLICATION_ROLE, "-D"])
            .arg(replica.data())
            .args(["-R", "-X", "stream", "-c", "fast"])
            .current_dir("/");
        run_ok(&mut basebackup)?;
        replica.start_on_a_free_port()
    }

    /// Makes commits on this (primary) server wait for `standby` to flush them
    /// (`synchronous_standby_names` = its name): an acknowledged commit survives this server's
    /// crash. The trap (field notes): while that standby is down, every commit hangs.
    pub fn make_synchronous(&self, standby: &PgServer) -> io::Result<()> {
        self.psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{}'",
                standby.name
            ),
        )?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        let synchronous = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
            self.psql(
                "postgres",
                &format!(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{}'",
                    standby.name
                ),
            )
            .is_ok_and(|state| state.trim() == "sync")
        });
        if synchronous {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} did not become a synchronous standby of {}",
                standby.name, self.name
            )))
        }
    }

    /// Waits (bounded) until this standby has replayed everything `primary` has written so
    /// far (its replay position reaches the primary's current WAL position).
    pub fn catch_up_with(&self, primary: &PgServer, timeout: Duration) -> io::Result<()> {
        let lsn = primary.psql("postgres", "SELECT pg_current_wal_lsn()")?;
        let lsn = lsn.trim();
        let caught_up = wait_until(timeout, Duration::from_millis(20), || {
            self.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            )
            .is_ok_and(|t| t.trim() == "t")
        });
        if caught_up {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} did not replay up to {lsn} within {timeout:?}",
                self.name
            )))
        }
    }

    /// Promotes this standby to a primary (`pg_ctl promote -w`: returns once it takes writes).
    pub fn promote(&self) -> io::Result<()> {
        run_ok(as_postgres("pg_ctl").args([
            "-D",
            &self.data().to_string_lossy(),
            "-w",
            "-t",
            PG_CTL_WAIT_SECS,
            "promote",
        ]))
        .map(drop)
    }

    /// Stops the server cleanly (`pg_ctl -m fast`: sessions are ended, and a primary first
    /// sends its standbys every bit of WAL).
    pub fn stop(&self) -> io::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Its `cluster_name` (see the field's documentation).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Database `name` on this server (one a primary created, on its replica).
    pub fn database_on(&self, name: &str) -> PgDatabase {
        PgDatabase {
            name: name.to_string(),
            port: self.port,
            host: self.listen.address().to_string(),
        }
    }

    /// An empty server directory (with its socket directory) owned by `postgres`; dropping the
    /// returned server deletes it.
    fn new_dir(options: PgOptions) -> io::Result<PgServer> {
        let dir = make_dir()?;
        let n = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').nth(3))
            .unwrap_or("0")
            .to_string();
        // From here on, dropping `server` cleans up whatever was made.
        let server = PgServer {
            dir,
            port: 0,
            options,
            listen: Listen::Loopback,
            name: format!("netban_{}_{n}", std::process::id()),
            stopped: AtomicBool::new(true),
        };
        fs::create_dir(server.dir.join("sock"))?;
        run_ok(
            Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&server.dir),
        )?;
        Ok(server)
    }

    /// Starts the server in its directory on a free port (a few tries: another process may
    /// take the port we picked before the server binds it).
    fn start_on_a_free_port(mut self) -> io::Result<PgServer> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(self),
                // Most likely the port was taken meanwhile; the log says.
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no port tried")))
    }

    /// One server per test process (fsync off), started on first use and stopped and deleted
    /// when the process exits.
    pub fn shared() -> io::Result<&'static PgServer> {
        static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(Ok(server)) = SHARED.get() {
                server.stop_and_remove();
            }
        }
        SHARED
            .get_or_init(|| {
                let server = PgServer::start(PgOptions::default()).map_err(|e| e.to_string())?;
                // SAFETY: `stop_shared` is a plain function that only reads a static; atexit
                // calls it once, at normal process exit.
                #[allow(unsafe_code)]
                unsafe {
                    libc::atexit(stop_shared)
                };
                Ok(server)
            })
            .as_ref()
            .map_err(|e| io::Error::other(e.clone()))
    }

    /// The server's TCP port (on 127.0.0.1, or the address given to [`PgServer::start_in`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Whether it was started with `fsync=on`.
    pub fn fsync(&self) -> bool {
        self.options.fsync
    }

    /// A new database with a name unique to this process and server, owned by [`ROLE`].
    pub fn create_database(&self) -> io::Result<PgDatabase> {
        let n = DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("netban_{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER {ROLE}"))?;
        Ok(PgDatabase {
            name,
            port: self.port,
            host: self.listen.address().to_string(),
        })
    }

    /// Runs `sql` with `psql` as the superuser on database `db` (over the socket); returns
    /// its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        run_ok(
            Command::new(Path::new(PG_BIN).join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                ])
                .arg("-h")
                .arg(self.socket_dir())
                .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]),
        )
    }

    /// Stops the server the way a crash would (`pg_ctl -m immediate`: no checkpoint, no
    /// flush of anything not yet written); [`PgServer::restart`] then replays the WAL.
    pub fn crash(&self) -> io::Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// Starts the server again on the same port, after [`PgServer::crash`] or a stop.
    pub fn restart(&self) -> io::Result<()> {
        self.pg_ctl_start()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let fsync = if self.options.fsync { "on" } else { "off" };
        let settings = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync={fsync} -c max_connections=60 \
             -c cluster_name={}",
            self.port,
            self.socket_dir().display(),
            self.listen.address(),
            self.name
        );
        let mut pg_ctl = match &self.listen {
            Listen::Loopback => as_postgres("pg_ctl"),
            // The postmaster pg_ctl starts stays in the namespace `ip netns exec` entered.
            Listen::Namespace { netns, .. } => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", netns, "runuser", "-u", "postgres", "--"])
                    .arg(Path::new(PG_BIN).join("pg_ctl"))
                    .current_dir("/");
                cmd
            }
        };
        let started = run_ok(pg_ctl.args([
            "-D",
            &self.data().to_string_lossy(),
            "-l",
            &self.dir.join("log").to_string_lossy(),
            "-w",
            "-t",
            PG_CTL_WAIT_SECS,
            "-o",
            &settings,
            "start",
        ]));
        match started {
            Ok(_) => {
                self.stopped.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => Err(io::Error::other(format!(
                "{e}\nserver log:\n{}",
                self.log()
            ))),
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> io::Result<()> {
        run_ok(as_postgres("pg_ctl").args([
            "-D",
            &self.data().to_string_lossy(),
            "-m",
            mode,
            "-w",
            "-t",
            PG_CTL_WAIT_SECS,
            "stop",
        ]))?;
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn stop_and_remove(&self) {
        if !self.stopped.load(Ordering::SeqCst) {
            let _ = self.pg_ctl_stop("immediate");
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_and_remove();
    }
}

/// A command running `PG_BIN/program` as the `postgres` user.
fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(program));
    // runuser keeps the caller's directory, which `postgres` may not be allowed to enter.
    cmd.current_dir("/");
    cmd
}

/// Runs `cmd`; its stdout, or an error with its stderr.
fn run_ok(cmd: &mut Command) -> io::Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output()?;
    if status.success() {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({status}): {}{}",
            String::from_utf8_lossy(&stderr),
            String::from_utf8_lossy(&stdout)
        )))
    }
}

/// A port nothing listens on at the moment (the kernel's choice for port 0).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A new directory `netban-pg-{pid}-{n}-{nanos}` under the temp dir, readable by `postgres`.
fn make_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let n = SERVER_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "{DIR_PREFIX}{}-{n}-{nanos:08x}",
        std::process::id()
    ));
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Stops the servers and deletes the directories of test processes that no longer exist.
fn sweep_stale() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(DIR_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let dir = entry.path();
            let data = dir.join("data");
            if data.join("postmaster.pid").exists() {
                let _ = run_ok(as_postgres("pg_ctl").args([
                    "-D",
                    &data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ]));
            }
            let _ = fs::remove_dir_all(&dir);
        }
    });
}

/// Waits (bounded) until `db` on `server` answers a query; for tests that restart a server.
pub fn wait_ready(server: &PgServer, timeout: Duration) -> bool {
    wait_until(timeout, Duration::from_millis(20), || {
        server.psql("postgres", "SELECT 1").is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_run_side_by_side_and_leave_nothing_behind() {
        if !available() {
            eprintln!("skipping: {PG_BIN} missing (scripts/setup.d/postgres.sh installs it)");
            return;
        }
        let a = PgServer::start(PgOptions::default()).unwrap();
        let b = PgServer::start(PgOptions { fsync: true }).unwrap();
        assert_ne!(a.port(), b.port());
        assert_ne!(a.port(), 5432);
        assert_eq!(a.psql("postgres", "SHOW fsync").unwrap().trim(), "off");
        assert_eq!(b.psql("postgres", "SHOW fsync").unwrap().trim(), "on");
        let db1 = a.create_database().unwrap();
        let db2 = a.create_database().unwrap();
        assert_ne!(db1.name, db2.name);
        let owner = a
            .psql(
                "postgres",
                &format!(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{}'",
                    db1.name
                ),
            )
            .unwrap();
        assert_eq!(owner.trim(), ROLE);
        let dir = a.dir.clone();
        drop(a);
        assert!(!dir.exists(), "the directory is deleted");
        b.crash().unwrap();
        b.restart().unwrap();
        assert!(wait_ready(&b, Duration::from_secs(10)));
    }

    #[test]
    fn a_replica_streams_refuses_writes_and_takes_them_once_promoted() {
        if !available() {
            eprintln!("skipping: {PG_BIN} missing (scripts/setup.d/postgres.sh installs it)");
            return;
        }
        let primary = PgServer::start(PgOptions::default()).unwrap();
        let db = primary.create_database().unwrap();
        primary.psql(&db.name, "CREATE TABLE t (n int)").unwrap();
        let replica = primary.start_replica().unwrap();
        assert_ne!(replica.port(), primary.port());
        assert_ne!(replica.name(), primary.name());
        primary.make_synchronous(&replica).unwrap();
        primary.psql(&db.name, "INSERT INTO t VALUES (1)").unwrap();
        replica
            .catch_up_with(&primary, Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            replica
                .psql(&db.name, "SELECT count(*) FROM t")
                .unwrap()
                .trim(),
            "1"
        );
        let refused = replica
            .psql(&db.name, "INSERT INTO t VALUES (2)")
            .unwrap_err();
        assert!(refused.to_string().contains("read-only"), "{refused}");

        primary.crash().unwrap();
        replica.promote().unwrap();
        replica.psql(&db.name, "INSERT INTO t VALUES (2)").unwrap();
        assert_eq!(
            replica
                .psql(&db.name, "SELECT count(*) FROM t")
                .unwrap()
                .trim(),
            "2"
        );
        let dir = replica.dir.clone();
        drop(replica);
        assert!(!dir.exists(), "the replica's directory is deleted");
    }
}
