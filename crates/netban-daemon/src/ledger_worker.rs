//! The ledger's own thread, with group commit.
//!
//! The ledger is synchronous and wants one writer. Every request that touches it becomes a
//! typed [`Job`] on this thread's queue; when the thread picks up a job it also takes every
//! job already waiting and records all their writes in one transaction (one fsync). A burst of
//! bans costs one commit per batch, not one per ban, and each ban is still acknowledged only
//! once it is on disk.
//!
//! After each commit the thread reads the new events from the ledger (its change feed) and hands
//! them to the [`Engine`] *before* replying, so `netban list` right after `netban ban` shows the
//! ban. Writes made by other processes (the client's fallback when the daemon was down, other
//! hosts) arrive the same way, with the periodic [`Job::Expire`] and, with PostgreSQL, at once
//! through [`Job::ReadFeed`] when another host commits. (With PostgreSQL a write of
//! ours may reach the feed a moment later, while an older transaction elsewhere is still
//! open; it is durable either way.)
//!
//! # When the shared ledger is away
//! With a PostgreSQL ledger the thread has a local [`Spool`]. When the ledger does not answer,
//! the group's writes go to the spool instead (durable, `synchronous=FULL`), the engine gets
//! them at once (so this host's own targets enforce them), and clients are answered with
//! `spooled: true`. Bans are then decided without the fleet's history (no escalation). The
//! thread leaves the ledger alone until its retry time (1 s, doubling to 10 s), then forwards
//! the spool in order; once it is empty, everything runs as before. `netban status` shows
//! the outage and the spool's depth ([`LedgerHealth`]).

use crate::engine::Engine;
use crate::instruments::LedgerInstruments;
use netban_core::plan::Held;
use netban_core::policy::Policy;
use netban_core::{EventKind, OriginHost, Prefix, Timestamp};
use netban_ledger::spool::Spool;
use netban_ledger::{AdmitError, Event, FeedCursor, Ledger, LedgerError, Outcome, Write};
use netban_proto::{BanArgs, ItemResult, LedgerHealth, UnbanArgs};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Why a request to the ledger thread got no answer of its own.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LedgerRequestError {
    /// The transaction (or read) failed; nothing of this request was recorded.
    #[error("the ledger could not record this: {0}")]
    Failed(#[source] Arc<LedgerError>),
    /// The ledger thread is gone (the daemon is shutting down).
    #[error("the daemon is shutting down")]
    Stopped,
}

impl From<LedgerError> for LedgerRequestError {
    fn from(e: LedgerError) -> Self {
        LedgerRequestError::Failed(Arc::new(e))
    }
}

type Reply<T> = oneshot::Sender<Result<T, LedgerRequestError>>;

/// Everything the ledger thread does, one variant per kind of request.
pub enum Job {
    /// Record bans (policy decided here, with the ledger's memory of earlier bans).
    Ban {
        args: BanArgs,
        policy: Arc<Policy>,
        reply: Reply<Vec<ItemResult>>,
    },
    Unban {
        args: UnbanArgs,
        reply: Reply<Vec<ItemResult>>,
    },
    /// Lift bans the allowlist now covers (every source); answered once the lift is durable.
    Lift {
        prefixes: Vec<Prefix>,
        reply: Option<Reply<()>>,
    },
    /// End bans whose expiry has passed (sent every `poll_millis`; like every job, it is
    /// followed by reading the change feed, which picks up other processes' writes).
    Expire,
    /// Read the change feed now: another host committed (the PostgreSQL wake-up). Every group
    /// ends with a feed read; this job asks for nothing else (not an expiry pass, which
    /// would cost each host a transaction for every commit anywhere in the fleet).
    ReadFeed,
    /// The history of a prefix and those around it, newest first.
    History {
        prefix: Prefix,
        limit: usize,
        reply: Reply<Vec<Event>>,
    },
    /// The entries netban recorded creating on a target (shared areas).
    TargetEntries {
        target: String,
        reply: Reply<Vec<Held>>,
    },
    /// The integrity check at start found the ledger damaged: an alarm until restart.
    Damaged { problems: String },
    /// Deletes history older than `before` (retention).
    PruneHistory { before: Timestamp },
    /// Answered at once between groups: the thread is alive (the systemd watchdog asks).
    Alive { reply: Reply<()> },
    /// Records entries a worker created on or removed from its target.
    RecordTargetEntries {
        target: String,
        added: Vec<Held>,
        removed: Vec<Prefix>,
        reply: Reply<()>,
    },
}

impl Job {
    /// A client waiting for its answer (what the group-commit linger counts).
    fn is_client_write(&self) -> bool {
        matches!(self, Job::Ban { .. } | Job::Unban { .. })
    }
}

/// A job on the thread's queue, with when it was queued (which tells a client coming back
/// after its answer from one that waited through the last commit; see [`gather`]).
struct Queued {
    job: Job,
    at: Instant,
}

/// The handle other tasks use to reach the ledger thread.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<Queued>,
}

