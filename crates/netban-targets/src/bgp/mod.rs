//! BGP blackhole target (remotely triggered blackholing, RFC 5635 / RFC 7999): netban speaks
//! BGP itself and announces every ban as a route tagged BLACKHOLE (65535:666) and NO_EXPORT
//! to one or more routers, which turn it into a discard route; an unban withdraws the route.
//! With `mode = "flowspec"` (or `"both"`) a ban becomes (also) a flow specification rule
//! (RFC 8955/8956) "source = the prefix [, protocol, destination ports] → discard" that
//! routers able to filter in hardware enforce against traffic FROM the prefix.
//!
//! ```text
//!  Bgp (driver) ── desired set + version ──▶ one session task per peer ── UPDATEs ──▶ router
//!        ▲                                        │ (connect, OPEN, keepalives, retry)
//!        └──────────── PeerStatus (established, synced version, last error) ◀──┘
//! ```
//!
//! The driver keeps the set of prefixes that should be announced, each with the shape of its
//! rule ([`flowspec::RuleShapes`]: per source when configured, one rule per prefix as the
//! union of its sources' shapes). `apply` changes that set and
//! waits (up to `send_timeout_secs`) until every established session has written the
//! resulting UPDATEs; `observe` returns the set once every session has sent it. A session that
//! comes back after any interruption starts from an empty view on both sides and announces the
//! whole set again by itself, without waiting for the reconciler. netban owns its sessions, so
//! the target is `Exclusive`; routes carry no expiry (`ExpiryTracking::None`).
//!
//! When a peer's session is down, `observe` and `apply` fail with `Unreachable` (or `Config`,
//! when the router refused the OPEN) so `netban status` shows it; changes made meanwhile are
//! kept and announced when the session is back. A target with several peers is therefore as
//! healthy as its worst peer: give routers that fail independently one target each.
//!
//! What this is not: a router. It never installs routes, never accepts the peer's routes
//! (they are read and dropped), and only connects actively (configure the router side as
//! passive). The codec is in [`message`] (flowspec rules: [`flowspec`]), the packing in
//! [`update`], the session in [`session`], the namespace-aware connect in [`socket`].

mod config;
pub mod flowspec;
pub mod message;
mod session;
mod socket;
pub mod update;

pub use config::{
    parse_community, read_md5_password, BgpConfig, FlowspecConfig, FlowspecMatch, Mode,
    PasswordFileError, PeerConfig, Protocol, BLACKHOLE, MAX_DESTINATION_PORTS, NO_ADVERTISE,
    NO_EXPORT,
};

