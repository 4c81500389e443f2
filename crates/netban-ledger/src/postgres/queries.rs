//! The queries: every [`Ledger`] method of [`PostgresLedger`], on statements prepared once
//! per connection. The read queries' SQL is public so that tests can check their plans.

use super::{bucket, PostgresLedger, Session, LOCK_SPACE};
use crate::stored::*;
use crate::{Event, EventId, EventKind, FeedCursor, Ledger, LedgerError, Outcome, Write};
use netban_core::plan::Held;
use netban_core::{Ban, Expiry, OriginHost, Prefix, Reason, Source, Timestamp};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement};
use std::collections::HashSet;

/// The columns of an event row, as [`event_from_row`] reads them. (Output columns get names
/// of their own: `ORDER BY xid` must mean the column, not its text.)
macro_rules! event_columns {
    () => {
        "xid::text AS xid_text, id, at, kind, prefix::text AS prefix_text, source, expires, \
         reason, failures, origin_host, escalation_step"
    };
}

/// The change feed: events after the cursor ($1 xid as text, $2 id), below the horizon, in
/// (xid, id) order, at most $3.
pub const FEED_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events
     WHERE (xid, id) > ($1::text::xid8, $2)
       AND xid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY xid, id LIMIT $3"
);

/// History: events of prefixes containing or inside $1, newest first, at most $2.
pub const HISTORY_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events
     WHERE prefix >>= $1::text::cidr OR prefix <<= $1::text::cidr
     ORDER BY id DESC LIMIT $2"
);

/// `Ban` events of exactly $1 at or after $2.
pub const PRIOR_BANS_SQL: &str = "SELECT count(*) FROM events
     WHERE prefix = $1::text::cidr AND kind = 'ban' AND at >= $2";

/// [`PRIOR_BANS_SQL`] of each prefix of $1 (text[]), in its order.
pub const PRIOR_BANS_EACH_SQL: &str = "SELECT count(e.id)
     FROM unnest($1::text[]) WITH ORDINALITY AS p(prefix, ord)
     LEFT JOIN events e ON e.prefix = p.prefix::cidr AND e.kind = 'ban' AND e.at >= $2
     GROUP BY p.ord ORDER BY p.ord";

/// The (prefix, source) pairs whose expiry is at or before $1.
pub const EXPIRED_SQL: &str =
    "SELECT prefix::text, source FROM bans WHERE expires >= 0 AND expires <= $1";

/// Bans, any number in one statement (one round trip, not one per ban), each decided as the
/// SQLite ledger's `record_ban` decides: a ban of an active pair keeps the later expiry, keeps
/// `created` and refreshes only the details given, and is an `extend` with escalation step 0;
/// otherwise the row is replaced and it is a `ban`. `input` reads the rows as they were before
/// the statement; the caller holds the prefixes' bucket locks, so nobody else changes them
/// meanwhile, and `ON CONFLICT` also covers a row another host inserted. The pairs must be
/// distinct (a row cannot be updated twice by one statement); [`record_bans`] splits a group
/// where one repeats. Parameters: arrays of
/// prefix, source, created, expires, reason, failures, origin host, escalation step, then now.
/// Returns, in the order given, each ban's event id, kind and expiry.
const BAN_MANY_SQL: &str = "
    WITH given AS (
        SELECT i.*, i.prefix_text::cidr AS prefix
        FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::int8[],
                    $7::text[], $8::int8[])
             WITH ORDINALITY AS i(prefix_text, source, created, expires, reason, failures,
                                  origin_host, step, ord)
    ), input AS MATERIALIZED (
        -- Whether each pair was active before this statement: read once, here (a join of
        -- its own, planned per row, cost a scan of the batch for every ban).
        SELECT g.*, COALESCE(b.expires < 0 OR b.expires > $9, false) AS active
        FROM given g LEFT JOIN bans b ON b.prefix = g.prefix AND b.source = g.source
    ), stored AS (
        INSERT INTO bans AS b (prefix, source, created, expires, reason, failures, origin_host)
        SELECT prefix, source, created, expires, reason, failures, origin_host
        FROM input ORDER BY ord
        ON CONFLICT (prefix, source) DO UPDATE SET
            created = CASE WHEN b.expires < 0 OR b.expires > $9
                           THEN b.created ELSE excluded.created END,
            expires = CASE WHEN NOT (b.expires < 0 OR b.expires > $9) THEN excluded.expires
                           WHEN b.expires < 0 OR excluded.expires < 0 THEN -1
                           ELSE greatest(b.expires, excluded.expires) END,
            reason = CASE WHEN b.expires < 0 OR b.expires > $9
                          THEN COALESCE(excluded.reason, b.reason) ELSE excluded.reason END,
            failures = CASE WHEN b.expires < 0 OR b.expires > $9
                            THEN COALESCE(excluded.failures, b.failures) ELSE excluded.failures END,
            origin_host = CASE WHEN b.expires < 0 OR b.expires > $9
                               THEN COALESCE(excluded.origin_host, b.origin_host)
                               ELSE excluded.origin_host END
        RETURNING b.prefix, b.source, b.expires
    ), written AS (
        INSERT INTO events (at, kind, prefix, source, expires, reason, failures, origin_host,
                            escalation_step)
        SELECT $9, CASE WHEN i.active THEN 'extend' ELSE 'ban' END,
               i.prefix, i.source, s.expires, i.reason, i.failures, i.origin_host,
               CASE WHEN i.active THEN 0 ELSE i.step END
        FROM input i
        JOIN stored s ON s.prefix = i.prefix AND s.source = i.source
        ORDER BY i.ord
        RETURNING id, kind, expires, prefix, source
    )
    SELECT w.id, w.kind, w.expires
    FROM written w JOIN input i ON i.prefix = w.prefix AND i.source = w.source
    ORDER BY i.ord";

