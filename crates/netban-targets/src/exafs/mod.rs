//! ExaFS target: bans as rules created through the ExaFS REST API (v3), which announces them
//! to the routers through ExaBGP. A ban becomes, by the target's `rule` setting, either a BGP
//! RTBH rule (`rtbh`, the default: a route for the banned prefix with a blackhole community)
//! or a flowspec rule (`flowspec`: match the banned prefix as *source*, optionally a protocol
//! and destination ports, then an action, by default ExaFS's "Discard"; see [`flow`]).
//!
//! An ExaFS organisation is shared with its operators, so the target's ownership is
//! [`OwnershipKind::Recorded`]: every rule netban creates is recorded in the ledger as
//! (prefix, rule id) — the handle is the rule id — and only recorded rules are ever deleted or
//! refreshed. Only rules of the target's own kind are observed: RTBH rules of the configured
//! community, or flowspec rules whose match and action are exactly the configured ones. Such
//! rules that netban did not create count as holding their prefix and are left alone.
//!
//! - **observe** = `GET /api/v3/rules`: every rule of the target's kind the key's user may
//!   change, with its id and expiry. A withdrawn rule reads back as expired (so the planner
//!   re-sends it if the ban goes on). An RTBH rule ExaFS marked whitelisted reads back as
//!   held with its expiry: it is logged, not fought (ExaFS keeps it off the network on
//!   purpose).
//! - **add / refresh** = `POST /api/v3/rules/rtbh` (or `/rules/ipv4`, `/rules/ipv6`) with the
//!   ban's *effective* expiry (the latest of all its sources — what the planner passes), see
//!   [`rule`] for the rounding. A second POST for the same rule answers with the same id and
//!   overwrites the expiry, so refreshing is re-sending, and netban never sends an expiry
//!   shorter than the effective one. (ExaFS never reuses a *withdrawn* flowspec rule: netban
//!   deletes its withdrawn rule first, and the POST creates a new one.)
//! - **remove** = `GET` the rule by id to check it still carries the same prefix (and
//!   community, or match) — ExaFS on SQLite reuses deleted ids — then `DELETE`. netban removes
//!   rules itself when bans end; it never relies on ExaFS's `withdraw_expired` job.
//!
//! Each apply keeps up to `max_in_flight` requests in flight and reports per item: a 400
//! with `validation_errors` rejects that item with the server's reason, a limit (403) or a
//! 5xx or lost answer fails it (retried), and the rest of the batch proceeds. Only when
//! nothing could be done — ExaFS unreachable, or the key refused — is the whole apply an
//! error.

mod client;
mod config;
pub mod flow;
mod key;
mod rule;
mod token;

pub use client::{ClientError, Created, Deleted, RulePath};
pub use config::{ExafsConfig, KeySetting, RuleKind, RuleSetting, MAX_COMMENT_LEN, MAX_IN_FLIGHT};
pub use flow::{FlowMatch, FlowProtocol};
pub use rule::{
    expires_to_send, MARGIN_SECS, PERMANENT_READ_BACK_SECS, PERMANENT_SECS, ROUNDING_SECS,
};

/// The readers of what ExaFS answers, for the fuzz targets in `fuzz/` (not an API).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::client::detail_of;
    pub use super::flow::FlowRecord;
    pub use super::rule::{validation_reason, CreateAnswer, RuleRecord};
    pub use super::token::Token;
}

use crate::{
    ApplyReport, ItemOutcome, ItemReport, OwnershipKind, Step, Target, TargetError, TargetInfo,
};
use async_trait::async_trait;
use client::Client;
use flow::{FlowRecord, FlowRequest};
use futures_util::stream::{self, StreamExt};
use key::ApiKeySource;
use netban_core::placement::Capacity;
use netban_core::plan::{Desired, ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::{Family, Prefix, Timestamp};
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
/// refuse a key file others may read); `prepare` authenticates and resolves the community
/// (RTBH) or the action (flowspec).
pub struct Exafs {
    info: TargetInfo,
    config: ExafsConfig,
    /// What the target creates, from the configuration.
    setting: RuleSetting,
    client: Client,
    /// The setting as ExaFS knows it, once resolved.
    resolved: Option<Resolved>,
    /// Whitelisted rule ids already logged, so each is reported once per run.
    whitelisted_reported: BTreeSet<i64>,
}

/// The target's rules resolved against ExaFS: the configured ids with the names ExaFS lists
/// rules by.
#[derive(Clone, Debug)]
enum Resolved {
    Rtbh {
        community: u32,
        community_name: String,
    },
    Flowspec {
        rule_match: FlowMatch,
        action: u32,
        action_name: String,
    },
}

/// The action a flowspec target uses when none is configured (ExaFS's seed data has it).
pub const DEFAULT_ACTION_NAME: &str = "Discard";

impl Resolved {
    /// The lists of `GET /api/v3/rules` the target's rules are in.
    fn lists(&self) -> &'static [&'static str] {
        match self {
            Resolved::Rtbh { .. } => &["rtbh_any_rw"],
            Resolved::Flowspec { .. } => &["flowspec_ipv4_rw", "flowspec_ipv6_rw"],
        }
    }

    /// Where the rule for `prefix` lives in the API.
    fn path(&self, prefix: Prefix) -> RulePath {
        match self {
            Resolved::Rtbh { .. } => RulePath::Rtbh,
            Resolved::Flowspec { .. } => RulePath::flowspec(prefix.family()),
        }
    }
}

