//! The ledger's own thread, with group commit.
//!
//! SQLite is synchronous and wants one writer. Every request that touches the ledger becomes a
//! [`Job`] on this thread's queue; when the thread picks up a job it also takes every write job
//! already waiting and records them all in one transaction (one fsync). A burst of bans costs
//! one commit per batch, not one per ban, and each ban is still acknowledged only once it is on
//! disk.
//!
//! After each commit the thread reads the new events from the ledger (its change feed) and hands
//! them to the [`Engine`](crate::engine::Engine) *before* replying, so `netban list` right after
//! `netban ban` shows the ban. Writes made by other processes (the client's fallback when the
//! daemon was down, other hosts later) arrive the same way, with the periodic [`Job::Expire`].

use crate::engine::SharedEngine;
use netban_core::policy::Policy;
use netban_core::{Prefix, Timestamp};
use netban_ledger::{EventKind, FeedCursor, Ledger, LedgerError, Outcome, Write};
use netban_proto::{BanArgs, ItemResult, UnbanArgs};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Results per requested prefix, or an error for the whole request.
pub type Reply = oneshot::Sender<Result<Vec<ItemResult>, String>>;

/// A read that runs on the ledger thread.
pub type ReadJob = Box<dyn FnOnce(&mut dyn Ledger) + Send>;

pub enum Job {
    Ban {
        args: BanArgs,
        policy: Arc<Policy>,
        reply: Reply,
    },
    Unban {
        args: UnbanArgs,
        reply: Reply,
    },
    /// Lift bans the allowlist now covers (every source).
    Lift {
        prefixes: Vec<Prefix>,
    },
    /// End bans whose expiry has passed (sent every `poll_millis`; like every job, it is
    /// followed by reading the change feed, which picks up other processes' writes).
    Expire,
    Read(ReadJob),
}

impl Job {
    fn is_write(&self) -> bool {
        !matches!(self, Job::Read(_))
    }

    /// A client waiting for its answer (what the group-commit linger counts).
    fn is_client_write(&self) -> bool {
        matches!(self, Job::Ban { .. } | Job::Unban { .. })
    }
}

/// The handle other tasks use to reach the ledger thread.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<Job>,
}

impl LedgerHandle {
    pub fn send(&self, job: Job) {
        // The thread lives as long as the daemon; a send after shutdown is harmless to drop.
        let _ = self.tx.send(job);
    }

    /// Runs `read` on the ledger thread and returns its result.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut dyn Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Read(Box::new(move |ledger| {
            let _ = tx.send(read(ledger).map_err(|e| e.to_string()));
        })));
        rx.await
            .map_err(|_| "the ledger thread stopped".to_string())?
    }
}

/// The most write jobs one transaction takes.
const MAX_GROUP: usize = 4096;

/// How long the thread waits for the rest of a group of concurrent clients before it commits
/// (see [`gather`]). Short next to the commit itself; never paid by a lone client.
const LINGER: Duration = Duration::from_micros(300);

/// Starts the ledger thread. It ends when every [`LedgerHandle`] is dropped.
pub fn start(
    mut ledger: Box<dyn Ledger>,
    engine: SharedEngine,
    origin: Option<netban_core::OriginHost>,
) -> Result<(LedgerHandle, std::thread::JoinHandle<()>), LedgerError> {
    let mut cursor = ledger.feed_start()?;
    let (tx, rx) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new()
        .name("netban-ledger".into())
        .spawn(move || {
            let mut writers_last_time = 1;
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                gather(&rx, &mut jobs, writers_last_time);
                writers_last_time = jobs.iter().filter(|j| j.is_client_write()).count().max(1);
                run_jobs(&mut *ledger, &engine, origin.as_ref(), &mut cursor, jobs);
            }
        })
        .expect("spawning the ledger thread");
    Ok((LedgerHandle { tx }, thread))
}

