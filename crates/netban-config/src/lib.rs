//! `netban.toml`, shared by the daemon and the client, and the allowlist files it names.
//!
//! The client reads only what it needs (the socket path; the ledger and policy when the daemon
//! is down and it records a ban itself). Target sections are kept as raw tables here and typed
//! by the daemon, which owns the drivers (`netban-targets`).
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
//! protect_own_addresses = true
//! breadth = { min_len_v4 = 24, min_len_v6 = 48 }
//! escalation = { enabled = true, factor = 2.0, max_secs = 604800, window_secs = 2592000 }
//!
//! [[targets]]
//! name = "edge"
//! type = "nftables"
//! netns = "router"
//! ```

use netban_core::policy::{Breadth, Escalation, Policy};
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
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("{path}:{line}: {message}")]
    AllowlistEntry {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub reconciler: ReconcilerSection,
    /// One table per enforcement point; typed by the daemon.
    #[serde(default)]
    pub targets: Vec<toml::Table>,
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
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.into(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text`; `path` only names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.into(),
            error: Box::new(error),
        })?;
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
        if config.reconciler.retry_min_secs == 0
            || config.reconciler.retry_max_secs < config.reconciler.retry_min_secs
        {
            return Err(ConfigError::Invalid(format!(
                "{}: reconciler.retry_min_secs must be ≥ 1 and ≤ retry_max_secs",
                path.display()
            )));
        }
        Ok(config)
    }

    /// Reads the allowlist files now; returns the policy and the files' modification times
    /// (to notice changes). `own_addresses` are added to the protected networks when
    /// `protect_own_addresses` is on.
    pub fn policy(
        &self,
        own_addresses: &[Prefix],
    ) -> Result<(Policy, Vec<Option<SystemTime>>), ConfigError> {
        let mut allowlist = self.policy.allowlist.clone();
        let mut stamps = Vec::new();
        for file in &self.policy.allowlist_files {
            let (entries, stamp) = read_allowlist_file(file)?;
            allowlist.extend(entries);
            stamps.push(stamp);
        }
        let mut protected = self.policy.protected.clone();
        if self.policy.protect_own_addresses {
            protected.extend_from_slice(own_addresses);
        }
        let policy = Policy::new(
            allowlist,
            protected,
            self.policy.breadth,
            self.policy.escalation.clone(),
        );
        Ok((policy, stamps))
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
}
