//! `netban.toml`, shared by the daemon and the client, and the allowlist files it names.
//!
//! The client reads only what it needs ([`Config::load_for_client`]: the socket path; the
//! ledger and policy when the daemon is down and it records a ban itself), never the
//! `[[targets]]` tables and the secrets they may hold. Target sections are kept as raw tables
//! here and typed by the daemon, which owns the drivers (`netban-targets`). Secrets are read
//! by [`secret`]; the daemon refuses a netban.toml every user can read that holds one inline.
//!
//! ```toml
//! [daemon]
//! socket = "/run/netban/netban.sock"
//! ledger = "/var/lib/netban/ledger.db"
//!
//! [policy]
//! allowlist = ["198.51.100.0/24"]
//! allowlist_files = ["/etc/netban/allowlist.txt"]
//! protected = ["10.255.0.0/16"]      # management networks
//! protect_own_addresses = true       # these four are on by default: this machine's addresses,
//! protect_gateways = true            # its default gateways (IPv4, IPv6 and link-local),
//! protect_resolvers = true           # the nameservers of /etc/resolv.conf, and every
//! protect_targets = true             # target's management address (device host, BGP peers)
//! breadth = { min_len_v4 = 24, min_len_v6 = 48 }
//! escalation = { enabled = true, factor = 2.0, max_secs = 604800, window_secs = 2592000 }
//!
//! [[targets]]
//! name = "edge"
//! type = "nftables"
//! netns = "router"
//! ```

pub mod api;
pub mod infrastructure;
pub mod secret;
pub mod sources;
pub mod tokens;

use netban_core::policy::{Breadth, Escalation, Policy, Protected, Protection};
use netban_core::{OriginHost, Prefix};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where the daemon and client look when no `--config` is given.
pub const DEFAULT_CONFIG: &str = "/etc/netban/netban.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The parser's message and position, without the text of the offending line (it may
    /// hold a secret).
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}: {message}")]
    AllowlistEntry {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
}

impl ConfigError {
    fn parse(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map_or(0, |s| s.start).min(text.len());
        let before = &text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = offset
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        ConfigError::Parse {
            path: path.into(),
            line,
            column,
            message: error.message().trim().to_string(),
        }
    }
}

/// The file a configuration was read from, and its permission bits.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub mode: u32,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub reconciler: ReconcilerSection,
    /// The HTTP API and `/metrics` (`[api]`); off when absent.
    #[serde(default)]
    pub api: Option<api::ApiSection>,
    /// One table per enforcement point; typed by the daemon.
    #[serde(default)]
    pub targets: Vec<toml::Table>,
    /// Detectors the daemon polls for bans (`[[sources]]`: CrowdSec LAPIs).
    #[serde(default)]
    pub sources: Vec<sources::SourceSection>,
    /// Where this configuration was read from ([`Config::load`]).
    #[serde(skip)]
    pub file: Option<ConfigFile>,
}

/// Shows each target table by its name and type only: a raw table may hold a secret inline.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let targets: Vec<String> = self
            .targets
            .iter()
            .map(|t| {
                let key = |k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
                format!("{} ({}, {} keys)", key("name"), key("type"), t.len())
            })
            .collect();
        f.debug_struct("Config")
            .field("daemon", &self.daemon)
            .field("policy", &self.policy)
            .field("reconciler", &self.reconciler)
            .field("api", &self.api)
            .field("targets", &targets)
            .field("sources", &self.sources)
            .field("file", &self.file)
            .finish()
    }
}

