//! The ledger contract: what every [`Ledger`] backend does, as functions that take a way to
//! open the store under test. `open()` returns a new handle on the *same* store, which starts
//! empty for each test; a test that opens it twice sees its own earlier writes (as a daemon
//! restarting, or a second host). `main.rs` runs every function against each backend.

use netban_core::plan::Held;
use netban_core::{Ban, Expiry, OriginHost, Prefix, Reason, Source, Timestamp};
use netban_ledger::{Event, EventId, EventKind, FeedCursor, Ledger, Outcome, Write};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Opens a new handle on the store under test.
pub type Open<'a> = &'a mut dyn FnMut() -> Box<dyn Ledger>;

pub fn p(s: &str) -> Prefix {
    Prefix::parse(s).unwrap()
}

pub fn src(s: &str) -> Source {
    Source::new(s).unwrap()
}

pub fn ban(prefix: &str, source: &str, created: i64, expiry: Expiry) -> Ban {
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

pub fn at(t: i64) -> Expiry {
    Expiry::At(Timestamp(t))
}

pub fn w_ban(b: Ban) -> Write {
    Write::Ban {
        ban: b,
        escalation_step: 0,
    }
}

pub fn w_unban(prefix: &str, source: Option<&str>, kind: EventKind) -> Write {
    Write::Unban {
        prefix: p(prefix),
        source: source.map(src),
        kind,
        origin_host: None,
    }
}

pub fn one(l: &mut dyn Ledger, w: Write, now: i64) -> Outcome {
    let mut out = l.record(&[w], Timestamp(now)).unwrap();
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

pub fn banned(o: &Outcome) -> (EventId, EventKind, Expiry) {
    match o {
        Outcome::Banned {
            event,
            kind,
            expiry,
        } => (*event, *kind, *expiry),
        other => panic!("expected Banned, got {other:?}"),
    }
}

pub fn sorted_active(l: &mut dyn Ledger, now: i64) -> Vec<(String, String, Expiry)> {
    let mut v: Vec<_> = l
        .active_bans(Timestamp(now))
        .unwrap()
        .into_iter()
        .map(|b| (b.prefix.to_string(), b.source.to_string(), b.expiry))
        .collect();
    v.sort();
    v
}

/// Every event, in id order. Read through `history` of the two whole address families, not
/// through the feed: with PostgreSQL the feed may hold back events while another test's
/// transaction is open on the same server.
pub fn all_events(l: &mut dyn Ledger) -> Vec<Event> {
    let mut events = l.history(&p("0.0.0.0/0"), usize::MAX).unwrap();
    events.extend(l.history(&p("::/0"), usize::MAX).unwrap());
    events.sort_by_key(|e| e.id);
    events
}

/// Reads the feed from `from` in pages of at most `page` until at least `want` events came
/// (bounded: the PostgreSQL feed delivers an event once every transaction older than it has
/// ended, and other tests share the server). Returns them and the cursor after them.
pub fn feed_until(
    l: &mut dyn Ledger,
    from: FeedCursor,
    want: usize,
    page: usize,
) -> (Vec<Event>, FeedCursor) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut cursor = from;
    let mut events = Vec::new();
    while events.len() < want {
        let (got, next) = l.feed(&cursor, page).unwrap();
        assert!(got.len() <= page);
        if got.is_empty() {
            assert_eq!(next, cursor, "an empty page keeps the cursor");
            assert!(
                Instant::now() < deadline,
                "only {} of {want} events came",
                events.len()
            );
            std::thread::sleep(Duration::from_millis(2));
        } else {
            assert_ne!(next, cursor);
        }
        cursor = next;
        events.extend(got);
    }
    (events, cursor)
}

/// The id of the newest event (0 when there is none).
pub fn last_id(l: &mut dyn Ledger) -> EventId {
    all_events(l).iter().map(|e| e.id).max().unwrap_or(0)
}

/// Events with id above `after`, in id order, at most `limit`.
pub fn events_after(l: &mut dyn Ledger, after: EventId, limit: usize) -> Vec<Event> {
    let mut events: Vec<_> = all_events(l).into_iter().filter(|e| e.id > after).collect();
    events.sort_by_key(|e| e.id);
    events.truncate(limit);
    events
}

pub fn new_ban_is_recorded_with_all_its_fields(open: Open<'_>) {
    let mut l = open();
    assert_eq!(last_id(&mut *l), 0);
    let b = Ban {
        reason: Some(Reason::new("5 failures in 600s").unwrap()),
        failures: Some(5),
        origin_host: Some(OriginHost::new("edge-1.example.net").unwrap()),
        ..ban("203.0.113.7", "sshd", 100, at(700))
    };
    let out = one(
        &mut *l,
        Write::Ban {
            ban: b.clone(),
            escalation_step: 2,
        },
        100,
    );
    let (event, kind, expiry) = banned(&out);
    assert_eq!((kind, expiry), (EventKind::Ban, at(700)));
    assert_eq!(last_id(&mut *l), event);
    assert_eq!(l.active_bans(Timestamp(100)).unwrap(), vec![b.clone()]);
    assert_eq!(
        all_events(&mut *l),
        vec![Event {
            id: event,
            at: Timestamp(100),
            kind: EventKind::Ban,
            prefix: b.prefix,
            source: Some(b.source.clone()),
            expiry: Some(at(700)),
            reason: b.reason.clone(),
            failures: Some(5),
            origin_host: b.origin_host.clone(),
            escalation_step: 2,
        }]
    );
}

/// Bans recorded in one call (which a shared ledger writes in one statement) keep every field
/// of each, whether given or absent, as they do alone.
pub fn bans_recorded_together_keep_each_ones_fields(open: Open<'_>) {
    let mut l = open();
    let full = Ban {
        reason: Some(Reason::new("5 failures in 600s").unwrap()),
        failures: Some(5),
        origin_host: Some(OriginHost::new("edge-1.example.net").unwrap()),
        ..ban("203.0.113.7", "sshd", 100, at(700))
    };
    let bare = ban("2001:db8::7", "recidive", 100, Expiry::Never);
    let range = Ban {
        failures: Some(0),
        ..ban("198.51.100.0/24", "manual", 100, at(900))
    };
    let group = [(&full, 2), (&bare, 0), (&range, 1)];
    let writes: Vec<Write> = group
        .iter()
        .map(|(b, step)| Write::Ban {
            ban: (*b).clone(),
            escalation_step: *step,
        })
        .collect();
    let outcomes = l.record(&writes, Timestamp(100)).unwrap();
    let ids: Vec<EventId> = outcomes.iter().map(|o| banned(o).0).collect();
    let expected: Vec<Event> = group
        .iter()
        .zip(&ids)
        .map(|((b, step), id)| Event {
            id: *id,
            at: Timestamp(100),
            kind: EventKind::Ban,
            prefix: b.prefix,
            source: Some(b.source.clone()),
            expiry: Some(b.expiry),
            reason: b.reason.clone(),
            failures: b.failures,
            origin_host: b.origin_host.clone(),
            escalation_step: *step,
        })
        .collect();
    assert_eq!(all_events(&mut *l), expected);
    let mut active = l.active_bans(Timestamp(100)).unwrap();
    active.sort_by_key(|b| b.prefix.to_string());
    let mut want = vec![full, bare, range];
    want.sort_by_key(|b| b.prefix.to_string());
    assert_eq!(active, want);
}

pub fn extend_never_shortens_and_refreshes_what_is_given(open: Open<'_>) {
    let mut l = open();
    let first = Ban {
        reason: Some(Reason::new("first").unwrap()),
        failures: Some(3),
        ..ban("203.0.113.7", "sshd", 100, at(1000))
    };
    assert_eq!(banned(&one(&mut *l, w_ban(first), 100)).1, EventKind::Ban);

    // Shorter: the later expiry stays; nothing given, so reason and failures stay.
    let (_, kind, expiry) = banned(&one(
        &mut *l,
        Write::Ban {
            ban: ban("203.0.113.7", "sshd", 200, at(500)),
            escalation_step: 4,
        },
        200,
    ));
    assert_eq!((kind, expiry), (EventKind::Extend, at(1000)));
    let held = l.active_bans(Timestamp(200)).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].expiry, at(1000));
    assert_eq!(held[0].created, Timestamp(100), "created is kept");
    assert_eq!(held[0].reason.as_ref().unwrap().as_str(), "first");
    assert_eq!(held[0].failures, Some(3));

    // Longer, with new details: extended and refreshed.
    let longer = Ban {
        reason: Some(Reason::new("second").unwrap()),
        failures: Some(9),
        ..ban("203.0.113.7", "sshd", 300, at(5000))
    };
    let (_, kind, expiry) = banned(&one(&mut *l, w_ban(longer), 300));
    assert_eq!((kind, expiry), (EventKind::Extend, at(5000)));
    let held = l.active_bans(Timestamp(300)).unwrap();
    assert_eq!(held[0].reason.as_ref().unwrap().as_str(), "second");
    assert_eq!(held[0].failures, Some(9));

    // Permanent wins over any instant, and stays permanent.
    let (_, _, expiry) = banned(&one(
        &mut *l,
        w_ban(ban("203.0.113.7", "sshd", 400, Expiry::Never)),
        400,
    ));
    assert_eq!(expiry, Expiry::Never);
    let (_, kind, expiry) = banned(&one(
        &mut *l,
        w_ban(ban("203.0.113.7", "sshd", 500, at(9000))),
        500,
    ));
    assert_eq!((kind, expiry), (EventKind::Extend, Expiry::Never));
    assert_eq!(
        sorted_active(&mut *l, 10_000),
        vec![("203.0.113.7/32".into(), "sshd".into(), Expiry::Never)]
    );

    let events = all_events(&mut *l);
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    let extend = EventKind::Extend;
    assert_eq!(kinds, [EventKind::Ban, extend, extend, extend, extend]);
    let expiries: Vec<_> = events.iter().map(|e| e.expiry.unwrap()).collect();
    assert_eq!(
        expiries,
        [at(1000), at(1000), at(5000), Expiry::Never, Expiry::Never]
    );
    assert_eq!(events[1].escalation_step, 0, "extends are not escalations");
    assert_eq!(l.prior_bans(&p("203.0.113.7"), Timestamp(0)).unwrap(), 1);
}

