//! The embedded ledger: one SQLite file, shared by the daemon and the fallback client.
//!
//! # Connection settings
//!
//! [`SqliteLedger::open`] sets `journal_mode=WAL` (readers never block the writer),
//! `synchronous=FULL` (a commit is fsynced before it returns, so a ban is durable when
//! [`Ledger::record`] returns), `busy_timeout` of [`BUSY_TIMEOUT`] (several processes may use
//! the file at once: the daemon, and the client writing directly while the daemon is down) and
//! `foreign_keys=ON`. Every write runs in a `BEGIN IMMEDIATE` transaction: it takes the write
//! lock up front (waiting up to the busy timeout) instead of upgrading a read lock half way,
//! which is what makes concurrent writers wait rather than fail with "database is locked".
//! Because writers are serialised, event ids become visible in increasing order, so a reader
//! tailing [`Ledger::events_since`] never sees an id appear below its cursor.
//!
//! Switching a fresh file to WAL is the one step SQLite does not cover with the busy handler
//! (it answers "database is locked" at once when another connection is switching the same
//! fresh file); `open` retries it with a short backoff for up to [`BUSY_TIMEOUT`].
//!
//! # Schema (version 1)
//!
//! ```sql
//! bans(prefix TEXT, source TEXT, created INTEGER, expires INTEGER,
//!      reason TEXT NULL, failures INTEGER NULL, origin_host TEXT NULL,
//!      PRIMARY KEY (prefix, source))                       -- WITHOUT ROWID
//!   index bans_expires(expires)
//! events(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER, kind TEXT, prefix TEXT,
//!        fam INTEGER, lo BLOB, source TEXT NULL, expires INTEGER NULL, reason TEXT NULL,
//!        failures INTEGER NULL, origin_host TEXT NULL, escalation_step INTEGER)
//!   index events_prior(prefix, kind, at)     -- prior_bans; history: a prefix and its ancestors
//!   index events_range(fam, lo)              -- history: prefixes inside another
//! target_entries(target TEXT, prefix TEXT, handle TEXT NULL, expires INTEGER NULL,
//!                PRIMARY KEY (target, prefix))             -- WITHOUT ROWID
//! ```
//!
//! - Prefixes are stored as their canonical text (`203.0.113.7/32`, `2001:db8::/32`) and
//!   parsed back with [`Prefix::parse`]; sources and names are stored as their text and
//!   validated again on the way out. A row that does not parse is [`LedgerError::Corrupt`].
//! - `expires` is epoch seconds, `-1` for never (fail2ban's convention, as
//!   [`Expiry::to_epoch_or_minus_one`]). Any negative value reads back as never, so an
//!   `Expiry::At` before the epoch is stored as `0` (it is in the past either way). In
//!   `target_entries`, a NULL `expires` means the device keeps no expiry.
//! - `kind` is the lowercase [`EventKind`] name (`ban`, `extend`, `unban`, `expire`, `lift`).
//! - `events.fam` is 4 or 6 and `events.lo` the network address as big-endian bytes (4 or 16),
//!   which SQLite compares bytewise, i.e. numerically. Prefixes are either nested or disjoint,
//!   so the prefixes overlapping `q` are its ancestors (at most 33 or 129 texts, looked up by
//!   `prefix IN (...)`) and the prefixes whose network address lies within `q`'s range (one
//!   range scan of `events_range`). That is how [`Ledger::history`] finds containment without
//!   scanning the table.
//!
//! # Migrations
//!
//! `PRAGMA user_version` holds the number of [`MIGRATIONS`] applied. Opening applies the
//! missing ones in order, in one `BEGIN IMMEDIATE` transaction (so two processes opening a
//! fresh file at once do not both create it), and refuses a file whose version is newer than
//! this build knows with [`LedgerError::SchemaTooNew`].

use crate::{Event, EventId, EventKind, Ledger, LedgerError, Outcome, Write};
use netban_core::plan::Held;
use netban_core::{Ban, Expiry, OriginHost, Prefix, Reason, Source, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a connection waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema migrations, in order; migration `i` (0-based) brings `user_version` to `i + 1`.
/// Only ever append to this list.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE bans (
        prefix      TEXT    NOT NULL,
        source      TEXT    NOT NULL,
        created     INTEGER NOT NULL,
        expires     INTEGER NOT NULL,
        reason      TEXT,
        failures    INTEGER,
        origin_host TEXT,
        PRIMARY KEY (prefix, source)
    ) WITHOUT ROWID;
    CREATE INDEX bans_expires ON bans (expires);

    CREATE TABLE events (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        at              INTEGER NOT NULL,
        kind            TEXT    NOT NULL,
        prefix          TEXT    NOT NULL,
        fam             INTEGER NOT NULL,
        lo              BLOB    NOT NULL,
        source          TEXT,
        expires         INTEGER,
        reason          TEXT,
        failures        INTEGER,
        origin_host     TEXT,
        escalation_step INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX events_prior ON events (prefix, kind, at);
    CREATE INDEX events_range ON events (fam, lo);

    CREATE TABLE target_entries (
        target  TEXT NOT NULL,
        prefix  TEXT NOT NULL,
        handle  TEXT,
        expires INTEGER,
        PRIMARY KEY (target, prefix)
    ) WITHOUT ROWID;",
];

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The most ancestors a prefix can have, itself included (an IPv6 /128: lengths 0 to 128).
const MAX_ANCESTORS: usize = 129;

const EVENT_COLUMNS: &str =
    "id, at, kind, prefix, source, expires, reason, failures, origin_host, escalation_step";

// `+expires` keeps the planner on a plain table scan: nearly every row is active, and going
// through the expiry index would cost a primary-key lookup per row.
const ACTIVE_SQL: &str = "SELECT prefix, source, created, expires, reason, failures, origin_host
     FROM bans WHERE +expires < 0 OR +expires > ?1";

const EXPIRED_SQL: &str = "SELECT prefix, source FROM bans WHERE expires >= 0 AND expires <= ?1
     ORDER BY expires, prefix, source";

const PRIOR_BANS_SQL: &str =
    "SELECT COUNT(*) FROM events WHERE prefix = ?1 AND kind = 'ban' AND at >= ?2";

/// The history query. `?1..=?129` are the prefix and its ancestors (unused slots NULL, which
/// match nothing); then the family, the first and last address of the prefix (for the
/// prefixes inside it), and the limit.
fn history_sql() -> String {
    let slots = (1..=MAX_ANCESTORS)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let n = MAX_ANCESTORS;
    format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE prefix IN ({slots}) OR (fam = ?{} AND lo BETWEEN ?{} AND ?{})
         ORDER BY id DESC LIMIT ?{}",
        n + 1,
        n + 2,
        n + 3,
        n + 4
    )
}

