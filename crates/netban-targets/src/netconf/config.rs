//! The `[[targets]]` section of a NETCONF target, and its checks.

use super::session::{Endpoint, HostKeyPolicy};
use crate::TargetError;
use netban_config::secret::{self, Secret};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how the NETCONF target works.
///
/// ```toml
/// [[targets]]
/// name = "conductor"
/// type = "netconf"
/// host = "conductor.example.net"
/// port = 830
/// username = "netban"
/// private_key = "/etc/netban/netconf_ed25519"
/// # private_key_passphrase_file = "/etc/netban/netconf.pass"   # if the key is encrypted
/// host_key_fingerprint = "SHA256:…"      # or known_hosts = "/etc/netban/known_hosts"
/// preset = "ssr"                         # or "generic" with a [targets.generic] table
/// tenant = "blacklist-fail2ban"
/// neighborhood = "internet"
/// # timeout_secs = 30, keepalive_secs = 30, lock_wait_secs = 10,
/// # confirmed_commit_secs = 60, max_batch = 5000
/// ```
///
/// The key's passphrase is given as `private_key_passphrase_file` (its first line; refused
/// unless only its owner may read it), `private_key_passphrase_env` (a variable of the
/// daemon), or inline `private_key_passphrase` (then netban.toml must not be readable by
/// every user); read when the target is built.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetconfConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    /// An OpenSSH private key file (key authentication only).
    pub private_key: PathBuf,
    #[serde(default)]
    pub private_key_passphrase: Option<Secret>,
    #[serde(default)]
    pub private_key_passphrase_file: Option<PathBuf>,
    #[serde(default)]
    pub private_key_passphrase_env: Option<String>,
    /// The server's host key as `ssh-keygen -lf` prints it (`SHA256:…`).
    #[serde(default)]
    pub host_key_fingerprint: Option<String>,
    /// A known_hosts file holding the server's key (used when no fingerprint is pinned).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Bound on every network step (connect, each operation).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u64,
    /// How long one apply keeps retrying (with backoff) to lock the candidate while another
    /// session holds it, before reporting the items failed (retried later by the daemon).
    #[serde(default = "default_lock_wait")]
    pub lock_wait_secs: u64,
    /// If set and the server offers confirmed-commit, commit with this confirm-timeout, read
    /// the running datastore back, and confirm only when netban's changes are there.
    #[serde(default)]
    pub confirmed_commit_secs: Option<u64>,
    /// Plan items per edit-config/commit.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    pub preset: Preset,
    /// `preset = "ssr"`: the tenant whose member lists the banned prefixes.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `preset = "ssr"`: the member (neighborhood) of that tenant.
    #[serde(default)]
    pub neighborhood: Option<String>,
    /// `preset = "generic"`: the operator's templates (boxed: rarely used, and it keeps
    /// `TargetKind` small).
    #[serde(default)]
    pub generic: Option<Box<GenericConfig>>,
}

/// Which data model netban edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 128T / Juniper SSR: `authority/tenant[name]/member[neighborhood]/address`.
    Ssr,
    /// Operator-supplied XML templates (see docs/targets/netconf.md).
    Generic,
}

/// The templates of `preset = "generic"`. Placeholders: `{{entries}}` in `edit`, and in the
/// entry templates `{{prefix}}` (`203.0.113.7/32`), `{{address}}` (`203.0.113.7`) and
/// `{{length}}` (`32`); nothing else is substituted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericConfig {
    /// The subtree filter (XML) that selects the list netban works in.
    pub filter: String,
    /// Element local names from the top of `<data>` down to the leaves holding the entries.
    pub path: Vec<String>,
    /// The `<config>` content of one edit, with `{{entries}}` where the entries go.
    pub edit: String,
    /// One entry to add (merged).
    pub add_entry: String,
    /// One entry to remove (the `nc` prefix is declared: `nc:operation="remove"`).
    pub remove_entry: String,
}

fn default_port() -> u16 {
    830
}
fn default_timeout() -> u64 {
    30
}
fn default_keepalive() -> u64 {
    30
}
fn default_lock_wait() -> u64 {
    10
}
fn default_max_batch() -> usize {
    5000
}

