//! The published board: what a feed serves now, and who pulled what.
//!
//! A [`Board`] is a cheap handle over one feed's shared state. The driver (the target's
//! worker) is its only writer: each `apply` publishes a new immutable [`Published`] version;
//! the HTTP side reads the current version with one short read lock (no copy of the body:
//! it is reference-counted) and records each consumer's pull under a short mutex. Neither
//! lock is held across I/O or a render.

use super::config::{Credentials, Settings};
use super::render::{self, Published};
use netban_core::{Prefix, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// The most consumers remembered per feed; the one seen longest ago makes room.
pub const MAX_CONSUMERS: usize = 256;

/// One consumer as `netban status` shows it: who, when, and which version it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub address: IpAddr,
    /// The basic-auth user, `token` for the bearer token, or `anonymous`.
    pub identity: String,
    pub user_agent: Option<String>,
    /// The last time it asked (a GET or a HEAD).
    pub last_seen: Timestamp,
    /// The version it was last given or confirmed (a 304), if any.
    pub holds: Option<Holding>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub etag: String,
    pub entries: usize,
    /// When it received or confirmed this version.
    pub at: Timestamp,
}

/// One feed's shared state.
#[derive(Clone)]
pub struct Board {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    settings: Settings,
    published: RwLock<Option<Arc<Published>>>,
    consumers: Mutex<HashMap<(IpAddr, String), Consumer>>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("name", &self.shared.name)
            .field("path", &self.shared.settings.path)
            .finish_non_exhaustive()
    }
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

impl Board {
    pub fn new(name: &str, settings: Settings) -> Board {
        Board {
            shared: Arc::new(Shared {
                name: name.to_string(),
                settings,
                published: RwLock::new(None),
                consumers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where the list is served (`/feeds/…`); its MD5 is at the same path + `.md5`.
    pub fn path(&self) -> &str {
        &self.shared.settings.path
    }

    pub(super) fn credentials(&self) -> &Credentials {
        &self.shared.settings.credentials
    }

    /// The version served now; `None` until the first publication.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.shared
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes `entries` (sorted) as the new version, unless the body would not change.
    /// Rendering and hashing happen before the lock is taken.
    pub(super) fn publish(&self, entries: Vec<Prefix>) {
        let settings = &self.shared.settings;
        let body = render::body(
            &self.shared.name,
            &entries,
            settings.hosts,
            settings.comments,
        );
        let current = self.current();
        if current
            .as_ref()
            .is_some_and(|c| c.body.as_ref() == body.as_bytes())
        {
            return;
        }
        let version = current.map_or(1, |c| c.version + 1);
        let published = Arc::new(Published::new(version, body, entries, SystemTime::now()));
        tracing::debug!(
            feed = %self.shared.name,
            version,
            entries = published.entries.len(),
            etag = %published.etag,
            "feed published"
        );
        *self
            .shared
            .published
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(published);
    }

    /// Records that `address`/`identity` asked, and what it now holds if it was given or
    /// confirmed `version`.
    pub(super) fn record(
        &self,
        address: IpAddr,
        identity: &str,
        user_agent: Option<&str>,
        version: Option<&Published>,
    ) {
        let at = now();
        let mut consumers = self
            .shared
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (address, identity.to_string());
        if !consumers.contains_key(&key) && consumers.len() >= MAX_CONSUMERS {
            if let Some(oldest) = consumers
                .iter()
                .min_by_key(|(_, c)| c.last_seen)
                .map(|(k, _)| k.clone())
            {
                consumers.remove(&oldest);
            }
        }
        let consumer = consumers.entry(key).or_insert_with(|| Consumer {
            address,
            identity: identity.to_string(),
            user_agent: None,
            last_seen: at,
            holds: None,
        });
        consumer.last_seen = at;
        consumer.user_agent = user_agent.map(|ua| ua.chars().take(120).collect());
        if let Some(version) = version {
            consumer.holds = Some(Holding {
                etag: version.etag.clone(),
                entries: version.entries.len(),
                at,
            });
        }
    }

    /// Every consumer remembered, the most recent first.
    pub fn consumers(&self) -> Vec<Consumer> {
        let mut all: Vec<Consumer> = self
            .shared
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then_with(|| a.address.cmp(&b.address))
                .then_with(|| a.identity.cmp(&b.identity))
        });
        all
    }
}