impl LedgerHandle {
    /// Queues a job. After shutdown the job is dropped, and so is its reply sender: whoever
    /// waits on it hears [`LedgerRequestError::Stopped`].
    pub fn send(&self, job: Job) {
        let _ = self.tx.send(Queued {
            job,
            at: Instant::now(),
        });
    }

    /// Sends the job `make` builds around a reply channel, and waits for the answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<T, LedgerRequestError> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply));
        answer.await.unwrap_or(Err(LedgerRequestError::Stopped))
    }
}

/// The most write jobs one transaction takes.
const MAX_GROUP: usize = 4096;

/// How long the thread waits at least, and at most, for the clients it just answered to come
/// back before it commits (see [`gather`]): the last commit's duration, within these bounds.
/// Never paid by a lone client.
const LINGER_MIN: Duration = Duration::from_micros(300);
const LINGER_MAX: Duration = Duration::from_millis(2);

/// The first wait before forwarding the spool again after the ledger failed.
const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Spooled writes forwarded per transaction.
const FORWARD_BATCH: usize = 1000;

/// Starts the ledger thread, following the change feed from `cursor` (taken before the
/// engine was loaded, so no write falls between the two), with `spool` for a shared ledger.
/// It ends when every [`LedgerHandle`] is dropped. The returned receiver shows whether the
/// ledger answers. The thread records each commit's duration and group size in
/// `instruments`.
pub fn start(
    mut ledger: Box<dyn Ledger>,
    mut cursor: FeedCursor,
    engine: Engine,
    origin: Option<OriginHost>,
    spool: Option<Spool>,
    instruments: Arc<LedgerInstruments>,
) -> Result<
    (
        LedgerHandle,
        watch::Receiver<LedgerHealth>,
        std::thread::JoinHandle<()>,
    ),
    LedgerError,
> {
    let mut spool = spool;
    let spooled = match &mut spool {
        Some(spool) => spool.len()?,
        None => 0,
    };
    let (health, health_rx) = watch::channel(LedgerHealth {
        spooled,
        ..LedgerHealth::default()
    });
    // Writes spooled before this start (by the client while the daemon was down, or by a
    // previous run) are forwarded at the first group.
    let outage = (spooled > 0).then(|| Outage {
        since: crate::clock::now(),
        retry_at: Instant::now(),
        backoff: RETRY_MIN,
        error: "spooled writes wait from before this start".into(),
    });
    let (tx, rx) = mpsc::channel::<Queued>();
    let thread = std::thread::Builder::new()
        .name("netban-ledger".into())
        .spawn(move || {
            let mut thread = LedgerThread {
                ledger: &mut *ledger,
                engine: &engine,
                origin: origin.as_ref(),
                cursor: &mut cursor,
                spool,
                spooled,
                outage,
                failing: BTreeMap::new(),
                quarantined: (0, None),
                damaged: None,
                health,
                instruments,
            };
            let mut last = LastGroup {
                writers: 1,
                answered_at: Instant::now(),
                linger: LINGER_MIN,
            };
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                gather(&rx, &mut jobs, &last);
                let writers = jobs.iter().filter(|q| q.job.is_client_write()).count();
                let started = Instant::now();
                thread.run(jobs.into_iter().map(|q| q.job).collect());
                last = LastGroup {
                    writers: writers.max(1),
                    answered_at: Instant::now(),
                    linger: started.elapsed().clamp(LINGER_MIN, LINGER_MAX),
                };
            }
        })
        .expect("spawning the ledger thread");
    Ok((LedgerHandle { tx }, health_rx, thread))
}