impl NetconfConfig {
    /// The secrets written inline in netban.toml (by key), for the daemon's check that the
    /// file is not readable by every user.
    pub fn inline_secrets(&self) -> Vec<&'static str> {
        if self.private_key_passphrase.is_some() {
            vec!["private_key_passphrase"]
        } else {
            Vec::new()
        }
    }

    /// Checks the connection settings and builds the SSH endpoint from them (the data area
    /// is built from the preset by `Area::from_config`).
    pub(super) fn endpoint(&self) -> Result<Endpoint, TargetError> {
        let bad = |msg: String| Err(TargetError::config(msg));
        if self.host.trim().is_empty() {
            return bad("netconf host is empty: give the server's name or address".into());
        }
        if self.username.is_empty() {
            return bad("netconf username is empty".into());
        }
        if self.timeout_secs == 0 || self.timeout_secs > 600 {
            return bad(format!(
                "netconf timeout_secs = {}: use 1-600",
                self.timeout_secs
            ));
        }
        if self.max_batch == 0 {
            return bad("netconf max_batch must be at least 1".into());
        }
        if let Some(secs) = self.confirmed_commit_secs {
            if !(1..=3600).contains(&secs) {
                return bad(format!(
                    "netconf confirmed_commit_secs = {secs}: use 1-3600"
                ));
            }
        }
        let host_key = match (&self.host_key_fingerprint, &self.known_hosts) {
            (Some(fp), _) if fp.starts_with("SHA256:") => HostKeyPolicy::Fingerprint(fp.clone()),
            (Some(fp), _) => {
                return bad(format!(
                    "netconf host_key_fingerprint {fp:?}: give it as `ssh-keygen -lf` prints it \
                     (SHA256:…)"
                ))
            }
            (None, Some(path)) => HostKeyPolicy::KnownHosts(path.clone()),
            (None, None) => {
                return bad(
                    "netconf: pin the server's host key with host_key_fingerprint \
                            (SHA256:…) or known_hosts; netban never trusts an unknown key"
                        .into(),
                )
            }
        };
        let private_key_passphrase = secret::resolve(
            "netconf private_key_passphrase",
            self.private_key_passphrase.as_ref(),
            self.private_key_passphrase_file.as_deref(),
            self.private_key_passphrase_env.as_deref(),
        )
        .map_err(TargetError::config)?;
        let endpoint = Endpoint {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            private_key: self.private_key.clone(),
            private_key_passphrase,
            host_key,
            timeout: Duration::from_secs(self.timeout_secs),
            keepalive: Duration::from_secs(self.keepalive_secs.max(1)),
        };
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;

    const SSR: &str = r#"{"host": "127.0.0.1", "username": "root", "private_key": "/k",
        "host_key_fingerprint": "SHA256:abc", "preset": "ssr", "tenant": "blacklist",
        "neighborhood": "internet"}"#;

    fn parse(json: &str) -> Result<NetconfConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn ssr_defaults() {
        let c = parse(SSR).unwrap();
        assert_eq!((c.port, c.timeout_secs, c.lock_wait_secs), (830, 30, 10));
        assert_eq!(c.confirmed_commit_secs, None);
        assert_eq!(c.endpoint().unwrap().port, 830);
    }

    #[test]
    fn selected_through_the_tagged_target_kind() {
        let json = SSR.replacen('{', r#"{"type": "netconf", "#, 1);
        let kind: TargetKind = serde_json::from_str(&json).unwrap();
        assert_eq!(kind.kind(), "netconf");
        let typo = SSR.replacen('{', r#"{"type": "netconf", "tennant": "x", "#, 1);
        assert!(serde_json::from_str::<TargetKind>(&typo)
            .unwrap_err()
            .to_string()
            .contains("tennant"));
    }

    #[test]
    fn refused_configurations() {
        let bad_pin = SSR.replace(
            r#""host_key_fingerprint": "SHA256:abc""#,
            r#""host_key_fingerprint": "abc""#,
        );
        assert!(matches!(
            parse(&bad_pin).unwrap().endpoint(),
            Err(TargetError::Config(_))
        ));
        let no_pin = SSR.replace(r#""host_key_fingerprint": "SHA256:abc","#, "");
        match parse(&no_pin).unwrap().endpoint() {
            Err(TargetError::Config(m)) => assert!(m.to_string().contains("never trusts"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_passphrase_comes_from_a_private_file_and_never_prints() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "hs-netconf-pass\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut c = parse(SSR).unwrap();
        c.private_key_passphrase_file = Some(file.clone());
        assert!(c.inline_secrets().is_empty());
        let endpoint = c.endpoint().unwrap();
        assert_eq!(
            endpoint.private_key_passphrase.as_ref().unwrap().expose(),
            "hs-netconf-pass"
        );
        assert!(!format!("{endpoint:?} {c:?}").contains("hs-netconf-pass"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = c.endpoint().unwrap_err().to_string();
        assert!(
            err.contains("0644") && err.contains(&file.display().to_string()),
            "{err}"
        );
        c.private_key_passphrase = Some("inline".into());
        assert!(c.endpoint().unwrap_err().to_string().contains("only one"));
        assert_eq!(c.inline_secrets(), ["private_key_passphrase"]);
    }
}
