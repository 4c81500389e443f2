//! Converting between SQLite rows and the domain: stored encodings of expiries, kinds and
//! prefix ranges, and validation of what is read back.

use crate::stored::*;
use crate::{Event, LedgerError};
use netban_core::{Expiry, Prefix, Timestamp};
use rusqlite::Row;
use std::net::IpAddr;

/// The family (4 or 6) and network address bytes of `p`, as in `events.fam` / `events.lo`.
pub(super) fn range_key(p: &Prefix) -> (i64, Vec<u8>) {
    match p.addr() {
        IpAddr::V4(a) => (4, a.octets().to_vec()),
        IpAddr::V6(a) => (6, a.octets().to_vec()),
    }
}

/// The last address of `p`, as bytes comparable with `range_key`.
pub(super) fn range_end(p: &Prefix) -> Vec<u8> {
    match p.net().broadcast() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `p` and every prefix that contains it, as canonical text.
pub(super) fn ancestors(p: &Prefix) -> Vec<String> {
    std::iter::successors(Some(p.net()), |n| n.supernet())
        .map(|n| Prefix::from_net(n).to_string())
        .collect()
}

/// A TEXT column borrowed from the row, without copying it.
pub(super) fn text_column<'r>(r: &'r Row<'_>, i: usize) -> Result<&'r str, LedgerError> {
    r.get_ref(i)?
        .as_str()
        .map_err(|e| LedgerError::Corrupt(format!("column {i}: {e}")))
}

/// The raw columns of an event row, read inside rusqlite's row callback; validated after.
pub(super) struct RawEvent {
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
    pub(super) fn id(&self) -> i64 {
        self.id
    }

    /// The row as JSON, for the quarantine.
    pub(super) fn to_json(&self) -> String {
        serde_json::json!({
            "id": self.id, "at": self.at, "kind": self.kind, "prefix": self.prefix,
            "source": self.source, "expires": self.expires, "reason": self.reason,
            "failures": self.failures, "origin_host": self.origin_host,
            "escalation_step": self.escalation_step,
        })
        .to_string()
    }

    pub(super) fn read(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
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

    pub(super) fn into_event(self) -> Result<Event, LedgerError> {
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
