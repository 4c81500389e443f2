//! The ledger: the durable record of every ban, the truth the targets are rebuilt from.
//!
//! [`Ledger`] is the interface; [`sqlite::SqliteLedger`] is the embedded default (WAL,
//! `synchronous=FULL`, so a write is on disk before it returns). A PostgreSQL ledger for many
//! hosts will implement the same trait. The ledger stores three things:
//!
//! - **bans**: the active (prefix, source) bans, one row each;
//! - **events**: an append-only history of every ban, extension, unban, expiry and lift, with
//!   a monotonically increasing id. The id doubles as a change feed: a daemon that tails
//!   `events_since(cursor)` sees writes made by other processes (the fallback client, other
//!   hosts later);
//! - **target entries**: per target, the entries netban created on the device and their
//!   device handles (ExaFS rule ids and the like), so ownership survives restarts.
//!
//! The trait is synchronous; the daemon runs it on a dedicated thread.

pub mod sqlite;

use netban_core::plan::Held;
use netban_core::{Ban, Expiry, OriginHost, Prefix, Reason, Source, Timestamp};
use serde::{Deserialize, Serialize};

/// Position in the event feed. Ids only grow.
pub type EventId = i64;

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
    #[error("ledger schema is version {found}, newer than this netban understands ({known}); upgrade netban")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("ledger query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("ledger holds an unreadable row: {0}")]
    Corrupt(String),
}

/// The durable record of bans. Every method that writes is one transaction, durable on return.
pub trait Ledger: Send {
    /// Applies `writes` in order in one transaction at time `now`; one outcome per write.
    fn record(&mut self, writes: &[Write], now: Timestamp) -> Result<Vec<Outcome>, LedgerError>;

    /// Removes every (prefix, source) ban whose expiry is at or before `now`, writing an
    /// `Expire` event for each; returns the pairs removed.
    fn expire(&mut self, now: Timestamp) -> Result<Vec<(Prefix, Source)>, LedgerError>;

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

    /// Events with id greater than `after`, oldest first, at most `limit`.
    fn events_since(&mut self, after: EventId, limit: usize) -> Result<Vec<Event>, LedgerError>;

    /// The id of the newest event (0 when there is none).
    fn last_event_id(&mut self) -> Result<EventId, LedgerError>;

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
    let prior = if policy.escalation.enabled && !restored {
        let window = i64::try_from(policy.escalation.window_secs).unwrap_or(i64::MAX);
        ledger.prior_bans(&request.prefix, Timestamp(now.0.saturating_sub(window)))?
    } else {
        0
    };
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
