//! The ledger: the durable record of every ban, the truth the targets are rebuilt from.
//!
//! [`Ledger`] is the interface; [`sqlite::SqliteLedger`] is the embedded default (WAL,
//! `synchronous=FULL`, so a write is on disk before it returns), and
//! [`postgres::PostgresLedger`] (cargo feature `postgres`, on by default) is the ledger a
//! fleet of hosts shares. [`open`] picks one from a path or a `postgres://` URL. Both pass
//! the same contract tests (`tests/ledger/contract.rs`). The ledger stores three things:
//!
//! - **bans**: the active (prefix, source) bans, one row each;
//! - **events**: an append-only history of every ban, extension, unban, expiry and lift, with
//!   a unique id. They double as a change feed: a daemon that tails [`Ledger::feed`] from a
//!   [`FeedCursor`] sees writes made by other processes (the fallback client, other hosts);
//! - **target entries**: per target, the entries netban created on the device and their
//!   device handles (ExaFS rule ids and the like), so ownership survives restarts.
//!
//! The trait is synchronous; the daemon runs it on a dedicated thread.

pub mod files;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod spool;
pub mod sqlite;
mod stored;

use netban_core::plan::Held;
use netban_core::{Ban, Expiry, OriginHost, Prefix, Reason, Source, Timestamp};
use serde::{Deserialize, Serialize};

/// An event's id: unique, and increasing in the order events were appended (with PostgreSQL
/// not necessarily the order they committed: use [`FeedCursor`] to follow the feed).
pub type EventId = i64;

/// A position in the change feed. Opaque: get one from [`Ledger::feed_start`] or
/// [`Ledger::feed`] and hand it back to [`Ledger::feed`] of the same ledger.
///
/// It is the last delivered event's position in feed order, (transaction id, event id):
/// PostgreSQL orders its feed by the writing transaction's `xid8`, then the id; SQLite, whose
/// writers are serialised so that ids are commit order, keeps the transaction id at 0.
/// `FeedCursor::default()` is the beginning of the feed (every event ever recorded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FeedCursor {
    xid: u64,
    id: EventId,
}

impl FeedCursor {
    /// The position (`xid`, `id`); `xid` is 0 for SQLite.
    pub(crate) const fn new(xid: u64, id: EventId) -> FeedCursor {
        FeedCursor { xid, id }
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) const fn xid(&self) -> u64 {
        self.xid
    }

    pub(crate) const fn id(&self) -> EventId {
        self.id
    }
}

impl std::fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.xid, self.id)
    }
}

/// What happened, as kept in history: defined once in `netban_core`, re-exported here so
/// `netban_ledger::EventKind` keeps working. Both ledgers store [`EventKind::as_str`].
pub use netban_core::EventKind;

/// One entry of history / the change feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub at: Timestamp,
    pub kind: EventKind,
    pub prefix: Prefix,
    /// `None` on an unban or lift of every source at once.
    pub source: Option<Source>,
    /// The (prefix, source) expiry after the event, for Ban and Extend.
    pub expiry: Option<Expiry>,
    pub reason: Option<Reason>,
    pub failures: Option<u32>,
    pub origin_host: Option<OriginHost>,
    /// For Ban: how many earlier bans escalated this one.
    pub escalation_step: u32,
}

