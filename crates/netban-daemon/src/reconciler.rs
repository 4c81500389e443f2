//! The reconciler: one worker per target, so a slow or dead device never delays another.
//!
//! A worker keeps a cache of what its device holds. It wakes when the engine marks prefixes
//! dirty, plans only those against the cache and applies the plan in batches of at most the
//! target's `max_batch` — changes that arrive while a batch is on the wire, or within 20 ms of
//! the previous batch, are coalesced into the next one (a change after a quiet spell goes out
//! at once). Every `resync_secs`, after any error, and on `netban sync`, it observes the
//! device afresh and plans everything, which repairs drift (an entry deleted by hand comes
//! back; a stray entry in netban's area goes).
//!
//! Failures stay visible in the worker's [`TargetStatus`]: a whole-batch error marks the
//! target down and retries with exponential backoff (after a full observe, since nothing can
//! be assumed about a failed batch); a failed item is retried with backoff on its own; an item
//! the device rejects for good is reported and left until its ban changes.

use crate::clock;
use crate::engine::TargetHandle;
use crate::instruments::{TargetErrorKind, TargetInstruments};
use crate::leadership::{Leadership, LeaseLapsed};
use crate::ledger_worker::{Job, LedgerHandle, LedgerRequestError};
use netban_config::ReconcilerSection;
use netban_core::plan::{self, Held, Ownership, Plan, SourceTracking};
use netban_core::{Expiry, Prefix};
use netban_proto::{Health, TargetScope, TargetStatus};
use netban_targets::{ItemOutcome, OwnershipKind, Step, Target, TargetError};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Requests the server sends to a worker.
pub enum Command {
    /// Observe the device and say what a full sync would change, changing nothing.
    Plan(oneshot::Sender<Result<Plan, WorkerError>>),
    /// Full sync now.
    Sync(oneshot::Sender<Result<(), WorkerError>>),
}

/// Why a command to a worker did not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A shared target this host does not drive now: it leaves the device alone.
    #[error("{}", match driver {
        Some(host) => format!("this shared target is driven by {host}; ask there"),
        None => "this host cannot reach the ledger to drive this shared target".to_string(),
    })]
    Standby { driver: Option<String> },
    #[error("the target's worker has stopped")]
    Stopped,
}

/// The server's handle on one worker: its commands, and the status it publishes.
#[derive(Clone)]
pub struct WorkerHandle {
    pub name: String,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<TargetStatus>,
    instruments: Arc<TargetInstruments>,
}

impl WorkerHandle {
    /// The worker's latest status.
    pub fn status(&self) -> TargetStatus {
        self.status.borrow().clone()
    }

    /// What the worker measured: its device calls' durations and its errors.
    pub fn instruments(&self) -> &TargetInstruments {
        &self.instruments
    }

    /// The worker's status as it changes (the web console's event stream).
    pub fn status_changes(&self) -> watch::Receiver<TargetStatus> {
        self.status.clone()
    }

    /// What a full sync would change now, changing nothing.
    pub async fn plan(&self) -> Result<Plan, WorkerError> {
        self.ask(Command::Plan).await
    }

    /// Observes the device and repairs it now.
    pub async fn sync(&self) -> Result<(), WorkerError> {
        self.ask(Command::Sync).await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, WorkerError>>) -> Command,
    ) -> Result<T, WorkerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| WorkerError::Stopped)?;
        answer.await.unwrap_or(Err(WorkerError::Stopped))
    }
}

/// Where a worker stands in the fleet.
pub struct Placement {
    pub scope: TargetScope,
    /// Whether this daemon may drive the target (see [`crate::leadership`]).
    pub leadership: watch::Receiver<Leadership>,
    /// The ledger's key for the target's recorded entries.
    pub entries_key: String,
    /// This host's name.
    pub host: String,
}

/// How long changes may gather after a batch before the next one goes out (see
/// `Worker::incremental`).
const COALESCE: Duration = Duration::from_millis(20);

