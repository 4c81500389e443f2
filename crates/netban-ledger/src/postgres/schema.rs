//! The PostgreSQL schema and its migrations, tracked in the table `netban_schema`.
//!
//! ```sql
//! bans(prefix cidr, source text, created bigint, expires bigint, reason text NULL,
//!      failures bigint NULL, origin_host text NULL, PRIMARY KEY (prefix, source))
//!   index bans_expires(expires)
//! events(id bigint identity PRIMARY KEY, xid xid8 DEFAULT pg_current_xact_id(), at bigint,
//!        kind text, prefix cidr, source text NULL, expires bigint NULL, reason text NULL,
//!        failures bigint NULL, origin_host text NULL, escalation_step bigint)
//!   index events_feed(xid, id)             -- the change feed
//!   index events_prior(prefix, kind, at)   -- prior_bans
//!   index events_overlap gist(prefix)      -- history: prefixes containing or inside another
//! target_entries(target text, prefix cidr, handle text NULL, expires bigint NULL,
//!                PRIMARY KEY (target, prefix))
//! leases(name text PRIMARY KEY, holder text, since timestamptz, until timestamptz,
//!        epoch bigint)                      -- who drives each shared target (version 2)
//! netban_schema(version integer PRIMARY KEY, applied_at timestamptz)
//! ```
//!
//! Connecting applies the missing migrations in order, in one transaction holding the
//! advisory lock ([`LOCK_SPACE`], [`MIGRATION_LOCK`]), so that several daemons starting at once
//! against a fresh database do not race; a database whose version is newer than this build
//! knows is refused with [`LedgerError::SchemaTooNew`].

use super::{LOCK_SPACE, MIGRATION_LOCK};
use crate::LedgerError;
use postgres::Client;

/// The schema migrations, in order; migration `i` (0-based) is version `i + 1`. Only ever
/// append to this list.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE bans (
        prefix      cidr   NOT NULL,
        source      text   NOT NULL,
        created     bigint NOT NULL,
        expires     bigint NOT NULL,
        reason      text,
        failures    bigint,
        origin_host text,
        PRIMARY KEY (prefix, source)
    );
    CREATE INDEX bans_expires ON bans (expires);

    CREATE TABLE events (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        xid             xid8   NOT NULL DEFAULT pg_current_xact_id(),
        at              bigint NOT NULL,
        kind            text   NOT NULL
                        CHECK (kind IN ('ban', 'extend', 'unban', 'expire', 'lift')),
        prefix          cidr   NOT NULL,
        source          text,
        expires         bigint,
        reason          text,
        failures        bigint,
        origin_host     text,
        escalation_step bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX events_feed ON events (xid, id);
    CREATE INDEX events_prior ON events (prefix, kind, at);
    CREATE INDEX events_overlap ON events USING gist (prefix inet_ops);

    CREATE TABLE target_entries (
        target  text NOT NULL,
        prefix  cidr NOT NULL,
        handle  text,
        expires bigint,
        PRIMARY KEY (target, prefix)
    );",
    // 2: leases on shared targets (see `lease`).
    "CREATE TABLE leases (
        name   text        PRIMARY KEY,
        holder text        NOT NULL,
        since  timestamptz NOT NULL,
        until  timestamptz NOT NULL,
        epoch  bigint      NOT NULL
    );",
];

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The version of the connected database (0 when netban never migrated it).
pub fn version(client: &mut Client) -> Result<i64, LedgerError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('netban_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_one("SELECT COALESCE(max(version), 0) FROM netban_schema", &[])?;
    Ok(i64::from(row.get::<_, i32>(0)))
}

/// Applies the migrations of `list` the database lacks.
pub fn migrate(client: &mut Client, list: &[&str]) -> Result<(), LedgerError> {
    let known = list.len() as i64;
    let too_new = |found| LedgerError::SchemaTooNew { found, known };
    // Most connections find the schema current: check without taking the lock.
    let found = version(client)?;
    if found == known {
        return Ok(());
    }
    if found > known {
        return Err(too_new(found));
    }
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_SPACE, &MIGRATION_LOCK],
    )?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS netban_schema (
            version    integer     PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )?;
    // Another host may have migrated between the check and the lock.
    let found = i64::from(
        tx.query_one("SELECT COALESCE(max(version), 0) FROM netban_schema", &[])?
            .get::<_, i32>(0),
    );
    if found > known {
        return Err(too_new(found));
    }
    for (i, sql) in list.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(sql)?;
        let version = i32::try_from(i + 1).expect("fewer than 2^31 migrations");
        tx.execute(
            "INSERT INTO netban_schema (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()?;
    Ok(())
}
