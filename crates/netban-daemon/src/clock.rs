//! The daemon's one clock read. The domain takes `now` as an argument; this is where it comes from.

use netban_core::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
}
