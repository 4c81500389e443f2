use super::queries::*;
use super::*;
use crate::{EventId, EventKind, FeedCursor, Ledger, LedgerError, Outcome, Write};
use netban_core::{Ban, Expiry, Prefix, Reason, Source, Timestamp};
use rusqlite::Connection;
use std::sync::{Arc, Barrier};
use std::time::Instant;

fn p(s: &str) -> Prefix {
    Prefix::parse(s).unwrap()
}

fn src(s: &str) -> Source {
    Source::new(s).unwrap()
}

fn ban(prefix: &str, source: &str, created: i64, expiry: Expiry) -> Ban {
    Ban {
        prefix: p(prefix),
        source: src(source),
        created: Timestamp(created),
        expiry,
        reason: None,
        failures: None,
        origin_host: None,
    }
}

fn at(t: i64) -> Expiry {
    Expiry::At(Timestamp(t))
}

fn w_ban(b: Ban) -> Write {
    Write::Ban {
        ban: b,
        escalation_step: 0,
    }
}

fn mem() -> SqliteLedger {
    SqliteLedger::open_in_memory().unwrap()
}

fn one(l: &mut SqliteLedger, w: Write, now: i64) -> Outcome {
    let mut out = l.record(&[w], Timestamp(now)).unwrap();
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

fn banned(o: &Outcome) -> (EventId, EventKind, Expiry) {
    match o {
        Outcome::Banned {
            event,
            kind,
            expiry,
        } => (*event, *kind, *expiry),
        other => panic!("expected Banned, got {other:?}"),
    }
}

fn pragma<T: rusqlite::types::FromSql>(l: &SqliteLedger, name: &str) -> T {
    l.conn
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn open_creates_the_file_with_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    assert!(!path.exists());
    let l = SqliteLedger::open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(l.path(), path.as_path());
    assert_eq!(pragma::<String>(&l, "journal_mode"), "wal");
    assert_eq!(pragma::<i64>(&l, "synchronous"), 2, "FULL is 2");
    assert_eq!(pragma::<i64>(&l, "busy_timeout"), 5000);
    assert_eq!(pragma::<i64>(&l, "foreign_keys"), 1);
    assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 2);
    let tables: Vec<String> = l
        .conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "bans",
            "events",
            "quarantine",
            "sqlite_sequence",
            "target_entries"
        ]
    );
}

#[test]
fn open_fails_with_the_path_when_the_directory_cannot_be_made() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    let path = dir.path().join("a-file").join("ledger.db");
    match SqliteLedger::open(&path) {
        Err(e @ LedgerError::Files { .. }) => {
            assert!(e.to_string().contains("a-file"), "{e}")
        }
        other => panic!("expected Files error, got {other:?}"),
    }
}

#[test]
fn quick_check_finds_a_damaged_file_and_passes_a_sound_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let mut l = SqliteLedger::open(&path).unwrap();
        let writes: Vec<Write> = (0..2000)
            .map(|i| {
                w_ban(ban(
                    &format!("10.0.{}.{}", i / 250, i % 250),
                    "sshd",
                    0,
                    at(600),
                ))
            })
            .collect();
        l.record(&writes, Timestamp(0)).unwrap();
        l.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    assert_eq!(
        SqliteLedger::quick_check(&path).unwrap(),
        Vec::<String>::new()
    );
    // Scribble over the middle of the file (an index or table page).
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2 / 4096 * 4096;
    for b in &mut bytes[middle + 100..middle + 3000] {
        *b = 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let problems = SqliteLedger::quick_check(&path).unwrap();
    assert!(!problems.is_empty(), "damage found");
}

#[test]
fn open_creates_a_missing_directory_and_a_private_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("ledger.db");
    SqliteLedger::open(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o077, 0);
}

#[test]
fn a_failing_write_rolls_back_the_whole_batch() {
    let mut l = mem();
    l.conn
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON bans WHEN NEW.prefix = '192.0.2.66/32'
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    let err = l
        .record(
            &[
                w_ban(ban("192.0.2.1", "sshd", 0, at(600))),
                w_ban(ban("192.0.2.66", "sshd", 0, at(600))),
            ],
            Timestamp(0),
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::Sql(_)), "{err:?}");
    assert!(l.active_bans(Timestamp(0)).unwrap().is_empty());
    assert_eq!(l.last_event_id().unwrap(), 0);
    // The connection is usable afterwards.
    one(&mut l, w_ban(ban("192.0.2.1", "sshd", 0, at(600))), 0);
    assert_eq!(l.active_bans(Timestamp(0)).unwrap().len(), 1);
}

