//! Leases: which daemon of the fleet drives each shared target.
//!
//! A lease is a row `(name, holder, since, until, epoch)`. A daemon *claims* it every renew
//! period: the claim succeeds when the lease is free, expired (`until < now()` on the
//! server's clock) or already its own, and then extends `until` to `now() + ttl`; a new holder
//! bumps `epoch` and resets `since`. Leadership on the daemon's side is bounded by its *own*
//! monotonic clock: it drives only until `sent + ttl - margin`, where `sent` is when it sent
//! the claim that succeeded. The server computed `until` after that, so a daemon that stops
//! hearing from the database (cut off, frozen, its database gone) always stops driving before
//! the server lets anyone else claim the lease: two daemons never drive one target at once.
//! A session advisory lock gives no such bound (a cut-off holder keeps it for hours and never
//! learns it lost it; see the field notes).
//!
//! The lease connection is separate from the ledger's, so a long group commit never delays a
//! renewal, and bounded: `tcp_user_timeout`, keepalives and a `statement_timeout` make a
//! claim fail within a few seconds when the network is cut, instead of hanging.

use super::watch_config;
use crate::LedgerError;
use postgres::{Client, Config, NoTls};
use std::path::Path;
use std::time::Duration;

/// How long a claim may take on the server before it is given up.
const STATEMENT_TIMEOUT: &str = "2s";

/// What a claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The lease is ours: held since `since` (epoch seconds), in term `epoch`.
    Held { epoch: i64, since: i64 },
    /// Another daemon holds it.
    HeldBy { holder: String, since: i64 },
}

/// The lease table of a PostgreSQL ledger, on a connection of its own.
pub struct PostgresLeases {
    config: Config,
    client: Option<Client>,
}

impl PostgresLeases {
    /// Prepares the connection (made at the first claim) to the ledger `url` names. The
    /// ledger's own connection has already created the table (schema version 2).
    pub fn new(url: &str, password_file: Option<&Path>) -> Result<PostgresLeases, LedgerError> {
        let config = watch_config(url, password_file)?;
        Ok(PostgresLeases {
            config,
            client: None,
        })
    }

    fn client(&mut self) -> Result<&mut Client, LedgerError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let mut client = self
                .config
                .connect(NoTls)
                .map_err(|error| LedgerError::Connect {
                    target: "lease connection".to_string(),
                    error,
                })?;
            client.batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Claims (or renews) lease `name` for `holder` for `ttl` from now on the server's clock.
    pub fn claim(&mut self, name: &str, holder: &str, ttl: Duration) -> Result<Claim, LedgerError> {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let result = self.client().and_then(|client| {
            let rows = client.query(
                "INSERT INTO leases AS l (name, holder, since, until, epoch)
                 VALUES ($1, $2, now(), now() + $3::bigint * interval '1 millisecond', 1)
                 ON CONFLICT (name) DO UPDATE SET
                     holder = EXCLUDED.holder,
                     since  = CASE WHEN l.holder = EXCLUDED.holder THEN l.since ELSE now() END,
                     until  = EXCLUDED.until,
                     epoch  = l.epoch + CASE WHEN l.holder = EXCLUDED.holder THEN 0 ELSE 1 END
                 WHERE l.until < now() OR l.holder = EXCLUDED.holder
                 RETURNING epoch, extract(epoch FROM since)::bigint",
                &[&name, &holder, &millis],
            )?;
            if let Some(row) = rows.first() {
                return Ok(Claim::Held {
                    epoch: row.try_get(0)?,
                    since: row.try_get(1)?,
                });
            }
            let row = client.query_one(
                "SELECT holder, extract(epoch FROM since)::bigint FROM leases WHERE name = $1",
                &[&name],
            )?;
            Ok(Claim::HeldBy {
                holder: row.try_get(0)?,
                since: row.try_get(1)?,
            })
        });
        if result.is_err() {
            // Whatever happened to the connection, the next claim starts on a fresh one.
            self.client = None;
        }
        result
    }

    /// Gives lease `name` up if `holder` has it, so another daemon can claim it at once
    /// (on a clean shutdown).
    pub fn release(&mut self, name: &str, holder: &str) -> Result<(), LedgerError> {
        self.client()?.execute(
            "UPDATE leases SET until = now() - interval '1 millisecond'
             WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )?;
        Ok(())
    }
}