pub struct Worker {
    target: Box<dyn Target>,
    /// This target's part of the engine: what it should hold, and the wake-ups.
    engine: TargetHandle,
    ledger: LedgerHandle,
    settings: ReconcilerSection,
    /// Published to the server (`netban status`); only this worker writes it.
    status: watch::Sender<TargetStatus>,
    /// Durations of its device calls and its errors, for `/metrics`; only this worker writes.
    instruments: Arc<TargetInstruments>,
    commands: mpsc::Receiver<Command>,
    /// Whether this daemon may drive the target now (always, unless it is shared by a fleet).
    leadership: watch::Receiver<Leadership>,
    /// The ledger's key for the entries netban created on this target: its name, or
    /// `host/name` for a per-host target in a ledger several hosts share.
    entries_key: String,
    /// This host's name, shown as the driver while it drives.
    host: String,
    /// What the device holds, as last observed and since changed by our own applies.
    held: BTreeMap<Prefix, Vec<Held>>,
    /// Whether `held` can be trusted to be the device's content: set by a successful full
    /// sync, cleared by any error (a failed or rejected item too) and by a change of driver.
    /// Only then does a resync that finds the device different report drift (something
    /// changed it outside netban).
    held_trusted: bool,
    /// On shared areas: the (prefix, handle) entries netban created.
    owned: BTreeSet<(Prefix, Option<String>)>,
    /// Items the device refused for good, with its reason; skipped until their ban changes.
    rejected: BTreeMap<Prefix, String>,
    /// Items that failed and wait for `item_retry_at`.
    failed: BTreeSet<Prefix>,
    item_retry_at: Option<Instant>,
    /// When the last incremental batch went to the device (for coalescing bursts).
    last_batch_at: Option<Instant>,
    prepared: bool,
    /// Whether the device was ever observed since the daemon started. Until it is, the status
    /// counts what it should hold from the engine, all of it pending (counted at most once a
    /// second: [`Worker::unreached_count`]).
    reached: bool,
    unreached_counted: Option<(Instant, usize)>,
    failures: u32,
}

impl Worker {
    pub fn new(
        target: Box<dyn Target>,
        engine: TargetHandle,
        ledger: LedgerHandle,
        settings: ReconcilerSection,
        place: Placement,
    ) -> (Worker, WorkerHandle) {
        let info = target.info().clone();
        let (status, status_rx) = watch::channel(TargetStatus {
            name: info.name.clone(),
            kind: info.kind.to_string(),
            health: Health::Starting,
            desired: 0,
            held: 0,
            overflow: 0,
            aggregates: 0,
            pending: 0,
            last_sync: None,
            last_error: None,
            consecutive_failures: 0,
            scope: place.scope,
            driver: None,
            driving_since: None,
            consumers: Vec::new(),
        });
        let (tx, rx) = mpsc::channel(16);
        let instruments = Arc::new(TargetInstruments::default());
        let handle = WorkerHandle {
            name: info.name.clone(),
            commands: tx,
            status: status_rx,
            instruments: instruments.clone(),
        };
        let worker = Worker {
            target,
            engine,
            ledger,
            settings,
            status,
            instruments,
            commands: rx,
            leadership: place.leadership,
            entries_key: place.entries_key,
            host: place.host,
            held: BTreeMap::new(),
            held_trusted: false,
            owned: BTreeSet::new(),
            rejected: BTreeMap::new(),
            failed: BTreeSet::new(),
            item_retry_at: None,
            last_batch_at: None,
            prepared: false,
            reached: false,
            unreached_counted: None,
            failures: 0,
        };
        (worker, handle)
    }

    fn name(&self) -> &str {
        &self.target.info().name
    }

    fn backoff(&self) -> Duration {
        let secs = self
            .settings
            .retry_min_secs
            .saturating_mul(1u64 << self.failures.min(16));
        Duration::from_secs(secs.min(self.settings.retry_max_secs))
    }

    /// Reads the entries netban recorded creating on the target (shared areas): at start and
    /// whenever this daemon takes a shared target over from another.
    async fn load_owned(&mut self) {
        if self.target.info().ownership != OwnershipKind::Recorded {
            return;
        }
        let target = self.entries_key.clone();
        match self
            .ledger
            .ask(|reply| Job::TargetEntries { target, reply })
            .await
        {
            Ok(entries) => self.owned = entries.into_iter().map(|h| (h.prefix, h.handle)).collect(),
            Err(e) => {
                tracing::error!(target = self.name(), error = %e, "cannot read owned entries")
            }
        }
    }