/// A rule as ExaFS lists it, of either kind.
trait Listed {
    fn id(&self) -> i64;
    fn state(&self) -> RuleState;
    fn held(&self, now: Timestamp) -> Result<Held, String>;
}

impl Listed for RuleRecord {
    fn id(&self) -> i64 {
        self.id
    }
    fn state(&self) -> RuleState {
        RuleRecord::state(self)
    }
    fn held(&self, now: Timestamp) -> Result<Held, String> {
        RuleRecord::held(self, now)
    }
}

impl Listed for FlowRecord {
    fn id(&self) -> i64 {
        self.id
    }
    fn state(&self) -> RuleState {
        FlowRecord::state(self)
    }
    fn held(&self, now: Timestamp) -> Result<Held, String> {
        FlowRecord::held(self, now)
    }
}

/// What the ExaFS key's user is offered, for an operator message: "1 (name), 4 (name)".
fn offered_list(offered: &[(u32, String)]) -> String {
    if offered.is_empty() {
        return "none".to_string();
    }
    offered
        .iter()
        .map(|(id, name)| format!("{id} ({name})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

/// One step of a plan, as run against ExaFS. A refresh carries the entry it replaces.
enum Op<'a> {
    Send(Step, &'a Desired, Option<&'a Held>),
    Remove(&'a Held),
}

impl Exafs {
    pub fn new(name: &str, config: ExafsConfig) -> Result<Self, TargetError> {
        let config = config.validated()?;
        let setting = config.rule_setting().map_err(TargetError::config)?;
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
            sources: SourceTracking::Ignored,
            max_batch: MAX_BATCH,
        };
        Ok(Exafs {
            info,
            config,
            setting,
            client,
            resolved: None,
            whitelisted_reported: BTreeSet::new(),
        })
    }

    pub fn config(&self) -> &ExafsConfig {
        &self.config
    }

    /// Authenticates and finds the names ExaFS lists the configured community or action by.
    async fn resolve(&mut self) -> Result<Resolved, TargetError> {
        if let Some(resolved) = &self.resolved {
            return Ok(resolved.clone());
        }
        let resolved = match &self.setting {
            RuleSetting::Rtbh { community } => {
                let community = *community;
                let offered = self
                    .client
                    .communities()
                    .await
                    .map_err(ClientError::into_target)?;
                let Some((_, name)) = offered.iter().find(|(id, _)| *id == community) else {
                    return Err(TargetError::config(format!(
                        "ExaFS community {community} is not one the API key's user may use \
                         (offered: {}); set community in the exafs target {:?} to one of those \
                         ids",
                        offered_list(&offered),
                        self.info.name
                    )));
                };
                Resolved::Rtbh {
                    community,
                    community_name: name.clone(),
                }
            }
            RuleSetting::Flowspec { rule_match, action } => {
                let offered = self
                    .client
                    .actions()
                    .await
                    .map_err(ClientError::into_target)?;
                let found = match action {
                    Some(action) => offered.iter().find(|(id, _)| id == action),
                    None => offered
                        .iter()
                        .find(|(_, name)| name.eq_ignore_ascii_case(DEFAULT_ACTION_NAME)),
                };
                let Some((action, action_name)) = found else {
                    let wanted = match action {
                        Some(id) => format!("ExaFS action {id} is not one"),
                        None => format!(
                            "ExaFS has no action named {DEFAULT_ACTION_NAME:?} (the default)"
                        ),
                    };
                    return Err(TargetError::config(format!(
                        "{wanted} the API key's user may use (offered: {}); set action in the \
                         exafs target {:?} to the id of the action that drops the traffic",
                        offered_list(&offered),
                        self.info.name
                    )));
                };
                Resolved::Flowspec {
                    rule_match: rule_match.clone(),
                    action: *action,
                    action_name: action_name.clone(),
                }
            }
        };
        self.resolved = Some(resolved.clone());
        Ok(resolved)
    }

    /// The held entry for one listed rule, if it is of the target's kind and well formed.
    fn held_of(
        &mut self,
        value: serde_json::Value,
        resolved: &Resolved,
        at: Timestamp,
    ) -> Option<Held> {
        let read = match resolved {
            Resolved::Rtbh { community_name, .. } => serde_json::from_value::<RuleRecord>(value)
                .map(|record| {
                    let ours = record.community == *community_name;
                    (ours.then(|| record.held(at)), record.id, record.state())
                }),
            Resolved::Flowspec {
                rule_match,
                action_name,
                ..
            } => serde_json::from_value::<FlowRecord>(value).map(|record| {
                let ours = record.has_match(rule_match, action_name);
                (ours.then(|| record.held(at)), record.id, record.state())
            }),
        };
        let (held, id, state) = match read {
            Ok((Some(held), id, state)) => (held, id, state),
            Ok((None, ..)) => return None,
            Err(e) => {
                tracing::warn!(target = %self.info.name, error = %e, "ExaFS listed a rule netban cannot read; ignored");
                return None;
            }
        };
        let held = match held {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(target = %self.info.name, error = %e, "ExaFS rule ignored");
                return None;
            }
        };
        if state == RuleState::Whitelisted && self.whitelisted_reported.insert(id) {
            tracing::warn!(
                target = %self.info.name,
                prefix = %held.prefix,
                rule = id,
                "ExaFS keeps this rule off the network: it matches an ExaFS whitelist. netban \
                 leaves it so (remove the whitelist in ExaFS to enforce the ban)"
            );
        }
        Some(held)
    }

    /// Runs one step; the error is kept to decide whether the whole batch failed.
    async fn run(&self, op: Op<'_>, resolved: &Resolved) -> (ItemReport, Option<ClientError>) {
        match op {
            Op::Send(step, desired, replaced) => {
                let (result, error) = self.send(desired, replaced, resolved).await;
                let report = ItemReport {
                    prefix: desired.prefix,
                    step,
                    result,
                };
                (report, error)
            }
            Op::Remove(held) => {
                let (result, error) = self.remove(held, resolved).await;
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
    /// `replaced`: the entry a refresh replaces.
    async fn send(
        &self,
        desired: &Desired,
        replaced: Option<&Held>,
        resolved: &Resolved,
    ) -> (ItemOutcome, Option<ClientError>) {
        let at = now();
        let expires = rule::expires_to_send(desired.expiry, at);
        let comment = self.config.comment.as_str();
        let path = resolved.path(desired.prefix);
        match resolved {
            Resolved::Rtbh { community, .. } => {
                let request = RuleRequest::new(desired.prefix, *community, expires, comment);
                let created = self.client.create::<RuleRecord>(path, &request).await;
                self.outcome(desired, at, expires, created)
            }
            Resolved::Flowspec {
                rule_match, action, ..
            } => {
                if let Some(old) = replaced {
                    self.drop_withdrawn(old, resolved).await;
                }
                let request =
                    FlowRequest::new(desired.prefix, rule_match, *action, expires, comment);
                let created = self.client.create::<FlowRecord>(path, &request).await;
                self.outcome(desired, at, expires, created)
            }
        }
    }

    /// Before a flowspec rule is re-sent: ExaFS never reuses a *withdrawn* flowspec rule (the
    /// POST makes a new one beside it), so netban deletes its withdrawn rule first. First,
    /// because deleting any rule makes ExaFS send a withdraw for its flow: sent after the new
    /// rule's announce, it would take the flow off the network again. An active rule is left
    /// (the POST updates it). Failures are logged: the POST still goes out, and the withdrawn
    /// rule, announcing nothing, is only clutter (ExaFS deletes old withdrawn rules itself).
    async fn drop_withdrawn(&self, old: &Held, resolved: &Resolved) {
        let Resolved::Flowspec {
            rule_match,
            action_name,
            ..
        } = resolved
        else {
            return;
        };
        let Some(id) = old.handle.as_deref().and_then(|h| h.parse::<i64>().ok()) else {
            return;
        };
        let path = resolved.path(old.prefix);
        let withdrawn = match self.client.rule::<FlowRecord>(path, id).await {
            Ok(rule) => rule.is_some_and(|r| {
                r.state() == RuleState::Withdrawn
                    && r.has_match(rule_match, action_name)
                    && r.prefix() == Ok(old.prefix)
            }),
            Err(e) => {
                tracing::warn!(target = %self.info.name, prefix = %old.prefix, rule = id, error = %e, "cannot read the flowspec rule being re-sent");
                false
            }
        };
        if !withdrawn {
            return;
        }
        match self.client.delete(path, id).await {
            Ok(_) => tracing::info!(
                target = %self.info.name,
                prefix = %old.prefix,
                rule = id,
                "flowspec rule withdrawn by ExaFS deleted; the ban is sent as a new rule"
            ),
            Err(e) => tracing::warn!(
                target = %self.info.name,
                prefix = %old.prefix,
                rule = id,
                error = %e,
                "cannot delete the withdrawn flowspec rule; ExaFS will keep it beside the new one"
            ),
        }
    }

    /// What ExaFS's answer to a create means for the item.
    fn outcome<R: Listed>(
        &self,
        desired: &Desired,
        at: Timestamp,
        expires: i64,
        created: Result<Created<R>, ClientError>,
    ) -> (ItemOutcome, Option<ClientError>) {
        let record = match created {
            Ok(Created::Rule(record)) => record,
            Ok(Created::Invalid(reason)) => return (ItemOutcome::Rejected { reason }, None),
            Ok(Created::LimitReached(reason)) => return (ItemOutcome::Failed { reason }, None),
            Err(e) => {
                let reason = e.to_string();
                return (ItemOutcome::Failed { reason }, Some(e));
            }
        };
        let held = match record.held(at) {
            Ok(held) if held.prefix == desired.prefix => held,
            Ok(held) => {
                let reason = format!(
                    "ExaFS answered with rule {} for {} instead of {}",
                    record.id(),
                    held.prefix,
                    desired.prefix
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
                rule = record.id(),
                "ExaFS stored the rule whitelisted (it matches an ExaFS whitelist) and does not \
                 announce it"
            ),
            state => tracing::warn!(
                target = %self.info.name,
                prefix = %desired.prefix,
                rule = record.id(),
                ?state,
                expires,
                "ExaFS did not store the rule active; is its clock right?"
            ),
        }
        (ItemOutcome::Done { held: Some(held) }, None)
    }

    /// Deletes the rule if its id still carries the same prefix, and the same community or
    /// match: ExaFS on SQLite reuses the ids of deleted rules.
    async fn remove(&self, held: &Held, resolved: &Resolved) -> (ItemOutcome, Option<ClientError>) {
        let Some(id) = held.handle.as_deref().and_then(|h| h.parse::<i64>().ok()) else {
            let reason = format!(
                "no ExaFS rule id recorded for {} (handle {:?}); delete it in ExaFS by hand",
                held.prefix, held.handle
            );
            return (ItemOutcome::Rejected { reason }, None);
        };
        let path = resolved.path(held.prefix);
        let is_ours = match resolved {
            Resolved::Rtbh { community_name, .. } => {
                self.client.rule::<RuleRecord>(path, id).await.map(|rule| {
                    rule.is_some_and(|r| {
                        r.community == *community_name && r.prefix() == Ok(held.prefix)
                    })
                })
            }
            Resolved::Flowspec {
                rule_match,
                action_name,
                ..
            } => self.client.rule::<FlowRecord>(path, id).await.map(|rule| {
                rule.is_some_and(|r| {
                    r.has_match(rule_match, action_name) && r.prefix() == Ok(held.prefix)
                })
            }),
        };
        let still_ours = match is_ours {
            Ok(ours) => ours,
            Err(e) => {
                let reason = e.to_string();
                return (ItemOutcome::Failed { reason }, Some(e));
            }
        };
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
        match self.client.delete(path, id).await {
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
        self.resolved = None;
        self.resolve().await.map(|_| ())
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        let resolved = self.resolve().await?;
        let rules = self
            .client
            .rules(resolved.lists())
            .await
            .map_err(ClientError::into_target)?;
        let at = now();
        Ok(rules
            .into_iter()
            .filter_map(|value| self.held_of(value, &resolved, at))
            .collect())
    }

    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        if plan.is_empty() {
            return Ok(ApplyReport::default());
        }
        let resolved = self.resolve().await?;
        let mut ops: Vec<Op<'_>> = Vec::with_capacity(plan.len());
        ops.extend(plan.remove.iter().map(Op::Remove));
        ops.extend(
            plan.refresh
                .iter()
                .map(|(h, d)| Op::Send(Step::Refresh, d, Some(h))),
        );
        ops.extend(plan.add.iter().map(|d| Op::Send(Step::Add, d, None)));
        let this = &*self;
        let resolved = &resolved;
        let calls: Vec<_> = ops.into_iter().map(|op| this.run(op, resolved)).collect();
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
