//! Stored values and the domain, the same for every backend: how expiries are encoded, and
//! the validation of what is read back (a row that does not parse is
//! [`LedgerError::Corrupt`], never skipped).
//!
//! `expires` is epoch seconds, `-1` for never (fail2ban's convention, as
//! [`Expiry::to_epoch_or_minus_one`]). Any negative value reads back as never, so an
//! `Expiry::At` before the epoch is stored as `0` (it is in the past either way).

use crate::{EventKind, LedgerError};
use netban_core::{Expiry, OriginHost, Prefix, Reason, Source};

/// `expires` as stored: -1 for never, never below 0 otherwise (see the module documentation).
pub(crate) fn expiry_to_sql(e: Expiry) -> i64 {
    match e {
        Expiry::Never => -1,
        Expiry::At(t) => t.0.max(0),
    }
}

pub(crate) fn kind_from_sql(s: &str) -> Result<EventKind, LedgerError> {
    s.parse()
        .map_err(|e: netban_core::UnknownEventKind| LedgerError::Corrupt(e.to_string()))
}

pub(crate) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn prefix_from_sql(s: &str) -> Result<Prefix, LedgerError> {
    Prefix::parse(s).map_err(|e| LedgerError::Corrupt(format!("prefix {s:?}: {e}")))
}

pub(crate) fn source_from_sql(s: &str) -> Result<Source, LedgerError> {
    Source::new(s).map_err(|e| LedgerError::Corrupt(format!("source {s:?}: {e}")))
}

pub(crate) fn reason_from_sql(s: Option<String>) -> Result<Option<Reason>, LedgerError> {
    s.map(|s| Reason::new(&s).map_err(|e| LedgerError::Corrupt(format!("reason {s:?}: {e}"))))
        .transpose()
}

pub(crate) fn origin_from_sql(s: Option<String>) -> Result<Option<OriginHost>, LedgerError> {
    s.map(|s| {
        OriginHost::new(&s).map_err(|e| LedgerError::Corrupt(format!("origin host {s:?}: {e}")))
    })
    .transpose()
}

pub(crate) fn u32_from_sql(v: Option<i64>, what: &str) -> Result<Option<u32>, LedgerError> {
    v.map(|v| {
        u32::try_from(v).map_err(|_| LedgerError::Corrupt(format!("{what} {v} out of range")))
    })
    .transpose()
}