    /// Runs until `shutdown` turns true; finishes the batch in flight first.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let resync = Duration::from_secs(self.settings.resync_secs.max(1));
        let mut need_full = true;
        let mut next_resync = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut was_driving = false;
        // Per-host targets keep their (fixed) leadership's sender alive for the daemon's life;
        // the lease keeper drops its senders only after the workers stopped.
        let mut leadership_open = true;
        loop {
            let now = Instant::now();
            let leadership = self.leadership.borrow_and_update().clone();
            let driving = leadership.drives_at(now);
            if driving && !was_driving {
                // Starting, or taking a shared target over: what netban owns there may have
                // changed under another driver; observe everything before any change.
                self.load_owned().await;
                self.prepared = false;
                self.held_trusted = false;
                need_full = true;
                retry_at = None;
            }
            if !driving && was_driving {
                tracing::info!(target = self.name(), "no longer driving this shared target");
                self.held.clear();
                self.held_trusted = false;
            }
            was_driving = driving;
            if !driving {
                self.publish_standby(&leadership);
            } else if retry_at.is_some_and(|t| t > now) {
                // Waiting out a backoff: keep the counts current for `status`.
                self.publish_status(&leadership);
            } else {
                if self.item_retry_at.is_some_and(|t| t <= now) {
                    let failed = std::mem::take(&mut self.failed);
                    self.engine.mark_dirty(failed);
                    self.item_retry_at = None;
                }
                let result = if need_full || now >= next_resync {
                    self.full_sync().await.map(|()| {
                        need_full = false;
                        next_resync = Instant::now() + resync;
                    })
                } else {
                    self.incremental().await
                };
                match result {
                    Ok(()) => {
                        self.failures = 0;
                        retry_at = None;
                    }
                    Err(error) => {
                        self.failures = self.failures.saturating_add(1);
                        self.held_trusted = false;
                        need_full = true;
                        retry_at = Some(Instant::now() + self.backoff());
                        self.report_down(&error);
                    }
                }
                self.publish_status(&leadership);
            }
            // Wake for the next resync or retry, and when the lease runs out. A worker on
            // standby has no device timers: it waits for a change of leadership (its resync
            // time, left in the past, would otherwise wake it at once, again and again).
            let deadline = if driving {
                let lease_end = leadership.deadline();
                // A never-reached target's counts are recounted (at most) every second.
                let recount = (!self.reached).then(|| Instant::now() + Duration::from_secs(1));
                [
                    Some(next_resync),
                    retry_at,
                    self.item_retry_at,
                    lease_end,
                    recount,
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_resync)
            } else {
                Instant::now() + resync
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(command) = self.commands.recv() => match command {
                    Command::Plan(reply) => {
                        let answer = match self.standby_error() {
                            Some(standby) => Err(standby),
                            None => self.dry_run().await.map_err(WorkerError::from),
                        };
                        let _ = reply.send(answer);
                    }
                    Command::Sync(reply) => {
                        if let Some(standby) = self.standby_error() {
                            let _ = reply.send(Err(standby));
                            continue;
                        }
                        let result = self.full_sync().await;
                        match &result {
                            Ok(()) => {
                                need_full = false;
                                retry_at = None;
                                self.failures = 0;
                                next_resync = Instant::now() + resync;
                            }
                            Err(e) => {
                                self.held_trusted = false;
                                self.report_down(e);
                            }
                        }
                        let leadership = self.leadership.borrow().clone();
                        self.publish_status(&leadership);
                        let _ = reply.send(result.map_err(WorkerError::from));
                    }
                },
                _ = self.engine.work_signalled() => {}
                changed = self.leadership.changed(), if leadership_open => {
                    leadership_open = changed.is_ok();
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        self.target.shutdown().await;
        tracing::info!(target = self.name(), "worker stopped");
    }

    /// Which held entries netban may touch on this target (and watches for drift).
    fn ownership(&self) -> Ownership<'_> {
        match self.ownership_kind() {
            OwnershipKind::Exclusive => Ownership::Exclusive,
            OwnershipKind::Recorded => Ownership::Recorded(&self.owned),
        }
    }

    fn ownership_kind(&self) -> OwnershipKind {
        self.target.info().ownership
    }

    /// Why this worker may not touch the device now, if it may not.
    fn standby_error(&self) -> Option<WorkerError> {
        match &*self.leadership.borrow() {
            l if l.drives_at(Instant::now()) => None,
            Leadership::Standby { driver, .. } => Some(WorkerError::Standby {
                driver: driver.clone(),
            }),
            Leadership::Driving { .. } => Some(WorkerError::Standby { driver: None }),
        }
    }

    /// When this worker must have stopped touching the device (`None`: never).
    fn fence(&self) -> Option<Instant> {
        self.leadership.borrow().deadline()
    }

    /// Observes the device and plans everything, without applying.
    async fn dry_run(&mut self) -> Result<Plan, TargetError> {
        if !self.prepared {
            fenced(self.fence(), self.target.prepare()).await?;
            self.prepared = true;
        }
        let held = self.observe().await?;
        self.engine.refresh_placement();
        let desired = self.engine.all_desired();
        Ok(self.plan_full(&desired, &held))
    }

    /// Observes the device (timed for `/metrics`).
    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        let start = Instant::now();
        let held = fenced(self.fence(), self.target.observe()).await;
        self.instruments.observe.observe_duration(start.elapsed());
        held
    }

