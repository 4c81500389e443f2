//! Who is calling the API: a bearer token looked up in the token store, and its rate.
//!
//! The store is re-read when its file changes (size, mtime or inode: `netban token add` and
//! `revoke` replace it by renaming), checked on every request, so a revoked token stops
//! working with the next request. A store that cannot be read refuses everyone (and says why
//! in the log) rather than keep honouring tokens an operator may just have revoked.

use netban_config::tokens::{StoredToken, TokenError, TokenRole, TokenStore};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why a request was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// No token, or one that is not (or no longer) in the store: 401.
    Unauthenticated(&'static str),
    /// Over its rate: 429.
    RateLimited,
    /// The store cannot be read: 503.
    StoreUnreadable,
}

pub struct Gate {
    path: PathBuf,
    rate_per_second: f64,
    store: Mutex<Loaded>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The store as last read, and the file's identity then.
struct Loaded {
    stamp: Option<Stamp>,
    store: Option<Arc<TokenStore>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ino: meta.ino(),
    })
}

/// A token bucket: `tokens` requests may be made now; it refills at the rate, up to twice it.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Gate {
    /// Reads the store now, so that a broken one stops the daemon at start.
    pub fn open(path: &Path, rate_per_second: u32) -> Result<Gate, TokenError> {
        let store = TokenStore::load(path)?;
        if store.tokens.is_empty() {
            tracing::warn!(
                store = %path.display(),
                "the API has no tokens yet: every request is refused (add one with `netban token add`)"
            );
        }
        Ok(Gate {
            path: path.into(),
            rate_per_second: f64::from(rate_per_second.max(1)),
            store: Mutex::new(Loaded {
                stamp: stamp(path),
                store: Some(Arc::new(store)),
            }),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn current(&self) -> Option<Arc<TokenStore>> {
        let now = stamp(&self.path);
        let mut loaded = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if now != loaded.stamp {
            loaded.stamp = now;
            loaded.store = match TokenStore::load(&self.path) {
                Ok(store) => {
                    tracing::info!(tokens = store.tokens.len(), "token store re-read");
                    Some(Arc::new(store))
                }
                Err(e) => {
                    tracing::error!(error = %e, "the API refuses every request until the token store is fixed");
                    None
                }
            };
        }
        loaded.store.clone()
    }

    /// The token an `Authorization` header value presents, if it is in the store and within
    /// its rate.
    pub fn admit(&self, authorization: Option<&str>) -> Result<StoredToken, Rejected> {
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Rejected::Unauthenticated(
                "a bearer token is needed (Authorization: Bearer nbt_…)",
            ))?;
        let store = self.current().ok_or(Rejected::StoreUnreadable)?;
        let token = store
            .find(presented)
            .cloned()
            .filter(|t| t.role != TokenRole::Bouncer)
            .ok_or(Rejected::Unauthenticated(
                "unknown or revoked token (a bouncer token is only an X-Api-Key on /v1/decisions)",
            ))?;
        refuse_expired(&token)?;
        self.spend(&token.name)?;
        Ok(token)
    }

    /// The bouncer token an `X-Api-Key` header value presents (CrowdSec's decision routes),
    /// if it is in the store with the `bouncer` role and within its rate. Tokens of other
    /// roles are refused here, as bouncer tokens are refused as bearer tokens.
    pub fn admit_api_key(&self, api_key: Option<&str>) -> Result<StoredToken, Rejected> {
        let presented = api_key
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Rejected::Unauthenticated("an X-Api-Key is needed"))?;
        let store = self.current().ok_or(Rejected::StoreUnreadable)?;
        let token = store
            .find(presented)
            .cloned()
            .filter(|t| t.role == TokenRole::Bouncer)
            .ok_or(Rejected::Unauthenticated(
                "unknown, revoked or not a bouncer key",
            ))?;
        refuse_expired(&token)?;
        self.spend(&token.name)?;
        Ok(token)
    }

    fn spend(&self, name: &str) -> Result<(), Rejected> {
        let burst = self.rate_per_second * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(name.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate_per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Rejected::RateLimited)
        }
    }
}

/// An expired token is refused like a revoked one, whichever way it was presented.
fn refuse_expired(token: &StoredToken) -> Result<(), Rejected> {
    if token.expired_at(crate::clock::now().0) {
        return Err(Rejected::Unauthenticated(
            "expired token (make a new one with `netban token add --expires`)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netban_config::tokens::TokenRole;

    fn entry(name: &str) -> StoredToken {
        StoredToken {
            name: name.into(),
            role: TokenRole::Read,
            sha256: String::new(),
            sources: None,
            prefix_lengths_v4: None,
            prefix_lengths_v6: None,
            created: 0,
            expires: None,
        }
    }

    #[test]
    fn tokens_are_checked_rated_and_revoked_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let mut store = TokenStore::default();
        let token = store.add(entry("siem")).unwrap();
        store.save(&path).unwrap();
        let gate = Gate::open(&path, 5).unwrap();
        let header = format!("Bearer {token}");
        assert_eq!(gate.admit(Some(header.as_str())).unwrap().name, "siem");
        assert!(matches!(
            gate.admit(None),
            Err(Rejected::Unauthenticated(_))
        ));
        assert!(matches!(
            gate.admit(Some("Bearer nbt_00")),
            Err(Rejected::Unauthenticated(_))
        ));
        // Burst of twice the rate, then refused.
        let admitted = (0..20)
            .filter(|_| gate.admit(Some(header.as_str())).is_ok())
            .count();
        assert!((9..=11).contains(&admitted), "{admitted} admitted");
        assert_eq!(
            gate.admit(Some(header.as_str())),
            Err(Rejected::RateLimited)
        );

        store.revoke("siem").unwrap();
        store.save(&path).unwrap();
        assert!(matches!(
            gate.admit(Some(header.as_str())),
            Err(Rejected::Unauthenticated(_))
        ));

        // An expired token is refused like a revoked one; one expiring later is let in.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expired = store
            .add(StoredToken {
                expires: Some(now - 1),
                ..entry("old")
            })
            .unwrap();
        let later = store
            .add(StoredToken {
                expires: Some(now + 3600),
                ..entry("later")
            })
            .unwrap();
        store.save(&path).unwrap();
        assert_eq!(
            gate.admit(Some(format!("Bearer {expired}").as_str())),
            Err(Rejected::Unauthenticated(
                "expired token (make a new one with `netban token add --expires`)"
            ))
        );
        assert_eq!(
            gate.admit(Some(format!("Bearer {later}").as_str()))
                .unwrap()
                .name,
            "later"
        );
    }
}