/// The SQLite [`Ledger`].
pub struct SqliteLedger {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    /// The directory must exist.
    pub fn open(path: &Path) -> Result<SqliteLedger, LedgerError> {
        let open_err = |error| LedgerError::Open {
            path: path.display().to_string(),
            error,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        SqliteLedger::setup(conn, path.to_path_buf(), true)
    }

    /// A private in-memory ledger (tests, dry runs). Nothing survives it.
    pub fn open_in_memory() -> Result<SqliteLedger, LedgerError> {
        let conn = Connection::open_in_memory().map_err(|error| LedgerError::Open {
            path: ":memory:".to_string(),
            error,
        })?;
        SqliteLedger::setup(conn, PathBuf::from(":memory:"), false)
    }

    /// The file this ledger uses (`:memory:` for an in-memory ledger), for status output.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, LedgerError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn setup(conn: Connection, path: PathBuf, wal: bool) -> Result<SqliteLedger, LedgerError> {
        let open_err = |error| LedgerError::Open {
            path: path.display().to_string(),
            error,
        };
        // The busy timeout first, so that every later step waits for other processes.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        if wal {
            let mode = enable_wal(&conn).map_err(open_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(LedgerError::Open {
                    path: path.display().to_string(),
                    error: rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                        Some(format!(
                            "could not switch to WAL journal mode (still {mode})"
                        )),
                    ),
                });
            }
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(32);
        let mut ledger = SqliteLedger { conn, path };
        ledger.migrate(MIGRATIONS)?;
        Ok(ledger)
    }

    /// Applies the migrations of `list` the file lacks. Separate from `setup` so tests can
    /// give a longer list.
    fn migrate(&mut self, list: &[&str]) -> Result<(), LedgerError> {
        let known = list.len() as i64;
        let too_new = |found| LedgerError::SchemaTooNew { found, known };
        // Most opens find the schema current: check without taking the write lock.
        let found = self.schema_version()?;
        if found == known {
            return Ok(());
        }
        if found > known {
            return Err(too_new(found));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated between the check and the lock.
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > known {
            return Err(too_new(found));
        }
        for (i, sql) in list.iter().enumerate().skip(found.max(0) as usize) {
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Switches the file to WAL (a no-op when it already is; the mode is kept in the file).
///
/// Switching a fresh file needs an exclusive lock, and SQLite answers `SQLITE_BUSY` at once,
/// without the busy handler, when another connection is opening the same fresh file at the
/// same moment. So retry, with a short backoff, for up to [`BUSY_TIMEOUT`].
fn enable_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// `expires` as stored: -1 for never, never below 0 otherwise (see the module documentation).
fn expiry_to_sql(e: Expiry) -> i64 {
    match e {
        Expiry::Never => -1,
        Expiry::At(t) => t.0.max(0),
    }
}

fn kind_to_sql(k: EventKind) -> &'static str {
    k.as_str()
}

fn kind_from_sql(s: &str) -> Result<EventKind, LedgerError> {
    s.parse()
        .map_err(|e: netban_core::event::UnknownEventKind| LedgerError::Corrupt(e.to_string()))
}

fn range_key(p: &Prefix) -> (i64, Vec<u8>) {
    match p.addr() {
        IpAddr::V4(a) => (4, a.octets().to_vec()),
        IpAddr::V6(a) => (6, a.octets().to_vec()),
    }
}

/// The last address of `p`, as bytes comparable with `range_key`.
fn range_end(p: &Prefix) -> Vec<u8> {
    match p.net().broadcast() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `p` and every prefix that contains it, as canonical text.
fn ancestors(p: &Prefix) -> Vec<String> {
    std::iter::successors(Some(p.net()), |n| n.supernet())
        .map(|n| Prefix::from_net(n).to_string())
        .collect()
}

/// A TEXT column borrowed from the row, without copying it.
fn text_column<'r>(r: &'r Row<'_>, i: usize) -> Result<&'r str, LedgerError> {
    r.get_ref(i)?
        .as_str()
        .map_err(|e| LedgerError::Corrupt(format!("column {i}: {e}")))
}

fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn prefix_from_sql(s: &str) -> Result<Prefix, LedgerError> {
    Prefix::parse(s).map_err(|e| LedgerError::Corrupt(format!("prefix {s:?}: {e}")))
}

fn source_from_sql(s: &str) -> Result<Source, LedgerError> {
    Source::new(s).map_err(|e| LedgerError::Corrupt(format!("source {s:?}: {e}")))
}

fn reason_from_sql(s: Option<String>) -> Result<Option<Reason>, LedgerError> {
    s.map(|s| Reason::new(&s).map_err(|e| LedgerError::Corrupt(format!("reason {s:?}: {e}"))))
        .transpose()
}

fn origin_from_sql(s: Option<String>) -> Result<Option<OriginHost>, LedgerError> {
    s.map(|s| {
        OriginHost::new(&s).map_err(|e| LedgerError::Corrupt(format!("origin host {s:?}: {e}")))
    })
    .transpose()
}

fn u32_from_sql(v: Option<i64>, what: &str) -> Result<Option<u32>, LedgerError> {
    v.map(|v| {
        u32::try_from(v).map_err(|_| LedgerError::Corrupt(format!("{what} {v} out of range")))
    })
    .transpose()
}

/// The raw columns of an event row, read inside rusqlite's row callback; validated after.
struct RawEvent {
    id: i64,
    at: i64,
    kind: String,
    prefix: String,
    source: Option<String>,
    expires: Option<i64>,
    reason: Option<String>,
    failures: Option<i64>,
    origin_host: Option<String>,
    escalation_step: i64,
}

impl RawEvent {
    fn read(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
        Ok(RawEvent {
            id: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            prefix: r.get(3)?,
            source: r.get(4)?,
            expires: r.get(5)?,
            reason: r.get(6)?,
            failures: r.get(7)?,
            origin_host: r.get(8)?,
            escalation_step: r.get(9)?,
        })
    }

    fn into_event(self) -> Result<Event, LedgerError> {
        Ok(Event {
            id: self.id,
            at: Timestamp(self.at),
            kind: kind_from_sql(&self.kind)?,
            prefix: prefix_from_sql(&self.prefix)?,
            source: self.source.as_deref().map(source_from_sql).transpose()?,
            expiry: self.expires.map(Expiry::from_epoch_or_minus_one),
            reason: reason_from_sql(self.reason)?,
            failures: u32_from_sql(self.failures, "failures")?,
            origin_host: origin_from_sql(self.origin_host)?,
            escalation_step: u32_from_sql(Some(self.escalation_step), "escalation step")?
                .unwrap_or(0),
        })
    }
}

/// One event to append.
struct NewEvent<'a> {
    at: Timestamp,
    kind: EventKind,
    prefix: &'a Prefix,
    prefix_text: &'a str,
    source: Option<&'a Source>,
    expiry: Option<Expiry>,
    reason: Option<&'a Reason>,
    failures: Option<u32>,
    origin_host: Option<&'a OriginHost>,
    escalation_step: u32,
}

fn append_event(conn: &Connection, e: &NewEvent<'_>) -> Result<EventId, LedgerError> {
    let (fam, lo) = range_key(e.prefix);
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (at, kind, prefix, fam, lo, source, expires, reason, failures,
                             origin_host, escalation_step)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    stmt.execute(params![
        e.at.0,
        kind_to_sql(e.kind),
        e.prefix_text,
        fam,
        lo,
        e.source.map(Source::as_str),
        e.expiry.map(expiry_to_sql),
        e.reason.map(Reason::as_str),
        e.failures,
        e.origin_host.map(OriginHost::as_str),
        e.escalation_step,
    ])?;
    Ok(conn.last_insert_rowid())
}

fn record_ban(
    conn: &Connection,
    ban: &Ban,
    escalation_step: u32,
    now: Timestamp,
) -> Result<Outcome, LedgerError> {
    let prefix_text = ban.prefix.to_string();
    let existing: Option<i64> = conn
        .prepare_cached("SELECT expires FROM bans WHERE prefix = ?1 AND source = ?2")?
        .query_row(params![prefix_text, ban.source.as_str()], |r| r.get(0))
        .optional()?;
    let reason = ban.reason.as_ref();
    let origin_host = ban.origin_host.as_ref();
    let active = existing
        .map(Expiry::from_epoch_or_minus_one)
        .filter(|e| !e.is_past(now));
    let (kind, expiry, escalation_step) = match active {
        Some(held) => {
            // Re-asserted while active: keep the later expiry, refresh what was given.
            let expiry = held.max(ban.expiry);
            conn.prepare_cached(
                "UPDATE bans SET expires = ?3,
                                 reason = COALESCE(?4, reason),
                                 failures = COALESCE(?5, failures),
                                 origin_host = COALESCE(?6, origin_host)
                 WHERE prefix = ?1 AND source = ?2",
            )?
            .execute(params![
                prefix_text,
                ban.source.as_str(),
                expiry_to_sql(expiry),
                reason.map(Reason::as_str),
                ban.failures,
                origin_host.map(OriginHost::as_str),
            ])?;
            (EventKind::Extend, expiry, 0)
        }
        None => {
            // New, or replacing a row whose expiry has passed but that `expire` has not
            // removed yet.
            conn.prepare_cached(
                "INSERT INTO bans (prefix, source, created, expires, reason, failures, origin_host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (prefix, source) DO UPDATE SET
                    created = excluded.created, expires = excluded.expires,
                    reason = excluded.reason, failures = excluded.failures,
                    origin_host = excluded.origin_host",
            )?
            .execute(params![
                prefix_text,
                ban.source.as_str(),
                ban.created.0,
                expiry_to_sql(ban.expiry),
                reason.map(Reason::as_str),
                ban.failures,
                origin_host.map(OriginHost::as_str),
            ])?;
            let stored = Expiry::from_epoch_or_minus_one(expiry_to_sql(ban.expiry));
            (EventKind::Ban, stored, escalation_step)
        }
    };
    let event = append_event(
        conn,
        &NewEvent {
            at: now,
            kind,
            prefix: &ban.prefix,
            prefix_text: &prefix_text,
            source: Some(&ban.source),
            expiry: Some(expiry),
            reason,
            failures: ban.failures,
            origin_host,
            escalation_step,
        },
    )?;
    Ok(Outcome::Banned {
        event,
        kind,
        expiry,
    })
}

fn record_unban(
    conn: &Connection,
    prefix: &Prefix,
    source: Option<&Source>,
    kind: EventKind,
    origin_host: Option<&OriginHost>,
    now: Timestamp,
) -> Result<Outcome, LedgerError> {
    let prefix_text = prefix.to_string();
    let removed = match source {
        Some(s) => conn
            .prepare_cached("DELETE FROM bans WHERE prefix = ?1 AND source = ?2")?
            .execute(params![prefix_text, s.as_str()])?,
        None => conn
            .prepare_cached("DELETE FROM bans WHERE prefix = ?1")?
            .execute(params![prefix_text])?,
    };
    let event = if removed > 0 {
        Some(append_event(
            conn,
            &NewEvent {
                at: now,
                kind,
                prefix,
                prefix_text: &prefix_text,
                source,
                expiry: None,
                reason: None,
                failures: None,
                origin_host,
                escalation_step: 0,
            },
        )?)
    } else {
        None
    };
    Ok(Outcome::Unbanned { event, removed })
}

impl Ledger for SqliteLedger {
    /// Applies `writes` in one `BEGIN IMMEDIATE` transaction. A `Ban` of an active pair is an
    /// `Extend` (escalation step recorded as 0); a `Ban` of a missing or expired pair is a
    /// `Ban`, even if its own expiry has already passed (`expire` removes it). An `Unban`
    /// records one event of the given kind, only if it removed a row.
    fn record(&mut self, writes: &[Write], now: Timestamp) -> Result<Vec<Outcome>, LedgerError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            outcomes.push(match write {
                Write::Ban {
                    ban,
                    escalation_step,
                } => record_ban(&tx, ban, *escalation_step, now)?,
                Write::Unban {
                    prefix,
                    source,
                    kind,
                    origin_host,
                } => record_unban(
                    &tx,
                    prefix,
                    source.as_ref(),
                    *kind,
                    origin_host.as_ref(),
                    now,
                )?,
            });
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Returns the removed pairs ordered by expiry, then prefix text, then source.
    fn expire(&mut self, now: Timestamp) -> Result<Vec<(Prefix, Source)>, LedgerError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let raw: Vec<(String, String)> = tx
            .prepare_cached(EXPIRED_SQL)?
            .query_map(params![now.0], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut pairs = Vec::with_capacity(raw.len());
        for (prefix_text, source_text) in &raw {
            let prefix = prefix_from_sql(prefix_text)?;
            let source = source_from_sql(source_text)?;
            tx.prepare_cached("DELETE FROM bans WHERE prefix = ?1 AND source = ?2")?
                .execute(params![prefix_text, source_text])?;
            append_event(
                &tx,
                &NewEvent {
                    at: now,
                    kind: EventKind::Expire,
                    prefix: &prefix,
                    prefix_text,
                    source: Some(&source),
                    expiry: None,
                    reason: None,
                    failures: None,
                    origin_host: None,
                    escalation_step: 0,
                },
            )?;
            pairs.push((prefix, source));
        }
        tx.commit()?;
        Ok(pairs)
    }

    fn for_each_active(
        &mut self,
        now: Timestamp,
        visit: &mut dyn FnMut(Ban),
    ) -> Result<usize, LedgerError> {
        let mut stmt = self.conn.prepare_cached(ACTIVE_SQL)?;
        let mut rows = stmt.query(params![now.0])?;
        let mut count = 0;
        while let Some(r) = rows.next()? {
            count += 1;
            visit(Ban {
                prefix: prefix_from_sql(text_column(r, 0)?)?,
                source: source_from_sql(text_column(r, 1)?)?,
                created: Timestamp(r.get(2)?),
                expiry: Expiry::from_epoch_or_minus_one(r.get(3)?),
                reason: reason_from_sql(r.get(4)?)?,
                failures: u32_from_sql(r.get(5)?, "failures")?,
                origin_host: origin_from_sql(r.get(6)?)?,
            });
        }
        Ok(count)
    }

    fn prior_bans(&mut self, prefix: &Prefix, since: Timestamp) -> Result<u32, LedgerError> {
        let n: i64 = self
            .conn
            .prepare_cached(PRIOR_BANS_SQL)?
            .query_row(params![prefix.to_string(), since.0], |r| r.get(0))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn events_since(&mut self, after: EventId, limit: usize) -> Result<Vec<Event>, LedgerError> {
        let raw: Vec<RawEvent> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?
            .query_map(params![after, limit_to_sql(limit)], RawEvent::read)?
            .collect::<Result<_, _>>()?;
        raw.into_iter().map(RawEvent::into_event).collect()
    }

    fn last_event_id(&mut self) -> Result<EventId, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
            .query_row([], |r| r.get(0))?)
    }

    fn history(&mut self, prefix: &Prefix, limit: usize) -> Result<Vec<Event>, LedgerError> {
        let n = MAX_ANCESTORS;
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let mut stmt = self.conn.prepare_cached(SQL.get_or_init(history_sql))?;
        let ancestors = ancestors(prefix);
        for i in 0..MAX_ANCESTORS {
            stmt.raw_bind_parameter(i + 1, ancestors.get(i))?;
        }
        let (fam, lo) = range_key(prefix);
        stmt.raw_bind_parameter(n + 1, fam)?;
        stmt.raw_bind_parameter(n + 2, lo)?;
        stmt.raw_bind_parameter(n + 3, range_end(prefix))?;
        stmt.raw_bind_parameter(n + 4, limit_to_sql(limit))?;
        let mut rows = stmt.raw_query();
        let mut events = Vec::new();
        while let Some(r) = rows.next()? {
            events.push(RawEvent::read(r)?.into_event()?);
        }
        Ok(events)
    }

    /// The recorded entries, ordered by prefix.
    fn target_entries(&mut self, target: &str) -> Result<Vec<Held>, LedgerError> {
        let raw: Vec<(String, Option<String>, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT prefix, handle, expires FROM target_entries WHERE target = ?1")?
            .query_map(params![target], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut held = raw
            .into_iter()
            .map(|(prefix, handle, expires)| {
                Ok(Held {
                    prefix: prefix_from_sql(&prefix)?,
                    expiry: expires.map(Expiry::from_epoch_or_minus_one),
                    handle,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        held.sort_by_key(|h| h.prefix);
        Ok(held)
    }

    /// Applies `removed` first, then `added`: a prefix in both ends up recorded.
    fn update_target_entries(
        &mut self,
        target: &str,
        added: &[Held],
        removed: &[Prefix],
    ) -> Result<(), LedgerError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut delete =
                tx.prepare_cached("DELETE FROM target_entries WHERE target = ?1 AND prefix = ?2")?;
            for p in removed {
                delete.execute(params![target, p.to_string()])?;
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO target_entries (target, prefix, handle, expires)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for h in added {
                insert.execute(params![
                    target,
                    h.prefix.to_string(),
                    h.handle,
                    h.expiry.map(expiry_to_sql),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    fn src(s: &str) -> Source {
        Source::new(s).unwrap()
    }

    fn ban(prefix: &str, source: &str, created: i64, expiry: Expiry) -> Ban {
        Ban {
            prefix: p(prefix),
            source: src(source),
            created: Timestamp(created),
            expiry,
            reason: None,
            failures: None,
            origin_host: None,
        }
    }

    fn at(t: i64) -> Expiry {
        Expiry::At(Timestamp(t))
    }

    fn w_ban(b: Ban) -> Write {
        Write::Ban {
            ban: b,
            escalation_step: 0,
        }
    }

    fn w_unban(prefix: &str, source: Option<&str>, kind: EventKind) -> Write {
        Write::Unban {
            prefix: p(prefix),
            source: source.map(src),
            kind,
            origin_host: None,
        }
    }

    fn mem() -> SqliteLedger {
        SqliteLedger::open_in_memory().unwrap()
    }

    fn one(l: &mut SqliteLedger, w: Write, now: i64) -> Outcome {
        let mut out = l.record(&[w], Timestamp(now)).unwrap();
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    fn banned(o: &Outcome) -> (EventId, EventKind, Expiry) {
        match o {
            Outcome::Banned {
                event,
                kind,
                expiry,
            } => (*event, *kind, *expiry),
            other => panic!("expected Banned, got {other:?}"),
        }
    }

    fn sorted_active(l: &mut SqliteLedger, now: i64) -> Vec<(String, String, Expiry)> {
        let mut v: Vec<_> = l
            .active_bans(Timestamp(now))
            .unwrap()
            .into_iter()
            .map(|b| (b.prefix.to_string(), b.source.to_string(), b.expiry))
            .collect();
        v.sort();
        v
    }

    fn all_events(l: &mut SqliteLedger) -> Vec<Event> {
        l.events_since(0, usize::MAX).unwrap()
    }

    fn pragma<T: rusqlite::types::FromSql>(l: &SqliteLedger, name: &str) -> T {
        l.conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn open_creates_the_file_with_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        assert!(!path.exists());
        let l = SqliteLedger::open(&path).unwrap();
        assert!(path.exists());
        assert_eq!(l.path(), path.as_path());
        assert_eq!(pragma::<String>(&l, "journal_mode"), "wal");
        assert_eq!(pragma::<i64>(&l, "synchronous"), 2, "FULL is 2");
        assert_eq!(pragma::<i64>(&l, "busy_timeout"), 5000);
        assert_eq!(pragma::<i64>(&l, "foreign_keys"), 1);
        assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 1);
        let tables: Vec<String> = l
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            ["bans", "events", "sqlite_sequence", "target_entries"]
        );
    }

    #[test]
    fn open_fails_with_the_path_when_the_directory_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("ledger.db");
        match SqliteLedger::open(&path) {
            Err(LedgerError::Open { path: shown, .. }) => {
                assert!(shown.contains("missing"), "{shown}")
            }
            other => panic!("expected Open error, got {other:?}"),
        }
    }

    #[test]
    fn new_ban_is_recorded_with_all_its_fields() {
        let mut l = mem();
        assert_eq!(l.last_event_id().unwrap(), 0);
        let b = Ban {
            reason: Some(Reason::new("5 failures in 600s").unwrap()),
            failures: Some(5),
            origin_host: Some(OriginHost::new("edge-1.example.net").unwrap()),
            ..ban("203.0.113.7", "sshd", 100, at(700))
        };
        let out = one(
            &mut l,
            Write::Ban {
                ban: b.clone(),
                escalation_step: 2,
            },
            100,
        );
        let (event, kind, expiry) = banned(&out);
        assert_eq!((kind, expiry), (EventKind::Ban, at(700)));
        assert_eq!(l.last_event_id().unwrap(), event);
        assert_eq!(l.active_bans(Timestamp(100)).unwrap(), vec![b.clone()]);
        assert_eq!(
            all_events(&mut l),
            vec![Event {
                id: event,
                at: Timestamp(100),
                kind: EventKind::Ban,
                prefix: b.prefix,
                source: Some(b.source.clone()),
                expiry: Some(at(700)),
                reason: b.reason.clone(),
                failures: Some(5),
                origin_host: b.origin_host.clone(),
                escalation_step: 2,
            }]
        );
    }

    #[test]
    fn extend_never_shortens_and_refreshes_what_is_given() {
        let mut l = mem();
        let first = Ban {
            reason: Some(Reason::new("first").unwrap()),
            failures: Some(3),
            ..ban("203.0.113.7", "sshd", 100, at(1000))
        };
        assert_eq!(banned(&one(&mut l, w_ban(first), 100)).1, EventKind::Ban);

        // Shorter: the later expiry stays; nothing given, so reason and failures stay.
        let (_, kind, expiry) = banned(&one(
            &mut l,
            Write::Ban {
                ban: ban("203.0.113.7", "sshd", 200, at(500)),
                escalation_step: 4,
            },
            200,
        ));
        assert_eq!((kind, expiry), (EventKind::Extend, at(1000)));
        let held = l.active_bans(Timestamp(200)).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].expiry, at(1000));
        assert_eq!(held[0].created, Timestamp(100), "created is kept");
        assert_eq!(held[0].reason.as_ref().unwrap().as_str(), "first");
        assert_eq!(held[0].failures, Some(3));

        // Longer, with new details: extended and refreshed.
        let longer = Ban {
            reason: Some(Reason::new("second").unwrap()),
            failures: Some(9),
            ..ban("203.0.113.7", "sshd", 300, at(5000))
        };
        let (_, kind, expiry) = banned(&one(&mut l, w_ban(longer), 300));
        assert_eq!((kind, expiry), (EventKind::Extend, at(5000)));
        let held = l.active_bans(Timestamp(300)).unwrap();
        assert_eq!(held[0].reason.as_ref().unwrap().as_str(), "second");
        assert_eq!(held[0].failures, Some(9));

        // Permanent wins over any instant, and stays permanent.
        let (_, _, expiry) = banned(&one(
            &mut l,
            w_ban(ban("203.0.113.7", "sshd", 400, Expiry::Never)),
            400,
        ));
        assert_eq!(expiry, Expiry::Never);
        let (_, kind, expiry) = banned(&one(
            &mut l,
            w_ban(ban("203.0.113.7", "sshd", 500, at(9000))),
            500,
        ));
        assert_eq!((kind, expiry), (EventKind::Extend, Expiry::Never));
        assert_eq!(
            sorted_active(&mut l, 10_000),
            vec![("203.0.113.7/32".into(), "sshd".into(), Expiry::Never)]
        );

        let events = all_events(&mut l);
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        let extend = EventKind::Extend;
        assert_eq!(kinds, [EventKind::Ban, extend, extend, extend, extend]);
        let expiries: Vec<_> = events.iter().map(|e| e.expiry.unwrap()).collect();
        assert_eq!(
            expiries,
            [at(1000), at(1000), at(5000), Expiry::Never, Expiry::Never]
        );
        assert_eq!(events[1].escalation_step, 0, "extends are not escalations");
        assert_eq!(l.prior_bans(&p("203.0.113.7"), Timestamp(0)).unwrap(), 1);
    }

    #[test]
    fn ban_of_an_expired_but_unremoved_pair_is_a_new_ban() {
        let mut l = mem();
        one(
            &mut l,
            w_ban(ban("198.51.100.1", "sshd", 100, at(200))),
            100,
        );
        // At exactly the expiry the ban is over.
        let (_, kind, expiry) = banned(&one(
            &mut l,
            Write::Ban {
                ban: ban("198.51.100.1", "sshd", 200, at(150)),
                escalation_step: 1,
            },
            200,
        ));
        assert_eq!(
            (kind, expiry),
            (EventKind::Ban, at(150)),
            "replaced, not max'ed"
        );
        // Now expired again (150 <= 200): not active.
        assert!(l.active_bans(Timestamp(200)).unwrap().is_empty());
        one(
            &mut l,
            w_ban(ban("198.51.100.1", "sshd", 300, at(900))),
            300,
        );
        let held = l.active_bans(Timestamp(300)).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].created, held[0].expiry), (Timestamp(300), at(900)));
        assert_eq!(l.prior_bans(&p("198.51.100.1"), Timestamp(0)).unwrap(), 3);
        let steps: Vec<_> = all_events(&mut l)
            .iter()
            .map(|e| e.escalation_step)
            .collect();
        assert_eq!(steps, [0, 1, 0]);
    }

    #[test]
    fn recidive_unban_of_one_source_leaves_the_other() {
        let mut l = mem();
        let now = 1_000;
        let outs = l
            .record(
                &[
                    w_ban(ban("203.0.113.7", "sshd", now, at(now + 600))),
                    w_ban(ban("203.0.113.7", "recidive", now, at(now + 604_800))),
                    w_ban(ban("203.0.113.8", "sshd", now, at(now + 600))),
                ],
                Timestamp(now),
            )
            .unwrap();
        assert!(outs.iter().all(|o| banned(o).1 == EventKind::Ban));

        let out = one(
            &mut l,
            w_unban("203.0.113.7", Some("sshd"), EventKind::Unban),
            now + 600,
        );
        let Outcome::Unbanned {
            event: Some(ev),
            removed: 1,
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            sorted_active(&mut l, now + 1),
            vec![
                (
                    "203.0.113.7/32".into(),
                    "recidive".into(),
                    at(now + 604_800)
                ),
                ("203.0.113.8/32".into(), "sshd".into(), at(now + 600)),
            ]
        );
        let e = l.events_since(ev - 1, 1).unwrap().pop().unwrap();
        assert_eq!(
            (e.id, e.kind, e.source.unwrap().as_str(), e.expiry),
            (ev, EventKind::Unban, "sshd", None)
        );

        // Unbanning a pair that is not there: nothing removed, no event.
        let before = l.last_event_id().unwrap();
        let out = one(
            &mut l,
            w_unban("203.0.113.7", Some("sshd"), EventKind::Unban),
            now + 700,
        );
        assert_eq!(
            out,
            Outcome::Unbanned {
                event: None,
                removed: 0
            }
        );
        assert_eq!(l.last_event_id().unwrap(), before);
    }

    #[test]
    fn unban_of_every_source_writes_one_event() {
        let mut l = mem();
        l.record(
            &[
                w_ban(ban("2001:db8::/48", "sshd", 0, at(600))),
                w_ban(ban("2001:db8::/48", "recidive", 0, Expiry::Never)),
                w_ban(ban("2001:db8:1::/48", "sshd", 0, at(600))),
            ],
            Timestamp(0),
        )
        .unwrap();
        let before = l.last_event_id().unwrap();
        let out = one(
            &mut l,
            Write::Unban {
                prefix: p("2001:db8::/48"),
                source: None,
                kind: EventKind::Lift,
                origin_host: Some(OriginHost::new("cli").unwrap()),
            },
            10,
        );
        let Outcome::Unbanned {
            event: Some(ev),
            removed: 2,
        } = out
        else {
            panic!("{out:?}")
        };
        let events = l.events_since(before, 100).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.id, e.kind, e.prefix, e.source.clone(), e.at),
            (ev, EventKind::Lift, p("2001:db8::/48"), None, Timestamp(10))
        );
        assert_eq!(e.origin_host.as_ref().unwrap().as_str(), "cli");
        assert_eq!(
            sorted_active(&mut l, 10),
            vec![("2001:db8:1::/48".into(), "sshd".into(), at(600))]
        );
    }

    #[test]
    fn a_failing_write_rolls_back_the_whole_batch() {
        let mut l = mem();
        l.conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON bans WHEN NEW.prefix = '192.0.2.66/32'
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
            )
            .unwrap();
        let err = l
            .record(
                &[
                    w_ban(ban("192.0.2.1", "sshd", 0, at(600))),
                    w_ban(ban("192.0.2.66", "sshd", 0, at(600))),
                ],
                Timestamp(0),
            )
            .unwrap_err();
        assert!(matches!(err, LedgerError::Sql(_)), "{err:?}");
        assert!(l.active_bans(Timestamp(0)).unwrap().is_empty());
        assert_eq!(l.last_event_id().unwrap(), 0);
        // The connection is usable afterwards.
        one(&mut l, w_ban(ban("192.0.2.1", "sshd", 0, at(600))), 0);
        assert_eq!(l.active_bans(Timestamp(0)).unwrap().len(), 1);
    }

    #[test]
    fn expire_removes_exactly_the_ended_bans() {
        let mut l = mem();
        l.record(
            &[
                w_ban(ban("192.0.2.1", "sshd", 0, at(100))),
                w_ban(ban("192.0.2.2", "sshd", 0, at(99))),
                w_ban(ban("192.0.2.2", "recidive", 0, at(101))),
                w_ban(ban("192.0.2.3", "manual", 0, Expiry::Never)),
                w_ban(ban("2001:db8::1", "sshd", 0, at(50))),
            ],
            Timestamp(0),
        )
        .unwrap();
        // Ended bans are not active even before `expire` removes them.
        assert_eq!(
            sorted_active(&mut l, 100),
            vec![
                ("192.0.2.2/32".into(), "recidive".into(), at(101)),
                ("192.0.2.3/32".into(), "manual".into(), Expiry::Never),
            ]
        );
        let before = l.last_event_id().unwrap();
        let gone = l.expire(Timestamp(100)).unwrap();
        assert_eq!(
            gone,
            vec![
                (p("2001:db8::1"), src("sshd")),
                (p("192.0.2.2"), src("sshd")),
                (p("192.0.2.1"), src("sshd")),
            ]
        );
        let events = l.events_since(before, 100).unwrap();
        let mut got: Vec<_> = events
            .iter()
            .map(|e| {
                assert_eq!((e.kind, e.at), (EventKind::Expire, Timestamp(100)));
                (e.prefix, e.source.clone().unwrap())
            })
            .collect();
        let mut want = gone.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(l.expire(Timestamp(100)).unwrap().is_empty());
        assert_eq!(
            l.expire(Timestamp(101)).unwrap(),
            vec![(p("192.0.2.2"), src("recidive"))]
        );
        assert!(l.expire(Timestamp(i64::MAX)).unwrap().is_empty());
        assert_eq!(
            sorted_active(&mut l, i64::MAX),
            vec![("192.0.2.3/32".into(), "manual".into(), Expiry::Never)]
        );
    }

    #[test]
    fn an_expiry_before_the_epoch_is_stored_as_past_not_permanent() {
        let mut l = mem();
        let (_, _, expiry) = banned(&one(&mut l, w_ban(ban("192.0.2.1", "sshd", 0, at(-5))), 0));
        assert_eq!(expiry, at(0));
        assert!(l.active_bans(Timestamp(0)).unwrap().is_empty());
        assert_eq!(l.expire(Timestamp(0)).unwrap().len(), 1);
    }

    #[test]
    fn prior_bans_counts_bans_of_exactly_that_prefix_since() {
        let mut l = mem();
        for (t, prefix, source) in [
            (100, "203.0.113.7", "sshd"),
            (200, "203.0.113.7", "sshd"),    // extend: not counted
            (300, "203.0.113.7", "nginx"),   // another source: counted
            (400, "203.0.113.0/24", "sshd"), // containing prefix: not counted
            (500, "203.0.113.8", "sshd"),    // another address: not counted
        ] {
            one(&mut l, w_ban(ban(prefix, source, t, at(t + 1000))), t);
        }
        one(&mut l, w_unban("203.0.113.7", None, EventKind::Unban), 600);
        one(&mut l, w_ban(ban("203.0.113.7", "sshd", 700, at(800))), 700);
        let host = p("203.0.113.7");
        assert_eq!(l.prior_bans(&host, Timestamp(0)).unwrap(), 3);
        assert_eq!(
            l.prior_bans(&host, Timestamp(100)).unwrap(),
            3,
            "since is inclusive"
        );
        assert_eq!(l.prior_bans(&host, Timestamp(101)).unwrap(), 2);
        assert_eq!(l.prior_bans(&host, Timestamp(701)).unwrap(), 0);
        assert_eq!(l.prior_bans(&p("203.0.113.0/24"), Timestamp(0)).unwrap(), 1);
        assert_eq!(l.prior_bans(&p("203.0.113.9"), Timestamp(0)).unwrap(), 0);
    }

    #[test]
    fn events_since_pages_through_the_feed() {
        let mut l = mem();
        assert!(all_events(&mut l).is_empty());
        let writes: Vec<_> = (0..25)
            .map(|i| w_ban(ban(&format!("192.0.2.{i}"), "sshd", i, at(1000))))
            .collect();
        let outs = l.record(&writes, Timestamp(5)).unwrap();
        let ids: Vec<_> = outs.iter().map(|o| banned(o).0).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(l.last_event_id().unwrap(), *ids.last().unwrap());

        let mut cursor = 0;
        let mut seen = Vec::new();
        loop {
            let page = l.events_since(cursor, 10).unwrap();
            assert!(page.len() <= 10);
            let Some(last) = page.last() else { break };
            cursor = last.id;
            seen.extend(page);
        }
        assert_eq!(seen.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
        let prefixes: Vec<_> = seen.iter().map(|e| e.prefix.to_string()).collect();
        let want: Vec<_> = (0..25).map(|i| format!("192.0.2.{i}/32")).collect();
        assert_eq!(prefixes, want);
        assert!(l.events_since(ids[24], 10).unwrap().is_empty());
        assert!(l.events_since(0, 0).unwrap().is_empty());
        assert_eq!(l.events_since(ids[3], 2).unwrap()[0].id, ids[4]);
    }

    #[test]
    fn history_covers_containing_and_contained_prefixes() {
        let mut l = mem();
        let entries = [
            "203.0.113.0/24",
            "203.0.113.7",
            "203.0.113.128/25",
            "203.0.114.7",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "2001:db8::/32",
            "2001:db8::7",
            "2001:db9::7",
        ];
        for (i, prefix) in entries.iter().enumerate() {
            one(&mut l, w_ban(ban(prefix, "sshd", 0, at(1000))), i as i64);
        }
        let history = |l: &mut SqliteLedger, q: &str| -> Vec<String> {
            l.history(&p(q), 100)
                .unwrap()
                .into_iter()
                .map(|e| e.prefix.to_string())
                .collect()
        };
        // Newest first.
        assert_eq!(
            history(&mut l, "203.0.113.7"),
            ["0.0.0.0/0", "203.0.113.7/32", "203.0.113.0/24"]
        );
        assert_eq!(
            history(&mut l, "203.0.113.0/24"),
            [
                "0.0.0.0/0",
                "203.0.113.128/25",
                "203.0.113.7/32",
                "203.0.113.0/24"
            ]
        );
        assert_eq!(
            history(&mut l, "203.0.113.200"),
            ["0.0.0.0/0", "203.0.113.128/25", "203.0.113.0/24"]
        );
        assert_eq!(
            history(&mut l, "203.0.112.0/23"),
            [
                "0.0.0.0/0",
                "203.0.113.128/25",
                "203.0.113.7/32",
                "203.0.113.0/24"
            ]
        );
        assert_eq!(
            history(&mut l, "2001:db8::/31"),
            ["2001:db9::7/128", "2001:db8::7/128", "2001:db8::/32"]
        );
        assert_eq!(
            history(&mut l, "2001:db8::7"),
            ["2001:db8::7/128", "2001:db8::/32"]
        );
        assert_eq!(history(&mut l, "198.51.100.1"), ["0.0.0.0/0"]);
        assert!(history(&mut l, "2001:dc8::1").is_empty());
        assert_eq!(
            history(&mut l, "0.0.0.0/0").len(),
            6,
            "every IPv4 entry, no IPv6"
        );
        // Limit keeps the newest.
        let limited = l.history(&p("203.0.113.0/24"), 2).unwrap();
        assert_eq!(limited.len(), 2);
        assert_eq!(limited[0].prefix, p("0.0.0.0/0"));
        assert_eq!(limited[1].prefix, p("203.0.113.128/25"));
    }

    /// History against a brute-force filter over pseudo-random nested prefixes.
    #[test]
    fn history_matches_a_brute_force_overlap_filter() {
        let mut l = mem();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut prefixes = Vec::new();
        while prefixes.len() < 400 {
            let r = next();
            // Addresses under 10.0.0.0/16 or 2001:db8::/112 so prefixes often nest.
            let net = if r % 2 == 0 {
                let a = std::net::Ipv4Addr::from(0x0a00_0000 | (r >> 8) as u32 & 0xffff);
                ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, 12 + (r >> 40) as u8 % 21).unwrap())
            } else {
                let a =
                    std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | ((r >> 8) as u128 & 0xffff));
                ipnet::IpNet::V6(ipnet::Ipv6Net::new(a, 100 + (r >> 40) as u8 % 29).unwrap())
            };
            prefixes.push(Prefix::from_net(net));
        }
        let writes: Vec<_> = prefixes
            .iter()
            .enumerate()
            .map(|(i, prefix)| {
                w_ban(Ban {
                    prefix: *prefix,
                    source: src(&format!("jail{}", i % 3)),
                    created: Timestamp(0),
                    expiry: at(10),
                    reason: None,
                    failures: None,
                    origin_host: None,
                })
            })
            .collect();
        let ids: Vec<_> = l
            .record(&writes, Timestamp(0))
            .unwrap()
            .iter()
            .map(|o| match o {
                Outcome::Banned { event, .. } => *event,
                _ => unreachable!(),
            })
            .collect();
        let mut nonempty = 0;
        for q in prefixes.iter().take(60) {
            let mut want: Vec<_> = prefixes
                .iter()
                .zip(&ids)
                .filter(|(x, _)| x.overlaps(q))
                .map(|(_, id)| *id)
                .collect();
            want.reverse();
            let got: Vec<_> = l
                .history(q, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(got, want, "history of {q}");
            nonempty += usize::from(want.len() > 1);
        }
        assert!(nonempty > 10, "the test data should nest ({nonempty})");
    }

    #[test]
    fn target_entries_are_recorded_replaced_and_removed() {
        let mut l = mem();
        assert!(l.target_entries("exafs").unwrap().is_empty());
        let held = |prefix: &str, expiry: Option<Expiry>, handle: Option<&str>| Held {
            prefix: p(prefix),
            expiry,
            handle: handle.map(str::to_string),
        };
        l.update_target_entries(
            "exafs",
            &[
                held("203.0.113.7", Some(at(900)), Some("17")),
                held("2001:db8::/48", Some(Expiry::Never), Some("18")),
                held("192.0.2.0/24", None, None),
            ],
            &[],
        )
        .unwrap();
        l.update_target_entries("nft", &[held("203.0.113.7", None, None)], &[])
            .unwrap();
        assert_eq!(
            l.target_entries("exafs").unwrap(),
            vec![
                held("192.0.2.0/24", None, None),
                held("203.0.113.7", Some(at(900)), Some("17")),
                held("2001:db8::/48", Some(Expiry::Never), Some("18")),
            ]
        );
        // Replace one by prefix, remove another, remove-and-add a third, remove a stranger.
        l.update_target_entries(
            "exafs",
            &[
                held("203.0.113.7", Some(at(1800)), Some("21")),
                held("192.0.2.0/24", Some(at(5)), Some("22")),
            ],
            &[p("2001:db8::/48"), p("192.0.2.0/24"), p("198.51.100.1")],
        )
        .unwrap();
        assert_eq!(
            l.target_entries("exafs").unwrap(),
            vec![
                held("192.0.2.0/24", Some(at(5)), Some("22")),
                held("203.0.113.7", Some(at(1800)), Some("21")),
            ]
        );
        assert_eq!(
            l.target_entries("nft").unwrap(),
            vec![held("203.0.113.7", None, None)],
            "targets are separate"
        );
    }

    #[test]
    fn a_corrupt_row_is_reported_not_skipped() {
        let mut l = mem();
        l.conn
            .execute(
                "INSERT INTO bans (prefix, source, created, expires) VALUES ('203.0.113.7/24', 'sshd', 0, -1)",
                [],
            )
            .unwrap();
        assert!(matches!(
            l.active_bans(Timestamp(0)),
            Err(LedgerError::Corrupt(_))
        ));
        l.conn
            .execute(
                "INSERT INTO events (at, kind, prefix, fam, lo) VALUES (0, 'smite', '192.0.2.1/32', 4, x'c0000201')",
                [],
            )
            .unwrap();
        let err = l.events_since(0, 10).unwrap_err();
        assert!(err.to_string().contains("smite"), "{err}");
    }

    #[test]
    fn refuses_a_newer_schema_and_applies_only_missing_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let mut l = SqliteLedger::open(&path).unwrap();
            one(&mut l, w_ban(ban("192.0.2.1", "sshd", 0, Expiry::Never)), 0);
            // A later netban adds a migration.
            let mut longer = MIGRATIONS.to_vec();
            longer.push("CREATE TABLE later (x INTEGER);");
            l.migrate(&longer).unwrap();
            assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION + 1);
            // Running it again changes nothing (it would fail re-creating the table).
            l.migrate(&longer).unwrap();
        }
        match SqliteLedger::open(&path) {
            Err(LedgerError::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = SqliteLedger::open(&path).unwrap_err();
        assert!(err.to_string().contains("99"), "{err}");
    }

    #[test]
    fn writes_survive_closing_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let b = Ban {
            reason: Some(Reason::new("why").unwrap()),
            ..ban("2001:db8::7", "recidive", 10, at(1_000_000))
        };
        let last = {
            let mut l = SqliteLedger::open(&path).unwrap();
            l.record(&[w_ban(b.clone())], Timestamp(10)).unwrap();
            l.update_target_entries(
                "exafs",
                &[Held {
                    prefix: b.prefix,
                    expiry: Some(b.expiry),
                    handle: Some("7".into()),
                }],
                &[],
            )
            .unwrap();
            l.last_event_id().unwrap()
        };
        let mut l = SqliteLedger::open(&path).unwrap();
        assert_eq!(l.active_bans(Timestamp(11)).unwrap(), vec![b.clone()]);
        assert_eq!(l.last_event_id().unwrap(), last);
        assert_eq!(
            l.target_entries("exafs").unwrap()[0].handle.as_deref(),
            Some("7")
        );
        assert_eq!(l.prior_bans(&b.prefix, Timestamp(0)).unwrap(), 1);
    }

    #[test]
    fn two_processes_worth_of_connections_write_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        const PER_THREAD: usize = 150;
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2u8)
            .map(|t| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    // Both open the fresh file at once: migrations must not race.
                    barrier.wait();
                    let opened = SqliteLedger::open(&path);
                    // Wait before unwrapping, so a failed open cannot leave the other
                    // thread waiting here forever.
                    barrier.wait();
                    let mut l = opened.unwrap();
                    let mut ids = Vec::new();
                    for i in 0..PER_THREAD {
                        let prefix = format!("10.{t}.{}.{}", i / 256, i % 256);
                        let out = l
                            .record(&[w_ban(ban(&prefix, "sshd", 0, at(1000)))], Timestamp(1))
                            .unwrap();
                        ids.push(banned(&out[0]).0);
                        // Reads interleave with the other thread's writes.
                        assert!(l.last_event_id().unwrap() >= *ids.last().unwrap());
                    }
                    ids
                })
            })
            .collect();
        let mut ids: Vec<EventId> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 2 * PER_THREAD, "every event id is distinct");
        let mut l = SqliteLedger::open(&path).unwrap();
        assert_eq!(l.active_bans(Timestamp(2)).unwrap().len(), 2 * PER_THREAD);
        assert_eq!(all_events(&mut l).len(), 2 * PER_THREAD);
        assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
    }

    fn host_ban(i: u32, now: i64) -> Write {
        let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        w_ban(Ban {
            prefix: Prefix::host(addr.into()),
            source: src(["sshd", "recidive"][(i % 2) as usize]),
            created: Timestamp(now),
            // One in ten permanent.
            expiry: match i % 10 {
                0 => Expiry::Never,
                _ => at(now + 3600),
            },
            reason: Some(Reason::new("load test").unwrap()),
            failures: Some(i % 7),
            origin_host: None,
        })
    }

    /// Timings are printed (`cargo test -- --nocapture`), not asserted: the machine is shared.
    #[test]
    fn large_batches_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(&dir.path().join("ledger.db")).unwrap();

        let batch: Vec<_> = (0..10_000).map(|i| host_ban(i, 100)).collect();
        let t = Instant::now();
        let outs = l.record(&batch, Timestamp(100)).unwrap();
        let ten_k = t.elapsed();
        assert_eq!(outs.len(), 10_000);
        assert!(outs.iter().all(|o| banned(o).1 == EventKind::Ban));
        // Again: every one is an extend now.
        let t = Instant::now();
        let outs = l.record(&batch, Timestamp(101)).unwrap();
        let ten_k_extend = t.elapsed();
        assert!(outs.iter().all(|o| banned(o).1 == EventKind::Extend));

        let rest: Vec<_> = (10_000..100_000).map(|i| host_ban(i, 100)).collect();
        l.record(&rest, Timestamp(100)).unwrap();
        let t = Instant::now();
        let active = l.active_bans(Timestamp(200)).unwrap();
        let hundred_k = t.elapsed();
        assert_eq!(active.len(), 100_000);
        assert_eq!(
            active.iter().filter(|b| b.expiry == Expiry::Never).count(),
            10_000
        );

        let mut singles = Vec::new();
        for i in 0..41 {
            let t = Instant::now();
            l.record(&[host_ban(200_000 + i, 300)], Timestamp(300))
                .unwrap();
            singles.push(t.elapsed());
        }
        singles.sort();
        eprintln!(
            "sqlite ledger timings: 10k-ban batch {ten_k:?}, 10k-extend batch {ten_k_extend:?}, \
             100k active_bans {hundred_k:?}, single-ban record median {:?} (min {:?}, max {:?})",
            singles[singles.len() / 2],
            singles[0],
            singles[singles.len() - 1]
        );
    }

    fn query_plan(l: &SqliteLedger, sql: &str) -> String {
        let mut stmt = l
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            steps.push(r.get::<_, String>(3).unwrap());
        }
        steps.join("; ")
    }

    #[test]
    fn queries_use_their_indexes() {
        let l = mem();
        let history = query_plan(&l, &history_sql());
        assert!(
            history.contains("events_range") && !history.contains("SCAN events"),
            "{history}"
        );
        let prior = query_plan(&l, PRIOR_BANS_SQL);
        assert!(
            prior.contains("SEARCH events USING COVERING INDEX events_prior"),
            "{prior}"
        );
        let expired = query_plan(&l, EXPIRED_SQL);
        assert!(expired.contains("INDEX bans_expires"), "{expired}");
        assert!(!expired.contains("TEMP B-TREE"), "{expired}");
    }

    #[test]
    fn several_connections_open_a_fresh_file_at_once() {
        const THREADS: usize = 3;
        for round in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.db");
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let path = path.clone();
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteLedger::open(&path).and_then(|l| l.schema_version())
                    })
                })
                .collect();
            for h in handles {
                match h.join().unwrap() {
                    Ok(version) => assert_eq!(version, SCHEMA_VERSION),
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
        }
    }
}
