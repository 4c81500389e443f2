//! NETCONF target: ban entries in a shared configuration list on a NETCONF server, by default
//! the 128T / Juniper SSR blacklist tenant on a conductor (`preset = "ssr"`), so that one
//! commit reaches every router; or any list the operator describes (`preset = "generic"`).
//!
//! One apply is one transaction on the candidate datastore:
//!
//! 1. `<lock>` the candidate; while another session holds it (`lock-denied`, `in-use`) back off
//!    and retry for up to `lock_wait_secs`, then report the items failed naming the holder's
//!    session id (the daemon retries them later).
//! 2. Refuse to carry someone else's work: with the lock held, the whole candidate must equal
//!    running. If it does not, another session left uncommitted edits; netban does not commit
//!    them, unlocks and reports the items failed ("commit or discard them").
//! 3. Read netban's list from the candidate and edit only the difference (adds merged, removes
//!    as `nc:operation="remove"`), all in one `<edit-config>`. If the server refuses the batch,
//!    the edits are redone one by one so the offending items are reported `Rejected` with the
//!    server's message and the rest still go in.
//! 4. One `<commit/>` (or a confirmed commit, checked by reading running back, then confirmed).
//!    A refused commit is followed by `<discard-changes/>` (only netban's edits are in the
//!    candidate, step 2), a re-read and one more attempt; a max-elements refusal reports the
//!    adds failed (set `capacity_v4`/`capacity_v6`) while the removes still go in.
//! 5. `<unlock>`.
//!
//! The area is shared with operators: ownership is `Recorded` (only entries netban added are
//! ever removed) and devices hold no expiry. What it is not: the NETCONF protocol itself lives
//! in `session.rs`/`rpc.rs`/`reply.rs`/`framing.rs`, the data model in `area.rs`.

mod area;
mod config;
mod framing;
mod reply;
mod rpc;
mod session;

pub use config::{GenericConfig, NetconfConfig, Preset};

/// The readers of what a server sends, for the fuzz targets in `fuzz/` (not an API).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::area::Area;
    pub use super::framing::{encode, Decoder, Framing};
    pub use super::reply::{parse_document, Hello, Reply};
}

use crate::{
    ApplyReport, ItemOutcome, ItemReport, OnDevice, OwnershipKind, Step, Target, TargetError,
    TargetInfo,
};
use area::Area;
use async_trait::async_trait;
use netban_core::placement::Capacity;
use netban_core::plan::{ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::{Family, Prefix};
use reply::ErrorTag;
use rpc::Datastore;
use session::{Endpoint, Session, SessionError};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The NETCONF driver. Built from configuration without contacting the server.
pub struct Netconf {
    info: TargetInfo,
    config: NetconfConfig,
    endpoint: Endpoint,
    area: Area,
    session: Option<Session>,
}

/// What one attempt of the transaction decided per prefix.
#[derive(Default)]
struct Decisions {
    results: BTreeMap<(Prefix, StepKey), ItemOutcome>,
}

/// `Step` without the refresh distinction (a refresh is an add here: no expiry on the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum StepKey {
    Add,
    Remove,
}

impl Netconf {
    pub fn new(name: &str, config: NetconfConfig) -> Result<Self, TargetError> {
        let endpoint = config.endpoint()?;
        let area = Area::from_config(&config)?;
        let info = TargetInfo {
            name: name.to_string(),
            kind: NetconfConfig::KIND,
            families: vec![Family::V4, Family::V6],
            capacity: Capacity::UNBOUNDED,
            ownership: OwnershipKind::Recorded,
            expiry: ExpiryTracking::None,
            sources: SourceTracking::Ignored,
            max_batch: config.max_batch,
        };
        Ok(Netconf {
            info,
            config,
            endpoint,
            area,
            session: None,
        })
    }

    pub fn config(&self) -> &NetconfConfig {
        &self.config
    }

    fn place(&self) -> String {
        format!("{}:{}", self.endpoint.host, self.endpoint.port)
    }