/// What the client reads: everything but the `[[targets]]` tables, which are skipped unread.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientView {
    #[serde(default)]
    daemon: DaemonSection,
    #[serde(default)]
    policy: PolicySection,
    #[serde(default)]
    reconciler: ReconcilerSection,
    /// For `netban token` (where the token store is).
    #[serde(default)]
    api: Option<api::ApiSection>,
    #[serde(default, rename = "targets")]
    _targets: serde::de::IgnoredAny,
    #[serde(default, rename = "sources")]
    _sources: serde::de::IgnoredAny,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    pub socket: PathBuf,
    pub ledger: LedgerLocation,
    /// The PostgreSQL password, first line of this file (kept out of netban.toml).
    pub ledger_password_file: Option<PathBuf>,
    /// With a shared ledger: this host's spool, where bans wait while the ledger is away.
    pub spool: PathBuf,
    /// This host's name in history and in leases (defaults to the kernel's hostname).
    pub host: Option<OriginHost>,
    /// Who may do what over the socket (`[daemon.access]`).
    pub access: AccessSection,
    /// Days of history (events) the ledger keeps; 0 keeps everything. Never less than the
    /// escalation window, which counts earlier bans in it.
    pub history_days: u32,
}

/// Roles of the socket's callers, told apart by the kernel's peer credentials: root (and the
/// daemon's own user) and members of `admin_group` may do everything; members of `ban_group`
/// may ban and unban under a named source; everyone else may only read (ping, list, status,
/// history).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    pub admin_group: Option<String>,
    pub ban_group: Option<String>,
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            admin_group: None,
            ban_group: Some("netban".to_string()),
        }
    }
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            socket: PathBuf::from("/run/netban/netban.sock"),
            ledger: LedgerLocation::Sqlite(PathBuf::from("/var/lib/netban/ledger.db")),
            ledger_password_file: None,
            spool: PathBuf::from("/var/lib/netban/spool.db"),
            host: None,
            access: AccessSection::default(),
            history_days: 365,
        }
    }
}

/// Where the ledger lives: a SQLite file (the embedded default, one host) or a PostgreSQL
/// database a fleet of hosts shares (`ledger = "postgres://…"`, several hosts allowed as libpq
/// spells them).
#[derive(Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl LedgerLocation {
    /// What `netban_ledger::open` takes.
    pub fn spec(&self) -> std::borrow::Cow<'_, str> {
        match self {
            LedgerLocation::Sqlite(path) => path.to_string_lossy(),
            LedgerLocation::Postgres(url) => url.into(),
        }
    }

    /// Whether several hosts may share this ledger.
    pub fn is_shared(&self) -> bool {
        matches!(self, LedgerLocation::Postgres(_))
    }

    /// Whether the URL itself holds a password (`postgres://user:password@…` or a
    /// `password=` parameter), rather than `ledger_password_file`.
    pub fn has_inline_password(&self) -> bool {
        let LedgerLocation::Postgres(url) = self else {
            return false;
        };
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, q),
            None => (rest, ""),
        };
        let userinfo = authority.split_once('@').map(|(u, _)| u);
        userinfo.is_some_and(|u| u.contains(':'))
            || query
                .split('&')
                .any(|kv| kv.split('=').next() == Some("password"))
    }
}

/// Never prints a PostgreSQL URL (it may hold a password).
impl std::fmt::Debug for LedgerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerLocation::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            LedgerLocation::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl std::fmt::Display for LedgerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerLocation::Sqlite(path) => write!(f, "{}", path.display()),
            LedgerLocation::Postgres(_) => f.write_str("the PostgreSQL ledger"),
        }
    }
}

impl<'de> Deserialize<'de> for LedgerLocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(
            if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                LedgerLocation::Postgres(text)
            } else {
                LedgerLocation::Sqlite(PathBuf::from(text))
            },
        )
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    pub allowlist: Vec<Prefix>,
    /// Files of CIDRs, one per line, `#` comments; re-read when they change.
    pub allowlist_files: Vec<PathBuf>,
    /// Management networks: never banned, reported as protected.
    pub protected: Vec<Prefix>,
    /// Never ban an address configured on this machine.
    pub protect_own_addresses: bool,
    /// Never ban this machine's default gateways (IPv4 and IPv6, link-local included).
    pub protect_gateways: bool,
    /// Never ban the nameservers of /etc/resolv.conf.
    pub protect_resolvers: bool,
    /// Never ban a target's management address (a device's host, ExaFS's host, BGP peers).
    pub protect_targets: bool,
    pub breadth: Breadth,
    pub escalation: Escalation,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            allowlist: Vec::new(),
            allowlist_files: Vec::new(),
            protected: Vec::new(),
            protect_own_addresses: true,
            protect_gateways: true,
            protect_resolvers: true,
            protect_targets: true,
            breadth: Breadth::default(),
            escalation: Escalation::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcilerSection {
    /// Full resync (observe, diff, repair) of every target this often.
    pub resync_secs: u64,
    /// Backoff after a failure: doubles from `retry_min_secs` up to `retry_max_secs`.
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    /// How often the daemon looks for writes other processes made to the ledger and for
    /// allowlist file changes.
    pub poll_millis: u64,
}

