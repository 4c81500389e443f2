//! The `[[targets]]` section of a Cisco IOS target, and its checks.

use crate::TargetError;
use netban_config::secret::{self, Secret};
use serde::Deserialize;
use std::path::PathBuf;

/// How to reach one router and which ACL or object group netban owns on it.
///
/// ```toml
/// [[targets]]
/// name = "edge-router"
/// type = "cisco_ios"
/// host = "198.51.100.1"          # address or name of the router's SSH server
/// port = 22
/// username = "netban"
/// password_file = "/etc/netban/router.pw"   # and/or private_key = "/etc/netban/id_ed25519"
/// enable_secret_file = "/etc/netban/router.enable"   # only if the user logs in at `>`
/// host_key_fingerprint = "SHA256:…"   # or known_hosts = "/etc/netban/known_hosts"
/// mode = "acl"                   # or "object-group"
/// acl = "NETBAN"                 # named extended ACL netban owns (acl mode)
/// acl6 = "NETBAN6"               # IPv6 ACL netban owns (acl mode; "" = no IPv6)
/// object_group = "NETBAN"        # object-group mode: the network group netban owns
/// action = "deny"                # the verb of netban's entries ("permit" for class-map use)
/// permit_tail = true             # keep a final `permit ip any any` (acl mode, action deny)
/// save_interval_secs = 300       # `write memory` at most this often after changes (0 = never)
/// ```
///
/// Each secret (`password`, `enable_secret`, `private_key_passphrase`) is given one of three
/// ways: `KEY_file` (its first line; refused unless only its owner may read it), `KEY_env`
/// (an environment variable of the daemon), or `KEY` inline (then the daemon refuses a
/// netban.toml every user can read). Files and variables are read when the target is built
/// (start, `check-config`); a changed secret takes a restart.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiscoIosConfig {
    /// The router's SSH address (IP or DNS name).
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    /// Password for SSH password (or keyboard-interactive) authentication. After
    /// [`CiscoIosConfig::validated`], the password from whichever setting gave it.
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// An OpenSSH private key file for public-key authentication (tried before the password).
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    /// Passphrase of `private_key`, if it is encrypted.
    #[serde(default)]
    pub private_key_passphrase: Option<Secret>,
    #[serde(default)]
    pub private_key_passphrase_file: Option<PathBuf>,
    #[serde(default)]
    pub private_key_passphrase_env: Option<String>,
    /// The enable secret, needed when the user lands at the `>` (user EXEC) prompt.
    #[serde(default)]
    pub enable_secret: Option<Secret>,
    #[serde(default)]
    pub enable_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub enable_secret_env: Option<String>,
    /// The router's host key as `SHA256:<base64>` (what `ssh-keygen -lf` prints).
    #[serde(default)]
    pub host_key_fingerprint: Option<String>,
    /// An OpenSSH known_hosts file holding the router's host key.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    #[serde(default)]
    pub mode: Mode,
    /// Named extended IPv4 ACL netban owns (acl mode).
    #[serde(default = "default_acl")]
    pub acl: String,
    /// Named IPv6 ACL netban owns (acl mode). Empty: the target handles IPv4 only.
    #[serde(default = "default_acl6")]
    pub acl6: String,
    /// `object-group network` netban owns (object-group mode; IPv4 only).
    #[serde(default = "default_acl")]
    pub object_group: String,
    /// The verb of netban's ACL entries.
    #[serde(default)]
    pub action: Action,
    /// Keep `permit ip any any` / `permit ipv6 any any` as the last entry of netban's ACLs at
    /// sequence [`TAIL_SEQUENCE`], so an ACL bound to an interface passes what is not banned.
    /// Default: true in acl mode with action deny.
    #[serde(default)]
    pub permit_tail: Option<bool>,
    /// `write memory` after changes, at most once per this many seconds; 0 = never (the
    /// running configuration is lost at reload, and netban restores it on its next sync).
    #[serde(default)]
    pub save_interval_secs: u64,
    /// SSH keepalive interval; the session is dropped after 3 unanswered keepalives.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u64,
    /// Connection and per-command timeout (a command that keeps producing output may run longer).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Also offer the SHA-1 key exchanges, CBC ciphers and hmac-sha1 that old IOS images need.
    #[serde(default)]
    pub legacy_algorithms: bool,
}