    /// The driver with an open session, opening one if there is none (or the last one
    /// broke). Everything that talks to the server goes through the returned guard.
    async fn connected(&mut self) -> Result<Connected<'_>, TargetError> {
        let session = match self.session.take() {
            Some(session) if !session.is_closed() => session,
            _ => self.open().await?,
        };
        let place = self.place();
        Ok(Connected {
            session: self.session.insert(session),
            area: &self.area,
            config: &self.config,
            name: &self.info.name,
            place,
        })
    }

    async fn open(&self) -> Result<Session, TargetError> {
        let session = Session::open(&self.endpoint)
            .await
            .map_err(|e| self.map_error(e))?;
        if !session.hello().has(rpc::CANDIDATE) {
            return Err(TargetError::config(format!(
                "NETCONF server {} has no candidate datastore (:candidate capability); \
                 netban edits the candidate and commits, so it cannot work with this server",
                self.place()
            )));
        }
        tracing::debug!(
            target = %self.info.name,
            session_id = ?session.session_id(),
            framing = ?session.framing(),
            "NETCONF session opened"
        );
        Ok(session)
    }

    /// Maps a session error to the trait's error, naming the server.
    fn map_error(&self, e: SessionError) -> TargetError {
        let on_server = |e: SessionError| OnDevice::new(self.place(), e);
        match e {
            // These messages name the server themselves.
            SessionError::HostKey(_) | SessionError::Auth(_) => TargetError::config(e),
            SessionError::Subsystem(_) => TargetError::config(
                on_server(e).with_advice("enable the netconf SSH subsystem on the server"),
            ),
            SessionError::Connect { .. }
            | SessionError::Timeout { .. }
            | SessionError::Closed(_)
            | SessionError::Ssh(_) => TargetError::unreachable(on_server(e)),
            _ => TargetError::device(on_server(e)),
        }
    }

    /// Runs `f` on the session; a transport failure drops the session (the server then
    /// releases its locks and discards its candidate edits).
    fn fail(&mut self, e: SessionError) -> TargetError {
        if e.is_transport() {
            self.session = None;
        }
        self.map_error(e)
    }
}

/// Whether `<lock>` got the candidate.
enum Lock {
    Held,
    /// Another session holds it, or left uncommitted changes in it: the items fail with
    /// `reason` and are retried later.
    Busy {
        reason: String,
    },
}

/// The driver with its session open, as [`Netconf::connected`] hands it out: every step of
/// the transaction talks to the server through it, so none can meet a missing session. A
/// `SessionError` returned from here goes back to [`Netconf::fail`], which drops a broken
/// session.
struct Connected<'a> {
    session: &'a mut Session,
    area: &'a Area,
    config: &'a NetconfConfig,
    /// The target's name, for logs.
    name: &'a str,
    /// `host:port`, for messages.
    place: String,
}

