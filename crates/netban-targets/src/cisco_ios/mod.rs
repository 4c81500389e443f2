//! Cisco IOS / IOS-XE target: bans as entries of an ACL (or members of an object group) that
//! netban owns on a router, over one persistent SSH CLI session.
//!
//! ```text
//! acl mode                                     object-group mode (IPv4 only)
//! ip access-list extended NETBAN               object-group network NETBAN
//!  10 deny ip host 203.0.113.7 any              host 203.0.113.7
//!  20 deny ip 198.51.100.0 0.0.0.255 any        198.51.100.0 255.255.255.0
//!  2147483647 permit ip any any   (the tail)   (the operator's ACL references the group:
//! ipv6 access-list NETBAN6                       deny ip object-group NETBAN any)
//!  deny ipv6 host 2001:DB8::7 any sequence 10
//!  permit ipv6 any any sequence 2147483647
//! ```
//!
//! netban owns those lists exclusively and the operator binds them (interface `ip
//! access-group`, or a zone-based policy's class-map with `action = "permit"`; see
//! docs/targets/cisco_ios.md). The router keeps no expiry: netban removes entries when bans end.
//!
//! Every apply is one configuration session (`configure terminal` … `end`) written pipelined
//! over the open session, planned against the lists as last read on that same session
//! (sequence numbers are never kept beyond it: IOS renumbers at reload, and a reload ends the
//! session) and followed by a read-back that confirms each item.
//! `write memory` runs at most once per `save_interval_secs`, never per ban.
//!
//! Files: [`config`] (the `[[targets]]` keys), [`session`] (SSH, login, enable, pipelined
//! commands), [`transcript`] (prompts and `%` errors), [`ace`] (the text of entries, both
//! ways), [`listing`] (`show` output), [`batch`] (plan → lines → report).

mod ace;
mod batch;
mod config;
mod listing;
mod session;
mod transcript;

pub use config::{Action, CiscoIosConfig, Mode, TAIL_SEQUENCE};
pub use session::WINDOW;

/// The readers of what a router prints, for the fuzz targets in `fuzz/` (not an API).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::ace::{ace_v4, ace_v6, member, EntryKind};
    pub use super::listing::{parse as parse_listing, ListKind};
    pub use super::transcript::{learn_hostname, Transcript};
}