/// Where netban keeps its bans on the router.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One named extended ACL per family; each ban is one ACE.
    #[default]
    Acl,
    /// One `object-group network`; each ban is one member (IPv4 only).
    ObjectGroup,
}

/// The verb of netban's ACEs: `deny` for an ACL bound to an interface; `permit` for an ACL a
/// zone-based policy's class-map matches in order to drop (the seed's setup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Deny,
    Permit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Permit => "permit",
        }
    }
}

/// The sequence number of the trailing `permit … any any` (the highest IOS accepts), so every
/// ban entry can be numbered below it.
pub const TAIL_SEQUENCE: u32 = 2_147_483_647;

fn default_port() -> u16 {
    22
}
fn default_acl() -> String {
    "NETBAN".to_string()
}
fn default_acl6() -> String {
    "NETBAN6".to_string()
}
fn default_keepalive() -> u64 {
    30
}
fn default_timeout() -> u64 {
    30
}

impl CiscoIosConfig {
    /// A config with every default, for `host` and `username` (tests and docs).
    pub fn new(host: &str, port: u16, username: &str) -> CiscoIosConfig {
        CiscoIosConfig {
            host: host.to_string(),
            port,
            username: username.to_string(),
            password: None,
            password_file: None,
            password_env: None,
            private_key: None,
            private_key_passphrase: None,
            private_key_passphrase_file: None,
            private_key_passphrase_env: None,
            enable_secret: None,
            enable_secret_file: None,
            enable_secret_env: None,
            host_key_fingerprint: None,
            known_hosts: None,
            mode: Mode::Acl,
            acl: default_acl(),
            acl6: default_acl6(),
            object_group: default_acl(),
            action: Action::Deny,
            permit_tail: None,
            save_interval_secs: 0,
            keepalive_secs: default_keepalive(),
            timeout_secs: default_timeout(),
            legacy_algorithms: false,
        }
    }

    /// Whether netban keeps the trailing `permit … any any`.
    pub fn tail(&self) -> bool {
        self.mode == Mode::Acl && self.permit_tail.unwrap_or(self.action == Action::Deny)
    }

    /// Whether the target handles IPv6 (acl mode with an `acl6`).
    pub fn ipv6(&self) -> bool {
        self.mode == Mode::Acl && !self.acl6.is_empty()
    }

