//! CrowdSec as a source: a task that polls a Local API's `/v1/decisions/stream` as a bouncer
//! and records its `ban` decisions as netban bans, through the ledger thread like any ban.
//!
//! - Start, and after every failure: `startup=true`, the LAPI's whole active set. It is
//!   reconciled with the ledger: what the set holds is banned (or its expiry corrected), and
//!   every ban of this source's prefix (`crowdsec:*`) the set does not hold is lifted. A
//!   restart or a reconnection never duplicates a ban and never misses an unban made
//!   meanwhile.
//! - Then every `interval_secs`: the delta (`new`, `deleted`). The LAPI repeats the last 2 s
//!   of changes in each delta; decisions are followed by id, so a repeat changes nothing.
//! - Decision → ban: scope `Ip`/`Range` value → prefix; source
//!   `<source_prefix>:<scenario or origin>` (the scenario for CrowdSec's own detections,
//!   origin `crowdsec`; otherwise the origin: `cscli`, `cscli-import`, `CAPI`, `lists`), with
//!   characters a source may not hold turned into '.'; expiry = now + the time left. Asked
//!   with `dedup=false`, so two decisions on one address are two rows: a (prefix, source) ban
//!   ends only with its last decision, and lasts as long as the longest.
//! - CrowdSec decides durations: its bans are recorded without netban's escalation.
//! - The LAPI down: nothing is lifted; polls are retried after 1 s, doubling up to 60 s;
//!   `netban status` and `/metrics` show it.

use super::wire::{parse_go_duration, Decision, Stream};
use crate::engine::Engine;
use crate::ledger_worker::{Job, LedgerHandle, LedgerRequestError};
use netban_config::secret::Secret;
use netban_config::sources::CrowdsecSource;
use netban_core::policy::Policy;
use netban_core::{BanDuration, Expiry, Prefix, Source, Timestamp};
use netban_proto::{BanArgs, ItemResult, SourceStatus, UnbanArgs};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Prefixes per ban or unban request sent to the ledger thread.
const BATCH: usize = 10_000;
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Expiries closer than this are the same (the LAPI's time left is read a moment apart).
const EXPIRY_SLACK_SECS: i64 = 2;

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("{url}: the answer is not a decision stream: {source}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the ledger could not record the decisions: {0}")]
    Ledger(#[from] LedgerRequestError),
}

/// One followed decision.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Followed {
    prefix: Prefix,
    source: Source,
    expiry: Timestamp,
}

/// A decision netban cannot follow, and why.
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    /// Filtered out (another type, scope or origin): not an error.
    Filtered,
    Unreadable(String),
}

/// The poller of one `[[sources]]` table.
pub struct Poller {
    section: CrowdsecSource,
    key: Secret,
    http: reqwest::Client,
    stream_url: String,
    engine: Engine,
    ledger: LedgerHandle,
    status: watch::Sender<SourceStatus>,
    /// Active decisions by id.
    decisions: HashMap<i64, Followed>,
    /// The ids behind each (prefix, source) ban.
    by_ban: HashMap<(Prefix, Source), BTreeSet<i64>>,
    /// Policy without escalation, for the policy it was derived from.
    policy: Option<(Arc<Policy>, Arc<Policy>)>,
}

impl Poller {
    pub fn new(
        section: CrowdsecSource,
        key: Secret,
        engine: Engine,
        ledger: LedgerHandle,
    ) -> Result<(Poller, watch::Receiver<SourceStatus>), reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("netban/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(section.timeout_secs))
            .connect_timeout(Duration::from_secs(section.timeout_secs.min(10)))
            .build()?;
        let stream_url = format!("{}/v1/decisions/stream", section.url.trim_end_matches('/'));
        let (status, status_rx) = watch::channel(SourceStatus {
            name: section.name.clone(),
            kind: "crowdsec".into(),
            url: section.url.clone(),
            ..SourceStatus::default()
        });
        Ok((
            Poller {
                section,
                key,
                http,
                stream_url,
                engine,
                ledger,
                status,
                decisions: HashMap::new(),
                by_ban: HashMap::new(),
                policy: None,
            },
            status_rx,
        ))
    }

