//! ExaFS target: bans as BGP RTBH rules created through the ExaFS REST API (v3), which
//! announces them to the routers through ExaBGP.
//!
//! An ExaFS organisation is shared with its operators, so the target's ownership is
//! [`OwnershipKind::Recorded`]: every rule netban creates is recorded in the ledger as
//! (prefix, rule id) — the handle is the rule id — and only recorded rules are ever deleted or
//! refreshed. Rules in other communities are not observed at all; rules of the configured
//! community that netban did not create count as holding their prefix and are left alone.
//!
//! - **observe** = `GET /api/v3/rules`: every RTBH rule of the configured community the key's
//!   user may change, with its id and expiry. A withdrawn rule reads back as expired (so the
//!   planner re-sends it if the ban goes on; re-sending makes ExaFS announce it again). A
//!   rule ExaFS marked whitelisted reads back as held with its expiry: it is logged, not
//!   fought (ExaFS keeps it off the network on purpose).
//! - **add / refresh** = `POST /api/v3/rules/rtbh` with the ban's *effective* expiry (the
//!   latest of all its sources — what the planner passes), see [`rule`] for the rounding. A
//!   second POST for the same prefix and community answers with the same id and overwrites
//!   the expiry, so refreshing is re-sending, and netban never sends an expiry shorter than
//!   the effective one.
//! - **remove** = `GET /api/v3/rules/rtbh/{id}` to check the id still carries the same prefix
//!   (ExaFS on SQLite reuses deleted ids), then `DELETE`. netban removes rules itself when
//!   bans end; it never relies on ExaFS's `withdraw_expired` job.
//!
//! Each apply keeps up to `max_in_flight` requests in flight and reports per item: a 400
//! with `validation_errors` rejects that item with the server's reason, a limit (403) or a
//! 5xx or lost answer fails it (retried), and the rest of the batch proceeds. Only when
//! nothing could be done — ExaFS unreachable, or the key refused — is the whole apply an
//! error.

mod client;
mod config;
mod key;
mod rule;
mod token;

pub use client::{ClientError, Created, Deleted};
pub use config::{ExafsConfig, KeySetting, MAX_COMMENT_LEN, MAX_IN_FLIGHT};
pub use rule::{
    expires_to_send, MARGIN_SECS, PERMANENT_READ_BACK_SECS, PERMANENT_SECS, ROUNDING_SECS,
};

/// The readers of what ExaFS answers, for the fuzz targets in `fuzz/` (not an API).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::client::detail_of;
    pub use super::rule::{validation_reason, CreateAnswer, RuleRecord};
    pub use super::token::Token;
}

use crate::{
    ApplyReport, ItemOutcome, ItemReport, OwnershipKind, Step, Target, TargetError, TargetInfo,
};
use async_trait::async_trait;
use client::Client;
use futures_util::stream::{self, StreamExt};
use key::ApiKeySource;
use netban_core::placement::Capacity;
use netban_core::plan::{Desired, ExpiryTracking, Held, Plan};
use netban_core::{Family, Timestamp};
use rule::{RuleRecord, RuleRequest, RuleState};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Items per apply: with 8 requests in flight against ExaFS's ~100-200 requests/s, about
/// 2.5-5 s, so status and coalescing stay lively during a burst.
pub const MAX_BATCH: usize = 500;

/// Refresh only when the ban outlasts what ExaFS holds. No slack is needed: netban writes
/// expiries rounded *up* with a margin (see [`rule`]), so what ExaFS holds is never earlier
/// than the expiry sent, and re-reading it never triggers another refresh.
pub const REFRESH_SLACK_SECS: u64 = 0;

