//! The fleet's ledger: one PostgreSQL database shared by every host's daemon.
//!
//! # Connecting
//!
//! [`PostgresLedger::connect`] takes a `postgres://` URL or a libpq key=value string, several
//! hosts allowed (`host=db1,db2 port=5432,5432 target_session_attrs=read-write`), and an
//! optional password file (its first line). TCP keepalives, `tcp_user_timeout`,
//! `connect_timeout` and `target_session_attrs` are taken from the string as libpq spells
//! them; `connect_timeout` defaults to [`CONNECT_TIMEOUT`] (per host) and `application_name`
//! to `netban`. TLS is not built in: `sslmode=require` fails to connect. The connection is
//! blocking (the `postgres` crate; the trait runs on the daemon's ledger thread). When it
//! breaks, or the server answers that it takes no writes (a standby), the call that noticed
//! fails and the next call connects again (after a failover, to whichever host is now
//! read-write).
//!
//! Every transaction that writes an event notifies the channel `netban_feed`, so other
//! hosts' [`notify::FeedListener`]s read the feed at once instead of at their next poll.
//!
//! Each session sets `idle_in_transaction_session_timeout` to [`IDLE_IN_TRANSACTION`]: a
//! transaction left open by a stalled client would hold back every host's change feed (see
//! below). Commits use the server's `synchronous_commit` (on by default: a ban is in the WAL
//! on disk, and on synchronous standbys if configured, when [`Ledger::record`] returns).
//!
//! # Schema (version 1, see [`schema`])
//!
//! The tables of the SQLite ledger, with PostgreSQL types: prefixes are `cidr` (history's
//! containment is `>>=` / `<<=` on a GiST index), times and expiries `bigint` epoch seconds
//! with `-1` for never (as in [`crate::stored`]), and every event carries the id of the
//! transaction that wrote it, `xid xid8 DEFAULT pg_current_xact_id()`.
//!
//! # The change feed: ids are not commit order
//!
//! A transaction takes an event id, another takes a higher one and commits first: a reader
//! that tails `id > cursor` moves past the first id before it commits, and never sees it. So
//! the feed is ordered by (xid, id) and stops below the *horizon*, the oldest transaction still
//! running (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction below it has ended,
//! so no event can appear below the horizon later, and the cursor (xid, id) of the last event
//! delivered never skips one. The horizon is cluster-wide: an open write transaction in
//! another database of the same server holds it back too (hence the idle timeout above).
//!
//! # Writers, locks and order
//!
//! Every writing transaction first takes a transaction-level advisory lock on the *bucket*
//! of each prefix it writes ([`bucket`]: a hash of the prefix text into [`BUCKETS`]
//! buckets, in the lock space [`LOCK_SPACE`]), in ascending order, before its first write.
//! Two transactions writing the same prefix are therefore serialised, and since an xid is
//! assigned at a transaction's first write, which comes after the lock, their xids are in
//! the order they committed: the feed delivers the events of one prefix in commit order,
//! whatever the interleaving of other writers. Writers of different buckets do not wait for
//! each other. It also makes concurrent `expire` calls on several hosts safe: a second
//! expirer waits for the first, then its `DELETE ... RETURNING` finds the rows gone and
//! writes no second `Expire` event. A ban of a (prefix, source) another host just inserted
//! is an `INSERT ... ON CONFLICT DO UPDATE`, never a unique violation.
//!
//! Escalation (`prior_bans`) counts every host's bans, since they share the events table.

pub mod lease;
pub mod notify;
pub mod queries;
pub mod schema;

use crate::LedgerError;
use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use std::path::Path;
use std::time::Duration;

pub use schema::{MIGRATIONS, SCHEMA_VERSION};

/// `connect_timeout` when the connection string gives none (per host tried).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `tcp_user_timeout` of the ledger's session when the connection string gives none: how long
/// a call waits on a connection whose packets go unanswered before it fails.
pub const SESSION_USER_TIMEOUT: Duration = Duration::from_millis(2500);
/// `idle_in_transaction_session_timeout` of the ledger's sessions.
pub const IDLE_IN_TRANSACTION: &str = "30s";
/// First key of every advisory lock netban takes (`pg_advisory_xact_lock(LOCK_SPACE, key)`).
pub const LOCK_SPACE: i32 = 0x6e62_6c67; // "nblg"
/// How many prefix buckets writers lock (keys `0..BUCKETS`). A batch locks at most this many.
pub const BUCKETS: u32 = 256;
/// The key of the lock that serialises migrations.
pub const MIGRATION_LOCK: i32 = -1;

/// The lock bucket of a prefix: FNV-1a of its canonical text, modulo [`BUCKETS`]. Every
/// netban version and host must compute the same, so it is fixed here, not `Hash`.
pub fn bucket(prefix_text: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in prefix_text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % BUCKETS) as i32
}