pub fn ban_of_an_expired_but_unremoved_pair_is_a_new_ban(open: Open<'_>) {
    let mut l = open();
    one(
        &mut *l,
        w_ban(ban("198.51.100.1", "sshd", 100, at(200))),
        100,
    );
    // At exactly the expiry the ban is over.
    let (_, kind, expiry) = banned(&one(
        &mut *l,
        Write::Ban {
            ban: ban("198.51.100.1", "sshd", 200, at(150)),
            escalation_step: 1,
        },
        200,
    ));
    assert_eq!(
        (kind, expiry),
        (EventKind::Ban, at(150)),
        "replaced, not max'ed"
    );
    // Now expired again (150 <= 200): not active.
    assert!(l.active_bans(Timestamp(200)).unwrap().is_empty());
    one(
        &mut *l,
        w_ban(ban("198.51.100.1", "sshd", 300, at(900))),
        300,
    );
    let held = l.active_bans(Timestamp(300)).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].created, held[0].expiry), (Timestamp(300), at(900)));
    assert_eq!(l.prior_bans(&p("198.51.100.1"), Timestamp(0)).unwrap(), 3);
    let steps: Vec<_> = all_events(&mut *l)
        .iter()
        .map(|e| e.escalation_step)
        .collect();
    assert_eq!(steps, [0, 1, 0]);
}

