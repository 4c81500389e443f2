//! The queries: every [`Ledger`] method of [`SqliteLedger`].

use super::rows::*;
use super::SqliteLedger;
use crate::stored::*;
use crate::{Event, EventId, EventKind, FeedCursor, Ledger, LedgerError, Outcome, Write};
use netban_core::plan::Held;
use netban_core::{Ban, Expiry, OriginHost, Prefix, Reason, Source, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The most ancestors a prefix can have, itself included (an IPv6 /128: lengths 0 to 128).
pub(super) const MAX_ANCESTORS: usize = 129;

pub(super) const EVENT_COLUMNS: &str =
    "id, at, kind, prefix, source, expires, reason, failures, origin_host, escalation_step";

// `+expires` keeps the planner on a plain table scan: nearly every row is active, and going
// through the expiry index would cost a primary-key lookup per row.
pub(super) const ACTIVE_SQL: &str =
    "SELECT prefix, source, created, expires, reason, failures, origin_host
     FROM bans WHERE +expires < 0 OR +expires > ?1";

pub(super) const EXPIRED_SQL: &str =
    "SELECT prefix, source FROM bans WHERE expires >= 0 AND expires <= ?1
     ORDER BY expires, prefix, source";

pub(super) const PRIOR_BANS_SQL: &str =
    "SELECT COUNT(*) FROM events WHERE prefix = ?1 AND kind = 'ban' AND at >= ?2";

/// The history query. `?1..=?129` are the prefix and its ancestors (unused slots NULL, which
/// match nothing); then the family, the first and last address of the prefix (for the
/// prefixes inside it), and the limit.
pub(super) fn history_sql() -> String {
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
        e.kind.as_str(),
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

/// A `bans` row as the domain's ban, validated.
fn ban_from_row(r: &rusqlite::Row<'_>) -> Result<Ban, LedgerError> {
    Ok(Ban {
        prefix: prefix_from_sql(text_column(r, 0)?)?,
        source: source_from_sql(text_column(r, 1)?)?,
        created: Timestamp(r.get(2)?),
        expiry: Expiry::from_epoch_or_minus_one(r.get(3)?),
        reason: reason_from_sql(r.get(4)?)?,
        failures: u32_from_sql(r.get(5)?, "failures")?,
        origin_host: origin_from_sql(r.get(6)?)?,
    })
}

/// Keeps an unreadable `row` of `table` in the `quarantine` table (the caller deletes it
/// from `table` in the same transaction) and remembers it for [`Ledger::take_quarantined`].
fn quarantine(
    tx: &Connection,
    table: &'static str,
    row: &str,
    error: &LedgerError,
    found: &mut Vec<crate::Quarantined>,
) -> Result<(), LedgerError> {
    tx.prepare_cached(
        "INSERT INTO quarantine (at, from_table, row, error)
         VALUES (CAST(strftime('%s', 'now') AS INTEGER), ?1, ?2, ?3)",
    )?
    .execute(params![table, row, error.to_string()])?;
    found.push(crate::Quarantined {
        table,
        row: row.to_string(),
        error: error.to_string(),
    });
    Ok(())
}

impl SqliteLedger {
    /// Events with id greater than `after`, oldest first, at most `limit`.
    pub fn events_since(
        &mut self,
        after: EventId,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<EventId>), LedgerError> {
        let raw: Vec<RawEvent> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?
            .query_map(params![after, limit_to_sql(limit)], RawEvent::read)?
            .collect::<Result<_, _>>()?;
        let last = raw.last().map(RawEvent::id);
        let mut events = Vec::with_capacity(raw.len());
        for r in raw {
            let id = r.id();
            match r.into_event() {
                Ok(event) => events.push(event),
                Err(error) => {
                    // Rare: the row is read again for the quarantine, so that a good row
                    // costs no copy.
                    let row = self
                        .conn
                        .query_row(
                            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
                            params![id],
                            RawEvent::read,
                        )?
                        .to_json();
                    let tx = self.conn.transaction()?;
                    quarantine(&tx, "events", &row, &error, &mut self.quarantined)?;
                    tx.execute("DELETE FROM events WHERE id = ?1", params![id])?;
                    tx.commit()?;
                }
            }
        }
        Ok((events, last))
    }

    /// The id of the newest event (0 when there is none).
    pub fn last_event_id(&mut self) -> Result<EventId, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
            .query_row([], |r| r.get(0))?)
    }
}

impl Ledger for SqliteLedger {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

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
            tx.prepare_cached("DELETE FROM bans WHERE prefix = ?1 AND source = ?2")?
                .execute(params![prefix_text, source_text])?;
            let (prefix, source) = match prefix_from_sql(prefix_text)
                .and_then(|p| Ok((p, source_from_sql(source_text)?)))
            {
                Ok(pair) => pair,
                Err(error) => {
                    let row = serde_json::json!({"prefix": prefix_text, "source": source_text});
                    quarantine(&tx, "bans", &row.to_string(), &error, &mut self.quarantined)?;
                    continue;
                }
            };
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
        let mut unreadable = Vec::new();
        let mut count = 0;
        {
            let mut stmt = self.conn.prepare_cached(ACTIVE_SQL)?;
            let mut rows = stmt.query(params![now.0])?;
            while let Some(r) = rows.next()? {
                match ban_from_row(r) {
                    Ok(ban) => {
                        count += 1;
                        visit(ban);
                    }
                    Err(error) => {
                        let prefix: rusqlite::types::Value = r.get(0)?;
                        let source: rusqlite::types::Value = r.get(1)?;
                        unreadable.push((prefix, source, error));
                    }
                }
            }
        }
        if !unreadable.is_empty() {
            let tx = self.conn.transaction()?;
            for (prefix, source, error) in unreadable {
                let row = serde_json::json!({
                    "prefix": format!("{prefix:?}"), "source": format!("{source:?}"),
                });
                quarantine(&tx, "bans", &row.to_string(), &error, &mut self.quarantined)?;
                tx.execute(
                    "DELETE FROM bans WHERE prefix = ?1 AND source = ?2",
                    params![prefix, source],
                )?;
            }
            tx.commit()?;
        }
        Ok(count)
    }

    fn prune_history(&mut self, before: Timestamp) -> Result<usize, LedgerError> {
        Ok(self
            .conn
            .execute("DELETE FROM events WHERE at < ?1", params![before.0])?)
    }

    fn take_quarantined(&mut self) -> Vec<crate::Quarantined> {
        std::mem::take(&mut self.quarantined)
    }

    fn prior_bans(&mut self, prefix: &Prefix, since: Timestamp) -> Result<u32, LedgerError> {
        let n: i64 = self
            .conn
            .prepare_cached(PRIOR_BANS_SQL)?
            .query_row(params![prefix.to_string(), since.0], |r| r.get(0))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The newest event's id: SQLite's writers are serialised, so every event up to it has
    /// committed and none will appear below it.
    fn feed_start(&mut self) -> Result<FeedCursor, LedgerError> {
        Ok(FeedCursor::new(0, self.last_event_id()?))
    }

    /// Events in id order, which is commit order here.
    fn feed(
        &mut self,
        after: &FeedCursor,
        limit: usize,
    ) -> Result<(Vec<Event>, FeedCursor), LedgerError> {
        let (events, last) = self.events_since(after.id(), limit)?;
        let next = last.map_or(*after, |last| FeedCursor::new(0, last));
        Ok((events, next))
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