    /// Polls until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.section.interval_secs);
        let mut startup = true;
        let mut backoff = RETRY_MIN;
        loop {
            // A poll (a slow LAPI, a long start-up set) is abandoned at shutdown; batches
            // already queued on the ledger thread are still recorded.
            let polled = tokio::select! {
                polled = self.poll(startup) => polled,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let wait = match polled {
                Ok(()) => {
                    startup = false;
                    backoff = RETRY_MIN;
                    interval
                }
                Err(e) => {
                    let now = crate::clock::now();
                    tracing::warn!(source = %self.section.name, error = %e, retry_in = ?backoff,
                        "CrowdSec LAPI poll failed; nothing is lifted meanwhile");
                    let wait = backoff;
                    self.status.send_modify(|s| {
                        s.down_since.get_or_insert(now);
                        s.last_error = Some(e.to_string());
                        s.retry_in_secs = Some(wait.as_secs());
                    });
                    // The next answer is a full start-up set, reconciled with the ledger.
                    startup = true;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn poll(&mut self, startup: bool) -> Result<(), PollError> {
        let started = Instant::now();
        let stream = self.fetch(startup).await?;
        let fetched = started.elapsed();
        let now = crate::clock::now();
        if startup {
            let received = stream.new.len();
            self.reconcile(stream, now).await?;
            tracing::info!(source = %self.section.name, decisions = received,
                fetch_ms = fetched.as_millis() as u64,
                record_ms = (started.elapsed() - fetched).as_millis() as u64,
                "CrowdSec start-up set reconciled with the ledger");
        } else {
            self.apply_delta(stream, now).await?;
        }
        let decisions = self.decisions.len();
        self.status.send_modify(|s| {
            if s.down_since.take().is_some() {
                tracing::info!(source = %s.name, "CrowdSec LAPI answers again; reconciled");
            }
            s.last_error = None;
            s.retry_in_secs = None;
            s.last_poll = Some(now);
            s.decisions = decisions;
        });
        Ok(())
    }

    async fn fetch(&self, startup: bool) -> Result<Stream, PollError> {
        let url = &self.stream_url;
        let mut query: Vec<(&str, String)> = vec![
            ("type", "ban".into()),
            ("dedup", "false".into()),
            ("scopes", self.section.scopes.join(",").to_ascii_lowercase()),
        ];
        if startup {
            query.push(("startup", "true".into()));
        }
        if !self.section.origins.is_empty() {
            query.push(("origins", self.section.origins.join(",")));
        }
        if !self.section.scenarios_containing.is_empty() {
            query.push((
                "scenarios_containing",
                self.section.scenarios_containing.join(","),
            ));
        }
        if !self.section.scenarios_not_containing.is_empty() {
            query.push((
                "scenarios_not_containing",
                self.section.scenarios_not_containing.join(","),
            ));
        }
        let http = |source| PollError::Http {
            url: url.clone(),
            source,
        };
        let answer = self
            .http
            .get(url)
            .header("X-Api-Key", self.key.expose())
            .query(&query)
            .send()
            .await
            .map_err(http)?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(http)?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(PollError::Status {
                url: url.clone(),
                status,
                body,
            });
        }
        serde_json::from_slice(&body).map_err(|source| PollError::Json {
            url: url.clone(),
            source,
        })
    }

    /// What netban follows of `decision`, read at `now`.
    fn follow(&self, decision: &Decision, now: Timestamp) -> Result<Followed, Skip> {
        let section = &self.section;
        if !decision.kind.eq_ignore_ascii_case("ban") {
            return Err(Skip::Filtered);
        }
        let origin = decision.origin.as_str();
        if !section.include_capi
            && (origin.eq_ignore_ascii_case("CAPI") || origin.eq_ignore_ascii_case("lists"))
        {
            return Err(Skip::Filtered);
        }
        let scope = decision.scope.to_ascii_lowercase();
        if !section
            .scopes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&scope))
        {
            return Err(Skip::Filtered);
        }
        let unreadable = |why: String| Skip::Unreadable(format!("decision {}: {why}", decision.id));
        let prefix = Prefix::parse(&decision.value)
            .map_err(|e| unreadable(format!("{:?}: {e}", decision.value)))?;
        if scope == "ip" && !prefix.is_host() {
            return Err(unreadable(format!(
                "scope Ip with a range {:?}",
                decision.value
            )));
        }
        let secs = parse_go_duration(&decision.duration).map_err(|e| unreadable(e.to_string()))?;
        if secs <= 0.0 {
            return Err(Skip::Filtered);
        }
        Ok(Followed {
            prefix,
            source: source_name(&section.source_prefix, decision),
            expiry: now.plus_secs(secs.ceil() as u64),
        })
    }

    /// A start-up set: follow exactly it, and make the ledger's bans of this prefix match.
    async fn reconcile(&mut self, stream: Stream, now: Timestamp) -> Result<(), PollError> {
        self.decisions.clear();
        self.by_ban.clear();
        let mut refused = Vec::new();
        for decision in &stream.new {
            match self.follow(decision, now) {
                Ok(followed) => self.insert(decision.id, followed),
                Err(Skip::Filtered) => {}
                Err(Skip::Unreadable(why)) => refused.push(why),
            }
        }
        self.count_refused(refused);
        // Every ban of ours in the ledger, and every ban the set implies.
        let mine = format!("{}:", self.section.source_prefix);
        let mut held: BTreeMap<(Prefix, Source), Expiry> = BTreeMap::new();
        for ban in self.engine.list(None) {
            for s in ban.sources {
                if s.source.as_str().starts_with(&mine) {
                    held.insert((ban.prefix, s.source), s.expiry);
                }
            }
        }
        let mut keys: BTreeSet<(Prefix, Source)> = held.keys().cloned().collect();
        keys.extend(self.by_ban.keys().cloned());
        self.converge(keys, |key| held.get(key).copied(), now).await
    }

    /// A delta: forget deleted ids, follow new ones, converge the bans they touch.
    async fn apply_delta(&mut self, stream: Stream, now: Timestamp) -> Result<(), PollError> {
        let mut touched = BTreeSet::new();
        let mut refused = Vec::new();
        for decision in &stream.deleted {
            if let Some(gone) = self.remove(decision.id) {
                touched.insert((gone.prefix, gone.source));
            }
        }
        for decision in &stream.new {
            match self.follow(decision, now) {
                Ok(followed) => {
                    let same = self.decisions.get(&decision.id).is_some_and(|f| {
                        f.prefix == followed.prefix
                            && f.source == followed.source
                            && (f.expiry.0 - followed.expiry.0).abs() <= EXPIRY_SLACK_SECS
                    });
                    if same {
                        continue; // the 2 s overlap of two deltas
                    }
                    if let Some(old) = self.remove(decision.id) {
                        touched.insert((old.prefix, old.source));
                    }
                    touched.insert((followed.prefix, followed.source.clone()));
                    self.insert(decision.id, followed);
                }
                Err(Skip::Filtered) => {}
                Err(Skip::Unreadable(why)) => refused.push(why),
            }
        }
        self.count_refused(refused);
        let engine = self.engine.clone();
        self.converge(
            touched,
            |(prefix, source)| engine.source_expiry(prefix, source, now),
            now,
        )
        .await
    }

    fn insert(&mut self, id: i64, followed: Followed) {
        self.by_ban
            .entry((followed.prefix, followed.source.clone()))
            .or_default()
            .insert(id);
        self.decisions.insert(id, followed);
    }

    fn remove(&mut self, id: i64) -> Option<Followed> {
        let gone = self.decisions.remove(&id)?;
        let key = (gone.prefix, gone.source.clone());
        if let Some(ids) = self.by_ban.get_mut(&key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_ban.remove(&key);
            }
        }
        Some(gone)
    }

