//! The SQLite schema and its migrations, tracked in `PRAGMA user_version`.

use super::SqliteLedger;
use crate::LedgerError;
use rusqlite::TransactionBehavior;

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
    // 2: rows that could not be read (a corrupted prefix, an unknown kind), moved out of the
    // way so they stop neither the change feed nor expiry; kept as JSON for inspection.
    "CREATE TABLE quarantine (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        from_table TEXT    NOT NULL,
        row        TEXT    NOT NULL,
        error      TEXT    NOT NULL
    );",
];

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

impl SqliteLedger {
    /// Applies the migrations of `list` the file lacks. Separate from `setup` so tests can
    /// give a longer list.
    pub(super) fn migrate(&mut self, list: &[&str]) -> Result<(), LedgerError> {
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
