//! The API's token store: who may call the HTTP API, and what each caller may do.
//!
//! A TOML file (`[api] tokens`, default `/etc/netban/tokens.toml`, mode 0600) written by
//! `netban token add/revoke` and read by the daemon, which notices when it changes. It holds
//! no secret: a token is 32 bytes from the operating system's generator, shown once when it
//! is made (`nbt_` and 64 hex digits), and stored as its SHA-256. A token that high in
//! entropy needs no salt or slow hash; the daemon hashes what it is given and compares the
//! digests in constant time.
//!
//! ```toml
//! [[token]]
//! name = "siem"
//! role = "ban"                  # read, ban or admin
//! sha256 = "9f86d0…"
//! sources = ["sshd", "siem"]    # optional: the only sources it may ban and unban as
//! prefix_lengths_v4 = [32]      # optional: the only IPv4 prefix lengths it may ban
//! prefix_lengths_v6 = [64, 128]
//! created = 1764640000
//! ```

use netban_core::{Prefix, Source};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// What every token starts with, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "nbt_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token store {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the token store {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token store {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("a token named {0:?} exists already; revoke it first or choose another name")]
    Exists(String),
    #[error("no token named {0:?}")]
    Unknown(String),
    #[error("token name {0:?}: use 1 to 64 letters, digits, '_' and '-'")]
    BadName(String),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

/// What a token may do (the socket's roles, by the same names), or `bouncer`: a CrowdSec
/// bouncer's key, taken only as `X-Api-Key` on the decision routes (`/v1/decisions…`) and
/// refused everywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    Read,
    Ban,
    Admin,
    Bouncer,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Read => "read",
            TokenRole::Ban => "ban",
            TokenRole::Admin => "admin",
            TokenRole::Bouncer => "bouncer",
        }
    }
}

/// One token as stored (its digest, never the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    pub name: String,
    pub role: TokenRole,
    /// SHA-256 of the token, in hex.
    pub sha256: String,
    /// The only sources it may ban and unban as; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Source>>,
    /// The only IPv4 prefix lengths it may ban; absent: any the policy allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_lengths_v4: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_lengths_v6: Option<Vec<u8>>,
    /// Seconds since the epoch.
    #[serde(default)]
    pub created: i64,
}

impl StoredToken {
    /// Whether it may ban or unban as `source`.
    pub fn allows_source(&self, source: &Source) -> bool {
        self.sources.as_ref().is_none_or(|s| s.contains(source))
    }

    /// Whether it may ban `prefix` (its length).
    pub fn allows_prefix(&self, prefix: &Prefix) -> bool {
        let lengths = if prefix.family() == netban_core::Family::V4 {
            &self.prefix_lengths_v4
        } else {
            &self.prefix_lengths_v6
        };
        lengths.as_ref().is_none_or(|l| l.contains(&prefix.len()))
    }
}

/// The whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenStore {
    #[serde(default, rename = "token")]
    pub tokens: Vec<StoredToken>,
}

/// The hex SHA-256 of a presented token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenStore {
    /// Reads the store; a missing file is an empty store (no token: the API refuses everyone).
    pub fn load(path: &Path) -> Result<TokenStore, TokenError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenStore::default()),
            Err(source) => {
                return Err(TokenError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| TokenError::Parse {
            path: path.into(),
            message: e.message().to_string(),
        })
    }

    /// Writes the store (mode 0600) in place of the old one, atomically.
    pub fn save(&self, path: &Path) -> Result<(), TokenError> {
        let error = |source| TokenError::Write {
            path: path.into(),
            source,
        };
        let text = toml::to_string(self).expect("the token store always serializes");
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(error)?;
        file.write_all(text.as_bytes()).map_err(error)?;
        file.sync_all().map_err(error)?;
        std::fs::rename(&temporary, path).map_err(error)
    }

    /// The token whose digest is `presented`'s, compared in constant time against every
    /// stored one (so timing tells nothing about which, or how many, digits matched).
    pub fn find(&self, presented: &str) -> Option<&StoredToken> {
        let wanted = digest(presented);
        let mut found = None;
        for token in &self.tokens {
            let Ok(stored) = hex::decode(&token.sha256) else {
                continue;
            };
            if bool::from(stored.as_slice().ct_eq(&wanted)) {
                found = Some(token);
            }
        }
        found
    }

    /// Makes a new token, stores its digest, and returns the token (shown once).
    pub fn add(&mut self, mut entry: StoredToken) -> Result<String, TokenError> {
        let valid = !entry.name.is_empty()
            && entry.name.len() <= 64
            && entry
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(TokenError::BadName(entry.name));
        }
        if self.tokens.iter().any(|t| t.name == entry.name) {
            return Err(TokenError::Exists(entry.name));
        }
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        entry.sha256 = hex::encode(digest(&token));
        self.tokens.push(entry);
        Ok(token)
    }

    /// Removes the token named `name`: it no longer opens anything.
    pub fn revoke(&mut self, name: &str) -> Result<StoredToken, TokenError> {
        let at = self
            .tokens
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| TokenError::Unknown(name.into()))?;
        Ok(self.tokens.remove(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> StoredToken {
        StoredToken {
            name: name.into(),
            role: TokenRole::Ban,
            sha256: String::new(),
            sources: Some(vec![Source::new("sshd").unwrap()]),
            prefix_lengths_v4: Some(vec![32]),
            prefix_lengths_v6: None,
            created: 0,
        }
    }

    #[test]
    fn tokens_are_found_by_digest_and_revoked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let mut store = TokenStore::load(&path).unwrap();
        let siem = store.add(entry("siem")).unwrap();
        let waf = store.add(entry("waf")).unwrap();
        assert!(siem.starts_with(TOKEN_PREFIX) && siem.len() == 68);
        assert_ne!(siem, waf);
        assert!(matches!(
            store.add(entry("siem")),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(
            store.add(entry("a b")),
            Err(TokenError::BadName(_))
        ));
        store.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&siem[TOKEN_PREFIX.len()..]),
            "the token itself is never stored"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut store = TokenStore::load(&path).unwrap();
        assert_eq!(store.find(&siem).unwrap().name, "siem");
        assert_eq!(store.find(&waf).unwrap().name, "waf");
        assert!(store.find("nbt_0000").is_none());
        store.revoke("siem").unwrap();
        assert!(store.find(&siem).is_none());
        assert!(matches!(store.revoke("siem"), Err(TokenError::Unknown(_))));
    }

    #[test]
    fn limits_on_sources_and_lengths() {
        let token = entry("siem");
        assert!(token.allows_source(&Source::new("sshd").unwrap()));
        assert!(!token.allows_source(&Source::new("recidive").unwrap()));
        assert!(token.allows_prefix(&"203.0.113.7".parse().unwrap()));
        assert!(!token.allows_prefix(&"203.0.113.0/24".parse().unwrap()));
        assert!(token.allows_prefix(&"2001:db8::/64".parse().unwrap()));
    }
}