pub fn recidive_unban_of_one_source_leaves_the_other(open: Open<'_>) {
    let mut l = open();
    let now = 1_000;
    let outs = l
        .record(
            &[
                w_ban(ban("203.0.113.7", "sshd", now, at(now + 600))),
                w_ban(ban("203.0.113.7", "recidive", now, at(now + 604_800))),
                w_ban(ban("203.0.113.8", "sshd", now, at(now + 600))),
            ],
            Timestamp(now),
        )
        .unwrap();
    assert!(outs.iter().all(|o| banned(o).1 == EventKind::Ban));

    let out = one(
        &mut *l,
        w_unban("203.0.113.7", Some("sshd"), EventKind::Unban),
        now + 600,
    );
    let Outcome::Unbanned {
        event: Some(ev),
        removed: 1,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        sorted_active(&mut *l, now + 1),
        vec![
            (
                "203.0.113.7/32".into(),
                "recidive".into(),
                at(now + 604_800)
            ),
            ("203.0.113.8/32".into(), "sshd".into(), at(now + 600)),
        ]
    );
    let e = events_after(&mut *l, ev - 1, 1).pop().unwrap();
    assert_eq!(
        (e.id, e.kind, e.source.unwrap().as_str(), e.expiry),
        (ev, EventKind::Unban, "sshd", None)
    );

    // Unbanning a pair that is not there: nothing removed, no event.
    let before = last_id(&mut *l);
    let out = one(
        &mut *l,
        w_unban("203.0.113.7", Some("sshd"), EventKind::Unban),
        now + 700,
    );
    assert_eq!(
        out,
        Outcome::Unbanned {
            event: None,
            removed: 0
        }
    );
    assert_eq!(last_id(&mut *l), before);
}

