//! The embedded ledger: one SQLite file, shared by the daemon and the fallback client.
//!
//! # Connection settings
//!
//! [`SqliteLedger::open`] sets `journal_mode=WAL` (readers never block the writer),
//! `synchronous=FULL` (a commit is fsynced before it returns, so a ban is durable when
//! [`Ledger::record`](crate::Ledger::record) returns), `busy_timeout` of [`BUSY_TIMEOUT`] (several processes may use
//! the file at once: the daemon, and the client writing directly while the daemon is down) and
//! `foreign_keys=ON`. Every write runs in a `BEGIN IMMEDIATE` transaction: it takes the write
//! lock up front (waiting up to the busy timeout) instead of upgrading a read lock half way,
//! which is what makes concurrent writers wait rather than fail with "database is locked".
//! Because writers are serialised, event ids become visible in increasing order, so a reader
//! tailing [`Ledger::feed`](crate::Ledger::feed) never sees an id appear below its cursor.
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
//!   parsed back with [`Prefix::parse`](netban_core::Prefix::parse); sources and names are stored as their text and
//!   validated again on the way out. A row that does not parse is [`LedgerError::Corrupt`].
//! - `expires` is epoch seconds, `-1` for never (fail2ban's convention, as
//!   [`Expiry::to_epoch_or_minus_one`](netban_core::Expiry::to_epoch_or_minus_one)). Any negative value reads back as never, so an
//!   `Expiry::At` before the epoch is stored as `0` (it is in the past either way). In
//!   `target_entries`, a NULL `expires` means the device keeps no expiry.
//! - `kind` is the lowercase [`EventKind`](crate::EventKind) name (`ban`, `extend`, `unban`, `expire`, `lift`).
//! - `events.fam` is 4 or 6 and `events.lo` the network address as big-endian bytes (4 or 16),
//!   which SQLite compares bytewise, i.e. numerically. Prefixes are either nested or disjoint,
//!   so the prefixes overlapping `q` are its ancestors (at most 33 or 129 texts, looked up by
//!   `prefix IN (...)`) and the prefixes whose network address lies within `q`'s range (one
//!   range scan of `events_range`). That is how [`Ledger::history`](crate::Ledger::history) finds containment without
//!   scanning the table.
//!
//! # Migrations
//!
//! `PRAGMA user_version` holds the number of [`MIGRATIONS`] applied. Opening applies the
//! missing ones in order, in one `BEGIN IMMEDIATE` transaction (so two processes opening a
//! fresh file at once do not both create it), and refuses a file whose version is newer than
//! this build knows with [`LedgerError::SchemaTooNew`].

mod queries;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

pub use schema::{MIGRATIONS, SCHEMA_VERSION};

use crate::LedgerError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a connection waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite [`Ledger`](crate::Ledger).
pub struct SqliteLedger {
    conn: Connection,
    path: PathBuf,
    /// Rows moved to the `quarantine` table and not yet reported.
    quarantined: Vec<crate::Quarantined>,
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
        crate::files::create_private(path)?;
        let conn = Connection::open(path).map_err(open_err)?;
        SqliteLedger::setup(conn, path.to_path_buf(), true)
    }

    /// SQLite's `PRAGMA quick_check` of the file at `path`, on a read-only connection of its
    /// own (so it can run beside the daemon's writes): the problems found, empty when the file
    /// is sound. Reads every page: seconds for millions of bans.
    pub fn quick_check(path: &Path) -> Result<Vec<String>, LedgerError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| LedgerError::Open {
            path: path.display().to_string(),
            error,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mut stmt = conn.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut problems = Vec::new();
        for row in rows {
            let line = row?;
            if line != "ok" {
                problems.push(line);
            }
        }
        Ok(problems)
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
        let mut ledger = SqliteLedger {
            conn,
            path,
            quarantined: Vec::new(),
        };
        ledger.migrate(MIGRATIONS)?;
        Ok(ledger)
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