/// The statements of one connection.
pub(super) struct Statements {
    lock_buckets: Statement,
    ban_many: Statement,
    event_insert: Statement,
    unban_source: Statement,
    unban_all: Statement,
    expired: Statement,
    expire_delete: Statement,
    active: Statement,
    prior_bans: Statement,
    prior_bans_each: Statement,
    horizon: Statement,
    feed: Statement,
    history: Statement,
    target_entries: Statement,
    target_entry_delete: Statement,
    target_entry_upsert: Statement,
}

impl Statements {
    pub(super) fn prepare(client: &mut Client) -> Result<Statements, LedgerError> {
        let mut prepare = |sql: &str| client.prepare(sql);
        Ok(Statements {
            // `unnest` yields the (sorted) keys in order, so locks are taken in ascending
            // order and two writers cannot deadlock on them.
            lock_buckets: prepare(
                "SELECT pg_advisory_xact_lock($1::int4, k) FROM unnest($2::int4[]) AS k",
            )?,
            ban_many: prepare(BAN_MANY_SQL)?,
            event_insert: prepare(
                "INSERT INTO events (at, kind, prefix, source, expires, reason, failures,
                                     origin_host, escalation_step)
                 VALUES ($1, $2, $3::text::cidr, $4, $5, $6, $7, $8, $9)
                 RETURNING id",
            )?,
            unban_source: prepare(
                "DELETE FROM bans WHERE prefix = $1::text::cidr AND source = $2",
            )?,
            unban_all: prepare("DELETE FROM bans WHERE prefix = $1::text::cidr")?,
            expired: prepare(EXPIRED_SQL)?,
            // Re-checks the expiry: the candidates were read before the locks.
            expire_delete: prepare(
                "DELETE FROM bans b USING unnest($2::text[], $3::text[]) AS c(prefix, source)
                 WHERE b.prefix = c.prefix::cidr AND b.source = c.source
                   AND b.expires >= 0 AND b.expires <= $1
                 RETURNING b.prefix::text, b.source, b.expires",
            )?,
            active: prepare(
                "SELECT prefix::text, source, created, expires, reason, failures, origin_host
                 FROM bans WHERE expires < 0 OR expires > $1",
            )?,
            prior_bans: prepare(PRIOR_BANS_SQL)?,
            prior_bans_each: prepare(PRIOR_BANS_EACH_SQL)?,
            horizon: prepare("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")?,
            feed: prepare(FEED_SQL)?,
            history: prepare(HISTORY_SQL)?,
            target_entries: prepare(
                "SELECT prefix::text, handle, expires FROM target_entries WHERE target = $1",
            )?,
            target_entry_delete: prepare(
                "DELETE FROM target_entries WHERE target = $1 AND prefix = $2::text::cidr",
            )?,
            target_entry_upsert: prepare(
                "INSERT INTO target_entries (target, prefix, handle, expires)
                 VALUES ($1, $2::text::cidr, $3, $4)
                 ON CONFLICT (target, prefix) DO UPDATE SET
                    handle = excluded.handle, expires = excluded.expires",
            )?,
        })
    }
}