pub fn unban_of_every_source_writes_one_event(open: Open<'_>) {
    let mut l = open();
    l.record(
        &[
            w_ban(ban("2001:db8::/48", "sshd", 0, at(600))),
            w_ban(ban("2001:db8::/48", "recidive", 0, Expiry::Never)),
            w_ban(ban("2001:db8:1::/48", "sshd", 0, at(600))),
        ],
        Timestamp(0),
    )
    .unwrap();
    let before = last_id(&mut *l);
    let out = one(
        &mut *l,
        Write::Unban {
            prefix: p("2001:db8::/48"),
            source: None,
            kind: EventKind::Lift,
            origin_host: Some(OriginHost::new("cli").unwrap()),
        },
        10,
    );
    let Outcome::Unbanned {
        event: Some(ev),
        removed: 2,
    } = out
    else {
        panic!("{out:?}")
    };
    let events = events_after(&mut *l, before, 100);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.id, e.kind, e.prefix, e.source.clone(), e.at),
        (ev, EventKind::Lift, p("2001:db8::/48"), None, Timestamp(10))
    );
    assert_eq!(e.origin_host.as_ref().unwrap().as_str(), "cli");
    assert_eq!(
        sorted_active(&mut *l, 10),
        vec![("2001:db8:1::/48".into(), "sshd".into(), at(600))]
    );
}

pub fn expire_removes_exactly_the_ended_bans(open: Open<'_>) {
    let mut l = open();
    l.record(
        &[
            w_ban(ban("192.0.2.1", "sshd", 0, at(100))),
            w_ban(ban("192.0.2.2", "sshd", 0, at(99))),
            w_ban(ban("192.0.2.2", "recidive", 0, at(101))),
            w_ban(ban("192.0.2.3", "manual", 0, Expiry::Never)),
            w_ban(ban("2001:db8::1", "sshd", 0, at(50))),
        ],
        Timestamp(0),
    )
    .unwrap();
    // Ended bans are not active even before `expire` removes them.
    assert_eq!(
        sorted_active(&mut *l, 100),
        vec![
            ("192.0.2.2/32".into(), "recidive".into(), at(101)),
            ("192.0.2.3/32".into(), "manual".into(), Expiry::Never),
        ]
    );
    let before = last_id(&mut *l);
    let gone = l.expire(Timestamp(100)).unwrap();
    assert_eq!(
        gone,
        vec![
            (p("2001:db8::1"), src("sshd")),
            (p("192.0.2.2"), src("sshd")),
            (p("192.0.2.1"), src("sshd")),
        ]
    );
    let events = events_after(&mut *l, before, 100);
    let mut got: Vec<_> = events
        .iter()
        .map(|e| {
            assert_eq!((e.kind, e.at), (EventKind::Expire, Timestamp(100)));
            (e.prefix, e.source.clone().unwrap())
        })
        .collect();
    let mut want = gone.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(l.expire(Timestamp(100)).unwrap().is_empty());
    assert_eq!(
        l.expire(Timestamp(101)).unwrap(),
        vec![(p("192.0.2.2"), src("recidive"))]
    );
    assert!(l.expire(Timestamp(i64::MAX)).unwrap().is_empty());
    assert_eq!(
        sorted_active(&mut *l, i64::MAX),
        vec![("192.0.2.3/32".into(), "manual".into(), Expiry::Never)]
    );
}

pub fn an_expiry_before_the_epoch_is_stored_as_past_not_permanent(open: Open<'_>) {
    let mut l = open();
    let (_, _, expiry) = banned(&one(&mut *l, w_ban(ban("192.0.2.1", "sshd", 0, at(-5))), 0));
    assert_eq!(expiry, at(0));
    assert!(l.active_bans(Timestamp(0)).unwrap().is_empty());
    assert_eq!(l.expire(Timestamp(0)).unwrap().len(), 1);
}