    /// The expiry the followed decisions give a (prefix, source) ban: the latest.
    fn wanted(&self, key: &(Prefix, Source)) -> Option<Timestamp> {
        self.by_ban
            .get(key)?
            .iter()
            .filter_map(|id| self.decisions.get(id))
            .map(|f| f.expiry)
            .max()
    }

    /// Makes the ledger's ban of each of `keys` what the followed decisions want: lifted when
    /// none wants it, banned or extended when it is missing or ends too early, lifted and
    /// banned again when it ends too late (a longer decision was deleted).
    async fn converge(
        &mut self,
        keys: BTreeSet<(Prefix, Source)>,
        held: impl Fn(&(Prefix, Source)) -> Option<Expiry>,
        now: Timestamp,
    ) -> Result<(), PollError> {
        let mut unbans: BTreeMap<Source, Vec<Prefix>> = BTreeMap::new();
        let mut bans: BTreeMap<(Source, Timestamp), Vec<Prefix>> = BTreeMap::new();
        for key in keys {
            let held = held(&key).filter(|e| !e.is_past(now));
            let wanted = self.wanted(&key);
            let (prefix, source) = key;
            match (wanted, held) {
                (None, None) => {}
                (None, Some(_)) => unbans.entry(source).or_default().push(prefix),
                (Some(want), None) => bans.entry((source, want)).or_default().push(prefix),
                (Some(want), Some(Expiry::At(have))) => {
                    if want.0 > have.0 + EXPIRY_SLACK_SECS {
                        bans.entry((source, want)).or_default().push(prefix);
                    } else if want.0 + EXPIRY_SLACK_SECS < have.0 {
                        unbans.entry(source.clone()).or_default().push(prefix);
                        bans.entry((source, want)).or_default().push(prefix);
                    }
                }
                (Some(want), Some(Expiry::Never)) => {
                    unbans.entry(source.clone()).or_default().push(prefix);
                    bans.entry((source, want)).or_default().push(prefix);
                }
            }
        }
        // Unbans first: a ban shortened is lifted, then recorded again.
        let mut waiting = Vec::new();
        for (source, prefixes) in unbans {
            for chunk in prefixes.chunks(BATCH) {
                let args = UnbanArgs {
                    prefixes: chunk.to_vec(),
                    source: Some(source.clone()),
                    origin_host: None,
                    all_of_source: false,
                };
                waiting.push(self.send(|reply| Job::Unban { args, reply }));
            }
        }
        let unbanned = self.collect(waiting).await?;
        // Bans one batch at a time: each is committed and reaches the targets while the ledger
        // records the next (a start-up set of 100,000 is enforced as it is recorded, not after
        // the last commit; the commits themselves cost about the same either way).
        let policy = self.policy_without_escalation();
        let mut banned = Vec::new();
        for ((source, expiry), prefixes) in bans {
            let secs = now.secs_until(expiry).max(1);
            for chunk in prefixes.chunks(BATCH) {
                let args = BanArgs {
                    prefixes: chunk.to_vec(),
                    source: source.clone(),
                    duration: BanDuration::Seconds(secs),
                    reason: None,
                    failures: None,
                    origin_host: None,
                    restored: false,
                };
                let policy = policy.clone();
                let answer = self.send(|reply| Job::Ban {
                    args,
                    policy,
                    reply,
                });
                banned.extend(self.collect(vec![answer]).await?);
            }
        }
        let count = |results: &[ItemResult]| {
            results
                .iter()
                .filter(|r| r.error.is_none() && r.changed)
                .count() as u64
        };
        let refusals: Vec<String> = banned
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.prefix)))
            .collect();
        let (bans, unbans) = (count(&banned), count(&unbanned));
        if bans + unbans > 0 {
            tracing::info!(source = %self.section.name, bans, unbans, "CrowdSec decisions recorded");
        }
        self.status.send_modify(|s| {
            s.bans += bans;
            s.unbans += unbans;
        });
        self.count_refused(refusals);
        Ok(())
    }

    /// Queues a job on the ledger thread now; its answer is awaited by [`Self::collect`] (so
    /// that unbans queued together share one group commit).
    fn send(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<Vec<ItemResult>, LedgerRequestError>>) -> Job,
    ) -> oneshot::Receiver<Result<Vec<ItemResult>, LedgerRequestError>> {
        let (reply, answer) = oneshot::channel();
        self.ledger.send(make(reply));
        answer
    }

    async fn collect(
        &self,
        waiting: Vec<oneshot::Receiver<Result<Vec<ItemResult>, LedgerRequestError>>>,
    ) -> Result<Vec<ItemResult>, PollError> {
        let mut results = Vec::new();
        for answer in waiting {
            results.extend(answer.await.unwrap_or(Err(LedgerRequestError::Stopped))?);
        }
        Ok(results)
    }

    /// The engine's policy with escalation off (CrowdSec decides its own durations), derived
    /// again when the policy is reloaded.
    fn policy_without_escalation(&mut self) -> Arc<Policy> {
        let current = self.engine.policy();
        match &self.policy {
            Some((from, derived)) if Arc::ptr_eq(from, &current) => derived.clone(),
            _ => {
                let mut policy = (*current).clone();
                policy.escalation.enabled = false;
                let derived = Arc::new(policy);
                self.policy = Some((current, derived.clone()));
                derived
            }
        }
    }

    fn count_refused(&self, refusals: Vec<String>) {
        if let Some(last) = refusals.last() {
            tracing::warn!(source = %self.section.name, count = refusals.len(), last = %last,
                "CrowdSec decisions refused");
            let (n, last) = (refusals.len() as u64, last.clone());
            self.status.send_modify(|s| {
                s.refused += n;
                s.last_refusal = Some(last);
            });
        }
    }
}

