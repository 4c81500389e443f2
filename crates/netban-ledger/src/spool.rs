//! The spool: a host's durable queue of writes the shared ledger could not take.
//!
//! When the fleet's PostgreSQL ledger is unreachable, a daemon (or the client's fallback when
//! the daemon is down too) still acknowledges bans: it appends them here, in a local SQLite
//! file with `synchronous=FULL`, and enforces them on its per-host targets at once. When the
//! ledger answers again, the spool is forwarded in order ([`Spool::oldest`], then
//! [`Spool::remove_through`] once the ledger committed them) and the bans take the ordinary
//! path to every host.
//!
//! Forwarded writes merge like any others: a ban of a (prefix, source) another host banned
//! meanwhile keeps the later expiry; an unban made during the partition lifts that source's
//! ban when it is forwarded (the last writer wins); a ban whose expiry passed while it waited
//! is dropped, not forwarded. Escalation for a spooled ban is decided without the fleet's
//! history (it cannot be read): such a ban gets the bantime it asked for.

use crate::{EventKind, LedgerError, Write};
use netban_core::{Ban, OriginHost, Prefix, Source, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One spooled write, as stored (JSON in the `write` column).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Stored {
    Ban {
        ban: Ban,
        escalation_step: u32,
    },
    Unban {
        prefix: Prefix,
        source: Option<Source>,
        kind: EventKind,
        origin_host: Option<OriginHost>,
    },
}

impl From<&Write> for Stored {
    fn from(write: &Write) -> Stored {
        match write.clone() {
            Write::Ban {
                ban,
                escalation_step,
            } => Stored::Ban {
                ban,
                escalation_step,
            },
            Write::Unban {
                prefix,
                source,
                kind,
                origin_host,
            } => Stored::Unban {
                prefix,
                source,
                kind,
                origin_host,
            },
        }
    }
}

impl From<Stored> for Write {
    fn from(stored: Stored) -> Write {
        match stored {
            Stored::Ban {
                ban,
                escalation_step,
            } => Write::Ban {
                ban,
                escalation_step,
            },
            Stored::Unban {
                prefix,
                source,
                kind,
                origin_host,
            } => Write::Unban {
                prefix,
                source,
                kind,
                origin_host,
            },
        }
    }
}

/// Position of a spooled write (increasing in the order writes were spooled).
pub type SpoolId = i64;

/// The spool file.
pub struct Spool {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("path", &self.path).finish()
    }
}

impl Spool {
    /// Opens (creating, with its directory) the spool at `path`. Readable by its owner only
    /// ([`crate::files`]).
    pub fn open(path: &Path) -> Result<Spool, LedgerError> {
        let open_error = |error| LedgerError::Open {
            path: path.display().to_string(),
            error,
        };
        crate::files::create_private(path)?;
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(crate::sqlite::BUSY_TIMEOUT)
            .map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spooled (
                 id    INTEGER PRIMARY KEY AUTOINCREMENT,
                 write TEXT    NOT NULL
             )",
        )
        .map_err(open_error)?;
        Ok(Spool {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `writes` in one transaction, durable on return.
    pub fn push(&mut self, writes: &[Write]) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO spooled (write) VALUES (?1)")?;
            for write in writes {
                let json = serde_json::to_string(&Stored::from(write))
                    .map_err(|e| LedgerError::Corrupt(format!("spooling a write: {e}")))?;
                insert.execute(params![json])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How many writes wait.
    pub fn len(&mut self) -> Result<usize, LedgerError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM spooled", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub fn is_empty(&mut self) -> Result<bool, LedgerError> {
        Ok(self
            .conn
            .query_row("SELECT id FROM spooled LIMIT 1", [], |r| r.get::<_, i64>(0))
            .optional()?
            .is_none())
    }

    /// The oldest `limit` writes still worth forwarding at `now`, and the id through which
    /// they reach (bans that expired while they waited are skipped, not returned).
    pub fn oldest(
        &mut self,
        limit: usize,
        now: Timestamp,
    ) -> Result<(Vec<Write>, Option<SpoolId>), LedgerError> {
        let mut select = self
            .conn
            .prepare_cached("SELECT id, write FROM spooled ORDER BY id LIMIT ?1")?;
        let rows = select.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut writes = Vec::new();
        let mut through = None;
        for row in rows {
            let (id, json) = row?;
            through = Some(id);
            let stored: Stored = serde_json::from_str(&json)
                .map_err(|e| LedgerError::Corrupt(format!("spooled write {id}: {e}")))?;
            if let Stored::Ban { ban, .. } = &stored {
                if ban.expiry.is_past(now) {
                    continue;
                }
            }
            writes.push(stored.into());
        }
        Ok((writes, through))
    }

    /// Drops every write up to and including `through` (once the ledger committed them).
    pub fn remove_through(&mut self, through: SpoolId) -> Result<(), LedgerError> {
        self.conn
            .execute("DELETE FROM spooled WHERE id <= ?1", params![through])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netban_core::Expiry;

    fn ban(prefix: &str, until: i64) -> Write {
        Write::Ban {
            ban: Ban {
                prefix: Prefix::parse(prefix).unwrap(),
                source: Source::new("sshd").unwrap(),
                created: Timestamp(10),
                expiry: Expiry::At(Timestamp(until)),
                reason: None,
                failures: Some(3),
                origin_host: Some(OriginHost::new("host-a").unwrap()),
            },
            escalation_step: 0,
        }
    }

    #[test]
    fn writes_survive_reopening_in_order_and_expired_bans_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let unban = Write::Unban {
            prefix: Prefix::parse("203.0.113.9").unwrap(),
            source: None,
            kind: EventKind::Unban,
            origin_host: None,
        };
        {
            let mut spool = Spool::open(&path).unwrap();
            assert!(spool.is_empty().unwrap());
            spool
                .push(&[ban("203.0.113.7", 100), ban("203.0.113.8", 5)])
                .unwrap();
            spool.push(std::slice::from_ref(&unban)).unwrap();
        }
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.len().unwrap(), 3);
        let (writes, through) = spool.oldest(10, Timestamp(50)).unwrap();
        assert_eq!(writes, vec![ban("203.0.113.7", 100), unban]);
        spool.remove_through(through.unwrap()).unwrap();
        assert!(spool.is_empty().unwrap());
    }

    #[test]
    fn forwarding_in_pieces_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("spool.db")).unwrap();
        let all: Vec<Write> = (1..=5)
            .map(|i| ban(&format!("203.0.113.{i}"), 100))
            .collect();
        spool.push(&all).unwrap();
        let (first, through) = spool.oldest(2, Timestamp(0)).unwrap();
        assert_eq!(first, all[..2]);
        spool.remove_through(through.unwrap()).unwrap();
        let (rest, _) = spool.oldest(10, Timestamp(0)).unwrap();
        assert_eq!(rest, all[2..]);
    }
}