pub fn prior_bans_counts_bans_of_exactly_that_prefix_since(open: Open<'_>) {
    let mut l = open();
    for (t, prefix, source) in [
        (100, "203.0.113.7", "sshd"),
        (200, "203.0.113.7", "sshd"),    // extend: not counted
        (300, "203.0.113.7", "nginx"),   // another source: counted
        (400, "203.0.113.0/24", "sshd"), // containing prefix: not counted
        (500, "203.0.113.8", "sshd"),    // another address: not counted
    ] {
        one(&mut *l, w_ban(ban(prefix, source, t, at(t + 1000))), t);
    }
    one(&mut *l, w_unban("203.0.113.7", None, EventKind::Unban), 600);
    one(
        &mut *l,
        w_ban(ban("203.0.113.7", "sshd", 700, at(800))),
        700,
    );
    let host = p("203.0.113.7");
    assert_eq!(l.prior_bans(&host, Timestamp(0)).unwrap(), 3);
    assert_eq!(
        l.prior_bans(&host, Timestamp(100)).unwrap(),
        3,
        "since is inclusive"
    );
    assert_eq!(l.prior_bans(&host, Timestamp(101)).unwrap(), 2);
    assert_eq!(l.prior_bans(&host, Timestamp(701)).unwrap(), 0);
    assert_eq!(l.prior_bans(&p("203.0.113.0/24"), Timestamp(0)).unwrap(), 1);
    assert_eq!(l.prior_bans(&p("203.0.113.9"), Timestamp(0)).unwrap(), 0);
    // Many at once, in the order asked (a repeated prefix too), as each alone.
    let many = [host, p("203.0.113.0/24"), p("203.0.113.9"), host];
    assert_eq!(
        l.prior_bans_each(&many, Timestamp(101)).unwrap(),
        vec![2, 1, 0, 2]
    );
    assert!(l.prior_bans_each(&[], Timestamp(0)).unwrap().is_empty());
}

pub fn the_feed_pages_in_order_and_starts_at_the_present(open: Open<'_>) {
    let mut l = open();
    let start = l.feed_start().unwrap();
    assert!(l.feed(&start, 10).unwrap().0.is_empty());
    assert!(all_events(&mut *l).is_empty());
    let writes: Vec<_> = (0..25)
        .map(|i| w_ban(ban(&format!("192.0.2.{i}"), "sshd", i, at(1000))))
        .collect();
    let outs = l.record(&writes, Timestamp(5)).unwrap();
    let ids: Vec<_> = outs.iter().map(|o| banned(o).0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let (seen, cursor) = feed_until(&mut *l, start, ids.len(), 10);
    assert_eq!(seen.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    let prefixes: Vec<_> = seen.iter().map(|e| e.prefix.to_string()).collect();
    let want: Vec<_> = (0..25).map(|i| format!("192.0.2.{i}/32")).collect();
    assert_eq!(prefixes, want);
    assert!(l.feed(&cursor, 10).unwrap().0.is_empty());
    assert!(l.feed(&start, 0).unwrap().0.is_empty());
    let (two, _) = l.feed(&start, 2).unwrap();
    assert_eq!(two.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..2]);

    // A cursor taken now starts at the present: a second handle's next write (another
    // process, another host) comes through it. (It may also deliver again some of what was
    // written just before, which PostgreSQL allows while older transactions are open.)
    let now = l.feed_start().unwrap();
    let mut other = open();
    let (theirs, _, _) = banned(&one(
        &mut *other,
        w_ban(ban("198.51.100.9", "nginx", 6, at(1000))),
        6,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut cursor = now;
    loop {
        let (events, next) = l.feed(&cursor, 100).unwrap();
        cursor = next;
        assert!(
            events.iter().all(|e| e.id == theirs || ids.contains(&e.id)),
            "{events:?}"
        );
        if events.iter().any(|e| e.id == theirs) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other handle's ban never came"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn writes_survive_closing_and_reopening(open: Open<'_>) {
    let b = Ban {
        reason: Some(Reason::new("why").unwrap()),
        ..ban("2001:db8::7", "recidive", 10, at(1_000_000))
    };
    let last = {
        let mut l = open();
        l.record(&[w_ban(b.clone())], Timestamp(10)).unwrap();
        l.update_target_entries(
            "exafs",
            &[Held {
                prefix: b.prefix,
                expiry: Some(b.expiry),
                handle: Some("7".into()),
            }],
            &[],
        )
        .unwrap();
        last_id(&mut *l)
    };
    let mut l = open();
    assert_eq!(l.active_bans(Timestamp(11)).unwrap(), vec![b.clone()]);
    assert_eq!(last_id(&mut *l), last);
    assert_eq!(
        l.target_entries("exafs").unwrap()[0].handle.as_deref(),
        Some("7")
    );
    assert_eq!(l.prior_bans(&b.prefix, Timestamp(0)).unwrap(), 1);
}

/// Two handles (two processes, or two hosts) write at once; each reads its own writes back.
pub fn two_handles_write_concurrently(open: Open<'_>) {
    const PER_THREAD: usize = 150;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2u8)
        .map(|t| {
            let mut l = open();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut ids = Vec::new();
                for i in 0..PER_THREAD {
                    let prefix = format!("10.{t}.{}.{}", i / 256, i % 256);
                    let out = l
                        .record(&[w_ban(ban(&prefix, "sshd", 0, at(1000)))], Timestamp(1))
                        .unwrap();
                    let id = banned(&out[0]).0;
                    ids.push(id);
                    // Reads interleave with the other thread's writes.
                    let p = p(&prefix);
                    assert!(l.history(&p, 1).unwrap().iter().any(|e| e.id == id));
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<EventId> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2 * PER_THREAD, "every event id is distinct");
    let mut l = open();
    assert_eq!(l.active_bans(Timestamp(2)).unwrap().len(), 2 * PER_THREAD);
    assert_eq!(all_events(&mut *l).len(), 2 * PER_THREAD);
}

/// Two handles ban the same (prefix, source) at once, over and over: never an error, and one
/// `Ban` then `Extend`s, whichever handle wins.
pub fn racing_bans_of_one_pair_extend_instead_of_failing(open: Open<'_>) {
    const ROUNDS: usize = 40;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2i64)
        .map(|t| {
            let mut l = open();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut kinds = Vec::new();
                for round in 0..ROUNDS {
                    let prefix = format!("203.0.113.{round}");
                    barrier.wait();
                    let out = l
                        .record(
                            &[w_ban(ban(&prefix, "sshd", 0, at(1000 + t)))],
                            Timestamp(1),
                        )
                        .unwrap();
                    kinds.push(banned(&out[0]).1);
                }
                kinds
            })
        })
        .collect();
    let kinds: Vec<Vec<EventKind>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (round, (a, b)) in kinds[0].iter().zip(&kinds[1]).enumerate() {
        let mut pair = [*a, *b];
        pair.sort_by_key(|k| k.as_str());
        assert_eq!(pair, [EventKind::Ban, EventKind::Extend], "round {round}");
    }
    let mut l = open();
    let active = l.active_bans(Timestamp(2)).unwrap();
    assert_eq!(active.len(), ROUNDS);
    assert!(
        active.iter().all(|b| b.expiry == at(1001)),
        "the later expiry wins"
    );
    assert_eq!(l.prior_bans(&p("203.0.113.0"), Timestamp(0)).unwrap(), 1);
}

/// Several handles expire at once: each ended ban is removed, and its `Expire` written, once.
pub fn concurrent_expiry_writes_each_expire_event_once(open: Open<'_>) {
    const BANS: u32 = 300;
    const HANDLES: usize = 3;
    {
        let mut l = open();
        let writes: Vec<_> = (0..BANS)
            .map(|i| {
                let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
                w_ban(ban(&addr.to_string(), "sshd", 0, at(i64::from(i % 50))))
            })
            .collect();
        l.record(&writes, Timestamp(0)).unwrap();
    }
    let barrier = Arc::new(Barrier::new(HANDLES));
    let handles: Vec<_> = (0..HANDLES)
        .map(|_| {
            let mut l = open();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut removed = Vec::new();
                // Expire in steps, so the handles overlap on many rounds.
                for now in (0..=50).step_by(5) {
                    removed.extend(l.expire(Timestamp(now)).unwrap());
                }
                removed
            })
        })
        .collect();
    let mut removed: Vec<(Prefix, Source)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        removed.len(),
        BANS as usize,
        "each pair removed by one handle"
    );
    removed.sort();
    removed.dedup();
    assert_eq!(removed.len(), BANS as usize);
    let mut l = open();
    let expires = all_events(&mut *l)
        .iter()
        .filter(|e| e.kind == EventKind::Expire)
        .count();
    assert_eq!(expires, BANS as usize, "one Expire event per pair");
    assert!(l.active_bans(Timestamp(0)).unwrap().is_empty());
}