#[test]
fn unreadable_rows_are_quarantined_and_stop_neither_loading_nor_the_feed_nor_expiry() {
    let mut l = mem();
    let now = Timestamp(1000);
    l.record(&[w_ban(ban("203.0.113.1", "sshd", 900, at(1600)))], now)
        .unwrap();
    let (_, cursor) = l.feed(&FeedCursor::new(0, 0), usize::MAX).unwrap();
    // A ban whose prefix has host bits set, an event of an unknown kind, an expired ban with
    // a source that is no name: each unreadable.
    l.conn
        .execute_batch(
            "INSERT INTO bans (prefix, source, created, expires) VALUES ('203.0.113.7/24', 'sshd', 0, -1);
             INSERT INTO events (at, kind, prefix, fam, lo) VALUES (0, 'smite', '198.51.100.1/32', 4, x'c6336401');
             INSERT INTO bans (prefix, source, created, expires) VALUES ('198.51.100.2/32', 'a b', 0, 5);",
        )
        .unwrap();
    l.record(&[w_ban(ban("203.0.113.2", "sshd", 900, at(1600)))], now)
        .unwrap();

    let active = l.active_bans(now).unwrap();
    assert_eq!(active.len(), 2, "the readable bans load: {active:?}");
    let (events, next) = l.feed(&cursor, usize::MAX).unwrap();
    assert_eq!(
        events.len(),
        1,
        "the feed moves past the bad event: {events:?}"
    );
    assert_eq!(events[0].prefix.to_string(), "203.0.113.2/32");
    assert!(next.id() > cursor.id());
    let expired = l.expire(now).unwrap();
    assert!(expired.is_empty(), "{expired:?}");

    let quarantined = l.take_quarantined();
    let tables: Vec<&str> = quarantined.iter().map(|q| q.table).collect();
    assert_eq!(tables, ["bans", "events", "bans"], "{quarantined:?}");
    assert!(quarantined[1].error.contains("smite"), "{quarantined:?}");
    assert!(l.take_quarantined().is_empty(), "each reported once");
    // Out of the way for good: kept in the quarantine table, gone from theirs.
    let kept: i64 = l
        .conn
        .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 3);
    assert_eq!(l.active_bans(now).unwrap().len(), 2);
    assert!(l.take_quarantined().is_empty());
}

#[test]
fn refuses_a_newer_schema_and_applies_only_missing_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let mut l = SqliteLedger::open(&path).unwrap();
        one(&mut l, w_ban(ban("192.0.2.1", "sshd", 0, Expiry::Never)), 0);
        // A later netban adds a migration.
        let mut longer = MIGRATIONS.to_vec();
        longer.push("CREATE TABLE later (x INTEGER);");
        l.migrate(&longer).unwrap();
        assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION + 1);
        // Running it again changes nothing (it would fail re-creating the table).
        l.migrate(&longer).unwrap();
    }
    match SqliteLedger::open(&path) {
        Err(LedgerError::SchemaTooNew { found, known }) => {
            assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = SqliteLedger::open(&path).unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
}

fn host_ban(i: u32, now: i64) -> Write {
    let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
    w_ban(Ban {
        prefix: Prefix::host(addr.into()),
        source: src(["sshd", "recidive"][(i % 2) as usize]),
        created: Timestamp(now),
        // One in ten permanent.
        expiry: match i % 10 {
            0 => Expiry::Never,
            _ => at(now + 3600),
        },
        reason: Some(Reason::new("load test").unwrap()),
        failures: Some(i % 7),
        origin_host: None,
    })
}

/// Timings are printed (`cargo test -- --nocapture`), not asserted: the machine is shared.
#[test]
fn large_batches_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = SqliteLedger::open(&dir.path().join("ledger.db")).unwrap();

    let batch: Vec<_> = (0..10_000).map(|i| host_ban(i, 100)).collect();
    let t = Instant::now();
    let outs = l.record(&batch, Timestamp(100)).unwrap();
    let ten_k = t.elapsed();
    assert_eq!(outs.len(), 10_000);
    assert!(outs.iter().all(|o| banned(o).1 == EventKind::Ban));
    // Again: every one is an extend now.
    let t = Instant::now();
    let outs = l.record(&batch, Timestamp(101)).unwrap();
    let ten_k_extend = t.elapsed();
    assert!(outs.iter().all(|o| banned(o).1 == EventKind::Extend));

    let rest: Vec<_> = (10_000..100_000).map(|i| host_ban(i, 100)).collect();
    l.record(&rest, Timestamp(100)).unwrap();
    let t = Instant::now();
    let active = l.active_bans(Timestamp(200)).unwrap();
    let hundred_k = t.elapsed();
    assert_eq!(active.len(), 100_000);
    assert_eq!(
        active.iter().filter(|b| b.expiry == Expiry::Never).count(),
        10_000
    );

    let mut singles = Vec::new();
    for i in 0..41 {
        let t = Instant::now();
        l.record(&[host_ban(200_000 + i, 300)], Timestamp(300))
            .unwrap();
        singles.push(t.elapsed());
    }
    singles.sort();
    eprintln!(
        "sqlite ledger timings: 10k-ban batch {ten_k:?}, 10k-extend batch {ten_k_extend:?}, \
         100k active_bans {hundred_k:?}, single-ban record median {:?} (min {:?}, max {:?})",
        singles[singles.len() / 2],
        singles[0],
        singles[singles.len() - 1]
    );
}

fn query_plan(l: &SqliteLedger, sql: &str) -> String {
    let mut stmt = l
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap();
    let mut rows = stmt.raw_query();
    let mut steps = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        steps.push(r.get::<_, String>(3).unwrap());
    }
    steps.join("; ")
}

#[test]
fn queries_use_their_indexes() {
    let l = mem();
    let history = query_plan(&l, &history_sql());
    assert!(
        history.contains("events_range") && !history.contains("SCAN events"),
        "{history}"
    );
    let prior = query_plan(&l, PRIOR_BANS_SQL);
    assert!(
        prior.contains("SEARCH events USING COVERING INDEX events_prior"),
        "{prior}"
    );
    let expired = query_plan(&l, EXPIRED_SQL);
    assert!(expired.contains("INDEX bans_expires"), "{expired}");
    assert!(!expired.contains("TEMP B-TREE"), "{expired}");
}

#[test]
fn several_connections_open_a_fresh_file_at_once() {
    const THREADS: usize = 3;
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteLedger::open(&path).and_then(|l| l.schema_version())
                })
            })
            .collect();
        for h in handles {
            match h.join().unwrap() {
                Ok(version) => assert_eq!(version, SCHEMA_VERSION),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
    }
}