use crate::{ApplyReport, OwnershipKind, Target, TargetError, TargetInfo};
use async_trait::async_trait;
use netban_core::placement::Capacity;
use netban_core::plan::{ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::Family;
use session::{Announcement, PeerStatus, SessionError, Settings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Items per apply: about 60 full UPDATEs of /32s; written in a few milliseconds.
pub const MAX_BATCH: usize = 50_000;

/// How long `shutdown` waits for the sessions to send their Cease.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The BGP driver. Built from configuration without opening a connection; `prepare` starts
/// one session task per peer.
pub struct Bgp {
    info: TargetInfo,
    settings: Arc<Settings>,
    desired: watch::Sender<Arc<Announcement>>,
    peers: Vec<Peer>,
    shutdown: watch::Sender<bool>,
}

struct Peer {
    config: PeerConfig,
    addr: SocketAddr,
    status: watch::Receiver<PeerStatus>,
    /// Until `prepare` starts the task: the sending side of `status`.
    pending: Option<watch::Sender<PeerStatus>>,
    task: Option<JoinHandle<()>>,
}

impl Bgp {
    pub fn new(name: &str, config: BgpConfig) -> Result<Self, TargetError> {
        config.validate()?;
        let communities = config.community_values()?;
        let shapes = config.rule_shapes()?;
        let peers = config
            .peers
            .iter()
            .map(|p| {
                let (tx, rx) = watch::channel(PeerStatus::default());
                Peer {
                    config: p.clone(),
                    addr: SocketAddr::new(p.address, p.port),
                    status: rx,
                    pending: Some(tx),
                    task: None,
                }
            })
            .collect();
        let info = TargetInfo {
            name: name.to_string(),
            kind: BgpConfig::KIND,
            families: vec![Family::V4, Family::V6],
            capacity: Capacity::UNBOUNDED,
            ownership: OwnershipKind::Exclusive,
            expiry: ExpiryTracking::None,
            // Rules shaped per source are rebuilt when a prefix's sources change.
            sources: if config.mode.flowspec() && shapes.per_source() {
                SourceTracking::Shaped
            } else {
                SourceTracking::Ignored
            },
            max_batch: MAX_BATCH,
        };
        Ok(Bgp {
            info,
            settings: Arc::new(Settings {
                config,
                communities,
                shapes,
            }),
            desired: watch::channel(Arc::new(Announcement::default())).0,
            peers,
            shutdown: watch::channel(false).0,
        })
    }

    pub fn config(&self) -> &BgpConfig {
        &self.settings.config
    }

    /// Whether every peer's session is established now.
    pub fn all_established(&self) -> bool {
        self.peers.iter().all(|p| p.status.borrow().established)
    }

    fn start_sessions(&mut self) {
        for peer in &mut self.peers {
            let Some(status) = peer.pending.take() else {
                continue;
            };
            peer.task = Some(tokio::spawn(session::run(
                Arc::clone(&self.settings),
                peer.config.clone(),
                self.desired.subscribe(),
                status,
                self.shutdown.subscribe(),
            )));
        }
    }

    /// Waits until every established session has sent `version` (or is no longer
    /// established), at most `send_timeout_secs`; then the first peer that is not in sync,
    /// as an error.
    async fn wait_synced(&self, version: u64) -> Result<(), TargetError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config().send_timeout_secs);
        for peer in &self.peers {
            let mut status = peer.status.clone();
            let _ = tokio::time::timeout_at(
                deadline,
                status.wait_for(|s| !s.established || s.synced_version >= version),
            )
            .await;
        }
        for peer in &self.peers {
            let s = peer.status.borrow();
            if !s.established {
                return Err(self.down_error(peer, s.last_error.as_ref()));
            }
            if s.synced_version < version {
                return Err(TargetError::unreachable(PeerError::NotSynced {
                    peer: peer.addr,
                    secs: self.config().send_timeout_secs,
                }));
            }
        }
        Ok(())
    }

    /// Makes `plan` the sessions' new desired set (each added or refreshed prefix with the
    /// rule shape of its sources); returns the set's version.
    fn change_desired(&self, plan: &Plan) -> u64 {
        let shapes = &self.settings.shapes;
        let mut version = 0;
        self.desired.send_modify(|d| {
            let d = Arc::make_mut(d);
            for h in &plan.remove {
                d.prefixes.remove(&h.prefix);
            }
            // A refresh comes when the sources of a prefix changed (SourceTracking::Shaped):
            // its rule may change shape.
            for a in plan.add.iter().chain(plan.refresh.iter().map(|(_, d)| d)) {
                d.prefixes.insert(a.prefix, shapes.for_sources(&a.sources));
            }
            d.version += 1;
            version = d.version;
        });
        version
    }

    fn down_error(&self, peer: &Peer, last: Option<&SessionError>) -> TargetError {
        let error = PeerError::NotEstablished {
            peer: peer.addr,
            last: last.cloned(),
        };
        if last.is_some_and(SessionError::is_config) {
            TargetError::config(error)
        } else {
            TargetError::unreachable(error)
        }
    }
}

/// Why the driver cannot vouch for what a peer holds.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(
        "BGP session to {peer} is not established ({}); it keeps retrying and announces every \
         ban again when it is back",
        .last.as_ref().map_or("not connected yet".to_string(), ToString::to_string)
    )]
    NotEstablished {
        peer: SocketAddr,
        /// Why the last session ended, if one was ever tried.
        #[source]
        last: Option<SessionError>,
    },
    #[error("BGP session to {peer} did not take the UPDATEs within {secs} s (send_timeout_secs)")]
    NotSynced { peer: SocketAddr, secs: u64 },
}