/// One write, applied with others in one transaction by [`Ledger::record`].
/// An event as history shows it to clients (socket, API, the client's own fallback).
impl From<Event> for netban_proto::HistoryEvent {
    fn from(e: Event) -> netban_proto::HistoryEvent {
        netban_proto::HistoryEvent {
            at: e.at,
            kind: e.kind,
            prefix: e.prefix,
            source: e.source,
            expiry: e.expiry,
            reason: e.reason,
            origin_host: e.origin_host,
            escalation_step: e.escalation_step,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Insert or extend a (prefix, source) ban. If the pair is active, the later expiry is
    /// kept and the event is `Extend`; otherwise it is a new `Ban`.
    Ban { ban: Ban, escalation_step: u32 },
    /// Remove one source's ban, or every source's (`source: None`). Kind is Unban or Lift.
    Unban {
        prefix: Prefix,
        source: Option<Source>,
        kind: EventKind,
        origin_host: Option<OriginHost>,
    },
}

/// What one write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The ban is recorded (new or extended); `expiry` is what the pair holds now.
    Banned {
        event: EventId,
        kind: EventKind,
        expiry: Expiry,
    },
    /// The unban removed this many (prefix, source) rows (0: nothing was banned).
    Unbanned {
        event: Option<EventId>,
        removed: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database {path}: {error}")]
    Open {
        path: String,
        error: rusqlite::Error,
    },
    #[error("ledger file {path}: {error}")]
    Files {
        path: std::path::PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("ledger schema is version {found}, newer than this netban understands ({known}); upgrade netban")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("ledger query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("ledger holds an unreadable row: {0}")]
    Corrupt(String),
    /// Connecting to (or configuring the connection to) a PostgreSQL ledger failed.
    #[cfg(feature = "postgres")]
    #[error("ledger database {target}: {error}")]
    Connect {
        /// The servers and database, without the password.
        target: String,
        #[source]
        error: ::postgres::Error,
    },
    #[cfg(feature = "postgres")]
    #[error("ledger query failed: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// `ledger_password_file` is missing, empty, or readable by group or others (the rule of
    /// every secret file, `netban_config::secret`).
    #[error("ledger password: {0}")]
    PasswordFile(#[source] netban_config::secret::SecretError),
    #[error(
        "the ledger is a PostgreSQL URL, but this netban was built without the `postgres` feature"
    )]
    PostgresNotBuilt,
}

/// Opens the ledger `spec` names: a `postgres://` or `postgresql://` URL (several hosts
/// allowed, as libpq spells them) is a [`postgres::PostgresLedger`], with its password read
/// from `password_file` when given (first line; the URL's own password otherwise); anything
/// else is the path of a [`sqlite::SqliteLedger`] file (`password_file` is not used).
pub fn open(
    spec: &str,
    password_file: Option<&std::path::Path>,
) -> Result<Box<dyn Ledger>, LedgerError> {
    if is_postgres_url(spec) {
        #[cfg(feature = "postgres")]
        return Ok(Box::new(postgres::PostgresLedger::connect(
            spec,
            password_file,
        )?));
        #[cfg(not(feature = "postgres"))]
        return Err(LedgerError::PostgresNotBuilt);
    }
    let _ = password_file;
    Ok(Box::new(sqlite::SqliteLedger::open(std::path::Path::new(
        spec,
    ))?))
}

/// Whether `spec` is a PostgreSQL URL (rather than a file path).
pub fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// A row the ledger could not read, moved out of the way (into its `quarantine` table) so that
/// it stops neither the change feed, nor expiry, nor loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The table it was in (`events`, `bans`).
    pub table: &'static str,
    /// The row as it was, as JSON.
    pub row: String,
    /// Why it could not be read.
    pub error: String,
}

/// The durable record of bans. Every method that writes is one transaction, durable on return.
pub trait Ledger: Send {
    /// Rows quarantined since the last call (each is reported once, by the call after the
    /// read that found it).
    fn take_quarantined(&mut self) -> Vec<Quarantined> {
        Vec::new()
    }

    /// What this ledger is, for status output and logs (never a password).
    fn describe(&self) -> String;

    /// Applies `writes` in order in one transaction at time `now`; one outcome per write.
    fn record(&mut self, writes: &[Write], now: Timestamp) -> Result<Vec<Outcome>, LedgerError>;

    /// Removes every (prefix, source) ban whose expiry is at or before `now`, writing an
    /// `Expire` event for each; returns the pairs removed.
    fn expire(&mut self, now: Timestamp) -> Result<Vec<(Prefix, Source)>, LedgerError>;

    /// Deletes the history before `before` (events only: active bans stay); returns how many
    /// events went. Callers keep at least the escalation window.
    fn prune_history(&mut self, before: Timestamp) -> Result<usize, LedgerError>;

    /// Calls `visit` with every active (prefix, source) ban at `now`, one at a time (the
    /// daemon loads a million bans this way without holding them all twice); returns how many.
    fn for_each_active(
        &mut self,
        now: Timestamp,
        visit: &mut dyn FnMut(Ban),
    ) -> Result<usize, LedgerError>;

    /// Every active (prefix, source) ban at `now`.
    fn active_bans(&mut self, now: Timestamp) -> Result<Vec<Ban>, LedgerError> {
        let mut bans = Vec::new();
        self.for_each_active(now, &mut |ban| bans.push(ban))?;
        Ok(bans)
    }

    /// How many `Ban` events (not `Extend`) `prefix` has at or after `since`.
    fn prior_bans(&mut self, prefix: &Prefix, since: Timestamp) -> Result<u32, LedgerError>;

    /// [`Ledger::prior_bans`] of each of `prefixes`, in their order: what a group of ban
    /// requests needs before it is decided. A ledger across a network answers in one round trip.
    fn prior_bans_each(
        &mut self,
        prefixes: &[Prefix],
        since: Timestamp,
    ) -> Result<Vec<u32>, LedgerError> {
        prefixes.iter().map(|p| self.prior_bans(p, since)).collect()
    }

    /// The feed's position now: what was recorded before counts as seen. Take it *before*
    /// reading the state ([`Ledger::for_each_active`]) so that nothing falls between the two;
    /// an event may then be both in that state and delivered by [`Ledger::feed`] (with
    /// PostgreSQL, those of transactions open or committed after the oldest open one), which
    /// is harmless: an event sets the state of one (prefix, source), and the feed delivers
    /// the events of one prefix in the order they were written.
    fn feed_start(&mut self) -> Result<FeedCursor, LedgerError>;

    /// The committed events after `after`, oldest first, at most `limit`, and the cursor to
    /// pass next time (`after` itself when there are none).
    ///
    /// Every committed event is delivered exactly once, including one whose transaction
    /// commits after events with higher ids were delivered (PostgreSQL: the feed holds back
    /// events at and above the oldest transaction still open; see [`postgres`]). Events of one
    /// prefix come in the order their transactions committed.
    fn feed(
        &mut self,
        after: &FeedCursor,
        limit: usize,
    ) -> Result<(Vec<Event>, FeedCursor), LedgerError>;

    /// History of `prefix` and of every prefix that contains it or that it contains, newest
    /// first, at most `limit`.
    fn history(&mut self, prefix: &Prefix, limit: usize) -> Result<Vec<Event>, LedgerError>;

    /// The entries netban recorded as created on `target`.
    fn target_entries(&mut self, target: &str) -> Result<Vec<Held>, LedgerError>;

    /// Records entries created on (`added`) and removed from (`removed`) `target`, in one
    /// transaction. An added entry replaces a recorded one with the same prefix.
    fn update_target_entries(
        &mut self,
        target: &str,
        added: &[Held],
        removed: &[Prefix],
    ) -> Result<(), LedgerError>;
}

/// Why [`admit`] wrote nothing for a ban request.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// Policy refused the request (allowlisted, protected, too broad…): the message says why.
    #[error(transparent)]
    Refused(#[from] netban_core::policy::Refusal),
    /// The ledger could not be read to count earlier bans.
    #[error("the ledger could not decide: {0}")]
    Ledger(#[from] LedgerError),
}

/// Decides a ban request against policy and the ledger's memory of earlier bans, and returns
/// the write that records it (or why there is none). Shared by the daemon and by the client's
/// fallback, so the two can never decide differently.
///
/// Earlier bans inside the escalation window are counted only when escalation is on and the
/// request is not a restore (fail2ban re-asserting a ban after its own restart never
/// escalates).
pub fn admit(
    ledger: &mut dyn Ledger,
    policy: &netban_core::policy::Policy,
    request: netban_core::BanRequest,
    restored: bool,
    now: Timestamp,
) -> Result<Write, AdmitError> {
    let prior = match escalation_window_start(policy, now) {
        Some(since) if !restored => ledger.prior_bans(&request.prefix, since)?,
        _ => 0,
    };
    Ok(admit_with_prior(policy, request, prior, now)?)
}

/// From when earlier bans count for escalation under `policy` ([`Ledger::prior_bans`]'s
/// `since`), or `None` when escalation is off and they need not be counted.
pub fn escalation_window_start(
    policy: &netban_core::policy::Policy,
    now: Timestamp,
) -> Option<Timestamp> {
    policy.escalation.enabled.then(|| {
        let window = i64::try_from(policy.escalation.window_secs).unwrap_or(i64::MAX);
        Timestamp(now.0.saturating_sub(window))
    })
}

/// Decides a ban request given the count of its earlier bans (`prior`) without reading a
/// ledger: what [`admit`] does once it has counted, and what a daemon does while its shared
/// ledger is away (with `prior` 0: no escalation).
pub fn admit_with_prior(
    policy: &netban_core::policy::Policy,
    request: netban_core::BanRequest,
    prior: u32,
    now: Timestamp,
) -> Result<Write, netban_core::policy::Refusal> {
    let admitted = policy.admit(&request, prior, now)?;
    Ok(Write::Ban {
        ban: Ban {
            prefix: request.prefix,
            source: request.source,
            created: now,
            expiry: admitted.expiry,
            reason: request.reason,
            failures: request.failures,
            origin_host: request.origin_host,
        },
        escalation_step: admitted.escalation_step,
    })
}