/// `<prefix>:<scenario or origin>`, made a valid [`Source`]: the scenario for CrowdSec's own
/// detections (origin `crowdsec`), the origin otherwise; characters a source may not hold
/// become '.', and the whole is cut at 64 characters.
pub fn source_name(prefix: &str, decision: &Decision) -> Source {
    let name = if decision.origin == "crowdsec" && !decision.scenario.is_empty() {
        &decision.scenario
    } else if !decision.origin.is_empty() {
        &decision.origin
    } else {
        "unknown"
    };
    let mut text: String = format!("{prefix}:{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':') {
                c
            } else {
                '.'
            }
        })
        .collect();
    text.truncate(64);
    Source::new(&text).expect("only characters a source may hold, at most 64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(origin: &str, scenario: &str) -> Decision {
        Decision {
            origin: origin.into(),
            scenario: scenario.into(),
            ..Decision::default()
        }
    }

    #[test]
    fn sources_name_the_scenario_or_the_origin() {
        let name = |o, s| source_name("crowdsec", &decision(o, s)).to_string();
        assert_eq!(
            name("crowdsec", "crowdsecurity/ssh-bf"),
            "crowdsec:crowdsecurity.ssh-bf"
        );
        assert_eq!(name("cscli", "manual 'ban' from 'x'"), "crowdsec:cscli");
        assert_eq!(name("cscli-import", "bulk"), "crowdsec:cscli-import");
        assert_eq!(name("", ""), "crowdsec:unknown");
        let long = name("crowdsec", &"é".repeat(80));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("crowdsec:...."));
    }
}