pub fn history_covers_containing_and_contained_prefixes(open: Open<'_>) {
    let mut l = open();
    let entries = [
        "203.0.113.0/24",
        "203.0.113.7",
        "203.0.113.128/25",
        "203.0.114.7",
        "10.0.0.0/8",
        "0.0.0.0/0",
        "2001:db8::/32",
        "2001:db8::7",
        "2001:db9::7",
    ];
    for (i, prefix) in entries.iter().enumerate() {
        one(&mut *l, w_ban(ban(prefix, "sshd", 0, at(1000))), i as i64);
    }
    let history = |l: &mut dyn Ledger, q: &str| -> Vec<String> {
        l.history(&p(q), 100)
            .unwrap()
            .into_iter()
            .map(|e| e.prefix.to_string())
            .collect()
    };
    // Newest first.
    assert_eq!(
        history(&mut *l, "203.0.113.7"),
        ["0.0.0.0/0", "203.0.113.7/32", "203.0.113.0/24"]
    );
    assert_eq!(
        history(&mut *l, "203.0.113.0/24"),
        [
            "0.0.0.0/0",
            "203.0.113.128/25",
            "203.0.113.7/32",
            "203.0.113.0/24"
        ]
    );
    assert_eq!(
        history(&mut *l, "203.0.113.200"),
        ["0.0.0.0/0", "203.0.113.128/25", "203.0.113.0/24"]
    );
    assert_eq!(
        history(&mut *l, "203.0.112.0/23"),
        [
            "0.0.0.0/0",
            "203.0.113.128/25",
            "203.0.113.7/32",
            "203.0.113.0/24"
        ]
    );
    assert_eq!(
        history(&mut *l, "2001:db8::/31"),
        ["2001:db9::7/128", "2001:db8::7/128", "2001:db8::/32"]
    );
    assert_eq!(
        history(&mut *l, "2001:db8::7"),
        ["2001:db8::7/128", "2001:db8::/32"]
    );
    assert_eq!(history(&mut *l, "198.51.100.1"), ["0.0.0.0/0"]);
    assert!(history(&mut *l, "2001:dc8::1").is_empty());
    assert_eq!(
        history(&mut *l, "0.0.0.0/0").len(),
        6,
        "every IPv4 entry, no IPv6"
    );
    // Limit keeps the newest.
    let limited = l.history(&p("203.0.113.0/24"), 2).unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0].prefix, p("0.0.0.0/0"));
    assert_eq!(limited[1].prefix, p("203.0.113.128/25"));
}

