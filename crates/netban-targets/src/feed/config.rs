//! The `[[targets]]` section of a feed, and its checks.

use super::error::FeedError;
use netban_config::secret::{self, Secret};
use netban_core::Family;
use serde::Deserialize;
use std::path::PathBuf;

/// A list of bans served over the API's HTTP listener for firewalls that pull it.
///
/// ```toml
/// [[targets]]
/// name = "edl"
/// type = "feed"
/// # path = "/feeds/edl"                 # the default: /feeds/<name>; must start with /feeds/
/// capacity = 50000                      # lines the consumer takes (one family only; see below)
/// families = ["v4"]                     # default: both
/// hosts = "address"                     # "address": 203.0.113.7 (default) or "prefix": 203.0.113.7/32
/// comments = true                       # '#' header lines (name, entry count); default false
/// username = "edl"                      # HTTP basic: the user…
/// password_file = "/etc/netban/edl.pw"  # …and its password (mode 0600; or password_env)
/// token_file = "/etc/netban/edl.token"  # and/or a bearer token (or token_env)
/// # anonymous = false                   # true serves without credentials (say so explicitly)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Where the list is served on the API listener; `/feeds/<name>` by default.
    #[serde(default)]
    pub path: Option<String>,
    /// The most lines the consumer accepts, for a feed of one family (the placement rule
    /// decides which bans get them; the rest overflow to the target's `fallback`). A feed of
    /// both families takes the common `capacity_v4`/`capacity_v6` instead.
    #[serde(default)]
    pub capacity: Option<usize>,
    /// The families served (`"v4"`, `"v6"`); both by default.
    #[serde(default)]
    pub families: Option<Vec<Family>>,
    /// How a single address is written.
    #[serde(default)]
    pub hosts: HostForm,
    /// Whether the list starts with `#` comment lines (the feed's name and entry count).
    #[serde(default)]
    pub comments: bool,
    /// HTTP basic authentication: the user name.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// A bearer token (`Authorization: Bearer …`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
    /// Serve the list to anyone who can reach the listener. Off unless set: a block list
    /// tells whoever reads it what is being watched.
    #[serde(default)]
    pub anonymous: bool,
}

/// How a /32 or /128 is written: every consumer netban documents accepts both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostForm {
    /// `203.0.113.7` (a wider prefix is always `203.0.113.0/24`).
    #[default]
    Address,
    /// `203.0.113.7/32`.
    Prefix,
}

/// Who may pull the list.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub basic: Option<(String, Secret)>,
    pub token: Option<Secret>,
    pub anonymous: bool,
}

/// The checked settings of a feed.
#[derive(Clone, Debug)]
pub struct Settings {
    pub path: String,
    pub families: Vec<Family>,
    pub capacity: Option<usize>,
    pub hosts: HostForm,
    pub comments: bool,
    pub credentials: Credentials,
}

/// Where every feed is served: under this prefix, so a feed never shadows an API route.
pub const PATH_PREFIX: &str = "/feeds/";
/// The longest path accepted.
const MAX_PATH: usize = 128;

impl FeedConfig {
    /// Checks the settings and reads the secrets (refusing files others may read).
    pub fn resolve(&self, name: &str) -> Result<Settings, FeedError> {
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| format!("{PATH_PREFIX}{name}"));
        let tail = path.strip_prefix(PATH_PREFIX).unwrap_or("");
        let valid = !tail.is_empty()
            && path.len() <= MAX_PATH
            && !tail.ends_with(".md5")
            && tail
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
            && !tail.split('/').any(|part| part.is_empty() || part == "..");
        if !valid {
            return Err(FeedError::Path(path));
        }
        let mut families = self
            .families
            .clone()
            .unwrap_or_else(|| vec![Family::V4, Family::V6]);
        families.sort();
        families.dedup();
        if families.is_empty() {
            return Err(FeedError::NoFamily);
        }
        if self.capacity.is_some() && families.len() > 1 {
            return Err(FeedError::CapacityOfTwoFamilies);
        }
        if self.capacity == Some(0) {
            return Err(FeedError::ZeroCapacity);
        }
        let password = secret::resolve(
            "password",
            None,
            self.password_file.as_deref(),
            self.password_env.as_deref(),
        )?;
        let basic = match (&self.username, password) {
            (Some(user), Some(password)) => {
                if user.is_empty() || user.contains(':') {
                    return Err(FeedError::Username);
                }
                Some((user.clone(), password))
            }
            (None, None) => None,
            _ => return Err(FeedError::HalfBasic),
        };
        let token = secret::resolve(
            "token",
            None,
            self.token_file.as_deref(),
            self.token_env.as_deref(),
        )?;
        match (basic.is_some() || token.is_some(), self.anonymous) {
            (false, false) => return Err(FeedError::NoCredentials),
            (true, true) => return Err(FeedError::AnonymousWithCredentials),
            _ => {}
        }
        Ok(Settings {
            path,
            families,
            capacity: self.capacity,
            hosts: self.hosts,
            comments: self.comments,
            credentials: Credentials {
                basic,
                token,
                anonymous: self.anonymous,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(json: serde_json::Value) -> FeedConfig {
        serde_json::from_value(json).unwrap()
    }

    fn secret_file(dir: &std::path::Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn defaults_path_families_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(dir.path(), "t", 0o600);
        let settings = config(serde_json::json!({ "token_file": token }))
            .resolve("edl")
            .unwrap();
        assert_eq!(settings.path, "/feeds/edl");
        assert_eq!(settings.families, [Family::V4, Family::V6]);
        assert_eq!(settings.hosts, HostForm::Address);
        assert_eq!(settings.credentials.token.unwrap().expose(), "s3cret");
        assert!(settings.credentials.basic.is_none());
    }

    #[test]
    fn refuses_what_cannot_work_and_says_what_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let private = secret_file(dir.path(), "p", 0o600);
        let readable = secret_file(dir.path(), "r", 0o644);
        let error = |json: serde_json::Value| config(json).resolve("edl").unwrap_err().to_string();
        assert!(error(serde_json::json!({})).contains("anonymous = true"));
        assert!(
            error(serde_json::json!({ "anonymous": true, "token_file": private }))
                .contains("anonymous")
        );
        assert!(error(serde_json::json!({ "username": "u" })).contains("password_file"));
        assert!(
            error(serde_json::json!({ "username": "u", "password_file": readable }))
                .contains("chmod 600")
        );
        assert!(
            error(serde_json::json!({ "username": "a:b", "password_file": private }))
                .contains("':'")
        );
        for path in [
            "/v1/bans",
            "/feeds/",
            "/feeds/../x",
            "/feeds/a b",
            "/feeds/x.md5",
        ] {
            let text = error(serde_json::json!({ "anonymous": true, "path": path }));
            assert!(text.contains("/feeds/"), "{path}: {text}");
        }
        assert!(
            error(serde_json::json!({ "anonymous": true, "capacity": 10 })).contains("capacity_v4")
        );
        assert!(
            error(serde_json::json!({ "anonymous": true, "families": [] })).contains("families")
        );
        let ok = config(serde_json::json!({
            "anonymous": true, "capacity": 10, "families": ["v6"], "path": "/feeds/site-a/edl.txt",
        }))
        .resolve("edl")
        .unwrap();
        assert_eq!(
            (ok.capacity, ok.families, ok.path.as_str()),
            (Some(10), vec![Family::V6], "/feeds/site-a/edl.txt")
        );
    }
}