    /// The secrets written inline in netban.toml (by key), for the daemon's check that the
    /// file is not readable by every user.
    pub fn inline_secrets(&self) -> Vec<&'static str> {
        [
            ("password", self.password.is_some()),
            ("enable_secret", self.enable_secret.is_some()),
            (
                "private_key_passphrase",
                self.private_key_passphrase.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// Reads each secret from its file or variable into its inline field (the `_file` and
    /// `_env` settings are then cleared, so validating twice reads nothing twice).
    fn resolve_secrets(&mut self) -> Result<(), secret::SecretError> {
        for (what, inline, file, env) in [
            (
                "password",
                &mut self.password,
                &mut self.password_file,
                &mut self.password_env,
            ),
            (
                "enable_secret",
                &mut self.enable_secret,
                &mut self.enable_secret_file,
                &mut self.enable_secret_env,
            ),
            (
                "private_key_passphrase",
                &mut self.private_key_passphrase,
                &mut self.private_key_passphrase_file,
                &mut self.private_key_passphrase_env,
            ),
        ] {
            *inline = secret::resolve(
                &format!("cisco_ios {what}"),
                inline.as_ref(),
                file.as_deref(),
                env.as_deref(),
            )?;
            *file = None;
            *env = None;
        }
        Ok(())
    }

    /// Reads the secrets (see [`CiscoIosConfig::resolve_secrets`]) and checks every value that
    /// ends up on the router's command line or decides trust.
    pub fn validated(mut self) -> Result<Self, TargetError> {
        self.resolve_secrets().map_err(TargetError::config)?;
        let bad = |msg: String| Err(TargetError::config(msg));
        if self.host.is_empty() || !self.host.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(format!(
                "cisco_ios host {:?}: give the router's address or DNS name",
                self.host
            ));
        }
        if self.username.is_empty() || !self.username.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("cisco_ios username is empty or has spaces/control characters".into());
        }
        if self.password.is_none() && self.private_key.is_none() {
            return bad(
                "cisco_ios: give `password_file` (or `password_env`) or `private_key` to log in"
                    .into(),
            );
        }
        if let Some(secret) = &self.enable_secret {
            if secret.expose().contains(['\r', '\n']) {
                return bad("cisco_ios enable_secret contains a line break".into());
            }
        }
        match (&self.host_key_fingerprint, &self.known_hosts) {
            (None, None) => {
                return bad(
                    "cisco_ios: the router's host key must be pinned: set \
                     `host_key_fingerprint = \"SHA256:…\"` (from `ssh-keygen -lf`) or \
                     `known_hosts = \"/path/to/known_hosts\"`; netban never accepts an unknown key"
                        .into(),
                )
            }
            (Some(fp), _) if !fp.starts_with("SHA256:") || fp.len() < 8 => {
                return bad(format!(
                    "cisco_ios host_key_fingerprint {fp:?}: write it as SHA256:<base64>, as \
                     `ssh-keygen -lf` prints it"
                ))
            }
            _ => {}
        }
        let names: Vec<(&str, &str)> = match self.mode {
            Mode::Acl => {
                let mut v = vec![("acl", self.acl.as_str())];
                if !self.acl6.is_empty() {
                    v.push(("acl6", self.acl6.as_str()));
                }
                v
            }
            Mode::ObjectGroup => vec![("object_group", self.object_group.as_str())],
        };
        for (key, name) in names {
            if !valid_name(name) {
                return bad(format!(
                    "cisco_ios {key} {name:?}: use 1-64 letters, digits, '_' or '-', starting \
                     with a letter"
                ));
            }
        }
        if self.mode == Mode::Acl && !self.acl6.is_empty() && self.acl == self.acl6 {
            return bad("cisco_ios acl and acl6 must differ".into());
        }
        if self.permit_tail == Some(true) && (self.mode != Mode::Acl || self.action != Action::Deny)
        {
            return bad(
                "cisco_ios permit_tail needs mode = \"acl\" and action = \"deny\" (a \
                 trailing permit after permit entries would match everything)"
                    .into(),
            );
        }
        if self.timeout_secs == 0 || self.keepalive_secs == 0 {
            return bad("cisco_ios timeout_secs and keepalive_secs must be at least 1".into());
        }
        Ok(self)
    }
}