/// History against a brute-force filter over pseudo-random nested prefixes.
pub fn history_matches_a_brute_force_overlap_filter(open: Open<'_>) {
    let mut l = open();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut prefixes = Vec::new();
    while prefixes.len() < 400 {
        let r = next();
        // Addresses under 10.0.0.0/16 or 2001:db8::/112 so prefixes often nest.
        let net = if r % 2 == 0 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 | (r >> 8) as u32 & 0xffff);
            ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, 12 + (r >> 40) as u8 % 21).unwrap())
        } else {
            let a = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | ((r >> 8) as u128 & 0xffff));
            ipnet::IpNet::V6(ipnet::Ipv6Net::new(a, 100 + (r >> 40) as u8 % 29).unwrap())
        };
        prefixes.push(Prefix::from_net(net));
    }
    let writes: Vec<_> = prefixes
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            w_ban(Ban {
                prefix: *prefix,
                source: src(&format!("jail{}", i % 3)),
                created: Timestamp(0),
                expiry: at(10),
                reason: None,
                failures: None,
                origin_host: None,
            })
        })
        .collect();
    let ids: Vec<_> = l
        .record(&writes, Timestamp(0))
        .unwrap()
        .iter()
        .map(|o| match o {
            Outcome::Banned { event, .. } => *event,
            _ => unreachable!(),
        })
        .collect();
    let mut nonempty = 0;
    for q in prefixes.iter().take(60) {
        let mut want: Vec<_> = prefixes
            .iter()
            .zip(&ids)
            .filter(|(x, _)| x.overlaps(q))
            .map(|(_, id)| *id)
            .collect();
        want.reverse();
        let got: Vec<_> = l
            .history(q, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, want, "history of {q}");
        nonempty += usize::from(want.len() > 1);
    }
    assert!(nonempty > 10, "the test data should nest ({nonempty})");
}

pub fn target_entries_are_recorded_replaced_and_removed(open: Open<'_>) {
    let mut l = open();
    assert!(l.target_entries("exafs").unwrap().is_empty());
    let held = |prefix: &str, expiry: Option<Expiry>, handle: Option<&str>| Held {
        prefix: p(prefix),
        expiry,
        handle: handle.map(str::to_string),
    };
    l.update_target_entries(
        "exafs",
        &[
            held("203.0.113.7", Some(at(900)), Some("17")),
            held("2001:db8::/48", Some(Expiry::Never), Some("18")),
            held("192.0.2.0/24", None, None),
        ],
        &[],
    )
    .unwrap();
    l.update_target_entries("nft", &[held("203.0.113.7", None, None)], &[])
        .unwrap();
    assert_eq!(
        l.target_entries("exafs").unwrap(),
        vec![
            held("192.0.2.0/24", None, None),
            held("203.0.113.7", Some(at(900)), Some("17")),
            held("2001:db8::/48", Some(Expiry::Never), Some("18")),
        ]
    );
    // Replace one by prefix, remove another, remove-and-add a third, remove a stranger.
    l.update_target_entries(
        "exafs",
        &[
            held("203.0.113.7", Some(at(1800)), Some("21")),
            held("192.0.2.0/24", Some(at(5)), Some("22")),
        ],
        &[p("2001:db8::/48"), p("192.0.2.0/24"), p("198.51.100.1")],
    )
    .unwrap();
    assert_eq!(
        l.target_entries("exafs").unwrap(),
        vec![
            held("192.0.2.0/24", Some(at(5)), Some("22")),
            held("203.0.113.7", Some(at(1800)), Some("21")),
        ]
    );
    assert_eq!(
        l.target_entries("nft").unwrap(),
        vec![held("203.0.113.7", None, None)],
        "targets are separate"
    );
}

