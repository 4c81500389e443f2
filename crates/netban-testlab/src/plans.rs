//! Plan builders for driver tests: the same few lines every driver's tests need to hand its
//! `apply` a batch written as address text.

use netban_core::plan::{Desired, Held, Plan};
use netban_core::{Expiry, Prefix, Timestamp};
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock, in whole seconds (for expiries a test hands a device).
pub fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    Timestamp(secs as i64)
}

/// An expiry `secs` from now.
pub fn in_secs(secs: i64) -> Expiry {
    Expiry::At(Timestamp(now().0 + secs))
}

/// Parses a prefix the test wrote (panics on a typo in the test).
pub fn prefix(text: &str) -> Prefix {
    Prefix::parse(text).unwrap_or_else(|e| panic!("test prefix {text:?}: {e}"))
}

/// A plan that adds `list`, each as a permanent ban.
pub fn adds(list: &[&str]) -> Plan {
    Plan {
        add: list
            .iter()
            .map(|s| Desired::new(prefix(s), Expiry::Never))
            .collect(),
        ..Plan::default()
    }
}

/// A plan that removes `list`, as entries without expiry or handle.
pub fn removes(list: &[&str]) -> Plan {
    Plan {
        remove: list
            .iter()
            .map(|s| Held {
                prefix: prefix(s),
                expiry: None,
                handle: None,
            })
            .collect(),
        ..Plan::default()
    }
}