    fn plan_full(&self, desired: &BTreeMap<Prefix, Expiry>, held: &[Held]) -> Plan {
        let info = self.target.info();
        let ownership = self.ownership();
        let mut plan = plan::plan(desired, held, &ownership, info.expiry);
        plan.add.retain(|d| !self.rejected.contains_key(&d.prefix));
        if info.sources == SourceTracking::Shaped {
            self.engine.fill_sources(&mut plan);
        }
        plan
    }

    async fn full_sync(&mut self) -> Result<(), TargetError> {
        if !self.prepared {
            fenced(self.fence(), self.target.prepare()).await?;
            self.prepared = true;
        }
        let held = self.observe().await?;
        self.reached = true;
        let observed = plan::by_prefix(&held);
        if self.held_trusted {
            self.report_drift(&observed);
        }
        self.held = observed;
        self.engine.refresh_placement();
        let desired = self.engine.take_all_desired();
        let plan = self.plan_full(&desired, &held);
        if !plan.is_empty() {
            tracing::info!(
                target = self.name(),
                add = plan.add.len(),
                remove = plan.remove.len(),
                refresh = plan.refresh.len(),
                "resync repairs the device"
            );
        }
        self.apply(plan).await?;
        self.held_trusted = true;
        self.status.send_modify(|s| {
            s.last_sync = Some(clock::now());
            s.desired = desired.len();
        });
        Ok(())
    }

    /// Compares what the device holds now with what this worker left there: a difference is
    /// drift (an operator, another tool, a device reset, or a bug of ours), repaired by the
    /// sync that found it and counted for `/metrics`.
    fn report_drift(&self, observed: &BTreeMap<Prefix, Vec<Held>>) {
        let drift = plan::drift(&self.held, observed, &self.ownership(), clock::now());
        if drift.is_empty() {
            return;
        }
        tracing::warn!(
            target = self.name(),
            missing = drift.missing.len(),
            unexpected = drift.unexpected.len(),
            first = %drift.missing.first().or(drift.unexpected.first()).expect("not empty"),
            "the device changed outside netban since the last sync; repairing"
        );
        self.instruments.drift(&drift);
    }

    async fn incremental(&mut self) -> Result<(), TargetError> {
        crate::fault::inject(crate::fault::Point::Worker);
        // During a burst, let changes gather for a moment after the previous batch, so the
        // device gets a few large transactions rather than one per ledger commit. A change
        // after a quiet spell goes out at once.
        if let Some(last) = self.last_batch_at {
            tokio::time::sleep_until(last + COALESCE).await;
        }
        self.engine.refresh_placement();
        let dirty = self.engine.take_dirty();
        if dirty.is_empty() {
            return Ok(());
        }
        for prefix in dirty.keys() {
            self.rejected.remove(prefix);
        }
        let ownership = self.ownership();
        let prefixes: BTreeSet<Prefix> = dirty.keys().copied().collect();
        let desired = |p: &Prefix| dirty.get(p).copied().flatten();
        let info = self.target.info();
        let mut plan =
            plan::plan_prefixes(&prefixes, &desired, &self.held, &ownership, info.expiry);
        if info.sources == SourceTracking::Shaped {
            // A prefix stays banned but its sources changed: its entry is rebuilt.
            plan::reshape(&mut plan, &prefixes, &desired, &self.held, &ownership);
            self.engine.fill_sources(&mut plan);
        }
        self.last_batch_at = Some(Instant::now());
        // What the target should hold moves by what this plan adds and removes; a full sync
        // recounts it exactly.
        self.status.send_modify(|s| {
            s.desired = (s.desired + plan.add.len()).saturating_sub(plan.remove.len());
        });
        self.apply(plan).await
    }