#[async_trait]
impl Target for Bgp {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    /// Starts the sessions (once) and gives them up to `connect_timeout_secs` to come up.
    async fn prepare(&mut self) -> Result<(), TargetError> {
        self.start_sessions();
        let wait = Duration::from_secs(self.config().connect_timeout_secs);
        let deadline = tokio::time::Instant::now() + wait;
        for peer in &self.peers {
            let mut status = peer.status.clone();
            let _ = tokio::time::timeout_at(
                deadline,
                status.wait_for(|s| s.established || s.last_error.is_some()),
            )
            .await;
        }
        Ok(())
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        self.start_sessions();
        let desired = Arc::clone(&self.desired.borrow());
        self.wait_synced(desired.version).await?;
        Ok(desired
            .prefixes
            .keys()
            .map(|&prefix| Held {
                prefix,
                expiry: None,
                handle: None,
            })
            .collect())
    }

    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        self.start_sessions();
        let version = self.change_desired(plan);
        self.wait_synced(version).await?;
        Ok(ApplyReport::all_done(plan))
    }

    /// Closes every session with a Cease NOTIFICATION. The routers then drop the routes.
    async fn shutdown(&mut self) {
        let _ = self.shutdown.send(true);
        for peer in &mut self.peers {
            if let Some(task) = peer.task.take() {
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, task).await;
            }
        }
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for peer in &mut self.peers {
            if let Some(task) = peer.task.take() {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config() -> BgpConfig {
        BgpConfig {
            next_hop_v6: Some("2001:db8:ff::2".parse().unwrap()),
            ..BgpConfig::new(
                65001,
                Ipv4Addr::new(198, 18, 0, 2),
                vec![PeerConfig::new("198.18.0.1".parse().unwrap(), 65000)],
            )
        }
    }

    #[test]
    fn target_info() {
        let t = Bgp::new("rtbh", config()).unwrap();
        let info = t.info();
        assert_eq!((info.name.as_str(), info.kind), ("rtbh", "bgp"));
        assert_eq!(info.families, vec![Family::V4, Family::V6]);
        assert_eq!(info.ownership, OwnershipKind::Exclusive);
        assert_eq!(info.expiry, ExpiryTracking::None);
        assert!(!t.all_established());
    }

    #[test]
    fn bad_config_is_refused_at_build() {
        let c = BgpConfig {
            peers: vec![],
            ..config()
        };
        assert!(matches!(Bgp::new("t", c), Err(TargetError::Config(_))));
    }

    #[test]
    fn the_target_kind_reads_from_toml_shaped_json() {
        let kind: crate::config::TargetKind = serde_json::from_value(serde_json::json!({
            "type": "bgp",
            "local_as": 65001,
            "router_id": "198.18.0.2",
            "next_hop_v6": "2001:db8:ff::2",
            "peers": [{ "address": "198.18.0.1", "remote_as": 65000 }],
        }))
        .unwrap();
        assert_eq!(kind.kind(), "bgp");
    }

    #[test]
    fn a_flowspec_target_reads_from_toml_shaped_json_and_builds() {
        let json = serde_json::json!({
            "local_as": 65001,
            "router_id": "198.18.0.2",
            "peers": [{ "address": "198.18.0.1", "remote_as": 65000 }],
            "mode": "flowspec",
            "flowspec": { "protocol": "udp", "destination_ports": [53] },
        });
        let mut typed = json.clone();
        typed["type"] = "bgp".into();
        let kind: crate::config::TargetKind = serde_json::from_value(typed).unwrap();
        assert_eq!(kind.kind(), "bgp");
        let config: BgpConfig = serde_json::from_value(json).unwrap();
        let t = Bgp::new("fs", config).unwrap();
        assert_eq!(
            t.settings.shapes.default,
            flowspec::SourceMatch::new(Some(17), vec![53])
        );
        assert_eq!(t.info().sources, SourceTracking::Ignored);
        assert_eq!(t.config().mode, Mode::Flowspec);
    }

    #[test]
    fn rules_take_the_shape_of_the_sources_of_each_ban() {
        use netban_core::plan::{Desired, Held};
        use netban_core::{Expiry, Prefix, Source};
        let config: BgpConfig = serde_json::from_value(serde_json::json!({
            "local_as": 65001,
            "router_id": "198.18.0.2",
            "peers": [{ "address": "198.18.0.1", "remote_as": 65000 }],
            "mode": "flowspec",
            "flowspec": { "sources": { "sshd": { "protocol": "tcp", "destination_ports": [22] } } },
        }))
        .unwrap();
        // No session is started: only the desired set the sessions would follow changes.
        let t = Bgp::new("fs", config).unwrap();
        assert_eq!(t.info().sources, SourceTracking::Shaped);
        let prefix = Prefix::parse("203.0.113.7").unwrap();
        let want = |sources: &[&str]| Desired {
            sources: sources.iter().map(|s| Source::new(s).unwrap()).collect(),
            ..Desired::new(prefix, Expiry::Never)
        };
        let shape = |t: &Bgp| t.desired.borrow().prefixes.get(&prefix).cloned();
        let plan = Plan {
            add: vec![want(&["sshd"])],
            ..Plan::default()
        };
        assert_eq!(t.change_desired(&plan), 1);
        assert_eq!(
            shape(&t),
            Some(flowspec::SourceMatch::new(Some(6), vec![22]))
        );
        let held = Held {
            prefix,
            expiry: None,
            handle: None,
        };
        let plan = Plan {
            refresh: vec![(held, want(&["recidive", "sshd"]))],
            ..Plan::default()
        };
        assert_eq!(t.change_desired(&plan), 2);
        assert_eq!(shape(&t), Some(flowspec::SourceMatch::default()));
        // Without sources (a covering prefix): the target's default shape, unrestricted.
        let plan = Plan {
            add: vec![want(&[])],
            ..Plan::default()
        };
        t.change_desired(&plan);
        assert_eq!(shape(&t), Some(flowspec::SourceMatch::default()));
    }
}
