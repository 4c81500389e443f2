//! Housekeeping: the daemon's periodic work, and the one place its policy is reloaded.
//!
//! Every `poll_millis` one task asks the ledger thread to end expired bans (which also reads
//! the change feed, bringing in writes other processes made) and checks whether the allowlist
//! files changed. A change, or `netban reload` ([`PolicyReloader::reload`]), re-reads the
//! policy, installs it in the engine, and lifts the bans it now covers; the reload is answered
//! only once the lift is durable.
//!
//! Every policy (at start and at each reload) protects the infrastructure found at that moment
//! ([`infrastructure`]): this machine's addresses, default gateways and resolvers, read again
//! each time (a DHCP renewal may change them), and the targets' management addresses, resolved
//! at start.

use crate::engine::Engine;
use crate::ledger_worker::{Job, LedgerHandle, LedgerRequestError};
use netban_config::{Config, ConfigError};
use netban_core::policy::{Policy, Protected};
use netban_core::Prefix;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What a reload did.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub allowlist_entries: usize,
    /// Banned prefixes the new policy covers, now lifted.
    pub lifted: Vec<Prefix>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files are unreadable or invalid: the previous policy stays.
    #[error("{0}; keeping the previous allowlist")]
    Config(#[from] ConfigError),
    #[error("the new policy is in force, but lifting the bans it covers failed: {0}")]
    Lift(#[from] LedgerRequestError),
    #[error("the daemon is shutting down")]
    Stopped,
}

type ReloadReply = oneshot::Sender<Result<Reloaded, ReloadError>>;

/// The server's way to ask for a reload.
#[derive(Clone)]
pub struct PolicyReloader {
    requests: mpsc::Sender<ReloadReply>,
}

impl PolicyReloader {
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        answer.await.unwrap_or(Err(ReloadError::Stopped))
    }
}

/// The housekeeping task's state.
pub struct Housekeeping {
    config: Config,
    /// The targets' management addresses (resolved at start), protected when the policy says so.
    management: Vec<Protected>,
    engine: Engine,
    ledger: LedgerHandle,
    requests: mpsc::Receiver<ReloadReply>,
}

impl Housekeeping {
    pub fn new(
        config: Config,
        management: Vec<Protected>,
        engine: Engine,
        ledger: LedgerHandle,
    ) -> (Housekeeping, PolicyReloader) {
        let (tx, requests) = mpsc::channel(4);
        let task = Housekeeping {
            config,
            management,
            engine,
            ledger,
            requests,
        };
        (task, PolicyReloader { requests: tx })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut stamps = self.config.allowlist_stamps();
        let period = Duration::from_millis(self.config.reconciler.poll_millis.max(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // History retention: at start, then every day.
        let mut prune = tokio::time::interval(Duration::from_secs(86_400));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(reply) = self.requests.recv() => {
                    stamps = self.config.allowlist_stamps();
                    let _ = reply.send(self.reload().await);
                }
                _ = prune.tick() => {
                    if let Some(before) = self.history_horizon() {
                        self.ledger.send(Job::PruneHistory { before });
                    }
                }
                _ = tick.tick() => {
                    // The ledger ends bans whose expiry passed (an indexed query that finds
                    // nothing most of the time) and, as after every job, reads the change feed.
                    self.ledger.send(Job::Expire);
                    let now_stamps = self.config.allowlist_stamps();
                    if now_stamps != stamps {
                        stamps = now_stamps;
                        match self.reload().await {
                            Ok(r) => tracing::info!(
                                entries = r.allowlist_entries,
                                lifted = r.lifted.len(),
                                "allowlist reloaded"
                            ),
                            Err(e) => tracing::error!(error = %e, "allowlist reload failed"),
                        }
                    }
                }
            }
        }
    }

    /// Events before this are pruned: `history_days` ago, but never inside the escalation
    /// window (`None`: keep everything).
    fn history_horizon(&self) -> Option<netban_core::Timestamp> {
        let days = self.config.daemon.history_days;
        if days == 0 {
            return None;
        }
        let keep = (u64::from(days) * 86_400).max(self.engine.policy().escalation.window_secs);
        let now = crate::clock::now();
        Some(netban_core::Timestamp(
            now.0
                .saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX)),
        ))
    }

    async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let (policy, _) = self.config.policy(&infrastructure(&self.management))?;
        let allowlist_entries = policy.allowlist.len();
        let lifted = self.engine.set_policy(policy);
        if !lifted.is_empty() {
            let prefixes = lifted.clone();
            self.ledger
                .ask(|reply| Job::Lift {
                    prefixes,
                    reply: Some(reply),
                })
                .await?;
        }
        Ok(Reloaded {
            allowlist_entries,
            lifted,
        })
    }
}

/// This machine's addresses, default gateways and resolvers as found now, plus `management`
/// (the targets' device addresses). What cannot be read is logged and left out.
pub fn infrastructure(management: &[Protected]) -> Vec<Protected> {
    let discovered = netban_config::infrastructure::discover();
    for problem in &discovered.problems {
        tracing::warn!("{problem}; not protected");
    }
    let mut found = discovered.found;
    found.extend_from_slice(management);
    found
}

/// What `check-config` shows of the protection: every protected network with its reasons
/// and opt-out, then what was found but is not protected because its kind is turned off, and
/// the device names that could not be resolved (`unresolved`).
pub fn describe_protection(
    config: &Config,
    policy: &Policy,
    found: &[Protected],
    unresolved: &[String],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("protected (never banned, never covered by aggregation):\n");
    for (prefix, reasons) in policy.protected.iter() {
        for reason in reasons {
            let _ = writeln!(
                out,
                "  {:<24} {reason} [opt out: {}]",
                prefix.to_string(),
                reason.opt_out()
            );
        }
    }
    let off: Vec<&Protected> = found
        .iter()
        .filter(|p| !config.protects(&p.reason))
        .collect();
    if !off.is_empty() {
        out.push_str("not protected (turned off in [policy]):\n");
        for p in off {
            let _ = writeln!(out, "  {:<24} {}", p.prefix.to_string(), p.reason);
        }
    }
    for problem in unresolved {
        let _ = writeln!(out, "warning: {problem}");
    }
    out
}
