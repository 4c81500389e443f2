//! Feed target: the bans as a plain-text list that firewalls pull over HTTP(S) on a timer —
//! Palo Alto External Dynamic Lists, FortiGate external threat feeds, Cisco FMC Security
//! Intelligence feeds, pfSense/OPNsense URL-table aliases.
//!
//! The "device" is a [`Board`] in the daemon's memory, served by the daemon's HTTP API
//! listener (and so with its TLS) at the feed's path, `/feeds/<name>` by default:
//!
//! - **apply** renders the list the plan leads to and publishes it as a new version (an ETag
//!   from its SHA-256, a `Last-Modified`), in one step: a consumer never sees half a plan.
//!   A plan is never split (`max_batch` is unbounded) for the same reason.
//! - **observe** returns what the board publishes now.
//! - Capacity and placement are the engine's, like any limited target: `capacity` (one
//!   family) or the common `capacity_v4`/`capacity_v6` decide how many lines, the placement
//!   rule which bans get them, and the rest overflow to the target's `fallback`.
//! - What a feed "holds" at its consumers is what it last served each of them:
//!   [`Board::consumers`] (address, identity, when, which version), shown by `netban status`.
//!
//! The list lives in memory only. After a restart the first reconciliation publishes it
//! (before that, pulls are answered 503 and consumers keep the list they have); a daemon
//! with no ban at all publishes its empty list at the second observe (the first resync),
//! since only then is it known that no plan is coming.
//!
//! - `config.rs`: the settings and their checks; `render.rs`: the body and its fingerprints;
//!   `board.rs`: the published version and the consumers; `pull.rs`: answering a request
//!   (credentials, conditional GET).

mod board;
mod config;
mod error;
mod pull;
mod render;

pub use board::{Board, Consumer, Holding, MAX_CONSUMERS};
pub use config::{Credentials, FeedConfig, HostForm, Settings, PATH_PREFIX};
pub use error::FeedError;
pub use pull::{Answer, Pull, Resource};
pub use render::Published;

use crate::{ApplyReport, OwnershipKind, Target, TargetError, TargetInfo};
use async_trait::async_trait;
use netban_core::placement::Capacity;
use netban_core::plan::{ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::{Family, Prefix};
use std::collections::BTreeSet;

/// The feed driver: its board, and the list it last published.
pub struct Feed {
    info: TargetInfo,
    board: Board,
    entries: BTreeSet<Prefix>,
    observed: bool,
}

impl Feed {
    /// Checks the settings and reads the credentials; nothing is published yet.
    pub fn new(name: &str, config: FeedConfig) -> Result<Feed, TargetError> {
        let settings = config.resolve(name)?;
        let only = |family| {
            (settings.families == [family])
                .then_some(settings.capacity)
                .flatten()
        };
        let info = TargetInfo {
            name: name.to_string(),
            kind: FeedConfig::KIND,
            families: settings.families.clone(),
            capacity: Capacity {
                v4: only(Family::V4),
                v6: only(Family::V6),
            },
            ownership: OwnershipKind::Exclusive,
            expiry: ExpiryTracking::None,
            sources: SourceTracking::Ignored,
            max_batch: usize::MAX,
        };
        if settings.credentials.anonymous {
            tracing::warn!(
                target = name,
                path = %settings.path,
                "feed: anonymous = true: anyone who reaches the API listener can read this list"
            );
        }
        Ok(Feed {
            info,
            board: Board::new(name, settings),
            entries: BTreeSet::new(),
            observed: false,
        })
    }

    /// The board the HTTP side serves.
    pub fn board(&self) -> Board {
        self.board.clone()
    }

    fn publish(&self) {
        self.board.publish(self.entries.iter().copied().collect());
    }
}

#[async_trait]
impl Target for Feed {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        if self.board.current().is_none() && self.observed {
            // Observed before, and no plan came since: the list is empty.
            self.publish();
        }
        self.observed = true;
        Ok(self
            .entries
            .iter()
            .map(|&prefix| Held {
                prefix,
                expiry: None,
                handle: None,
            })
            .collect())
    }

    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        for held in &plan.remove {
            self.entries.remove(&held.prefix);
        }
        for desired in &plan.add {
            if self.info.handles(&desired.prefix) {
                self.entries.insert(desired.prefix);
            }
        }
        self.publish();
        Ok(ApplyReport::all_done(plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netban_core::plan::Desired;
    use netban_core::Expiry;
    use std::net::{IpAddr, Ipv4Addr};

    fn feed(json: serde_json::Value) -> Feed {
        Feed::new("edl", serde_json::from_value(json).unwrap()).unwrap()
    }

    fn prefix(text: &str) -> Prefix {
        Prefix::parse(text).unwrap()
    }

    fn add(texts: &[&str]) -> Plan {
        Plan {
            add: texts
                .iter()
                .map(|t| Desired::new(prefix(t), Expiry::Never))
                .collect(),
            ..Plan::default()
        }
    }

    fn pull(board: &Board) -> Answer {
        board.answer(&Pull {
            resource: Resource::List,
            head: false,
            authorization: None,
            if_none_match: None,
            if_modified_since: None,
            user_agent: Some("test/1"),
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        })
    }

    fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
        answer
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn a_plan_is_published_whole_and_observed_back() {
        let mut feed =
            feed(serde_json::json!({ "anonymous": true, "families": ["v4"], "capacity": 3 }));
        assert_eq!(feed.info().capacity.v4, Some(3));
        assert_eq!(feed.info().capacity.v6, None);
        let board = feed.board();
        assert!(feed.observe().await.unwrap().is_empty());
        assert_eq!(pull(&board).status, 503, "nothing before the first plan");
        feed.apply(&add(&["203.0.113.9", "198.51.100.0/24"]))
            .await
            .unwrap();
        let first = pull(&board);
        assert_eq!(first.status, 200);
        assert_eq!(
            first.body.as_deref(),
            Some(&b"198.51.100.0/24\n203.0.113.9\n"[..])
        );
        let held: Vec<Prefix> = feed
            .observe()
            .await
            .unwrap()
            .iter()
            .map(|h| h.prefix)
            .collect();
        assert_eq!(held, [prefix("198.51.100.0/24"), prefix("203.0.113.9")]);

        // An unchanged plan publishes no new version.
        let etag = header(&first, "etag").unwrap().to_string();
        feed.apply(&add(&["203.0.113.9"])).await.unwrap();
        assert_eq!(board.current().unwrap().version, 1);
        let removed = Plan {
            remove: vec![Held {
                prefix: prefix("203.0.113.9"),
                expiry: None,
                handle: None,
            }],
            ..Plan::default()
        };
        feed.apply(&removed).await.unwrap();
        let second = pull(&board);
        assert_ne!(header(&second, "etag").unwrap(), etag);
        assert_eq!(board.current().unwrap().version, 2);
        let consumers = board.consumers();
        assert_eq!(consumers.len(), 1);
        assert_eq!(consumers[0].identity, "anonymous");
        assert_eq!(consumers[0].holds.as_ref().unwrap().entries, 1);
    }

    #[tokio::test]
    async fn with_no_ban_at_all_the_empty_list_is_published_at_the_second_observe() {
        let mut feed = feed(serde_json::json!({ "anonymous": true }));
        let board = feed.board();
        feed.observe().await.unwrap();
        assert!(board.current().is_none());
        feed.observe().await.unwrap();
        assert_eq!(board.current().unwrap().entries.len(), 0);
        assert_eq!(pull(&board).status, 200);
    }
}