/// The sorted, distinct bucket keys of `prefix_texts` (see the module documentation of
/// [`super`]): the advisory locks a writer takes before its first write.
fn bucket_keys<'a>(prefix_texts: impl IntoIterator<Item = &'a str>) -> Vec<i32> {
    let mut keys: Vec<i32> = prefix_texts.into_iter().map(bucket).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A writing transaction ([`Ledger::record`], [`Ledger::expire`]), in as few round trips as
/// PostgreSQL allows: it is opened together with its bucket locks in one simple query
/// (`BEGIN; SELECT pg_advisory_xact_lock…`: one round trip where `Client::transaction` and the
/// lock statement took two), and committed together with its NOTIFY (`NOTIFY …; COMMIT`:
/// one, not two). A ban is then three round trips: this, its statement, the commit. Dropped uncommitted (an
/// error on the way), it is rolled back.
struct WriteTransaction<'a> {
    client: &'a mut Client,
    open: bool,
}

impl<'a> WriteTransaction<'a> {
    /// Opens the transaction and takes the locks of `keys` (sorted, so that `unnest` yields
    /// them in ascending order and two writers cannot deadlock on them). The keys are
    /// integers this crate computed, so they are written into the query as numbers.
    fn begin(client: &'a mut Client, keys: &[i32]) -> Result<Self, LedgerError> {
        let mut sql = String::from("BEGIN");
        if !keys.is_empty() {
            let list: Vec<String> = keys.iter().map(i32::to_string).collect();
            sql.push_str(&format!(
                "; SELECT pg_advisory_xact_lock({LOCK_SPACE}, k) FROM unnest('{{{}}}'::int4[]) AS k",
                list.join(",")
            ));
        }
        let tx = WriteTransaction { client, open: true };
        tx.client.batch_execute(&sql)?;
        Ok(tx)
    }

    fn client(&mut self) -> &mut Client {
        self.client
    }

    /// Takes the advisory locks of `keys` (sorted) later in the transaction, before its first
    /// write (expiry reads its candidates first).
    fn lock(&mut self, st: &Statements, keys: &[i32]) -> Result<(), LedgerError> {
        if !keys.is_empty() {
            self.client
                .execute(&st.lock_buckets, &[&LOCK_SPACE, &keys])?;
        }
        Ok(())
    }