/// What [`gather`] knows of the group before.
struct LastGroup {
    /// Client writes it answered.
    writers: usize,
    /// When it had answered them.
    answered_at: Instant,
    /// How long to wait for them to come back.
    linger: Duration,
}

/// Takes every job already waiting, then waits up to `last.linger` until the writers the last
/// group answered are back (group commit). Clients that each wait for their answer before
/// sending again split otherwise into two cohorts that alternate, each paying a commit: while
/// one cohort's commit runs, the other queues up and is committed at once, without the first,
/// whose clients are only then sending again. So a writer queued before the last answers went
/// out (it waited through the last commit) does not count as one coming back; the group is
/// complete when as many writers as were answered have arrived since. A lone writer is its
/// own return and never waits; when clients stop, the next group waits once, then expects
/// fewer.
fn gather(rx: &mpsc::Receiver<Queued>, jobs: &mut Vec<Queued>, last: &LastGroup) {
    let deadline = Instant::now() + last.linger;
    let returned = |jobs: &[Queued]| {
        jobs.iter()
            .filter(|q| q.job.is_client_write() && q.at >= last.answered_at)
            .count()
    };
    while jobs.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => {
                jobs.push(job);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => return,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let now = Instant::now();
        if returned(jobs) >= last.writers || now >= deadline {
            return;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(job) => jobs.push(job),
            Err(_) => return,
        }
    }
}

/// One requested prefix of a ban or unban, between deciding and answering.
enum Decision {
    /// Policy refused it: nothing is written.
    Refused(Prefix, String),
    /// Answered without a write (a restore of a ban already held).
    Answered(ItemResult),
    /// Written: the index of its write in the group's transaction.
    Written(Prefix, usize),
    /// An unban of every ban of a source: several writes, one result each.
    WrittenMany(Vec<(Prefix, usize)>),
}

impl Decision {
    /// The prefixes this decision answers for.
    fn prefixes(&self) -> Vec<Prefix> {
        match self {
            Decision::Refused(prefix, _) | Decision::Written(prefix, _) => vec![*prefix],
            Decision::Answered(result) => vec![result.prefix],
            Decision::WrittenMany(list) => list.iter().map(|(p, _)| *p).collect(),
        }
    }
}

/// A job whose answer waits for the group's commit.
enum Waiting {
    Items {
        reply: Reply<Vec<ItemResult>>,
        decisions: Vec<Decision>,
    },
    Lift {
        reply: Reply<()>,
    },
}

/// The thread's state, borrowed for its life.
struct LedgerThread<'a> {
    ledger: &'a mut dyn Ledger,
    engine: &'a Engine,
    origin: Option<&'a OriginHost>,
    /// The change feed's position: every event before it is in the engine.
    cursor: &'a mut FeedCursor,
    /// Where writes go while a shared ledger is away (`None`: a SQLite ledger).
    spool: Option<Spool>,
    /// How many writes the spool holds.
    spooled: usize,
    /// Set while the shared ledger is away (or spooled writes wait).
    outage: Option<Outage>,
    /// Set while a ledger without a spool refuses writes or reads (disk full, read-only,
    /// locked, unreadable): clients are refused, `status` shows it, the next success clears it.
    /// Per operation (recording, expiring, reading the feed, pruning): since when it fails
    /// and why; each is cleared by its own next success.
    failing: BTreeMap<LedgerOperation, (Timestamp, String)>,
    /// Unreadable rows the ledger moved to its quarantine (count, last one).
    quarantined: (u64, Option<String>),
    /// What the integrity check at start found.
    damaged: Option<String>,
    health: watch::Sender<LedgerHealth>,
    /// Commit durations and group sizes, for `/metrics`.
    instruments: Arc<LedgerInstruments>,
}