impl Connected<'_> {
    /// Steps 1-5: lock, transaction, unlock.
    async fn transaction(
        &mut self,
        adds: &[Prefix],
        removes: &[Prefix],
        decisions: &mut Decisions,
    ) -> Result<(), SessionError> {
        match self.lock_candidate().await? {
            Lock::Busy { reason } => fail_all(decisions, adds, removes, &reason),
            Lock::Held => {
                self.locked_transaction(adds, removes, decisions).await?;
                self.session.unlock(Datastore::Candidate).await?;
            }
        }
        Ok(())
    }

    async fn read_area(&mut self, source: Datastore) -> Result<BTreeSet<Prefix>, SessionError> {
        let filter = self.area.filter();
        let data = self.session.get_config(source, Some(&filter)).await?;
        Ok(self
            .area
            .entries(&data)
            .into_iter()
            .filter_map(Result::ok)
            .collect())
    }

    fn foreign_changes(&self, detail: &str) -> String {
        format!(
            "the candidate configuration of {} holds uncommitted changes of another session \
             ({detail}); netban does not commit someone else's edits: commit or discard them \
             on the server (netban retries)",
            self.place
        )
    }

    fn full_reason(&self, e: &SessionError) -> String {
        format!(
            "{} refused more entries in {} ({e}); set capacity_v4/capacity_v6 on this target \
             to the list's limit so netban places the most important bans",
            self.place,
            self.area.describe()
        )
    }

    /// Step 1: lock the candidate, waiting for another holder up to `lock_wait_secs`.
    async fn lock_candidate(&mut self) -> Result<Lock, SessionError> {
        let deadline = Instant::now() + Duration::from_secs(self.config.lock_wait_secs);
        let mut pause = Duration::from_millis(100);
        loop {
            let error = match self.session.lock(Datastore::Candidate).await {
                Ok(()) => return Ok(Lock::Held),
                Err(e) => e,
            };
            let busy = error
                .rpc_errors()
                .iter()
                .find(|r| matches!(r.tag, ErrorTag::LockDenied | ErrorTag::InUse));
            let Some(busy) = busy else {
                // RFC 6241 7.5: no lock on a candidate holding uncommitted changes (netconfd:
                // resource-denied "discard-changes needed"). They are someone else's: a
                // session of ours that died had its changes discarded with its lock.
                if let Some(dirty) = error
                    .rpc_errors()
                    .iter()
                    .find(|r| r.tag == ErrorTag::ResourceDenied)
                {
                    let reason = self.foreign_changes(&dirty.to_string());
                    return Ok(Lock::Busy { reason });
                }
                return Err(error);
            };
            let holder = busy.session_id().map_or_else(
                || "another session".to_string(),
                |id| format!("session {id}"),
            );
            let reason = format!(
                "the candidate configuration of {} is locked by {holder} (someone is editing); \
                 netban retries",
                self.place
            );
            if Instant::now() + pause > deadline {
                return Ok(Lock::Busy { reason });
            }
            tracing::info!(target = %self.name, %reason, "waiting for the candidate lock");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Steps 2-4 with the lock held. `Err` only for session failures.
    async fn locked_transaction(
        &mut self,
        adds: &[Prefix],
        removes: &[Prefix],
        decisions: &mut Decisions,
    ) -> Result<(), SessionError> {
        // Step 2: the candidate must hold nobody's uncommitted work.
        let candidate = self.session.get_config(Datastore::Candidate, None).await?;
        let running = self.session.get_config(Datastore::Running, None).await?;
        if candidate != running {
            let reason = self.foreign_changes("the candidate differs from running");
            fail_all(decisions, adds, removes, &reason);
            return Ok(());
        }
        let mut last_commit_error = None;
        for attempt in 1..=2 {
            // Step 3: edit only the difference.
            let current = self.read_area(Datastore::Candidate).await?;
            let mut to_add: Vec<Prefix> = Vec::new();
            let mut to_remove: Vec<Prefix> = Vec::new();
            for p in adds {
                if decisions.decided(p, StepKey::Add) {
                    continue;
                }
                if current.contains(p) {
                    decisions.done(*p, StepKey::Add);
                } else {
                    to_add.push(*p);
                }
            }
            for p in removes {
                if decisions.decided(p, StepKey::Remove) {
                    continue;
                }
                if current.contains(p) {
                    to_remove.push(*p);
                } else {
                    decisions.done(*p, StepKey::Remove);
                }
            }
            if to_add.is_empty() && to_remove.is_empty() {
                return Ok(());
            }
            let (to_add, to_remove) = self.edit(to_add, to_remove, decisions).await?;
            if to_add.is_empty() && to_remove.is_empty() {
                return Ok(());
            }
            // Step 4: one commit.
            match self.commit(&to_add, &to_remove).await {
                Ok(()) => {
                    for p in &to_add {
                        decisions.done(*p, StepKey::Add);
                    }
                    for p in &to_remove {
                        decisions.done(*p, StepKey::Remove);
                    }
                    return Ok(());
                }
                Err(e) if e.is_transport() => return Err(e),
                Err(e) => {
                    self.session.discard_changes().await?;
                    let too_many = is_full(&e);
                    tracing::warn!(
                        target = %self.name, attempt, error = %e,
                        "commit refused; discarded netban's edits"
                    );
                    if too_many && !to_add.is_empty() {
                        let reason = self.full_reason(&e);
                        for p in &to_add {
                            decisions.set(
                                *p,
                                StepKey::Add,
                                ItemOutcome::Failed {
                                    reason: reason.clone(),
                                },
                            );
                        }
                    }
                    last_commit_error = Some(e.to_string());
                }
            }
        }
        let reason = format!(
            "{} refused the commit twice: {}",
            self.place,
            last_commit_error.unwrap_or_default()
        );
        fail_all(decisions, adds, removes, &reason);
        Ok(())
    }

    /// Edits the candidate: the whole batch at once, or item by item when the batch is refused.
    /// Returns what is now in the candidate's edit.
    async fn edit(
        &mut self,
        to_add: Vec<Prefix>,
        to_remove: Vec<Prefix>,
        decisions: &mut Decisions,
    ) -> Result<(Vec<Prefix>, Vec<Prefix>), SessionError> {
        let xml = self.area.edit(&to_add, &to_remove);
        let batch_error = match self.session.edit_config(Datastore::Candidate, &xml).await {
            Ok(()) => return Ok((to_add, to_remove)),
            Err(e) if e.is_transport() => return Err(e),
            Err(e) => e,
        };
        tracing::warn!(
            target = %self.name, error = %batch_error,
            "edit-config of the batch refused; editing item by item"
        );
        self.session.discard_changes().await?;
        let mut added = Vec::new();
        let mut removed = Vec::new();
        // Removes first, so they free room for the adds.
        let items = to_remove
            .into_iter()
            .map(|p| (p, StepKey::Remove))
            .chain(to_add.into_iter().map(|p| (p, StepKey::Add)));
        for (p, step) in items {
            let xml = match step {
                StepKey::Add => self.area.edit(&[p], &[]),
                StepKey::Remove => self.area.edit(&[], &[p]),
            };
            match self.session.edit_config(Datastore::Candidate, &xml).await {
                Ok(()) => match step {
                    StepKey::Add => added.push(p),
                    StepKey::Remove => removed.push(p),
                },
                Err(e) if e.is_transport() => return Err(e),
                Err(e) => {
                    let refused = e.rpc_errors().iter().any(|r| {
                        matches!(
                            r.tag,
                            ErrorTag::InvalidValue
                                | ErrorTag::BadElement
                                | ErrorTag::UnknownElement
                                | ErrorTag::BadAttribute
                                | ErrorTag::OperationFailed
                                | ErrorTag::DataMissing
                                | ErrorTag::DataExists
                        )
                    });
                    let result = if is_full(&e) {
                        ItemOutcome::Failed {
                            reason: self.full_reason(&e),
                        }
                    } else if refused {
                        let reason = format!("{} refused {p}: {e}", self.place);
                        ItemOutcome::Rejected { reason }
                    } else {
                        ItemOutcome::Failed {
                            reason: format!("{} refused {p}: {e}", self.place),
                        }
                    };
                    decisions.set(p, step, result);
                }
            }
        }
        Ok((added, removed))
    }

    /// Commits (confirmed when configured and offered: read running back, then confirm).
    async fn commit(&mut self, adds: &[Prefix], removes: &[Prefix]) -> Result<(), SessionError> {
        let confirmed = self.config.confirmed_commit_secs;
        let Some(secs) = confirmed.filter(|_| self.session.has_confirmed_commit()) else {
            return self.session.commit().await;
        };
        self.session.commit_confirmed(secs).await?;
        let running = self.read_area(Datastore::Running).await?;
        let missing = adds.iter().filter(|p| !running.contains(p)).count();
        let left = removes.iter().filter(|p| running.contains(p)).count();
        if missing + left > 0 {
            return Err(reply::ParseError::Unexpected(format!(
                "after the confirmed commit running lacks {missing} added and still holds {left} \
                 removed entries; not confirming (the server rolls back in {secs} s)"
            ))
            .into());
        }
        self.session.confirm_commit().await
    }
}

/// True when the server refused because the list is full (YANG max-elements).
fn is_full(e: &SessionError) -> bool {
    e.rpc_errors().iter().any(|r| {
        r.app_tag.as_deref() == Some("too-many-elements")
            || r.message
                .as_deref()
                .is_some_and(|m| m.contains("max-elements"))
    })
}

impl Decisions {
    fn decided(&self, p: &Prefix, step: StepKey) -> bool {
        self.results.contains_key(&(*p, step))
    }
    fn set(&mut self, p: Prefix, step: StepKey, result: ItemOutcome) {
        self.results.insert((p, step), result);
    }
    fn done(&mut self, p: Prefix, step: StepKey) {
        self.set(p, step, ItemOutcome::Done { held: None });
    }
}

/// Marks every undecided item failed with `reason`.
fn fail_all(decisions: &mut Decisions, adds: &[Prefix], removes: &[Prefix], reason: &str) {
    let items = adds
        .iter()
        .map(|p| (*p, StepKey::Add))
        .chain(removes.iter().map(|p| (*p, StepKey::Remove)));
    for (p, step) in items {
        if !decisions.decided(&p, step) {
            decisions.set(
                p,
                step,
                ItemOutcome::Failed {
                    reason: reason.to_string(),
                },
            );
        }
    }
}

#[async_trait]
impl Target for Netconf {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn prepare(&mut self) -> Result<(), TargetError> {
        self.connected().await.map(drop)
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        let filter = self.area.filter();
        let read = self
            .connected()
            .await?
            .session
            .get_config(Datastore::Running, Some(&filter))
            .await;
        let data = read.map_err(|e| self.fail(e))?;
        let mut held = Vec::new();
        for entry in self.area.entries(&data) {
            match entry {
                Ok(prefix) => held.push(Held {
                    prefix,
                    expiry: None,
                    handle: None,
                }),
                Err(text) => tracing::warn!(
                    target = %self.info.name,
                    entry = %text,
                    "entry netban cannot read as a prefix; left alone"
                ),
            }
        }
        Ok(held)
    }

    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        let adds: Vec<Prefix> = plan
            .add
            .iter()
            .map(|d| d.prefix)
            .chain(plan.refresh.iter().map(|(_, d)| d.prefix))
            .collect();
        let removes: Vec<Prefix> = plan.remove.iter().map(|h| h.prefix).collect();
        let mut decisions = Decisions::default();
        if !plan.is_empty() {
            let started = Instant::now();
            let done = self
                .connected()
                .await?
                .transaction(&adds, &removes, &mut decisions)
                .await;
            done.map_err(|e| self.fail(e))?;
            tracing::debug!(
                target = %self.info.name,
                adds = adds.len(),
                removes = removes.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "NETCONF transaction finished"
            );
        }
        let mut items = Vec::with_capacity(plan.len());
        let mut report = |prefix: Prefix, step: Step, key: StepKey| {
            let result =
                decisions
                    .results
                    .get(&(prefix, key))
                    .cloned()
                    .unwrap_or(ItemOutcome::Failed {
                        reason: "not carried out".into(),
                    });
            items.push(ItemReport {
                prefix,
                step,
                result,
            });
        };
        for d in &plan.add {
            report(d.prefix, Step::Add, StepKey::Add);
        }
        for h in &plan.remove {
            report(h.prefix, Step::Remove, StepKey::Remove);
        }
        for (_, d) in &plan.refresh {
            report(d.prefix, Step::Refresh, StepKey::Add);
        }
        Ok(ApplyReport { items })
    }

    async fn shutdown(&mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetconfConfig {
        serde_json::from_str(
            r#"{"host": "127.0.0.1", "port": 1, "username": "root", "private_key": "/nonexistent",
                "host_key_fingerprint": "SHA256:x", "preset": "ssr", "tenant": "t",
                "neighborhood": "n", "timeout_secs": 2}"#,
        )
        .unwrap()
    }

    #[test]
    fn target_info() {
        let t = Netconf::new("conductor", config()).unwrap();
        let info = t.info();
        assert_eq!((info.name.as_str(), info.kind), ("conductor", "netconf"));
        assert_eq!(info.ownership, OwnershipKind::Recorded);
        assert_eq!(info.expiry, ExpiryTracking::None);
        assert_eq!(info.families, vec![Family::V4, Family::V6]);
        assert_eq!(info.max_batch, 5000);
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        // Port 1 on loopback: nothing listens there on a test machine.
        let mut t = Netconf::new("c", config()).unwrap();
        match t.observe().await {
            Err(TargetError::Unreachable(m)) => {
                assert!(m.to_string().contains("127.0.0.1:1"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