impl Default for ReconcilerSection {
    fn default() -> Self {
        ReconcilerSection {
            resync_secs: 60,
            retry_min_secs: 1,
            retry_max_secs: 60,
            poll_millis: 1000,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let mut config = Config::parse(&text, path)?;
        config.file = file_of(path);
        Ok(config)
    }

    /// What the client needs: like [`Config::load`], but the `[[targets]]` tables (and any
    /// secret in them) are skipped, so `targets` is empty.
    pub fn load_for_client(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let view: ClientView =
            toml::from_str(&text).map_err(|e| ConfigError::parse(path, &text, &e))?;
        let config = Config {
            daemon: view.daemon,
            policy: view.policy,
            reconciler: view.reconciler,
            api: view.api,
            targets: Vec::new(),
            sources: Vec::new(),
            file: file_of(path),
        };
        config.finish(path)
    }

    /// Parses `text`; `path` only names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::parse(path, text, &e))?;
        config.finish(path)
    }

    /// Anchors relative paths at the file's directory and checks what serde cannot.
    fn finish(mut self, path: &Path) -> Result<Config, ConfigError> {
        let config = &mut self;
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        anchor(&mut config.daemon.socket);
        if let LedgerLocation::Sqlite(path) = &mut config.daemon.ledger {
            anchor(path);
        }
        if let Some(path) = &mut config.daemon.ledger_password_file {
            anchor(path);
        }
        anchor(&mut config.daemon.spool);
        config.policy.allowlist_files.iter_mut().for_each(anchor);
        for source in &mut config.sources {
            let sources::SourceSection::Crowdsec(c) = source;
            if let Some(path) = &mut c.api_key_file {
                anchor(path);
            }
        }
        sources::check(&config.sources)?;
        if config.reconciler.retry_min_secs == 0
            || config.reconciler.retry_max_secs < config.reconciler.retry_min_secs
        {
            return Err(ConfigError::Invalid(format!(
                "{}: reconciler.retry_min_secs must be ≥ 1 and ≤ retry_max_secs",
                path.display()
            )));
        }
        Ok(self)
    }

    /// Refuses to go on when this configuration holds a secret inline (the ledger URL's
    /// password, or `inline_target_secrets`, as the daemon found them in `[[targets]]`) and
    /// every user may read its file.
    pub fn check_inline_secrets(
        &self,
        mut inline_target_secrets: Vec<String>,
    ) -> Result<(), ConfigError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.daemon.ledger.has_inline_password() {
            inline_target_secrets.insert(0, "daemon.ledger (a password in the URL)".into());
        }
        for source in &self.sources {
            let sources::SourceSection::Crowdsec(c) = source;
            if c.has_inline_secret() {
                inline_target_secrets.push(format!("sources.{}.api_key", c.name));
            }
        }
        secret::check_inline(&file.path, file.mode, &inline_target_secrets)?;
        Ok(())
    }

    /// Reads the allowlist files now; returns the policy and the files' modification times
    /// (to notice changes). `found` (this machine's addresses, gateways and resolvers, the
    /// targets' management addresses, as the caller discovered them) is added to the
    /// protected networks, each kind unless its `protect_*` setting is off.
    pub fn policy(
        &self,
        found: &[Protected],
    ) -> Result<(Policy, Vec<Option<SystemTime>>), ConfigError> {
        let mut allowlist = self.policy.allowlist.clone();
        let mut stamps = Vec::new();
        for file in &self.policy.allowlist_files {
            let (entries, stamp) = read_allowlist_file(file)?;
            allowlist.extend(entries);
            stamps.push(stamp);
        }
        let mut protected: Vec<Protected> = self
            .policy
            .protected
            .iter()
            .map(|&prefix| Protected {
                prefix,
                reason: Protection::Configured,
            })
            .collect();
        protected.extend(found.iter().filter(|p| self.protects(&p.reason)).cloned());
        let policy = Policy::new(
            allowlist,
            protected,
            self.policy.breadth,
            self.policy.escalation.clone(),
        );
        Ok((policy, stamps))
    }

    /// Whether protection of this kind is on.
    pub fn protects(&self, reason: &Protection) -> bool {
        match reason {
            Protection::Configured => true,
            Protection::OwnAddress { .. } => self.policy.protect_own_addresses,
            Protection::Gateway { .. } => self.policy.protect_gateways,
            Protection::Resolver => self.policy.protect_resolvers,
            Protection::Management { .. } => self.policy.protect_targets,
        }
    }

    /// The modification times of the allowlist files, in order (None if missing).
    pub fn allowlist_stamps(&self) -> Vec<Option<SystemTime>> {
        self.policy
            .allowlist_files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect()
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.into(),
        error,
    })
}