use crate::{ApplyReport, OnDevice, OwnershipKind, Target, TargetError, TargetInfo};
use async_trait::async_trait;
use batch::{tail_fix, Batch, Lists};
use listing::{ListKind, Listing};
use netban_core::placement::Capacity;
use netban_core::plan::{ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::Family;
use session::{Session, SessionError};
use std::time::{Duration, Instant};
use transcript::Segment;

/// Items per apply: one configuration session of up to this many lines (a few seconds on a
/// real router; the reconciler splits larger plans).
pub const MAX_BATCH: usize = 2_000;

/// The Cisco IOS driver. Built from configuration without contacting the router; the session
/// is opened on first use and re-opened after any failure.
pub struct CiscoIos {
    info: TargetInfo,
    config: CiscoIosConfig,
    session: Option<Session>,
    /// netban's lists as last read on the current session (see [`CiscoIos::apply`]); cleared
    /// whenever the session is replaced or an item failed.
    cache: Option<Lists>,
    /// The last `run` failed because a session that had been working was found dead.
    session_lost: bool,
    /// Changes made since the last `write memory`.
    unsaved: bool,
    last_save: Instant,
}

/// What one read of the router found (a list that does not exist is `None`).
struct Found {
    primary: Option<Listing>,
    v6: Option<Listing>,
}

impl CiscoIos {
    pub fn new(name: &str, config: CiscoIosConfig) -> Result<Self, TargetError> {
        let config = config.validated()?;
        let families = if config.ipv6() {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        };
        let info = TargetInfo {
            name: name.to_string(),
            kind: CiscoIosConfig::KIND,
            families,
            capacity: Capacity::UNBOUNDED,
            ownership: OwnershipKind::Exclusive,
            expiry: ExpiryTracking::None,
            sources: SourceTracking::Ignored,
            max_batch: MAX_BATCH,
        };
        Ok(CiscoIos {
            info,
            config,
            session: None,
            cache: None,
            session_lost: false,
            unsaved: false,
            last_save: Instant::now(),
        })
    }

    pub fn config(&self) -> &CiscoIosConfig {
        &self.config
    }

    fn router(&self) -> String {
        format!("router {}:{}", self.config.host, self.config.port)
    }

    fn map_error(&self, e: SessionError) -> TargetError {
        let on_router = |e: SessionError| OnDevice::new(self.router(), e);
        match e {
            SessionError::HostKey(_) | SessionError::Auth(_) | SessionError::Enable(_) => {
                TargetError::config(on_router(e))
            }
            SessionError::Ssh(russh::Error::NoCommonAlgo { .. }) => TargetError::config(
                on_router(e).with_advice("for an old IOS image set legacy_algorithms = true"),
            ),
            SessionError::Unexpected(_) | SessionError::TooMuchOutput { .. } => {
                TargetError::device(on_router(e))
            }
            _ => TargetError::unreachable(on_router(e)),
        }
    }

    /// Runs `lines` on the open session, opening one first if needed. A failed session is
    /// dropped. `idempotent` commands (reads) are retried once on a fresh session when a
    /// reused one turns out to be dead (the router closes idle sessions at `exec-timeout`).
    async fn run(
        &mut self,
        lines: &[String],
        idempotent: bool,
    ) -> Result<Vec<Segment>, TargetError> {
        let (session, reused) = match self.session.take() {
            Some(s) if !s.is_closed() => (self.session.insert(s), true),
            _ => (self.open().await?, false),
        };
        match session.run(lines).await {
            Ok(segments) => Ok(segments),
            Err(e) => {
                self.drop_session();
                let dead = matches!(e, SessionError::Closed(_) | SessionError::Ssh(_));
                self.session_lost = reused && dead;
                if reused && idempotent && dead {
                    tracing::info!(target = %self.info.name, error = %e, "session was closed; reconnecting");
                    let session = self.open().await?;
                    return session.run(lines).await.map_err(|e| {
                        self.drop_session();
                        self.map_error(e)
                    });
                }
                Err(self.map_error(e))
            }
        }
    }

    /// Forgets the session and everything read on it.
    fn drop_session(&mut self) {
        self.session = None;
        self.cache = None;
    }

    /// Opens a new session (dropping any other) and hands it out.
    async fn open(&mut self) -> Result<&mut Session, TargetError> {
        self.drop_session();
        let started = Instant::now();
        let session = Session::open(&self.config)
            .await
            .map_err(|e| self.map_error(e))?;
        tracing::info!(
            target = %self.info.name,
            router = %self.router(),
            hostname = session.hostname(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "SSH CLI session open"
        );
        Ok(self.session.insert(session))
    }

    /// The `show` commands for netban's lists, in the order of [`Found`].
    fn show_commands(&self) -> Vec<(String, ListKind, String)> {
        let c = &self.config;
        match c.mode {
            Mode::Acl => {
                let mut v = vec![(
                    format!("show ip access-lists {}", c.acl),
                    ListKind::Ipv4Acl,
                    c.acl.clone(),
                )];
                if c.ipv6() {
                    v.push((
                        format!("show ipv6 access-list {}", c.acl6),
                        ListKind::Ipv6Acl,
                        c.acl6.clone(),
                    ));
                }
                v
            }
            Mode::ObjectGroup => vec![(
                format!("show object-group name {}", c.object_group),
                ListKind::ObjectGroup,
                c.object_group.clone(),
            )],
        }
    }

    /// Reads netban's lists as they are now.
    async fn read(&mut self) -> Result<Found, TargetError> {
        let commands = self.show_commands();
        let lines: Vec<String> = commands.iter().map(|(c, _, _)| c.clone()).collect();
        let segments = self.run(&lines, true).await?;
        let mut found = Vec::new();
        for ((command, kind, name), segment) in commands.iter().zip(&segments) {
            if let Some(e) = segment.error() {
                return Err(TargetError::device(format!(
                    "{}: `{command}` refused: {}",
                    self.router(),
                    e.message()
                )));
            }
            let listing = listing::parse(&segment.output(command), *kind, name, self.config.action)
                .map_err(|m| TargetError::config(format!("{}: {m}", self.router())))?;
            found.push(listing);
        }
        let mut found = found.into_iter();
        Ok(Found {
            primary: found.next().flatten(),
            v6: found.next().flatten(),
        })
    }

    /// Reads the lists, creating missing ones and putting the trailing permit right (after a
    /// reload it is renumbered like every entry). Returns what the lists hold.
    async fn ensure_lists(&mut self) -> Result<Lists, TargetError> {
        let lists = self.read_and_repair().await?;
        self.cache = Some(lists.clone());
        Ok(lists)
    }

    async fn read_and_repair(&mut self) -> Result<Lists, TargetError> {
        let found = self.read().await?;
        let body = self.repairs(&found);
        if body.is_empty() {
            return self.complete(found);
        }
        tracing::info!(target = %self.info.name, lines = ?body, "creating or repairing netban's lists");
        self.configure(body).await?;
        let found = self.read().await?;
        if !self.repairs(&found).is_empty() {
            return Err(TargetError::device(format!(
                "{}: netban's lists are still not as configured after repairing them",
                self.router()
            )));
        }
        self.complete(found)
    }

    /// Configuration lines (without `configure terminal`/`end`) that create missing lists and
    /// fix their tails; empty when nothing is needed.
    fn repairs(&self, found: &Found) -> Vec<String> {
        let c = &self.config;
        let mut body = Vec::new();
        let mut section = |header: String, listing: &Option<Listing>, family: Family| {
            let fix = match listing {
                None if c.tail() => tail_fix(family, &[]),
                None => Vec::new(),
                Some(l) if c.tail() => tail_fix(family, &l.tails()),
                Some(_) => return,
            };
            if listing.is_some() && fix.is_empty() {
                return;
            }
            body.push(header);
            body.extend(fix);
            body.push("exit".to_string());
        };
        match c.mode {
            Mode::Acl => {
                section(
                    format!("ip access-list extended {}", c.acl),
                    &found.primary,
                    Family::V4,
                );
                if c.ipv6() {
                    section(
                        format!("ipv6 access-list {}", c.acl6),
                        &found.v6,
                        Family::V6,
                    );
                }
            }
            Mode::ObjectGroup => section(
                format!("object-group network {}", c.object_group),
                &found.primary,
                Family::V4,
            ),
        }
        body
    }

    fn complete(&self, found: Found) -> Result<Lists, TargetError> {
        let missing = |what: String| {
            TargetError::device(format!(
                "{}: {what} is missing; prepare creates it",
                self.router()
            ))
        };
        let c = &self.config;
        let (kind, name) = match c.mode {
            Mode::Acl => (ListKind::Ipv4Acl, &c.acl),
            Mode::ObjectGroup => (ListKind::ObjectGroup, &c.object_group),
        };
        let primary = found.primary.ok_or_else(|| missing(kind.describe(name)))?;
        let v6 = if c.ipv6() {
            Some(
                found
                    .v6
                    .ok_or_else(|| missing(ListKind::Ipv6Acl.describe(&c.acl6)))?,
            )
        } else {
            None
        };
        Ok(Lists { primary, v6 })
    }

    /// One configuration session of `body`, every line of which must be accepted.
    async fn configure(&mut self, body: Vec<String>) -> Result<(), TargetError> {
        let mut lines = Vec::with_capacity(body.len() + 2);
        lines.push("configure terminal".to_string());
        lines.extend(body);
        lines.push("end".to_string());
        let segments = self.run(&lines, false).await?;
        self.check_back_in_exec(&segments)?;
        self.unsaved = true;
        for (line, segment) in lines.iter().zip(&segments) {
            if let Some(e) = segment.error() {
                return Err(TargetError::device(format!(
                    "{} refused `{line}`: {}",
                    self.router(),
                    e.message()
                )));
            }
        }
        Ok(())
    }

    /// After `end` the router must be back at the privileged prompt; if not, the session's
    /// state is unknown and it is dropped.
    fn check_back_in_exec(&mut self, segments: &[Segment]) -> Result<(), TargetError> {
        match segments.last() {
            Some(s) if s.prompt.privileged && s.prompt.mode.is_none() => Ok(()),
            other => {
                self.drop_session();
                Err(TargetError::device(format!(
                    "{}: still in configuration mode after `end` ({:?}); the session was reset",
                    self.router(),
                    other.map(|s| &s.prompt)
                )))
            }
        }
    }

    /// The lists a batch is planned against are those last read *on the same session*: IOS
    /// renumbers only at reload, and a reload ends every session, so numbers read on the open
    /// session are current unless someone resequenced netban's own list by hand (then the
    /// read-back shows the difference and the next resync repairs it). Any other case reads
    /// the lists first.
    async fn apply_once(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        let alive = self.session.as_ref().is_some_and(|s| !s.is_closed());
        let lists = match self.cache.take() {
            Some(lists) if alive => lists,
            _ => self.ensure_lists().await?,
        };
        let batch = Batch::new(plan, &lists, &self.config);
        if batch.lines.is_empty() {
            self.cache = Some(lists.clone());
            return Ok(batch.report(&[], &lists));
        }
        let started = Instant::now();
        let segments = self.run(&batch.lines, false).await?;
        self.unsaved = true;
        self.check_back_in_exec(&segments)?;
        if let Some((line, e)) = batch.structural_error(&segments) {
            return Err(TargetError::device(format!(
                "{} refused `{line}`: {}",
                self.router(),
                e.message()
            )));
        }
        let found = self.read().await?;
        let after = self.complete(found)?;
        let report = batch.report(&segments, &after);
        let failed = report
            .items
            .iter()
            .any(|i| matches!(i.result, crate::ItemOutcome::Failed { .. }));
        self.cache = (!failed).then_some(after);
        tracing::debug!(
            target = %self.info.name,
            lines = batch.lines.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "configuration session applied and read back"
        );
        self.maybe_save(false).await;
        Ok(report)
    }

    /// `write memory` if changes are unsaved and the last save is older than the interval.
    async fn maybe_save(&mut self, force: bool) {
        let interval = self.config.save_interval_secs;
        if interval == 0 || !self.unsaved {
            return;
        }
        if !force && self.last_save.elapsed() < Duration::from_secs(interval) {
            return;
        }
        let command = "write memory".to_string();
        match self.run(std::slice::from_ref(&command), false).await {
            Ok(segments) if segments[0].output(&command).contains("[OK]") => {
                self.unsaved = false;
                self.last_save = Instant::now();
                tracing::info!(target = %self.info.name, "running configuration saved (write memory)");
            }
            Ok(segments) => tracing::warn!(
                target = %self.info.name,
                output = %segments[0].output(&command),
                "write memory did not answer [OK]; will try again"
            ),
            Err(error) => {
                tracing::warn!(target = %self.info.name, %error, "write memory failed; will try again")
            }
        }
    }
}

#[async_trait]
impl Target for CiscoIos {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn prepare(&mut self) -> Result<(), TargetError> {
        self.ensure_lists().await.map(drop)
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        self.maybe_save(false).await;
        let lists = self.ensure_lists().await?;
        let others: Vec<&str> = lists
            .primary
            .others()
            .chain(lists.v6.iter().flat_map(|l| l.others()))
            .collect();
        if !others.is_empty() {
            tracing::warn!(
                target = %self.info.name,
                entries = ?others,
                "entries netban does not manage are in its lists; they are left alone"
            );
        }
        let held = lists
            .primary
            .bans()
            .chain(lists.v6.iter().flat_map(|l| l.bans()))
            .map(|(prefix, seq)| Held {
                prefix,
                expiry: None,
                handle: seq.map(|s| s.to_string()),
            })
            .collect();
        Ok(held)
    }

    /// Carries out `plan` in one configuration session (see `apply_once`).
    ///
    /// When a session that had been working turns out to be dead (the router reloaded or
    /// closed it), the batch is planned and sent once more on a new session, against a fresh
    /// read: whatever part of the first attempt the router had carried out is then already
    /// there and is not sent again.
    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        self.session_lost = false;
        let first = self.apply_once(plan).await;
        if matches!(first, Err(TargetError::Unreachable(_))) && self.session_lost {
            tracing::info!(
                target = %self.info.name,
                error = %first.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                "session lost during a batch; re-reading and sending the rest on a new session"
            );
            self.session_lost = false;
            return self.apply_once(plan).await;
        }
        first
    }

    async fn shutdown(&mut self) {
        self.maybe_save(true).await;
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CiscoIosConfig {
        CiscoIosConfig {
            password: Some("pw".into()),
            host_key_fingerprint: Some("SHA256:AAAAAAAAAAAA".into()),
            ..CiscoIosConfig::new("127.0.0.1", 1, "netban")
        }
    }

    #[test]
    fn target_info() {
        let t = CiscoIos::new("edge", config()).unwrap();
        let info = t.info();
        assert_eq!((info.name.as_str(), info.kind), ("edge", "cisco_ios"));
        assert_eq!(info.families, vec![Family::V4, Family::V6]);
        assert_eq!(info.ownership, OwnershipKind::Exclusive);
        assert_eq!(info.expiry, ExpiryTracking::None);
        let og = CiscoIos::new(
            "og",
            CiscoIosConfig {
                mode: Mode::ObjectGroup,
                ..config()
            },
        )
        .unwrap();
        assert_eq!(og.info().families, vec![Family::V4]);
    }

    #[test]
    fn repairs_create_missing_lists_with_their_tail() {
        let t = CiscoIos::new("edge", config()).unwrap();
        let body = t.repairs(&Found {
            primary: None,
            v6: Some(Listing::default()),
        });
        assert_eq!(
            body,
            vec![
                "ip access-list extended NETBAN",
                "2147483647 permit ip any any",
                "exit",
                "ipv6 access-list NETBAN6",
                "permit ipv6 any any sequence 2147483647",
                "exit",
            ]
        );
        let permit = CiscoIos::new(
            "zbf",
            CiscoIosConfig {
                action: Action::Permit,
                acl6: String::new(),
                ..config()
            },
        )
        .unwrap();
        let body = permit.repairs(&Found {
            primary: None,
            v6: None,
        });
        assert_eq!(body, vec!["ip access-list extended NETBAN", "exit"]);
        assert!(permit
            .repairs(&Found {
                primary: Some(Listing::default()),
                v6: None
            })
            .is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_router_is_unreachable() {
        // Port 1 on loopback: nothing listens there.
        let mut t = CiscoIos::new("edge", config()).unwrap();
        match t.observe().await {
            Err(TargetError::Unreachable(m)) => {
                assert!(m.to_string().contains("127.0.0.1:1"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