    /// Applies `plan` in batches and folds the results into the cache, ownership and status.
    async fn apply(&mut self, plan: Plan) -> Result<(), TargetError> {
        if plan.is_empty() {
            return Ok(());
        }
        let max = self.target.info().max_batch.max(1);
        for batch in split(plan, max) {
            let start = Instant::now();
            let report = fenced(self.fence(), self.target.apply(&batch)).await;
            self.instruments.apply.observe_duration(start.elapsed());
            let report = match report {
                Ok(report) => report,
                Err(error) => {
                    self.engine.mark_dirty(batch_prefixes(&batch));
                    return Err(error);
                }
            };
            let desired: BTreeMap<Prefix, Expiry> = batch
                .add
                .iter()
                .chain(batch.refresh.iter().map(|(_, d)| d))
                .map(|d| (d.prefix, d.expiry))
                .collect();
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for item in report.items {
                match item.result {
                    ItemOutcome::Done { held } => match item.step {
                        Step::Add | Step::Refresh => {
                            let held = held.unwrap_or(Held {
                                prefix: item.prefix,
                                expiry: desired
                                    .get(&item.prefix)
                                    .copied()
                                    .map(Some)
                                    .unwrap_or(None),
                                handle: None,
                            });
                            if item.step == Step::Refresh {
                                self.forget(&item.prefix, &mut removed);
                            }
                            self.held.insert(item.prefix, vec![held.clone()]);
                            added.push(held);
                        }
                        Step::Remove => self.forget(&item.prefix, &mut removed),
                    },
                    ItemOutcome::Rejected { reason } => {
                        tracing::warn!(target = self.name(), prefix = %item.prefix, %reason, "device rejected");
                        self.set_error(format!("{} rejected: {reason}", item.prefix));
                        self.instruments.error(TargetErrorKind::ItemRejected);
                        self.rejected.insert(item.prefix, reason);
                        // The device may have kept part of it: no drift until a full sync.
                        self.held_trusted = false;
                    }
                    ItemOutcome::Failed { reason } => {
                        tracing::warn!(target = self.name(), prefix = %item.prefix, %reason, "item failed; will retry");
                        self.set_error(format!("{} failed: {reason}", item.prefix));
                        self.instruments.error(TargetErrorKind::ItemFailed);
                        self.failed.insert(item.prefix);
                        self.held_trusted = false;
                    }
                }
            }
            if self.ownership_kind() == OwnershipKind::Recorded
                && (!added.is_empty() || !removed.is_empty())
            {
                for h in &added {
                    forget_owned(&mut self.owned, &h.prefix);
                    self.owned.insert((h.prefix, h.handle.clone()));
                }
                for p in &removed {
                    forget_owned(&mut self.owned, p);
                }
                let target = self.entries_key.clone();
                self.ledger
                    .ask(|reply| Job::RecordTargetEntries {
                        target,
                        added,
                        removed,
                        reply,
                    })
                    .await
                    .map_err(|e: LedgerRequestError| TargetError::device(e))?;
            }
        }
        if !self.failed.is_empty() && self.item_retry_at.is_none() {
            self.item_retry_at = Some(Instant::now() + self.backoff());
        }
        Ok(())
    }

    fn forget(&mut self, prefix: &Prefix, removed: &mut Vec<Prefix>) {
        self.held.remove(prefix);
        removed.push(*prefix);
    }

    fn set_error(&self, message: String) {
        self.status.send_modify(|s| s.last_error = Some(message));
    }

    fn report_down(&self, error: &TargetError) {
        tracing::error!(target = self.name(), %error, retry_in = ?self.backoff(), "target failed");
        self.instruments.error(TargetErrorKind::of(error));
        self.status.send_modify(|s| {
            s.health = Health::Down;
            s.last_error = Some(error.to_string());
            s.consecutive_failures = self.failures;
        });
    }