/// The ExaFS driver. Built from configuration without contacting ExaFS (the key is read, to
/// refuse a key file others may read); `prepare` authenticates and resolves the community.
pub struct Exafs {
    info: TargetInfo,
    config: ExafsConfig,
    client: Client,
    /// The configured community's name, which is how ExaFS lists a rule's community.
    community_name: Option<String>,
    /// Whitelisted rule ids already logged, so each is reported once per run.
    whitelisted_reported: BTreeSet<i64>,
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

/// One step of a plan, as run against ExaFS.
enum Op<'a> {
    Send(Step, &'a Desired),
    Remove(&'a Held),
}

impl Exafs {
    pub fn new(name: &str, config: ExafsConfig) -> Result<Self, TargetError> {
        let config = config.validated()?;
        let key = match (&config.api_key_file, &config.api_key_env) {
            (Some(path), _) => ApiKeySource::File(path.clone()),
            (None, Some(var)) => ApiKeySource::Env(var.clone()),
            (None, None) => unreachable!("validated() requires a key source"),
        };
        key.read()?;
        if config.url.starts_with("http://") {
            tracing::warn!(
                target = name,
                url = %config.url,
                "exafs: plain http (allow_insecure_http = true): the API key and tokens cross \
                 the network readable by anyone on the path; use https"
            );
        }
        let client = Client::new(
            &config.url,
            key,
            &client::Transport {
                timeout: Duration::from_secs(config.timeout_secs),
                max_in_flight: config.max_in_flight,
                allow_insecure_http: config.allow_insecure_http,
                ca_file: config.ca_file.as_deref(),
            },
        )?;
        let info = TargetInfo {
            name: name.to_string(),
            kind: ExafsConfig::KIND,
            families: vec![Family::V4, Family::V6],
            capacity: Capacity::UNBOUNDED,
            ownership: OwnershipKind::Recorded,
            expiry: ExpiryTracking::Tracked {
                slack_secs: REFRESH_SLACK_SECS,
            },
            max_batch: MAX_BATCH,
        };
        Ok(Exafs {
            info,
            config,
            client,
            community_name: None,
            whitelisted_reported: BTreeSet::new(),
        })
    }

    pub fn config(&self) -> &ExafsConfig {
        &self.config
    }

    /// Authenticates and finds the configured community's name.
    async fn resolve_community(&mut self) -> Result<String, TargetError> {
        if let Some(name) = &self.community_name {
            return Ok(name.clone());
        }
        let offered = self
            .client
            .communities()
            .await
            .map_err(ClientError::into_target)?;
        let Some((_, name)) = offered.iter().find(|(id, _)| *id == self.config.community) else {
            let list: Vec<String> = offered
                .iter()
                .map(|(id, name)| format!("{id} ({name})"))
                .collect();
            return Err(TargetError::config(format!(
                "ExaFS community {} is not one the API key's user may use (offered: {}); set \
                 community in the exafs target {:?} to one of those ids",
                self.config.community,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                },
                self.info.name
            )));
        };
        self.community_name = Some(name.clone());
        Ok(name.clone())
    }

    /// The held entry for one listed rule, if it is of netban's community and well formed.
    fn held_of(
        &mut self,
        value: serde_json::Value,
        community: &str,
        at: Timestamp,
    ) -> Option<Held> {
        let record: RuleRecord = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target = %self.info.name, error = %e, "ExaFS listed a rule netban cannot read; ignored");
                return None;
            }
        };
        if record.community != community {
            return None;
        }
        let held = match record.held(at) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(target = %self.info.name, error = %e, "ExaFS rule ignored");
                return None;
            }
        };
        if record.state() == RuleState::Whitelisted && self.whitelisted_reported.insert(record.id) {
            tracing::warn!(
                target = %self.info.name,
                prefix = %held.prefix,
                rule = record.id,
                "ExaFS keeps this rule off the network: it matches an ExaFS whitelist. netban \
                 leaves it so (remove the whitelist in ExaFS to enforce the ban)"
            );
        }
        Some(held)
    }

    /// Runs one step; the error is kept to decide whether the whole batch failed.
    async fn run(&self, op: Op<'_>, community: &str) -> (ItemReport, Option<ClientError>) {
        match op {
            Op::Send(step, desired) => {
                let (result, error) = self.send(desired).await;
                let report = ItemReport {
                    prefix: desired.prefix,
                    step,
                    result,
                };
                (report, error)
            }
            Op::Remove(held) => {
                let (result, error) = self.remove(held, community).await;
                let report = ItemReport {
                    prefix: held.prefix,
                    step: Step::Remove,
                    result,
                };
                (report, error)
            }
        }
    }

    /// Creates the rule or sets its expiry (ExaFS answers a duplicate with the same id).
    async fn send(&self, desired: &Desired) -> (ItemOutcome, Option<ClientError>) {
        let at = now();
        let expires = rule::expires_to_send(desired.expiry, at);
        let request = RuleRequest::new(
            desired.prefix,
            self.config.community,
            expires,
            &self.config.comment,
        );
        match self.client.create(&request).await {
            Ok(Created::Rule(record)) => {
                let held = match record.held(at) {
                    Ok(held) if held.prefix == desired.prefix => held,
                    Ok(held) => {
                        let reason = format!(
                            "ExaFS answered with rule {} for {} instead of {}",
                            record.id, held.prefix, desired.prefix
                        );
                        return (ItemOutcome::Failed { reason }, None);
                    }
                    Err(e) => {
                        let reason = format!("ExaFS answered with a rule netban cannot read: {e}");
                        return (ItemOutcome::Failed { reason }, None);
                    }
                };
                match record.state() {
                    RuleState::Active => {}
                    RuleState::Whitelisted => tracing::warn!(
                        target = %self.info.name,
                        prefix = %desired.prefix,
                        rule = record.id,
                        "ExaFS stored the rule whitelisted (it matches an ExaFS whitelist) and \
                         does not announce it"
                    ),
                    state => tracing::warn!(
                        target = %self.info.name,
                        prefix = %desired.prefix,
                        rule = record.id,
                        ?state,
                        expires,
                        "ExaFS did not store the rule active; is its clock right?"
                    ),
                }
                (ItemOutcome::Done { held: Some(held) }, None)
            }
            Ok(Created::Invalid(reason)) => (ItemOutcome::Rejected { reason }, None),
            Ok(Created::LimitReached(reason)) => (ItemOutcome::Failed { reason }, None),
            Err(e) => (
                ItemOutcome::Failed {
                    reason: e.to_string(),
                },
                Some(e),
            ),
        }
    }

    /// Deletes the rule if its id still carries the same prefix in netban's community.
    async fn remove(&self, held: &Held, community: &str) -> (ItemOutcome, Option<ClientError>) {
        let Some(id) = held.handle.as_deref().and_then(|h| h.parse::<i64>().ok()) else {
            let reason = format!(
                "no ExaFS rule id recorded for {} (handle {:?}); delete it in ExaFS by hand",
                held.prefix, held.handle
            );
            return (ItemOutcome::Rejected { reason }, None);
        };
        let current = match self.client.rule(id).await {
            Ok(current) => current,
            Err(e) => {
                let reason = e.to_string();
                return (ItemOutcome::Failed { reason }, Some(e));
            }
        };
        let still_ours = current.as_ref().is_some_and(|r| {
            r.community == community && r.prefix().is_ok_and(|p| p == held.prefix)
        });
        if !still_ours {
            // Gone already, or the id now belongs to another rule: nothing of netban's left.
            tracing::info!(
                target = %self.info.name,
                prefix = %held.prefix,
                rule = id,
                "rule already gone from ExaFS (its id is free or carries another rule)"
            );
            return (ItemOutcome::Done { held: None }, None);
        }
        match self.client.delete(id).await {
            Ok(Deleted::Deleted) | Ok(Deleted::Gone) => (ItemOutcome::Done { held: None }, None),
            Ok(Deleted::NotAllowed(message)) => {
                let reason = format!(
                    "ExaFS does not let this key's user delete rule {id} ({message}); an \
                     operator must delete it"
                );
                (ItemOutcome::Rejected { reason }, None)
            }
            Err(e) => (
                ItemOutcome::Failed {
                    reason: e.to_string(),
                },
                Some(e),
            ),
        }
    }
}

