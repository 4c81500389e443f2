//! The ledger's integration tests, one binary: the contract every backend passes
//! ([`contract`], run below against SQLite and against a real PostgreSQL 15), and what only
//! PostgreSQL has to prove ([`pg`]: the change feed under concurrent writers, crash
//! durability, the record latency measurement).
//!
//! PostgreSQL tests use one throwaway server per test process (`netban_testlab::postgres`)
//! and a fresh database per test. Where PostgreSQL 15 is not installed they are skipped with
//! a printed line, except under `CI=true` or `NETBAN_REQUIRE_POSTGRES=1`, where they fail.

mod contract;
mod pg;

use netban_ledger::postgres::PostgresLedger;
use netban_ledger::sqlite::SqliteLedger;
use netban_ledger::Ledger;

/// A new, empty SQLite store: a file in a temp dir that lives as long as the returned opener.
fn sqlite_store() -> impl FnMut() -> Box<dyn Ledger> {
    let dir = tempfile::tempdir().unwrap();
    move || Box::new(SqliteLedger::open(&dir.path().join("ledger.db")).unwrap()) as Box<dyn Ledger>
}

// Whether PostgreSQL tests must run rather than skip, and a fresh database on the process's
// shared server (`None` where PostgreSQL is not installed and not required).
use netban_testlab::postgres::{
    required as postgres_required, shared_database as postgres_database,
};

/// A new, empty PostgreSQL store (a fresh database), or `None` as [`postgres_database`].
fn postgres_store() -> Option<impl FnMut() -> Box<dyn Ledger>> {
    let url = postgres_database()?.url();
    Some(move || Box::new(PostgresLedger::connect(&url, None).unwrap()) as Box<dyn Ledger>)
}

/// One `#[test]` per contract function, per backend.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_contract {
            $(
                #[test]
                fn $name() {
                    let mut open = super::sqlite_store();
                    super::contract::$name(&mut open);
                }
            )*
        }
        mod postgres_contract {
            $(
                #[test]
                fn $name() {
                    let Some(mut open) = super::postgres_store() else { return };
                    super::contract::$name(&mut open);
                }
            )*
        }
    };
}

contract_tests!(
    new_ban_is_recorded_with_all_its_fields,
    bans_recorded_together_keep_each_ones_fields,
    extend_never_shortens_and_refreshes_what_is_given,
    ban_of_an_expired_but_unremoved_pair_is_a_new_ban,
    recidive_unban_of_one_source_leaves_the_other,
    unban_of_every_source_writes_one_event,
    expire_removes_exactly_the_ended_bans,
    an_expiry_before_the_epoch_is_stored_as_past_not_permanent,
    prior_bans_counts_bans_of_exactly_that_prefix_since,
    the_feed_pages_in_order_and_starts_at_the_present,
    writes_survive_closing_and_reopening,
    two_handles_write_concurrently,
    racing_bans_of_one_pair_extend_instead_of_failing,
    concurrent_expiry_writes_each_expire_event_once,
    history_covers_containing_and_contained_prefixes,
    history_matches_a_brute_force_overlap_filter,
    target_entries_are_recorded_replaced_and_removed,
    pruning_history_keeps_newer_events_and_every_active_ban,
    one_call_with_many_bans_decides_each_as_if_alone,
);