/// The PostgreSQL [`Ledger`](crate::Ledger).
pub struct PostgresLedger {
    config: Config,
    target: String,
    session: Option<Session>,
}

impl std::fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLedger")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// One open connection and its prepared statements.
struct Session {
    client: Client,
    st: queries::Statements,
}

impl PostgresLedger {
    /// Connects to the database `url` names (see the module documentation), with the password
    /// from the first line of `password_file` when given, and brings its schema up to date.
    pub fn connect(url: &str, password_file: Option<&Path>) -> Result<PostgresLedger, LedgerError> {
        let mut config = connection_config(url, password_file)?;
        // A network cut (packets vanish, nothing is refused) must fail the call that meets
        // it, so that the daemon spools instead of waiting for the kernel to give up on the
        // connection (about 15 minutes of retransmissions): unacknowledged data fails the
        // connection after `tcp_user_timeout`, an idle one is probed by keepalives.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(SESSION_USER_TIMEOUT);
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(2))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(2);
        let target = describe(&config);
        let mut ledger = PostgresLedger {
            config,
            target,
            session: None,
        };
        ledger.session()?;
        Ok(ledger)
    }

    /// The servers and database, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema version of the database.
    pub fn schema_version(&mut self) -> Result<i64, LedgerError> {
        self.with_session(|s| schema::version(&mut s.client))
    }

    /// The open session, connecting (and migrating) first if there is none or it broke.
    fn session(&mut self) -> Result<&mut Session, LedgerError> {
        if self.session.as_ref().is_some_and(|s| s.client.is_closed()) {
            self.session = None;
        }
        if self.session.is_none() {
            let mut client = self
                .config
                .connect(NoTls)
                .map_err(|error| LedgerError::Connect {
                    target: self.target.clone(),
                    error,
                })?;
            // Each execution of a prepared statement is planned for the tables as they are
            // then. After five executions PostgreSQL may keep one generic plan per statement,
            // and the statements are prepared at start, often on empty tables that then grow
            // by thousands of rows before autovacuum first analyzes them: kept, those plans
            // scan `bans` and `events` whole for every ban (measured: 24 million rows read
            // for a burst of 10,000 bans on 4 hosts, and a batch of 2,500 taking seconds, not
            // 0.1 s). Planning costs far less than that.
            client.batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}';
                 SET plan_cache_mode = force_custom_plan"
            ))?;
            schema::migrate(&mut client, MIGRATIONS)?;
            let st = queries::Statements::prepare(&mut client)?;
            self.session = Some(Session { client, st });
        }
        Ok(self.session.as_mut().expect("connected above"))
    }

    /// Runs `f` on the session; forgets the session if the connection broke meanwhile.
    fn with_session<T>(
        &mut self,
        f: impl FnOnce(&mut Session) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let session = self.session()?;
        let result = f(session);
        if session.client.is_closed() || result.as_ref().is_err_and(is_read_only_server) {
            self.session = None;
        }
        result
    }
}

/// Whether `error` says the server no longer takes writes (SQLSTATE 25006
/// `read_only_sql_transaction`): the session is on a standby, or on a server that became one.
/// The session is then dropped, so the next call connects again and, with
/// `target_session_attrs=read-write`, finds the primary.
fn is_read_only_server(error: &LedgerError) -> bool {
    matches!(error, LedgerError::Postgres(e)
        if e.code() == Some(&postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION))
}

/// The client configuration `url` and `password_file` give (see the module documentation).
pub(crate) fn connection_config(
    url: &str,
    password_file: Option<&Path>,
) -> Result<Config, LedgerError> {
    let mut config: Config = url.parse().map_err(|error| LedgerError::Connect {
        target: "(connection string)".to_string(),
        error,
    })?;
    if let Some(path) = password_file {
        let password = netban_config::secret::read_file("ledger_password_file", path)
            .map_err(LedgerError::PasswordFile)?;
        config.password(password.expose());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("netban");
    }
    Ok(config)
}

/// The configuration of a side connection that must notice a lost server within seconds (the
/// lease keeper's, the feed listener's): connect within 2 s per host, TCP keepalives after 2 s
/// idle, and `tcp_user_timeout` 2.5 s, so a cut network fails a call instead of hanging it.
pub(crate) fn watch_config(url: &str, password_file: Option<&Path>) -> Result<Config, LedgerError> {
    let mut config = connection_config(url, password_file)?;
    if config
        .get_connect_timeout()
        .is_none_or(|t| *t > Duration::from_secs(2))
    {
        config.connect_timeout(Duration::from_secs(2));
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(2)
        .tcp_user_timeout(Duration::from_millis(2500));
    Ok(config)
}

/// `host:port,host:port/dbname as user`, from the parsed configuration (no password).
fn describe(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            // libpq: one port for all hosts, or one per host.
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    format!(
        "postgresql {}/{} as {}",
        hosts.join(","),
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)")
    )
}