/// What the ledger thread asks of the ledger, for reporting failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LedgerOperation {
    Record,
    Expire,
    ReadFeed,
    PruneHistory,
}

impl LedgerOperation {
    fn as_str(self) -> &'static str {
        match self {
            LedgerOperation::Record => "recording in the ledger",
            LedgerOperation::Expire => "expiring bans in the ledger",
            LedgerOperation::ReadFeed => "reading the ledger's change feed",
            LedgerOperation::PruneHistory => "pruning the ledger's history",
        }
    }
}

/// The earlier bans of a group's prefixes ([`LedgerThread::count_prior_bans`]).
#[derive(Default)]
struct PriorBans {
    /// By prefix and the start of its escalation window.
    counts: HashMap<(Prefix, Timestamp), u32>,
    /// Why they could not be counted (a ledger without a spool to fall back on): the requests
    /// that escalate are refused with it, as before any write.
    failed: Option<String>,
}

/// The shared ledger stopped answering.
struct Outage {
    since: Timestamp,
    /// Leave the ledger alone until then.
    retry_at: Instant,
    backoff: Duration,
    error: String,
}

impl LedgerThread<'_> {
    /// Runs one group: decide every write, commit them in one transaction, expire, read the
    /// change feed into the engine, answer, then serve the other requests.
    fn run(&mut self, jobs: Vec<Job>) {
        let now = crate::clock::now();
        if self
            .outage
            .as_ref()
            .is_some_and(|o| Instant::now() >= o.retry_at)
        {
            self.forward_spool(now);
        }
        let prior = self.count_prior_bans(&jobs, now);
        let mut writes: Vec<Write> = Vec::new();
        let mut waiting: Vec<Waiting> = Vec::new();
        let mut expire = false;
        let mut after_commit = Vec::new();
        let requests = jobs
            .iter()
            .filter(|j| matches!(j, Job::Ban { .. } | Job::Unban { .. } | Job::Lift { .. }))
            .count();
        for job in jobs {
            match job {
                Job::Ban {
                    args,
                    policy,
                    reply,
                } => {
                    let decisions = self.decide_bans(&policy, &args, now, &prior, &mut writes);
                    waiting.push(Waiting::Items { reply, decisions });
                }
                Job::Unban { args, reply } => {
                    let decisions = self.decide_unbans(&args, &mut writes);
                    waiting.push(Waiting::Items { reply, decisions });
                }
                Job::Lift { prefixes, reply } => {
                    writes.extend(prefixes.into_iter().map(|prefix| Write::Unban {
                        prefix,
                        source: None,
                        kind: EventKind::Lift,
                        origin_host: self.origin.cloned(),
                    }));
                    if let Some(reply) = reply {
                        waiting.push(Waiting::Lift { reply });
                    }
                }
                Job::Expire => expire = true,
                Job::ReadFeed => {}
                other => after_commit.push(other),
            }
        }

        let started = Instant::now();
        let outcomes = if writes.is_empty() {
            Ok(Vec::new())
        } else if self.outage.is_some() {
            self.spool_writes(&writes, now)
        } else {
            match self.ledger.record(&writes, now) {
                Err(e) if self.spool.is_some() => {
                    self.enter_outage(&e);
                    self.spool_writes(&writes, now)
                }
                other => other,
            }
        };
        if !writes.is_empty() {
            self.instruments.commit.observe_duration(started.elapsed());
            self.instruments.group_size.observe(requests as f64);
        }
        let spooled = self.outage.is_some() && !writes.is_empty();
        match &outcomes {
            Err(e) => self.ledger_failed(LedgerOperation::Record, e),
            Ok(_) if !writes.is_empty() && self.outage.is_none() => {
                self.ledger_works(LedgerOperation::Record)
            }
            Ok(_) => {}
        }
        if self.outage.is_none() {
            if expire {
                match self.ledger.expire(now) {
                    Ok(_) => self.ledger_works(LedgerOperation::Expire),
                    Err(e) => self.ledger_failed(LedgerOperation::Expire, &e),
                }
            }
            // Apply every new event (ours and other processes') before anyone hears back.
            self.read_feed();
            self.report_quarantined();
        }
        match outcomes {
            Ok(outcomes) => {
                for job in waiting {
                    match job {
                        Waiting::Items { reply, decisions } => {
                            let mut results = self.resolve(decisions, &writes, &outcomes);
                            if spooled {
                                for r in results.iter_mut().filter(|r| r.error.is_none()) {
                                    r.spooled = r.changed;
                                }
                            }
                            let _ = reply.send(Ok(results));
                        }
                        Waiting::Lift { reply } => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => {
                let failure = LedgerRequestError::from(e);
                for job in waiting {
                    match job {
                        Waiting::Items { reply, .. } => {
                            let _ = reply.send(Err(failure.clone()));
                        }
                        Waiting::Lift { reply } => {
                            let _ = reply.send(Err(failure.clone()));
                        }
                    }
                }
            }
        }
        for job in after_commit {
            self.serve(job);
        }
    }

    /// The shared ledger failed: spool from now on, retry later.
    fn enter_outage(&mut self, error: &LedgerError) {
        match &mut self.outage {
            Some(outage) => {
                outage.backoff = (outage.backoff * 2).min(RETRY_MAX);
                outage.retry_at = Instant::now() + outage.backoff;
                outage.error = error.to_string();
            }
            None => {
                tracing::error!(%error, "the shared ledger does not answer; bans go to the local spool until it does");
                self.outage = Some(Outage {
                    since: crate::clock::now(),
                    retry_at: Instant::now() + RETRY_MIN,
                    backoff: RETRY_MIN,
                    error: error.to_string(),
                });
            }
        }
        self.publish_health();
    }

    /// The ledger failed at `operation`: loud in the log and in `status` until that operation
    /// works again (no restart needed: every group tries the ledger afresh).
    fn ledger_failed(&mut self, operation: LedgerOperation, error: &LedgerError) {
        tracing::error!(%error, "{} failed", operation.as_str());
        let since = self
            .failing
            .get(&operation)
            .map_or_else(crate::clock::now, |f| f.0);
        self.failing.insert(
            operation,
            (since, format!("{}: {error}", operation.as_str())),
        );
        self.publish_health();
    }

    fn ledger_works(&mut self, operation: LedgerOperation) {
        if let Some((since, _)) = self.failing.remove(&operation) {
            tracing::info!(?since, "{} works again", operation.as_str());
            self.publish_health();
        }
    }

    /// Logs and counts the rows the ledger quarantined in its last reads.
    fn report_quarantined(&mut self) {
        let found = self.ledger.take_quarantined();
        if found.is_empty() {
            return;
        }
        for q in &found {
            tracing::error!(table = q.table, row = %q.row, error = %q.error,
                "unreadable ledger row moved to the quarantine table");
        }
        self.quarantined.0 += found.len() as u64;
        self.quarantined.1 = found
            .last()
            .map(|q| format!("{} row {}: {}", q.table, q.row, q.error));
        self.publish_health();
    }

    fn publish_health(&self) {
        let (since, error) = match &self.outage {
            Some(o) => (Some(o.since), Some(o.error.clone())),
            None if self.failing.is_empty() => (None, None),
            None => (
                self.failing.values().map(|f| f.0).min(),
                Some(
                    self.failing
                        .values()
                        .map(|f| f.1.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ),
        };
        self.health.send_replace(LedgerHealth {
            unreachable_since: since,
            last_error: error,
            spooled: self.spooled,
            quarantined: self.quarantined.0,
            last_quarantined: self.quarantined.1.clone(),
            damaged: self.damaged.clone(),
        });
    }

    /// Records `writes` in the spool and in the engine, as the ledger would have.
    fn spool_writes(
        &mut self,
        writes: &[Write],
        now: Timestamp,
    ) -> Result<Vec<Outcome>, LedgerError> {
        let spool = self.spool.as_mut().expect("spooling only with a spool");
        spool.push(writes)?;
        self.spooled += writes.len();
        let mut events = Vec::with_capacity(writes.len());
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                Write::Ban {
                    ban,
                    escalation_step,
                } => {
                    // As the ledger does: a re-ban keeps the later expiry.
                    let held = self.engine.source_expiry(&ban.prefix, &ban.source, now);
                    let expiry = held.map_or(ban.expiry, |h| h.max(ban.expiry));
                    let kind = if held.is_some() {
                        EventKind::Extend
                    } else {
                        EventKind::Ban
                    };
                    events.push(Event {
                        id: 0,
                        at: now,
                        kind,
                        prefix: ban.prefix,
                        source: Some(ban.source.clone()),
                        expiry: Some(expiry),
                        reason: ban.reason.clone(),
                        failures: ban.failures,
                        origin_host: ban.origin_host.clone(),
                        escalation_step: *escalation_step,
                    });
                    outcomes.push(Outcome::Banned {
                        event: 0,
                        kind,
                        expiry,
                    });
                }
                Write::Unban {
                    prefix,
                    source,
                    kind,
                    origin_host,
                } => {
                    let removed = match source {
                        Some(s) => self.engine.source_expiry(prefix, s, now).is_some(),
                        None => self.engine.is_banned(prefix),
                    };
                    events.push(Event {
                        id: 0,
                        at: now,
                        kind: *kind,
                        prefix: *prefix,
                        source: source.clone(),
                        expiry: None,
                        reason: None,
                        failures: None,
                        origin_host: origin_host.clone(),
                        escalation_step: 0,
                    });
                    outcomes.push(Outcome::Unbanned {
                        event: None,
                        removed: usize::from(removed),
                    });
                }
            }
        }
        self.engine.apply_events(&events);
        self.publish_health();
        Ok(outcomes)
    }

    /// Forwards the spool to the ledger, oldest first; ends the outage when it is empty.
    fn forward_spool(&mut self, now: Timestamp) {
        let Some(spool) = self.spool.as_mut() else {
            self.outage = None;
            return;
        };
        let mut forwarded = 0;
        let result = loop {
            let (writes, through) = match spool.oldest(FORWARD_BATCH, now) {
                Ok(batch) => batch,
                Err(e) => break Err(e),
            };
            let Some(through) = through else {
                break Ok(());
            };
            if !writes.is_empty() {
                if let Err(e) = self.ledger.record(&writes, now) {
                    break Err(e);
                }
            }
            if let Err(e) = spool.remove_through(through) {
                break Err(e);
            }
            forwarded += writes.len();
        };
        // Emptied, or partly forwarded: count what is left (once per attempt, not per group).
        self.spooled = match &result {
            Ok(()) => 0,
            Err(_) => spool.len().unwrap_or(self.spooled),
        };
        match result {
            Ok(()) => {
                if let Some(outage) = self.outage.take() {
                    tracing::info!(forwarded, since = ?outage.since, "the shared ledger answers again; the spool is forwarded");
                }
                self.publish_health();
            }
            Err(e) => self.enter_outage(&e),
        }
    }

    /// Hands every event after the cursor to the engine.
    fn read_feed(&mut self) {
        match self.ledger.feed(self.cursor, usize::MAX) {
            Ok((events, next)) => {
                *self.cursor = next;
                if !events.is_empty() {
                    self.engine.apply_events(&events);
                }
                self.ledger_works(LedgerOperation::ReadFeed);
            }
            Err(e) => self.ledger_failed(LedgerOperation::ReadFeed, &e),
        }
    }

    /// Serves a request that is not part of the group's transaction.
    fn serve(&mut self, job: Job) {
        match job {
            Job::Damaged { problems } => {
                tracing::error!(%problems, "the ledger file is damaged (integrity check); restore it from a backup or recover it with `sqlite3 FILE .recover`");
                self.damaged = Some(problems);
                self.publish_health();
            }
            Job::PruneHistory { before } => match self.ledger.prune_history(before) {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, ?before, "history before the retention pruned"),
                Err(e) => self.ledger_failed(LedgerOperation::PruneHistory, &e),
            },
            Job::Alive { reply } => {
                crate::fault::stall(crate::fault::Point::LedgerStall);
                let _ = reply.send(Ok(()));
            }
            Job::History {
                prefix,
                limit,
                reply,
            } => {
                let _ = reply.send(self.ledger.history(&prefix, limit).map_err(Into::into));
            }
            Job::TargetEntries { target, reply } => {
                let _ = reply.send(self.ledger.target_entries(&target).map_err(Into::into));
            }
            Job::RecordTargetEntries {
                target,
                added,
                removed,
                reply,
            } => {
                let result = self.ledger.update_target_entries(&target, &added, &removed);
                let _ = reply.send(result.map_err(Into::into));
            }
            Job::Ban { .. }
            | Job::Unban { .. }
            | Job::Lift { .. }
            | Job::Expire
            | Job::ReadFeed => {
                unreachable!("part of the group: its transaction, or its feed read")
            }
        }
    }

    /// Counts the earlier bans of every prefix the group's ban requests may escalate, in one
    /// read per escalation window (one for the whole group unless a policy reload fell
    /// between two requests), not one per ban: with a shared ledger each read is a round trip.
    fn count_prior_bans(&mut self, jobs: &[Job], now: Timestamp) -> PriorBans {
        let mut wanted: BTreeMap<Timestamp, Vec<Prefix>> = BTreeMap::new();
        for job in jobs {
            if let Job::Ban { args, policy, .. } = job {
                if let Some(since) = netban_ledger::escalation_window_start(policy, now) {
                    if !args.restored {
                        wanted.entry(since).or_default().extend(&args.prefixes);
                    }
                }
            }
        }
        let mut prior = PriorBans::default();
        if self.outage.is_some() {
            return prior;
        }
        for (since, mut prefixes) in wanted {
            prefixes.sort_unstable();
            prefixes.dedup();
            match self.ledger.prior_bans_each(&prefixes, since) {
                Ok(counts) => prior
                    .counts
                    .extend(prefixes.into_iter().map(|p| (p, since)).zip(counts)),
                // A fleet host decides without history (no escalation) and spools.
                Err(e) if self.spool.is_some() => {
                    self.enter_outage(&e);
                    return PriorBans::default();
                }
                Err(e) => {
                    prior.failed = Some(AdmitError::Ledger(e).to_string());
                    return prior;
                }
            }
        }
        prior
    }

    fn decide_bans(
        &mut self,
        policy: &Policy,
        args: &BanArgs,
        now: Timestamp,
        prior: &PriorBans,
        writes: &mut Vec<Write>,
    ) -> Vec<Decision> {
        let mut decisions = Vec::with_capacity(args.prefixes.len());
        for &prefix in &args.prefixes {
            if args.restored {
                // fail2ban re-asserting after its own restart: if we hold the ban, nothing to do.
                if let Some(expiry) = self.engine.source_expiry(&prefix, &args.source, now) {
                    decisions.push(Decision::Answered(ItemResult {
                        prefix,
                        error: None,
                        expiry: Some(expiry),
                        escalation_step: 0,
                        still_banned: true,
                        changed: false,
                        spooled: false,
                    }));
                    continue;
                }
            }
            // Restores never escalate; during an outage there is no history to count.
            let since = netban_ledger::escalation_window_start(policy, now)
                .filter(|_| !args.restored && self.outage.is_none());
            let count = match (since, &prior.failed) {
                (None, _) => 0,
                (Some(_), Some(error)) => {
                    decisions.push(Decision::Refused(prefix, error.clone()));
                    continue;
                }
                (Some(since), None) => prior.counts.get(&(prefix, since)).copied().unwrap_or(0),
            };
            let request = args.request(prefix, self.origin);
            match netban_ledger::admit_with_prior(policy, request, count, now) {
                Ok(write) => {
                    writes.push(write);
                    decisions.push(Decision::Written(prefix, writes.len() - 1));
                }
                Err(refusal) => decisions.push(Decision::Refused(prefix, refusal.to_string())),
            }
        }
        decisions
    }

    fn decide_unbans(&self, args: &UnbanArgs, writes: &mut Vec<Write>) -> Vec<Decision> {
        let origin_host = args.origin_host.clone().or_else(|| self.origin.cloned());
        let mut unban = |prefix: Prefix| {
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
                Some(source) => self.engine.prefixes_of_source(source),
                None => Vec::new(),
            };
            let many = prefixes.into_iter().map(|p| (p, unban(p))).collect();
            return vec![Decision::WrittenMany(many)];
        }
        args.prefixes
            .iter()
            .map(|&p| Decision::Written(p, unban(p)))
            .collect()
    }

    /// The answer for each requested prefix, once the group is committed and applied.
    fn resolve(
        &self,
        decisions: Vec<Decision>,
        writes: &[Write],
        outcomes: &[Outcome],
    ) -> Vec<ItemResult> {
        // One look at the engine for the whole request, not one lock per prefix.
        let banned = self
            .engine
            .banned_among(decisions.iter().flat_map(Decision::prefixes));
        let blank = |prefix: Prefix| ItemResult {
            prefix,
            error: None,
            expiry: None,
            escalation_step: 0,
            still_banned: banned.contains(&prefix),
            changed: false,
            spooled: false,
        };
        let written = |prefix: Prefix, index: usize| {
            let mut result = blank(prefix);
            match outcomes.get(index) {
                Some(Outcome::Banned { expiry, .. }) => {
                    result.expiry = Some(*expiry);
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
        for decision in decisions {
            match decision {
                Decision::Refused(prefix, error) => results.push(ItemResult {
                    error: Some(error),
                    ..blank(prefix)
                }),
                Decision::Answered(result) => results.push(result),
                Decision::Written(prefix, index) => results.push(written(prefix, index)),
                Decision::WrittenMany(list) => {
                    results.extend(list.into_iter().map(|(p, i)| written(p, i)))
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client write queued at `at`.
    fn write_at(at: Instant) -> Queued {
        let (reply, _) = oneshot::channel();
        let args = UnbanArgs {
            prefixes: vec!["203.0.113.7".parse().unwrap()],
            source: None,
            origin_host: None,
            all_of_source: false,
        };
        Queued {
            job: Job::Unban { args, reply },
            at,
        }
    }

    fn last(writers: usize, answered_at: Instant, linger: Duration) -> LastGroup {
        LastGroup {
            writers,
            answered_at,
            linger,
        }
    }

    #[test]
    fn a_lone_writer_does_not_wait() {
        let (tx, rx) = mpsc::channel();
        let answered = Instant::now();
        let mut jobs = vec![write_at(Instant::now())];
        let started = Instant::now();
        gather(&rx, &mut jobs, &last(1, answered, Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(jobs.len(), 1);
        drop(tx);
    }

    #[test]
    fn writers_that_waited_through_the_last_commit_do_not_count_as_returned() {
        // Two cohorts: 3 writers answered by the last group, 2 queued during its commit.
        let (tx, rx) = mpsc::channel();
        let before = Instant::now();
        let answered = Instant::now();
        tx.send(write_at(before)).unwrap();
        let mut jobs = vec![write_at(before)];
        // The answered cohort comes back one by one, from another thread.
        let clients = std::thread::spawn(move || {
            for _ in 0..3 {
                tx.send(write_at(Instant::now())).unwrap();
            }
            tx
        });
        let started = Instant::now();
        gather(&rx, &mut jobs, &last(3, answered, Duration::from_secs(30)));
        // It returned because all 3 were back (the linger is 30 s), with both cohorts.
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(jobs.len(), 5);
        drop(clients.join().unwrap());
    }

    #[test]
    fn writers_that_do_not_come_back_cost_one_linger() {
        let (tx, rx) = mpsc::channel();
        let answered = Instant::now();
        let mut jobs = vec![write_at(Instant::now())];
        let linger = Duration::from_millis(20);
        let started = Instant::now();
        gather(&rx, &mut jobs, &last(4, answered, linger));
        assert!(started.elapsed() >= linger);
        assert_eq!(jobs.len(), 1);
        drop(tx);
    }
}
