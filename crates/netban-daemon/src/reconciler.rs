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
use crate::engine::SharedEngine;
use crate::ledger_worker::LedgerHandle;
use netban_config::ReconcilerSection;
use netban_core::plan::{self, Held, Ownership, Plan};
use netban_core::Prefix;
use netban_proto::TargetStatus;
use netban_targets::{ItemOutcome, OwnershipKind, Step, Target, TargetError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

/// Requests the server sends to a worker.
pub enum Command {
    /// Observe the device and say what a full sync would change, changing nothing.
    Plan(oneshot::Sender<Result<Plan, String>>),
    /// Full sync now.
    Sync(oneshot::Sender<Result<(), String>>),
}

/// The server's handle on one worker.
#[derive(Clone)]
pub struct WorkerHandle {
    pub name: String,
    pub commands: mpsc::Sender<Command>,
    pub status: Arc<Mutex<TargetStatus>>,
}

/// How long changes may gather after a batch before the next one goes out (see
/// `Worker::incremental`).
const COALESCE: Duration = Duration::from_millis(20);

pub struct Worker {
    index: usize,
    target: Box<dyn Target>,
    engine: SharedEngine,
    ledger: LedgerHandle,
    settings: ReconcilerSection,
    status: Arc<Mutex<TargetStatus>>,
    commands: mpsc::Receiver<Command>,
    wake: Arc<Notify>,
    /// What the device holds, as last observed and since changed by our own applies.
    held: BTreeMap<Prefix, Vec<Held>>,
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
    failures: u32,
}

impl Worker {
    pub fn new(
        index: usize,
        target: Box<dyn Target>,
        engine: SharedEngine,
        ledger: LedgerHandle,
        settings: ReconcilerSection,
        wake: Arc<Notify>,
    ) -> (Worker, WorkerHandle) {
        let info = target.info().clone();
        let status = Arc::new(Mutex::new(TargetStatus {
            name: info.name.clone(),
            kind: info.kind.to_string(),
            health: "starting".into(),
            desired: 0,
            held: 0,
            overflow: 0,
            aggregates: 0,
            pending: 0,
            last_sync: None,
            last_error: None,
            consecutive_failures: 0,
        }));
        let (tx, rx) = mpsc::channel(16);
        let handle = WorkerHandle {
            name: info.name.clone(),
            commands: tx,
            status: status.clone(),
        };
        let worker = Worker {
            index,
            target,
            engine,
            ledger,
            settings,
            status,
            commands: rx,
            wake,
            held: BTreeMap::new(),
            owned: BTreeSet::new(),
            rejected: BTreeMap::new(),
            failed: BTreeSet::new(),
            item_retry_at: None,
            last_batch_at: None,
            prepared: false,
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

    /// Runs until `shutdown` turns true; finishes the batch in flight first.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.target.info().ownership == OwnershipKind::Recorded {
            let name = self.name().to_string();
            match self.ledger.read(move |l| l.target_entries(&name)).await {
                Ok(entries) => {
                    self.owned = entries.into_iter().map(|h| (h.prefix, h.handle)).collect()
                }
                Err(e) => {
                    tracing::error!(target = self.name(), error = %e, "cannot read owned entries")
                }
            }
        }
        let resync = Duration::from_secs(self.settings.resync_secs.max(1));
        let mut need_full = true;
        let mut next_resync = Instant::now();
        let mut retry_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if retry_at.is_none_or(|t| t <= now) {
                if self.item_retry_at.is_some_and(|t| t <= now) {
                    let failed = std::mem::take(&mut self.failed);
                    self.engine
                        .lock()
                        .expect("engine lock")
                        .mark_dirty(self.index, failed);
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
                        need_full = true;
                        retry_at = Some(Instant::now() + self.backoff());
                        self.report_down(&error);
                    }
                }
                self.publish_status();
            }
            let deadline = [Some(next_resync), retry_at, self.item_retry_at]
                .into_iter()
                .flatten()
                .min();
            let deadline = deadline.unwrap_or(next_resync);
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(command) = self.commands.recv() => match command {
                    Command::Plan(reply) => {
                        let _ = reply.send(self.dry_run().await.map_err(|e| e.to_string()));
                    }
                    Command::Sync(reply) => {
                        let result = self.full_sync().await;
                        match &result {
                            Ok(()) => {
                                need_full = false;
                                retry_at = None;
                                self.failures = 0;
                                next_resync = Instant::now() + resync;
                            }
                            Err(e) => self.report_down(e),
                        }
                        self.publish_status();
                        let _ = reply.send(result.map_err(|e| e.to_string()));
                    }
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        self.target.shutdown().await;
        tracing::info!(target = self.name(), "worker stopped");
    }

    fn ownership_kind(&self) -> OwnershipKind {
        self.target.info().ownership
    }

    /// Observes the device and plans everything, without applying.
    async fn dry_run(&mut self) -> Result<Plan, TargetError> {
        if !self.prepared {
            self.target.prepare().await?;
            self.prepared = true;
        }
        let held = self.target.observe().await?;
        let desired = {
            let mut engine = self.engine.lock().expect("engine lock");
            engine.refresh_placement(self.index);
            engine.desired_all(self.index)
        };
        Ok(self.plan_full(&desired, &held))
    }

    fn plan_full(&self, desired: &BTreeMap<Prefix, netban_core::Expiry>, held: &[Held]) -> Plan {
        let info = self.target.info();
        let ownership = match self.ownership_kind() {
            OwnershipKind::Exclusive => Ownership::Exclusive,
            OwnershipKind::Recorded => Ownership::Recorded(&self.owned),
        };
        let mut plan = plan::plan(desired, held, &ownership, info.expiry);
        plan.add.retain(|d| !self.rejected.contains_key(&d.prefix));
        plan
    }

    async fn full_sync(&mut self) -> Result<(), TargetError> {
        if !self.prepared {
            self.target.prepare().await?;
            self.prepared = true;
        }
        let held = self.target.observe().await?;
        let desired = {
            let mut engine = self.engine.lock().expect("engine lock");
            engine.refresh_placement(self.index);
            let _ = engine.take_dirty(self.index);
            engine.desired_all(self.index)
        };
        self.held.clear();
        for h in &held {
            self.held.entry(h.prefix).or_default().push(h.clone());
        }
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
        if let Ok(mut s) = self.status.lock() {
            s.last_sync = Some(clock::now());
            s.desired = desired.len();
        }
        Ok(())
    }

    async fn incremental(&mut self) -> Result<(), TargetError> {
        // During a burst, let changes gather for a moment after the previous batch, so the
        // device gets a few large transactions rather than one per ledger commit. A change
        // after a quiet spell goes out at once.
        if let Some(last) = self.last_batch_at {
            tokio::time::sleep_until(last + COALESCE).await;
        }
        let plan = {
            let mut engine = self.engine.lock().expect("engine lock");
            engine.refresh_placement(self.index);
            let dirty = engine.take_dirty(self.index);
            if dirty.is_empty() {
                return Ok(());
            }
            for prefix in &dirty {
                self.rejected.remove(prefix);
            }
            let ownership = match self.ownership_kind() {
                OwnershipKind::Exclusive => Ownership::Exclusive,
                OwnershipKind::Recorded => Ownership::Recorded(&self.owned),
            };
            let engine_ref = &*engine;
            let index = self.index;
            plan::plan_prefixes(
                &dirty,
                &|p| engine_ref.desired_of(index, p),
                &self.held,
                &ownership,
                self.target.info().expiry,
            )
        };
        self.last_batch_at = Some(Instant::now());
        // What the target should hold moves by what this plan adds and removes; a full sync
        // recounts it exactly.
        if let Ok(mut s) = self.status.lock() {
            s.desired = (s.desired + plan.add.len()).saturating_sub(plan.remove.len());
        }
        self.apply(plan).await
    }

    /// Applies `plan` in batches and folds the results into the cache, ownership and status.
    async fn apply(&mut self, plan: Plan) -> Result<(), TargetError> {
        if plan.is_empty() {
            return Ok(());
        }
        let max = self.target.info().max_batch.max(1);
        for batch in split(plan, max) {
            let report = match self.target.apply(&batch).await {
                Ok(report) => report,
                Err(error) => {
                    let prefixes = batch_prefixes(&batch);
                    self.engine
                        .lock()
                        .expect("engine lock")
                        .mark_dirty(self.index, prefixes);
                    return Err(error);
                }
            };
            let desired: BTreeMap<Prefix, netban_core::Expiry> = batch
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
                        self.rejected.insert(item.prefix, reason);
                    }
                    ItemOutcome::Failed { reason } => {
                        tracing::warn!(target = self.name(), prefix = %item.prefix, %reason, "item failed; will retry");
                        self.set_error(format!("{} failed: {reason}", item.prefix));
                        self.failed.insert(item.prefix);
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
                let name = self.name().to_string();
                self.ledger
                    .read(move |l| l.update_target_entries(&name, &added, &removed))
                    .await
                    .map_err(TargetError::device)?;
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
        if let Ok(mut s) = self.status.lock() {
            s.last_error = Some(message);
        }
    }

    fn report_down(&self, error: &TargetError) {
        tracing::error!(target = self.name(), %error, retry_in = ?self.backoff(), "target failed");
        if let Ok(mut s) = self.status.lock() {
            s.health = "down".into();
            s.last_error = Some(error.to_string());
            s.consecutive_failures = self.failures;
        }
    }

    fn publish_status(&self) {
        let (pending, overflow, aggregates) = {
            let engine = self.engine.lock().expect("engine lock");
            (
                engine.targets()[self.index].dirty.len(),
                engine.overflow_count(self.index),
                engine.aggregate_count(self.index),
            )
        };
        if let Ok(mut s) = self.status.lock() {
            s.held = self.held.len();
            s.pending = pending + self.failed.len();
            s.overflow = overflow;
            s.aggregates = aggregates;
            s.consecutive_failures = self.failures;
            if self.failures == 0 {
                s.health = if self.failed.is_empty() && self.rejected.is_empty() {
                    "ok"
                } else {
                    "degraded"
                }
                .into();
            }
        }
    }
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