    /// Commits, notifying the change feed's listeners first when `notify`. Only transactions
    /// that wrote events notify: a listener's own reaction (an expiry pass that finds nothing)
    /// must not wake the fleet again. NOTIFY takes a cluster-wide lock at commit, so notifying
    /// commits are serialised (measured in the field notes and in this crate's
    /// `record_latency` bench).
    fn commit(mut self, notify: bool) -> Result<(), LedgerError> {
        let sql = if notify {
            format!("{}; COMMIT", super::notify::NOTIFY_SQL)
        } else {
            "COMMIT".to_string()
        };
        self.client.batch_execute(&sql)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTransaction<'_> {
    fn drop(&mut self) {
        // After a failed statement or commit; on a closed connection the server has rolled
        // it back already. (A ROLLBACK after a failed COMMIT only warns.)
        if self.open && !self.client.is_closed() {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

fn u32_to_sql(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

fn xid_from_sql(s: &str) -> Result<u64, LedgerError> {
    s.parse()
        .map_err(|_| LedgerError::Corrupt(format!("transaction id {s:?}")))
}

/// An event row of `event_columns!()`, with the writing transaction's id.
fn event_from_row(r: &Row) -> Result<(u64, Event), LedgerError> {
    let xid = xid_from_sql(r.try_get(0)?)?;
    let event = Event {
        id: r.try_get(1)?,
        at: Timestamp(r.try_get(2)?),
        kind: kind_from_sql(r.try_get(3)?)?,
        prefix: prefix_from_sql(r.try_get(4)?)?,
        source: r
            .try_get::<_, Option<&str>>(5)?
            .map(source_from_sql)
            .transpose()?,
        expiry: r
            .try_get::<_, Option<i64>>(6)?
            .map(Expiry::from_epoch_or_minus_one),
        reason: reason_from_sql(r.try_get(7)?)?,
        failures: u32_from_sql(r.try_get(8)?, "failures")?,
        origin_host: origin_from_sql(r.try_get(9)?)?,
        escalation_step: u32_from_sql(Some(r.try_get(10)?), "escalation step")?.unwrap_or(0),
    };
    Ok((xid, event))
}

/// One event to append.
struct NewEvent<'a> {
    at: Timestamp,
    kind: EventKind,
    prefix_text: &'a str,
    source: Option<&'a Source>,
    expiry: Option<Expiry>,
    reason: Option<&'a Reason>,
    failures: Option<u32>,
    origin_host: Option<&'a OriginHost>,
    escalation_step: u32,
}

fn append_event(
    tx: &mut impl GenericClient,
    st: &Statements,
    e: &NewEvent<'_>,
) -> Result<EventId, LedgerError> {
    let row = tx.query_one(
        &st.event_insert,
        &[
            &e.at.0,
            &e.kind.as_str(),
            &e.prefix_text,
            &e.source.map(Source::as_str),
            &e.expiry.map(expiry_to_sql),
            &e.reason.map(Reason::as_str),
            &u32_to_sql(e.failures),
            &e.origin_host.map(OriginHost::as_str),
            &i64::from(e.escalation_step),
        ],
    )?;
    Ok(row.try_get(0)?)
}

/// Records `bans` in one statement ([`BAN_MANY_SQL`]): the same decisions and events as the
/// SQLite ledger's. The (prefix, source) pairs must be distinct.
fn record_bans(
    tx: &mut impl GenericClient,
    st: &Statements,
    bans: &[(&Ban, u32)],
    now: Timestamp,
) -> Result<Vec<Outcome>, LedgerError> {
    let column = |f: &dyn Fn(&Ban, u32) -> Option<String>| -> Vec<Option<String>> {
        bans.iter().map(|(b, step)| f(b, *step)).collect()
    };
    let number = |f: &dyn Fn(&Ban, u32) -> Option<i64>| -> Vec<Option<i64>> {
        bans.iter().map(|(b, step)| f(b, *step)).collect()
    };
    let prefixes = column(&|b, _| Some(b.prefix.to_string()));
    let sources = column(&|b, _| Some(b.source.as_str().to_owned()));
    let created = number(&|b, _| Some(b.created.0));
    let expires = number(&|b, _| Some(expiry_to_sql(b.expiry)));
    let reasons = column(&|b, _| b.reason.as_ref().map(|r| r.as_str().to_owned()));
    let failures = number(&|b, _| u32_to_sql(b.failures));
    let origins = column(&|b, _| b.origin_host.as_ref().map(|o| o.as_str().to_owned()));
    let steps = number(&|_, step| Some(i64::from(step)));
    let rows = tx.query(
        &st.ban_many,
        &[
            &prefixes, &sources, &created, &expires, &reasons, &failures, &origins, &steps, &now.0,
        ],
    )?;
    if rows.len() != bans.len() {
        return Err(LedgerError::Corrupt(format!(
            "{} bans written, {} events returned",
            bans.len(),
            rows.len()
        )));
    }
    rows.iter()
        .map(|row| {
            Ok(Outcome::Banned {
                event: row.try_get(0)?,
                kind: kind_from_sql(row.try_get(1)?)?,
                expiry: Expiry::from_epoch_or_minus_one(row.try_get(2)?),
            })
        })
        .collect()
}

fn record_unban(
    tx: &mut impl GenericClient,
    st: &Statements,
    unban: (&Prefix, Option<&Source>, EventKind, Option<&OriginHost>),
    now: Timestamp,
) -> Result<Outcome, LedgerError> {
    let (prefix, source, kind, origin_host) = unban;
    let prefix_text = prefix.to_string();
    let removed = match source {
        Some(s) => tx.execute(&st.unban_source, &[&prefix_text, &s.as_str()])?,
        None => tx.execute(&st.unban_all, &[&prefix_text])?,
    };
    let event = if removed > 0 {
        Some(append_event(
            tx,
            st,
            &NewEvent {
                at: now,
                kind,
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
    Ok(Outcome::Unbanned {
        event,
        removed: usize::try_from(removed).unwrap_or(usize::MAX),
    })
}

fn write_prefix(write: &Write) -> &Prefix {
    match write {
        Write::Ban { ban, .. } => &ban.prefix,
        Write::Unban { prefix, .. } => prefix,
    }
}

impl Ledger for PostgresLedger {
    fn describe(&self) -> String {
        self.target.clone()
    }

    /// Applies `writes` in one transaction, after locking their prefixes' buckets; the
    /// decisions are the SQLite ledger's.
    fn record(&mut self, writes: &[Write], now: Timestamp) -> Result<Vec<Outcome>, LedgerError> {
        self.with_session(|Session { client, st }| {
            let texts: Vec<String> = writes.iter().map(|w| write_prefix(w).to_string()).collect();
            let mut tx =
                WriteTransaction::begin(client, &bucket_keys(texts.iter().map(String::as_str)))?;
            let mut outcomes = Vec::with_capacity(writes.len());
            // Consecutive bans of distinct pairs go in one statement; an unban, or a pair
            // seen again, ends the run (so every write sees the ones before it).
            let mut run: Vec<(&Ban, u32)> = Vec::new();
            let mut in_run: HashSet<(&Prefix, &str)> = HashSet::new();
            for write in writes {
                match write {
                    Write::Ban {
                        ban,
                        escalation_step,
                    } => {
                        if !in_run.insert((&ban.prefix, ban.source.as_str())) {
                            outcomes.extend(record_bans(tx.client(), st, &run, now)?);
                            run.clear();
                            in_run.clear();
                            in_run.insert((&ban.prefix, ban.source.as_str()));
                        }
                        run.push((ban, *escalation_step));
                    }
                    Write::Unban {
                        prefix,
                        source,
                        kind,
                        origin_host,
                    } => {
                        if !run.is_empty() {
                            outcomes.extend(record_bans(tx.client(), st, &run, now)?);
                            run.clear();
                            in_run.clear();
                        }
                        outcomes.push(record_unban(
                            tx.client(),
                            st,
                            (prefix, source.as_ref(), *kind, origin_host.as_ref()),
                            now,
                        )?);
                    }
                }
            }
            if !run.is_empty() {
                outcomes.extend(record_bans(tx.client(), st, &run, now)?);
            }
            let wrote_events = outcomes.iter().any(|o| match o {
                Outcome::Banned { .. } => true,
                Outcome::Unbanned { event, .. } => event.is_some(),
            });
            tx.commit(wrote_events)?;
            Ok(outcomes)
        })
    }

    /// Returns the removed pairs ordered by expiry, then prefix text, then source (as
    /// SQLite). Safe to run on several hosts at once: each pair is removed, and its `Expire`
    /// event written, by exactly one of them.
    fn expire(&mut self, now: Timestamp) -> Result<Vec<(Prefix, Source)>, LedgerError> {
        self.with_session(|Session { client, st }| {
            let mut tx = WriteTransaction::begin(client, &[])?;
            let mut candidates_prefix = Vec::new();
            let mut candidates_source = Vec::new();
            for r in tx.client().query(&st.expired, &[&now.0])? {
                // Canonical text, as writers hash it for the lock.
                candidates_prefix.push(prefix_from_sql(r.try_get(0)?)?.to_string());
                candidates_source.push(r.try_get::<_, String>(1)?);
            }
            if candidates_prefix.is_empty() {
                tx.commit(false)?;
                return Ok(Vec::new());
            }
            tx.lock(
                st,
                &bucket_keys(candidates_prefix.iter().map(String::as_str)),
            )?;
            let mut removed = Vec::new();
            for r in tx.client().query(
                &st.expire_delete,
                &[&now.0, &candidates_prefix, &candidates_source],
            )? {
                let prefix = prefix_from_sql(r.try_get(0)?)?;
                let source = source_from_sql(r.try_get(1)?)?;
                let expires: i64 = r.try_get(2)?;
                removed.push((expires, prefix.to_string(), prefix, source));
            }
            removed.sort_by(|a, b| {
                (a.0, a.1.as_str(), a.3.as_str()).cmp(&(b.0, b.1.as_str(), b.3.as_str()))
            });
            let mut pairs = Vec::with_capacity(removed.len());
            for (_, prefix_text, prefix, source) in removed {
                append_event(
                    tx.client(),
                    st,
                    &NewEvent {
                        at: now,
                        kind: EventKind::Expire,
                        prefix_text: &prefix_text,
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
            tx.commit(!pairs.is_empty())?;
            Ok(pairs)
        })
    }

    /// Streams the rows: a million bans are never all in memory twice.
    fn for_each_active(
        &mut self,
        now: Timestamp,
        visit: &mut dyn FnMut(Ban),
    ) -> Result<usize, LedgerError> {
        self.with_session(|Session { client, st }| {
            let mut rows = client.query_raw(&st.active, [&now.0 as &dyn ToSql])?;
            let mut count = 0;
            while let Some(r) = rows.next()? {
                count += 1;
                visit(Ban {
                    prefix: prefix_from_sql(r.try_get(0)?)?,
                    source: source_from_sql(r.try_get(1)?)?,
                    created: Timestamp(r.try_get(2)?),
                    expiry: Expiry::from_epoch_or_minus_one(r.try_get(3)?),
                    reason: reason_from_sql(r.try_get(4)?)?,
                    failures: u32_from_sql(r.try_get(5)?, "failures")?,
                    origin_host: origin_from_sql(r.try_get(6)?)?,
                });
            }
            Ok(count)
        })
    }

    fn prune_history(&mut self, before: Timestamp) -> Result<usize, LedgerError> {
        self.with_session(|Session { client, .. }| {
            let n = client.execute("DELETE FROM events WHERE at < $1", &[&before.0])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn prior_bans(&mut self, prefix: &Prefix, since: Timestamp) -> Result<u32, LedgerError> {
        self.with_session(|Session { client, st }| {
            let n: i64 = client
                .query_one(&st.prior_bans, &[&prefix.to_string(), &since.0])?
                .try_get(0)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    fn prior_bans_each(
        &mut self,
        prefixes: &[Prefix],
        since: Timestamp,
    ) -> Result<Vec<u32>, LedgerError> {
        if prefixes.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = prefixes.iter().map(Prefix::to_string).collect();
        self.with_session(|Session { client, st }| {
            client
                .query(&st.prior_bans_each, &[&texts, &since.0])?
                .iter()
                .map(|row| Ok(u32::try_from(row.try_get::<_, i64>(0)?).unwrap_or(u32::MAX)))
                .collect()
        })
    }

    /// Just below the horizon: every event of a transaction that has ended before the oldest
    /// one still open counts as seen; those of the open ones and of everything after are
    /// delivered by [`Ledger::feed`].
    fn feed_start(&mut self) -> Result<FeedCursor, LedgerError> {
        self.with_session(|Session { client, st }| {
            let horizon = xid_from_sql(client.query_one(&st.horizon, &[])?.try_get(0)?)?;
            // (horizon, 0) is below every event of transaction `horizon` (ids start at 1).
            Ok(FeedCursor::new(horizon, 0))
        })
    }

    /// Events after `after` in (xid, id) order, below the horizon.
    fn feed(
        &mut self,
        after: &FeedCursor,
        limit: usize,
    ) -> Result<(Vec<Event>, FeedCursor), LedgerError> {
        if limit == 0 {
            return Ok((Vec::new(), *after));
        }
        self.with_session(|Session { client, st }| {
            let rows = client.query(
                &st.feed,
                &[&after.xid().to_string(), &after.id(), &limit_to_sql(limit)],
            )?;
            let mut next = *after;
            let mut events = Vec::with_capacity(rows.len());
            for r in &rows {
                let (xid, event) = event_from_row(r)?;
                next = FeedCursor::new(xid, event.id);
                events.push(event);
            }
            Ok((events, next))
        })
    }

    fn history(&mut self, prefix: &Prefix, limit: usize) -> Result<Vec<Event>, LedgerError> {
        self.with_session(|Session { client, st }| {
            client
                .query(&st.history, &[&prefix.to_string(), &limit_to_sql(limit)])?
                .iter()
                .map(|r| event_from_row(r).map(|(_, e)| e))
                .collect()
        })
    }

    /// The recorded entries, ordered by prefix.
    fn target_entries(&mut self, target: &str) -> Result<Vec<Held>, LedgerError> {
        self.with_session(|Session { client, st }| {
            let mut held = client
                .query(&st.target_entries, &[&target])?
                .iter()
                .map(|r| {
                    Ok(Held {
                        prefix: prefix_from_sql(r.try_get(0)?)?,
                        handle: r.try_get(1)?,
                        expiry: r
                            .try_get::<_, Option<i64>>(2)?
                            .map(Expiry::from_epoch_or_minus_one),
                    })
                })
                .collect::<Result<Vec<_>, LedgerError>>()?;
            held.sort_by_key(|h| h.prefix);
            Ok(held)
        })
    }

    /// Applies `removed` first, then `added`: a prefix in both ends up recorded.
    fn update_target_entries(
        &mut self,
        target: &str,
        added: &[Held],
        removed: &[Prefix],
    ) -> Result<(), LedgerError> {
        self.with_session(|Session { client, st }| {
            let mut tx = client.transaction()?;
            for p in removed {
                tx.execute(&st.target_entry_delete, &[&target, &p.to_string()])?;
            }
            for h in added {
                tx.execute(
                    &st.target_entry_upsert,
                    &[
                        &target,
                        &h.prefix.to_string(),
                        &h.handle,
                        &h.expiry.map(expiry_to_sql),
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    //! Against the throwaway PostgreSQL 15 of `netban_testlab` (skipped with a printed line
    //! where it is not installed, except under `CI=true` or `NETBAN_REQUIRE_POSTGRES=1`).
    use super::*;
    use netban_testlab::postgres::shared_database;

    fn ban_of(i: u32) -> Write {
        let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        Write::Ban {
            ban: Ban {
                prefix: addr.to_string().parse().unwrap(),
                source: Source::new("sshd").unwrap(),
                created: Timestamp(1),
                expiry: Expiry::At(Timestamp(100_000)),
                reason: None,
                failures: None,
                origin_host: None,
            },
            escalation_step: 0,
        }
    }

    /// The plan the session's prepared statement `sql` would run with `args` (SQL literals),
    /// as its plan cache chooses it (`EXPLAIN EXECUTE`).
    fn cached_plan(client: &mut Client, sql: &str, args: &str) -> String {
        let name: String = client
            .query_one(
                "SELECT name FROM pg_prepared_statements WHERE statement = $1",
                &[&sql],
            )
            .unwrap()
            .get(0);
        client
            .query(&format!("EXPLAIN EXECUTE {name}({args})"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A daemon prepares its statements at start, often on empty tables, and then writes
    /// thousands of rows before autovacuum first analyzes them. After five executions
    /// PostgreSQL may keep one generic plan per prepared statement, and one chosen on empty
    /// tables scans them whole: measured, every single-ban commit of a 4-host burst scanned
    /// the bans and events tables (24 million rows read for 10,000 bans), and a batch of
    /// 2,500 took seconds. Each execution is planned for the tables as they are now.
    #[test]
    fn statements_prepared_on_empty_tables_use_their_indexes_once_the_tables_grow() {
        let Some(db) = shared_database() else {
            return;
        };
        let mut ledger = PostgresLedger::connect(&db.url(), None).unwrap();
        let first: Prefix = "10.0.0.0/32".parse().unwrap();
        // One ban at a time on the empty tables, each with its feed read and its count of
        // prior bans: past the five custom plans after which a generic one may be kept.
        for i in 0..10 {
            ledger.record(&[ban_of(i)], Timestamp(1)).unwrap();
            ledger
                .feed(&FeedCursor::new(0, 0), 10)
                .map(|(events, _)| assert!(!events.is_empty()))
                .unwrap();
            ledger.prior_bans_each(&[first], Timestamp(0)).unwrap();
        }
        // The tables grow, with no ANALYZE.
        let grown: Vec<Write> = (10..5_010).map(ban_of).collect();
        ledger.record(&grown, Timestamp(1)).unwrap();
        let session = ledger.session().unwrap();
        let client = &mut session.client;
        for (sql, args) in [
            (
                BAN_MANY_SQL,
                "'{10.1.0.1/32}', '{sshd}', '{1}', '{100000}', '{NULL}', '{NULL}', '{NULL}', \
                 '{0}', 1",
            ),
            (PRIOR_BANS_EACH_SQL, "'{10.0.0.1/32}', 0"),
            (FEED_SQL, "'5', 3, 10"),
        ] {
            let plan = cached_plan(client, sql, args);
            assert!(!plan.contains("Seq Scan on"), "{sql}\n{plan}");
        }
    }
}