#[async_trait]
impl Target for Exafs {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn prepare(&mut self) -> Result<(), TargetError> {
        self.community_name = None;
        self.resolve_community().await.map(|_| ())
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        let community = self.resolve_community().await?;
        let rules = self
            .client
            .rtbh_rules()
            .await
            .map_err(ClientError::into_target)?;
        let at = now();
        Ok(rules
            .into_iter()
            .filter_map(|value| self.held_of(value, &community, at))
            .collect())
    }

    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        if plan.is_empty() {
            return Ok(ApplyReport::default());
        }
        let community = self.resolve_community().await?;
        let mut ops: Vec<Op<'_>> = Vec::with_capacity(plan.len());
        ops.extend(plan.remove.iter().map(Op::Remove));
        ops.extend(plan.refresh.iter().map(|(_, d)| Op::Send(Step::Refresh, d)));
        ops.extend(plan.add.iter().map(|d| Op::Send(Step::Add, d)));
        let this = &*self;
        let community = community.as_str();
        let calls: Vec<_> = ops.into_iter().map(|op| this.run(op, community)).collect();
        let mut results: Vec<(ItemReport, Option<ClientError>)> = stream::iter(calls)
            .buffered(self.config.max_in_flight)
            .collect()
            .await;
        // Nothing done and every item refused for the same whole-target reason (ExaFS not
        // reachable, the key refused): report that, so the target shows down and backs off.
        let nothing_done = results
            .iter()
            .all(|(r, _)| !matches!(r.result, ItemOutcome::Done { .. }));
        if nothing_done {
            let whole = results.iter().all(|(_, e)| {
                matches!(
                    e,
                    Some(
                        ClientError::Connect { .. }
                            | ClientError::Credentials(_)
                            | ClientError::Key(_)
                    )
                )
            });
            if whole {
                if let Some(first) = results.iter_mut().find_map(|(_, e)| e.take()) {
                    return Err(first.into_target());
                }
            }
        }
        Ok(ApplyReport {
            items: results.into_iter().map(|(r, _)| r).collect(),
        })
    }
}