/// Takes every job already waiting. When the previous transaction served several writers at
/// once (clients that each wait for their answer before sending again), it also waits up to
/// [`LINGER`] for that many to arrive, so they share one commit and one fsync instead of
/// trickling into several (group commit). A lone writer never waits.
fn gather(rx: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>, expected_writers: usize) {
    let deadline = Instant::now() + LINGER;
    while jobs.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => {
                jobs.push(job);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => return,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let writers = jobs.iter().filter(|j| j.is_client_write()).count();
        let now = Instant::now();
        if writers >= expected_writers || now >= deadline {
            return;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(job) => jobs.push(job),
            Err(_) => return,
        }
    }
}

/// How the writes of one job map back onto its reply.
enum Pending {
    Ban { reply: Reply, items: Vec<Slot> },
    Unban { reply: Reply, items: Vec<Slot> },
    None,
}

/// One requested prefix: refused before writing, or the index of its write.
enum Slot {
    Refused(Prefix, String),
    Skipped(ItemResult),
    Written(Prefix, usize),
    /// An unban of every ban of a source: several writes, one result each.
    Many(Vec<(Prefix, usize)>),
}

fn run_jobs(
    ledger: &mut dyn Ledger,
    engine: &SharedEngine,
    origin: Option<&netban_core::OriginHost>,
    cursor: &mut FeedCursor,
    jobs: Vec<Job>,
) {
    let now = crate::clock::now();
    let mut writes: Vec<Write> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut expire = false;
    let mut reads = Vec::new();
    for job in jobs {
        if !job.is_write() {
            if let Job::Read(read) = job {
                reads.push(read);
            }
            continue;
        }
        match job {
            Job::Ban {
                args,
                policy,
                reply,
            } => {
                let items = plan_bans(ledger, engine, &policy, &args, origin, now, &mut writes);
                pending.push(Pending::Ban { reply, items });
            }
            Job::Unban { args, reply } => {
                let items = plan_unbans(engine, &args, origin, &mut writes);
                pending.push(Pending::Unban { reply, items });
            }
            Job::Lift { prefixes } => {
                for prefix in prefixes {
                    writes.push(Write::Unban {
                        prefix,
                        source: None,
                        kind: EventKind::Lift,
                        origin_host: origin.cloned(),
                    });
                }
                pending.push(Pending::None);
            }
            Job::Expire => expire = true,
            Job::Read(_) => unreachable!("filtered above"),
        }
    }

    let outcomes = if writes.is_empty() {
        Ok(Vec::new())
    } else {
        ledger.record(&writes, now)
    };
    if expire {
        if let Err(e) = ledger.expire(now) {
            tracing::error!(error = %e, "expiring bans in the ledger failed; will retry");
        }
    }
    // Apply every new event (ours and other processes') before anyone hears back.
    match ledger.feed(cursor, usize::MAX) {
        Ok((events, next)) => {
            *cursor = next;
            if !events.is_empty() {
                engine.lock().expect("engine lock").apply_events(&events);
            }
        }
        Err(e) => tracing::error!(error = %e, "reading the ledger's change feed failed"),
    }
    match outcomes {
        Ok(outcomes) => {
            let table = engine.lock().expect("engine lock");
            for p in pending {
                match p {
                    Pending::Ban { reply, items } => {
                        let _ = reply.send(Ok(resolve(items, &writes, &outcomes, |p| {
                            table.is_banned(p)
                        })));
                    }
                    Pending::Unban { reply, items } => {
                        let _ = reply.send(Ok(resolve(items, &writes, &outcomes, |p| {
                            table.is_banned(p)
                        })));
                    }
                    Pending::None => {}
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "recording in the ledger failed");
            for p in pending {
                if let Pending::Ban { reply, .. } | Pending::Unban { reply, .. } = p {
                    let _ = reply.send(Err(format!("the ledger could not record this: {e}")));
                }
            }
        }
    }
    for read in reads {
        read(ledger);
    }
}

fn plan_bans(
    ledger: &mut dyn Ledger,
    engine: &SharedEngine,
    policy: &Policy,
    args: &BanArgs,
    origin: Option<&netban_core::OriginHost>,
    now: Timestamp,
    writes: &mut Vec<Write>,
) -> Vec<Slot> {
    let mut items = Vec::with_capacity(args.prefixes.len());
    for &prefix in &args.prefixes {
        if args.restored {
            // fail2ban re-asserting after its own restart: if we hold the ban, nothing to do.
            let held =
                engine
                    .lock()
                    .expect("engine lock")
                    .source_expiry(&prefix, &args.source, now);
            if let Some(expiry) = held {
                items.push(Slot::Skipped(ItemResult {
                    prefix,
                    error: None,
                    expiry: Some(expiry.to_epoch_or_minus_one()),
                    escalation_step: 0,
                    still_banned: true,
                    changed: false,
                }));
                continue;
            }
        }
        match netban_ledger::admit(
            ledger,
            policy,
            args.request(prefix, origin),
            args.restored,
            now,
        ) {
            Ok(Ok(write)) => {
                writes.push(write);
                items.push(Slot::Written(prefix, writes.len() - 1));
            }
            Ok(Err(refusal)) => items.push(Slot::Refused(prefix, refusal.to_string())),
            Err(e) => items.push(Slot::Refused(
                prefix,
                format!("the ledger could not decide: {e}"),
            )),
        }
    }
    items
}

fn plan_unbans(
    engine: &SharedEngine,
    args: &UnbanArgs,
    origin: Option<&netban_core::OriginHost>,
    writes: &mut Vec<Write>,
) -> Vec<Slot> {
    let origin_host = args.origin_host.clone().or_else(|| origin.cloned());
    let unban = |prefix: Prefix, writes: &mut Vec<Write>| {
        writes.push(Write::Unban {
            prefix,
            source: args.source.clone(),
            kind: EventKind::Unban,
            origin_host: origin_host.clone(),
        });
        writes.len() - 1
    };
    if args.all_of_source {
        let prefixes = match &args.source {
            Some(source) => engine
                .lock()
                .expect("engine lock")
                .prefixes_of_source(source),
            None => Vec::new(),
        };
        let many = prefixes
            .into_iter()
            .map(|p| (p, unban(p, writes)))
            .collect();
        return vec![Slot::Many(many)];
    }
    args.prefixes
        .iter()
        .map(|&p| Slot::Written(p, unban(p, writes)))
        .collect()
}

fn resolve(
    items: Vec<Slot>,
    writes: &[Write],
    outcomes: &[Outcome],
    is_banned: impl Fn(&Prefix) -> bool,
) -> Vec<ItemResult> {
    let result_of = |prefix: Prefix, index: usize| {
        let mut result = ItemResult {
            prefix,
            error: None,
            expiry: None,
            escalation_step: 0,
            still_banned: is_banned(&prefix),
            changed: false,
        };
        match outcomes.get(index) {
            Some(Outcome::Banned { expiry, .. }) => {
                result.expiry = Some(expiry.to_epoch_or_minus_one());
                result.changed = true;
                if let Some(Write::Ban {
                    escalation_step, ..
                }) = writes.get(index)
                {
                    result.escalation_step = *escalation_step;
                }
            }
            Some(Outcome::Unbanned { removed, .. }) => result.changed = *removed > 0,
            None => result.error = Some("internal error: no outcome for this write".into()),
        }
        result
    };
    let mut results = Vec::new();
    for item in items {
        match item {
            Slot::Refused(prefix, error) => results.push(ItemResult {
                prefix,
                error: Some(error),
                expiry: None,
                escalation_step: 0,
                still_banned: is_banned(&prefix),
                changed: false,
            }),
            Slot::Skipped(result) => results.push(result),
            Slot::Written(prefix, index) => results.push(result_of(prefix, index)),
            Slot::Many(list) => results.extend(list.into_iter().map(|(p, i)| result_of(p, i))),
        }
    }
    results
}
