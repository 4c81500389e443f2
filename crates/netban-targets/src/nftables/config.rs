//! The `[[targets]]` section of an nftables target, and its checks.

use crate::TargetError;
use serde::Deserialize;
use std::fmt;

/// Where the nftables target works. Every key is optional:
///
/// ```toml
/// [[targets]]
/// name = "edge"
/// type = "nftables"
/// netns = "router"            # run nft inside `ip netns exec router` (default: this host)
/// table = "netban"            # netban's own `inet` table, created and owned by netban
/// hooks = ["input", "forward"]
/// priority = -10              # before the usual filter chains (priority 0)
/// timeout_grace_secs = 60     # device-side expiry = remaining ban time + this
/// nft_path = "nft"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesConfig {
    /// A named network namespace (`/run/netns/NAME`) to run `nft` in.
    #[serde(default)]
    pub netns: Option<String>,
    /// The `inet` table netban creates and owns exclusively.
    #[serde(default = "default_table")]
    pub table: String,
    /// Which base chains drop banned sources.
    #[serde(default = "default_hooks")]
    pub hooks: Vec<Hook>,
    /// Priority of those chains (lower runs first; the usual filter chains use 0).
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Seconds added to every element's timeout. Timeouts are a safety net so the device drops
    /// a ban by itself if netban goes away; normally netban removes the element first.
    #[serde(default = "default_grace")]
    pub timeout_grace_secs: u64,
    /// The `nft` program (a name looked up in PATH, or a path).
    #[serde(default = "default_nft_path")]
    pub nft_path: String,
}

/// A netfilter hook netban attaches a chain to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// Traffic to this host.
    Input,
    /// Traffic routed through this host.
    Forward,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Input, Hook::Forward];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Forward => "forward",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_table() -> String {
    "netban".to_string()
}
fn default_hooks() -> Vec<Hook> {
    Hook::ALL.to_vec()
}
fn default_priority() -> i32 {
    -10
}
fn default_grace() -> u64 {
    60
}
fn default_nft_path() -> String {
    "nft".to_string()
}

impl Default for NftablesConfig {
    fn default() -> Self {
        NftablesConfig {
            netns: None,
            table: default_table(),
            hooks: default_hooks(),
            priority: default_priority(),
            timeout_grace_secs: default_grace(),
            nft_path: default_nft_path(),
        }
    }
}

/// The longest grace accepted (a day): a larger one would keep bans on the device long after
/// they ended whenever netban is down.
pub const MAX_GRACE_SECS: u64 = 86_400;

impl NftablesConfig {
    /// Checks every value that ends up in an `nft` command line or script; returns the config
    /// with `hooks` sorted and deduplicated.
    pub fn validated(mut self) -> Result<Self, TargetError> {
        let bad = |msg: String| Err(TargetError::config(msg));
        let t = &self.table;
        if t.is_empty()
            || t.len() > 64
            || !t.starts_with(|c: char| c.is_ascii_alphabetic())
            || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad(format!(
                "nftables table {t:?}: use 1-64 letters, digits or '_', starting with a letter"
            ));
        }
        if let Some(ns) = &self.netns {
            if ns.is_empty()
                || ns.len() > 128
                || ns == "."
                || ns == ".."
                || !ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return bad(format!(
                    "nftables netns {ns:?}: give the name of a namespace in /run/netns \
                     (letters, digits, '_', '-', '.')"
                ));
            }
        }
        self.hooks.sort();
        self.hooks.dedup();
        if self.hooks.is_empty() {
            return bad("nftables hooks is empty: list \"input\", \"forward\" or both".into());
        }
        if self.timeout_grace_secs > MAX_GRACE_SECS {
            return bad(format!(
                "nftables timeout_grace_secs = {}: at most {MAX_GRACE_SECS} (one day)",
                self.timeout_grace_secs
            ));
        }
        if self.nft_path.is_empty() || self.nft_path.contains('\0') {
            return bad("nftables nft_path is empty: give \"nft\" or a path to it".into());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;

    fn parse(json: &str) -> Result<NftablesConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c, NftablesConfig::default());
        assert_eq!(c.table, "netban");
        assert_eq!(c.hooks, vec![Hook::Input, Hook::Forward]);
        assert_eq!((c.priority, c.timeout_grace_secs), (-10, 60));
        assert_eq!(c.nft_path, "nft");
        assert_eq!(c.netns, None);
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"{"netns": "router", "table": "nb_edge", "hooks": ["forward"], "priority": -200,
                "timeout_grace_secs": 5, "nft_path": "/usr/sbin/nft"}"#,
        )
        .unwrap()
        .validated()
        .unwrap();
        assert_eq!(c.netns.as_deref(), Some("router"));
        assert_eq!(c.hooks, vec![Hook::Forward]);
        assert_eq!(c.priority, -200);
    }

    #[test]
    fn unknown_keys_and_hooks_are_refused() {
        assert!(parse(r#"{"family": "ip"}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse(r#"{"hooks": ["output"]}"#).is_err());
    }

    #[test]
    fn selected_through_the_tagged_target_kind() {
        let kind: TargetKind =
            serde_json::from_str(r#"{"type": "nftables", "netns": "edge"}"#).unwrap();
        assert_eq!(kind.kind(), "nftables");
        let err = serde_json::from_str::<TargetKind>(r#"{"type": "nftables", "tabel": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tabel"), "{err}");
    }

    #[test]
    fn values_that_reach_nft_are_checked() {
        let with = |f: fn(&mut NftablesConfig)| {
            let mut c = NftablesConfig::default();
            f(&mut c);
            c.validated()
        };
        for bad in [
            with(|c| c.table = "net ban".into()),
            with(|c| c.table = "netban; flush ruleset".into()),
            with(|c| c.table = "1table".into()),
            with(|c| c.table = String::new()),
            with(|c| c.netns = Some("../etc".into())),
            with(|c| c.netns = Some("a/b".into())),
            with(|c| c.netns = Some(String::new())),
            with(|c| c.hooks.clear()),
            with(|c| c.timeout_grace_secs = MAX_GRACE_SECS + 1),
            with(|c| c.nft_path = String::new()),
        ] {
            assert!(matches!(bad, Err(TargetError::Config(_))), "{bad:?}");
        }
        let c = with(|c| c.hooks = vec![Hook::Forward, Hook::Input, Hook::Forward]).unwrap();
        assert_eq!(c.hooks, vec![Hook::Input, Hook::Forward]);
    }
}
