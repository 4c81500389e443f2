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
//! expires = 1767232000          # optional: refused (401) from this second on
//! ```
//!
//! `netban token add NAME --expires 30d` (or an RFC 3339 time) sets `expires`; an expired
//! token is refused like a revoked one, and `netban token list` shows when each expires.

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
    #[error(
        "expiry {0:?}: give a duration (30d, 12h, 90m, 2w) or an RFC 3339 time \
         (2027-01-31T00:00:00Z)"
    )]
    BadExpiry(String),
    #[error("expiry {0:?} is in the past")]
    ExpiryPast(String),
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
    /// Seconds since the epoch from which the token is refused; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
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

    /// Whether it has expired at `now` (seconds since the epoch).
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

/// When a token made at `now` (seconds since the epoch) expires, from what an operator
/// wrote: a duration from now (`30d`, `12h`, `90m`, `3600s`, `2w`) or an RFC 3339 time
/// (`2027-01-31T00:00:00Z`, `2027-01-31T01:00:00+01:00`). A time in the past is refused.
pub fn parse_expiry(text: &str, now: i64) -> Result<i64, TokenError> {
    let bad = || TokenError::BadExpiry(text.to_string());
    let at = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) if split > 0 && text.len() - split == 1 => {
            let count: i64 = text[..split].parse().map_err(|_| bad())?;
            let unit = match &text[split..] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 7 * 86_400,
                _ => return Err(bad()),
            };
            count
                .checked_mul(unit)
                .and_then(|s| now.checked_add(s))
                .ok_or_else(bad)?
        }
        _ => rfc3339(text).ok_or_else(bad)?,
    };
    if at <= now {
        return Err(TokenError::ExpiryPast(text.to_string()));
    }
    Ok(at)
}

/// Seconds since the epoch of an RFC 3339 date-time (`T` or a space between date and time;
/// fractions of a second dropped), without a time zone database.
fn rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let number = |from, to| number_in(text, from, to);
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (number_in(rest, 1, 3)?, number_in(rest, 4, 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days since 1970-01-01 from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset)
}

fn number_in(text: &str, from: usize, to: usize) -> Option<i64> {
    let part = text.get(from..to)?;
    if !part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
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
            expires: None,
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

    #[test]
    fn expiry_is_a_duration_or_an_rfc3339_time_and_never_in_the_past() {
        let now = 1_764_640_000; // 2025-12-02T01:46:40Z
        assert_eq!(parse_expiry("30d", now).unwrap(), now + 30 * 86_400);
        assert_eq!(parse_expiry("12h", now).unwrap(), now + 12 * 3600);
        assert_eq!(parse_expiry("90m", now).unwrap(), now + 90 * 60);
        assert_eq!(parse_expiry("2w", now).unwrap(), now + 14 * 86_400);
        assert_eq!(parse_expiry("5s", now).unwrap(), now + 5);
        assert_eq!(
            parse_expiry("2027-01-31T00:00:00Z", now).unwrap(),
            1_801_353_600
        );
        assert_eq!(
            parse_expiry("2027-01-31T01:00:00.250+01:00", now).unwrap(),
            1_801_353_600
        );
        assert_eq!(
            parse_expiry("2028-02-29 12:00:00-00:30", now).unwrap(),
            1_835_438_400 + 1800
        );
        for bad in [
            "",
            "30",
            "d",
            "30x",
            "-5d",
            "30 d",
            "2027-01-31",
            "2027-02-30T00:00:00Z",
            "2027-01-31T24:00:00Z",
            "2027-01-31T00:00:00",
            "2027-01-31T00:00:00+0100",
            "2027-1-31T00:00:00Z",
            "99999999999999999999d",
        ] {
            assert!(
                matches!(parse_expiry(bad, now), Err(TokenError::BadExpiry(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_expiry("2025-12-01T00:00:00Z", now),
            Err(TokenError::ExpiryPast(_))
        ));
        assert!(matches!(
            parse_expiry("0s", now),
            Err(TokenError::ExpiryPast(_))
        ));

        let mut token = entry("siem");
        assert!(!token.expired_at(now));
        token.expires = Some(now + 10);
        assert!(!token.expired_at(now + 9));
        assert!(token.expired_at(now + 10));
    }
}