pub fn pruning_history_keeps_newer_events_and_every_active_ban(open: Open<'_>) {
    let mut l = open();
    one(
        &mut *l,
        w_ban(ban("203.0.113.1", "sshd", 100, Expiry::Never)),
        100,
    );
    one(
        &mut *l,
        w_ban(ban("203.0.113.2", "sshd", 200, at(10_000))),
        200,
    );
    one(
        &mut *l,
        w_unban("203.0.113.2", Some("sshd"), EventKind::Unban),
        300,
    );
    one(
        &mut *l,
        w_ban(ban("203.0.113.3", "sshd", 400, at(10_000))),
        400,
    );
    assert_eq!(l.prune_history(Timestamp(300)).unwrap(), 2);
    let kept: Vec<i64> = all_events(&mut *l).iter().map(|e| e.at.0).collect();
    assert_eq!(kept, [300, 400]);
    let active: Vec<String> = sorted_active(&mut *l, 500)
        .into_iter()
        .map(|(prefix, _, _)| prefix)
        .collect();
    assert_eq!(
        active,
        ["203.0.113.1/32", "203.0.113.3/32"],
        "bans are not history"
    );
    assert_eq!(l.prune_history(Timestamp(300)).unwrap(), 0);
}

/// A group commit: many clients' bans in one `record` call, with a pair repeated, a pair
/// already active, and an unban between bans of one prefix. Each is decided as if alone.
pub fn one_call_with_many_bans_decides_each_as_if_alone(open: Open<'_>) {
    let mut l = open();
    one(
        &mut *l,
        w_ban(ban("203.0.113.1", "sshd", 50, at(1_000))),
        50,
    );
    let mut group: Vec<Write> = (0..50)
        .map(|i| w_ban(ban(&format!("198.51.100.{i}"), "sshd", 100, at(2_000))))
        .collect();
    group.push(w_ban(ban("203.0.113.1", "sshd", 100, at(3_000))));
    group.push(w_ban(ban("203.0.113.1", "web", 100, at(500))));
    group.push(w_ban(ban("198.51.100.7", "sshd", 100, at(1_500))));
    group.push(w_unban("198.51.100.8", Some("sshd"), EventKind::Unban));
    group.push(w_ban(ban("198.51.100.8", "sshd", 100, at(4_000))));
    let outcomes = l.record(&group, Timestamp(100)).unwrap();
    assert_eq!(outcomes.len(), group.len());
    let kinds: Vec<(EventKind, Expiry)> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Banned { .. }))
        .map(|o| {
            let (_, kind, expiry) = banned(o);
            (kind, expiry)
        })
        .collect();
    assert!(kinds[..50]
        .iter()
        .all(|k| *k == (EventKind::Ban, at(2_000))));
    assert_eq!(
        kinds[50],
        (EventKind::Extend, at(3_000)),
        "already active: extended"
    );
    assert_eq!(
        kinds[51],
        (EventKind::Ban, at(500)),
        "another source: its own ban"
    );
    assert_eq!(
        kinds[52],
        (EventKind::Extend, at(2_000)),
        "the same pair again in the group: an extend that keeps the later expiry"
    );
    assert_eq!(
        kinds[53],
        (EventKind::Ban, at(4_000)),
        "banned again after its unban"
    );
    assert!(matches!(outcomes[53], Outcome::Unbanned { removed: 1, .. }));
    // Events in the order of the writes, ids increasing.
    let events = all_events(&mut *l);
    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let prefixes: Vec<String> = events
        .iter()
        .skip(1)
        .map(|e| e.prefix.to_string())
        .collect();
    let mut expected: Vec<String> = (0..50).map(|i| format!("198.51.100.{i}/32")).collect();
    expected.extend(
        [
            "203.0.113.1",
            "203.0.113.1",
            "198.51.100.7",
            "198.51.100.8",
            "198.51.100.8",
        ]
        .map(|p| format!("{p}/32")),
    );
    assert_eq!(prefixes, expected);
    assert_eq!(sorted_active(&mut *l, 100).len(), 52);
}
