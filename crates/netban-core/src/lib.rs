//! The netban domain: what a ban is, who may be banned, and what each enforcement point
//! should hold.
//!
//! This crate is pure: it performs no I/O and never reads the clock (every function that
//! depends on time takes `now`). Everything that decides *what* netban does lives here and is
//! unit-tested here; the ledger, the targets and the daemon only carry out its decisions.
//!
//! - [`prefix`]: parsing and normalising addresses and prefixes, strictly.
//! - [`ban`]: bans per (prefix, source), expiry, the validated names around them.
//! - [`event`]: what happened to a ban ([`EventKind`]), spelled once for history and the wire.
//! - [`table`]: the in-memory table of active bans and the effective ban of each prefix.
//! - [`policy`]: allowlist, protected networks, breadth limits, escalation.
//! - [`prefix_set`]: the overlap index behind the allowlist and the protected networks.
//! - [`placement`]: which bans a target of limited capacity holds, and what overflows.
//! - [`aggregation`]: merging neighbouring bans into covering prefixes to fit such a target.
//! - [`plan`]: the diff between what a target should hold and what it holds.

pub mod aggregation;
pub mod ban;
pub mod event;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod prefix;
pub mod prefix_set;
pub mod table;
pub mod time;

pub use ban::{Ban, BanDuration, BanRequest, Expiry, OriginHost, Reason, Source};
pub use event::{EventKind, UnknownEventKind};
pub use prefix::{Family, Prefix, PrefixError};
pub use time::Timestamp;