fn file_of(path: &Path) -> Option<ConfigFile> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(ConfigFile {
        path: path.to_path_buf(),
        mode: meta.permissions().mode() & 0o7777,
    })
}

/// Reads one allowlist file: one address or CIDR per line; blank lines and `#` comments
/// ignored. A missing file is an error (a typo must not silently empty the allowlist).
pub fn read_allowlist_file(path: &Path) -> Result<(Vec<Prefix>, Option<SystemTime>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.into(),
        error,
    })?;
    let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let prefix = Prefix::parse(line).map_err(|e| ConfigError::AllowlistEntry {
            path: path.into(),
            line: index + 1,
            message: e.to_string(),
        })?;
        entries.push(prefix);
    }
    Ok((entries, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::parse(
            "[daemon]\nledger = \"l.db\"\n",
            Path::new("/etc/x/netban.toml"),
        )
        .unwrap();
        assert_eq!(
            c.daemon.ledger,
            LedgerLocation::Sqlite(PathBuf::from("/etc/x/l.db"))
        );
        assert_eq!(c.daemon.socket, PathBuf::from("/run/netban/netban.sock"));
        assert!(c.policy.escalation.enabled);
    }

    #[test]
    fn a_postgres_ledger_is_a_url_never_anchored_or_printed() {
        let c = Config::parse(
            "[daemon]\nledger = \"postgres://netban:secret@db1,db2/netban\"\nledger_password_file = \"pw\"\n",
            Path::new("/etc/x/netban.toml"),
        )
        .unwrap();
        assert!(c.daemon.ledger.is_shared());
        assert_eq!(
            c.daemon.ledger.spec(),
            "postgres://netban:secret@db1,db2/netban"
        );
        assert_eq!(
            c.daemon.ledger_password_file,
            Some(PathBuf::from("/etc/x/pw"))
        );
        assert!(!format!("{:?} {}", c.daemon.ledger, c.daemon.ledger).contains("secret"));
    }

    #[test]
    fn unknown_keys_and_bad_prefixes_are_refused() {
        assert!(Config::parse("[daemon]\nsockit = \"x\"\n", Path::new("n.toml")).is_err());
        let err = Config::parse(
            "[policy]\nallowlist = [\"example.com\"]\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("hostname"), "{err}");
    }

    #[test]
    fn allowlist_file_reports_the_bad_line() {
        let dir = std::env::temp_dir().join(format!("nb-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("allow.txt");
        std::fs::write(
            &file,
            "# ours\n198.51.100.0/24\n\n2001:db8::/32 # v6\nnot-an-ip\n",
        )
        .unwrap();
        let err = read_allowlist_file(&file).unwrap_err();
        assert!(err.to_string().contains(":5:"), "{err}");
        std::fs::write(&file, "198.51.100.0/24\n2001:db8::/32 # v6\n").unwrap();
        assert_eq!(read_allowlist_file(&file).unwrap().0.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_client_skips_the_targets_and_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netban.toml");
        let text = "[daemon]\nsocket = \"s.sock\"\n\n[[targets]]\nname = \"edge\"\n\
                    type = \"cisco_ios\"\npassword = \"hunter2\"\nnot_a_key = [1, {a = 2}]\n";
        std::fs::write(&path, text).unwrap();
        let c = Config::load_for_client(&path).unwrap();
        assert!(c.targets.is_empty());
        assert_eq!(c.daemon.socket, dir.path().join("s.sock"));
        assert!(!format!("{c:?}").contains("hunter2"));
        // The daemon's view has them (typed later by the daemon), and never shows their values.
        let daemon_view = Config::load(&path).unwrap();
        assert_eq!(daemon_view.targets.len(), 1);
        let shown = format!("{daemon_view:?}");
        assert!(
            shown.contains("edge (cisco_ios, 4 keys)") && !shown.contains("hunter2"),
            "{shown}"
        );
        // Unknown sections are still refused for the client.
        std::fs::write(&path, "[deamon]\nsocket = \"s\"\n").unwrap();
        assert!(Config::load_for_client(&path).is_err());
    }

    #[test]
    fn a_parse_error_never_quotes_the_line() {
        let text = "[daemon]\nsocket = \"x\"\n[[targets]]\npassword = \"hunter2\n";
        let err = Config::parse(text, Path::new("/etc/x/netban.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/x/netban.toml:4:"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn an_inline_ledger_password_in_a_file_everyone_reads_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netban.toml");
        std::fs::write(
            &path,
            "[daemon]\nledger = \"postgres://netban:hunter2@db/netban\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&path).unwrap();
        let err = c.check_inline_secrets(vec![]).unwrap_err().to_string();
        assert!(
            err.contains("0644") && err.contains("daemon.ledger"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = c
            .check_inline_secrets(vec!["targets.edge.password".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("targets.edge.password"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Config::load(&path)
            .unwrap()
            .check_inline_secrets(vec![])
            .is_ok());
        for (url, inline) in [
            ("postgres://netban@db/netban", false),
            ("postgres://db1,db2/netban?user=netban", false),
            ("postgresql://u:p@db/netban", true),
            ("postgres://db/netban?user=u&password=p", true),
        ] {
            assert_eq!(
                LedgerLocation::Postgres(url.into()).has_inline_password(),
                inline,
                "{url}"
            );
        }
        assert!(!LedgerLocation::Sqlite("a:b@c".into()).has_inline_password());
    }

    #[test]
    fn each_kind_of_protection_can_be_turned_off() {
        let found = vec![
            Protected {
                prefix: Prefix::parse("198.51.100.7").unwrap(),
                reason: Protection::OwnAddress {
                    interface: "eth0".into(),
                },
            },
            Protected {
                prefix: Prefix::parse("198.51.100.1").unwrap(),
                reason: Protection::Gateway {
                    interface: "eth0".into(),
                },
            },
            Protected {
                prefix: Prefix::parse("198.51.100.53").unwrap(),
                reason: Protection::Resolver,
            },
            Protected {
                prefix: Prefix::parse("203.0.113.1").unwrap(),
                reason: Protection::Management {
                    target: "edge".into(),
                    setting: "host".into(),
                },
            },
        ];
        let all = Config::parse(
            "[policy]\nprotected = [\"10.255.0.0/16\"]\n",
            Path::new("n.toml"),
        )
        .unwrap();
        assert_eq!(all.policy(&found).unwrap().0.protected.len(), 5);
        for (key, gone) in [
            ("protect_own_addresses", "198.51.100.7"),
            ("protect_gateways", "198.51.100.1"),
            ("protect_resolvers", "198.51.100.53"),
            ("protect_targets", "203.0.113.1"),
        ] {
            let c =
                Config::parse(&format!("[policy]\n{key} = false\n"), Path::new("n.toml")).unwrap();
            let (policy, _) = c.policy(&found).unwrap();
            assert_eq!(policy.protected.len(), 3, "{key}");
            assert!(
                policy.check_prefix(&Prefix::parse(gone).unwrap()).is_ok(),
                "{key}"
            );
        }
    }
}