    fn publish_standby(&self, leadership: &Leadership) {
        let (driver, since) = match leadership {
            Leadership::Standby { driver, since } => (driver.clone(), *since),
            // Driving, but the lease ran out and could not be renewed.
            Leadership::Driving { .. } => (None, None),
        };
        let counts = self.engine.counts();
        self.status.send_if_modified(|s| {
            let before = (s.health, s.driver.clone(), s.driving_since, s.overflow);
            s.health = Health::Standby;
            s.driver = driver;
            s.driving_since = since;
            s.held = 0;
            s.pending = 0;
            s.overflow = counts.overflow;
            s.aggregates = counts.aggregates;
            before != (s.health, s.driver.clone(), s.driving_since, s.overflow)
        });
    }

    /// What a never-reached target should hold (recounted at most once a second: the count is
    /// linear in the bans, and a down target is woken by every commit).
    fn unreached_count(&mut self) -> usize {
        let now = Instant::now();
        match self.unreached_counted {
            Some((at, count)) if now < at + Duration::from_secs(1) => count,
            _ => {
                let count = self.engine.all_desired().len();
                self.unreached_counted = Some((now, count));
                count
            }
        }
    }

    fn publish_status(&mut self, leadership: &Leadership) {
        let counts = self.engine.counts();
        let driving = matches!(leadership, Leadership::Driving { .. });
        let never_reached = (driving && !self.reached).then(|| self.unreached_count());
        let healthy = self.failures == 0;
        let item_trouble = !self.failed.is_empty() || !self.rejected.is_empty();
        let since = match leadership {
            Leadership::Driving { since, .. } => Some(*since),
            Leadership::Standby { .. } => None,
        };
        self.status.send_modify(|s| {
            s.driver = Some(self.host.clone());
            s.driving_since = since;
            s.held = self.held.len();
            s.pending = counts.dirty + self.failed.len();
            s.overflow = counts.overflow;
            s.aggregates = counts.aggregates;
            if let Some(desired) = never_reached {
                s.desired = desired;
                s.pending = desired;
            }
            s.consecutive_failures = self.failures;
            if healthy {
                s.health = if item_trouble {
                    Health::Degraded
                } else {
                    Health::Ok
                };
            }
        });
    }
}

/// Runs one device operation, but never past `fence` (the end of this daemon's lease on a
/// shared target): one not started by then is not started, one still running then is
/// abandoned (its outcome is unknown, so the next leader observes before it changes
/// anything).
async fn fenced<T>(
    fence: Option<Instant>,
    operation: impl Future<Output = Result<T, TargetError>>,
) -> Result<T, TargetError> {
    let Some(fence) = fence else {
        return operation.await;
    };
    let lapsed = || TargetError::unreachable(LeaseLapsed);
    if Instant::now() >= fence {
        return Err(lapsed());
    }
    tokio::time::timeout_at(fence, operation)
        .await
        .unwrap_or_else(|_| Err(lapsed()))
}

/// Drops every recorded (prefix, handle) entry of `prefix`: a range lookup, not a scan, so a
/// batch of 10,000 items on a shared area stays linear.
fn forget_owned(owned: &mut BTreeSet<(Prefix, Option<String>)>, prefix: &Prefix) {
    let mine: Vec<_> = owned
        .range((*prefix, None)..)
        .take_while(|(p, _)| p == prefix)
        .cloned()
        .collect();
    for entry in mine {
        owned.remove(&entry);
    }
}

fn batch_prefixes(plan: &Plan) -> Vec<Prefix> {
    let mut prefixes: Vec<Prefix> = plan.add.iter().map(|d| d.prefix).collect();
    prefixes.extend(plan.remove.iter().map(|h| h.prefix));
    prefixes.extend(plan.refresh.iter().map(|(_, d)| d.prefix));
    prefixes
}

/// Splits a plan into plans of at most `max` items, removes first (to free capacity).
fn split(plan: Plan, max: usize) -> Vec<Plan> {
    if plan.len() <= max {
        return vec![plan];
    }
    let mut batches = Vec::new();
    let mut current = Plan::default();
    let push = |current: &mut Plan, batches: &mut Vec<Plan>| {
        if current.len() >= max {
            batches.push(std::mem::take(current));
        }
    };
    for h in plan.remove {
        current.remove.push(h);
        push(&mut current, &mut batches);
    }
    for r in plan.refresh {
        current.refresh.push(r);
        push(&mut current, &mut batches);
    }
    for d in plan.add {
        current.add.push(d);
        push(&mut current, &mut batches);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}