/// ACL and object-group names netban accepts: a conservative subset of what IOS allows, so a
/// name can never carry a space or a second command.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;

    fn base() -> CiscoIosConfig {
        CiscoIosConfig {
            password: Some("pw".into()),
            host_key_fingerprint: Some("SHA256:abcdefgh".into()),
            ..CiscoIosConfig::new("198.51.100.1", 22, "netban")
        }
    }

    #[test]
    fn parses_through_the_tagged_target_kind_with_defaults() {
        let kind: TargetKind = serde_json::from_str(
            r#"{"type": "cisco_ios", "host": "r1", "username": "u", "password": "p",
                "host_key_fingerprint": "SHA256:xxxxxxxx"}"#,
        )
        .unwrap();
        assert_eq!(kind.kind(), "cisco_ios");
        let TargetKind::CiscoIos(c) = kind else {
            panic!("not cisco_ios")
        };
        let c = c.validated().unwrap();
        assert_eq!((c.port, c.mode, c.action), (22, Mode::Acl, Action::Deny));
        assert_eq!((c.acl.as_str(), c.acl6.as_str()), ("NETBAN", "NETBAN6"));
        assert!(c.tail() && c.ipv6());
        assert_eq!(c.save_interval_secs, 0);
    }

    #[test]
    fn unknown_keys_and_modes_are_refused() {
        let with = |extra: &str| {
            serde_json::from_str::<TargetKind>(&format!(
                r#"{{"type": "cisco_ios", "host": "r1", "username": "u", {extra}}}"#
            ))
            .map(drop)
            .map_err(|e| e.to_string())
        };
        assert!(with(r#""pasword": "x""#).unwrap_err().contains("pasword"));
        assert!(with(r#""mode": "prefix-list""#).is_err());
        assert!(with(r#""mode": "object-group""#).is_ok());
    }

    #[test]
    fn class_map_variant_has_no_tail_and_object_groups_no_ipv6() {
        let c = CiscoIosConfig {
            action: Action::Permit,
            ..base()
        };
        assert!(!c.tail() && c.ipv6());
        let c = CiscoIosConfig {
            mode: Mode::ObjectGroup,
            ..base()
        };
        assert!(!c.tail() && !c.ipv6());
        let c = CiscoIosConfig {
            acl6: String::new(),
            ..base()
        };
        assert!(c.clone().validated().is_ok() && !c.ipv6());
    }

    #[test]
    fn values_that_reach_the_router_or_decide_trust_are_checked() {
        let with = |f: fn(&mut CiscoIosConfig)| {
            let mut c = base();
            f(&mut c);
            c.validated()
        };
        for bad in [
            with(|c| c.acl = "NET BAN".into()),
            with(|c| c.acl = "NETBAN\nend".into()),
            with(|c| c.acl = "1ACL".into()),
            with(|c| c.acl6 = "X;Y".into()),
            with(|c| c.acl6 = c.acl.clone()),
            with(|c| {
                c.mode = Mode::ObjectGroup;
                c.object_group = String::new()
            }),
            with(|c| c.host_key_fingerprint = None),
            with(|c| c.host_key_fingerprint = Some("ab:cd:ef".into())),
            with(|c| c.password = None),
            with(|c| c.enable_secret = Some("a\nb".into())),
            with(|c| {
                c.action = Action::Permit;
                c.permit_tail = Some(true)
            }),
            with(|c| c.timeout_secs = 0),
            with(|c| c.host = "r 1".into()),
        ] {
            assert!(matches!(bad, Err(TargetError::Config(_))), "{bad:?}");
        }
        let known = with(|c| {
            c.host_key_fingerprint = None;
            c.known_hosts = Some("/etc/netban/known_hosts".into())
        });
        assert!(known.is_ok());
    }

    #[test]
    fn secrets_come_from_private_files_or_the_environment_and_never_print() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let password = write("pw", "hs-router-pw\n", 0o600);
        let enable = write("enable", "hs-enable\n", 0o400);
        std::env::set_var("HS_CISCO_PASSPHRASE", "hs-passphrase");
        let c = CiscoIosConfig {
            password: None,
            password_file: Some(password.clone()),
            enable_secret_file: Some(enable),
            private_key_passphrase_env: Some("HS_CISCO_PASSPHRASE".into()),
            ..base()
        };
        assert!(c.inline_secrets().is_empty());
        let c = c.validated().unwrap();
        assert_eq!(c.password.as_ref().unwrap().expose(), "hs-router-pw");
        assert_eq!(c.enable_secret.as_ref().unwrap().expose(), "hs-enable");
        assert_eq!(
            c.private_key_passphrase.as_ref().unwrap().expose(),
            "hs-passphrase"
        );
        let shown = format!("{c:?}");
        for s in ["hs-router-pw", "hs-enable", "hs-passphrase"] {
            assert!(!shown.contains(s), "{shown}");
        }
        // Validating again reads nothing again and keeps the secrets.
        assert!(c.validated().is_ok());

        let readable = write("pw-readable", "hs-router-pw\n", 0o640);
        let err = CiscoIosConfig {
            password: None,
            password_file: Some(readable.clone()),
            ..base()
        }
        .validated()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&readable.display().to_string())
                && err.contains("0640")
                && err.contains("cisco_ios password")
                && !err.contains("hs-router-pw"),
            "{err}"
        );
        let err = CiscoIosConfig {
            password_file: Some(password),
            ..base()
        }
        .validated()
        .unwrap_err()
        .to_string();
        assert!(err.contains("only one"), "{err}");
        let inline = CiscoIosConfig {
            enable_secret: Some("x".into()),
            ..base()
        };
        assert_eq!(inline.inline_secrets(), ["password", "enable_secret"]);
    }
}
