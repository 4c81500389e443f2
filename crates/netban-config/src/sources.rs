//! `[[sources]]`: detectors netban reads bans from by itself (besides fail2ban and the API,
//! which push). One table per source, tagged by `type`; today only `crowdsec`.
//!
//! ```toml
//! [[sources]]
//! type = "crowdsec"
//! name = "lapi"                        # names it in `netban status` and /metrics
//! url = "http://127.0.0.1:8080/"       # the CrowdSec Local API
//! api_key_file = "/etc/netban/crowdsec.key"   # `cscli bouncers add netban-HOST`; or api_key_env
//! interval_secs = 10                   # between two polls of /v1/decisions/stream
//! source_prefix = "crowdsec"           # bans are recorded as `crowdsec:<scenario or origin>`
//! scopes = ["ip", "range"]
//! origins = []                         # empty: every origin (but CAPI, see include_capi)
//! scenarios_containing = []
//! scenarios_not_containing = []
//! include_capi = false                 # the community blocklist (origins CAPI and lists)
//! ```

use crate::secret::{self, Secret};
use crate::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// One `[[sources]]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceSection {
    Crowdsec(CrowdsecSource),
}

impl SourceSection {
    pub fn name(&self) -> &str {
        match self {
            SourceSection::Crowdsec(c) => &c.name,
        }
    }
}

/// A CrowdSec Local API netban polls as a bouncer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrowdsecSource {
    pub name: String,
    /// The LAPI's base URL (`http://127.0.0.1:8080/`); `/v1/decisions/stream` is appended.
    pub url: String,
    /// The bouncer key, inline (then netban.toml must not be readable by everyone), in a file
    /// only netban's user may read (`api_key_file`), or in an environment variable.
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds between two polls.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// The bans' source is `<source_prefix>:<scenario or origin>`; two `[[sources]]` need
    /// different prefixes (each lifts only the bans of its own prefix).
    #[serde(default = "default_prefix")]
    pub source_prefix: String,
    /// Decision scopes asked for: `ip`, `range`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Only decisions of these origins (`crowdsec`, `cscli`, `cscli-import`, …); empty: all.
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default)]
    pub scenarios_containing: Vec<String>,
    #[serde(default)]
    pub scenarios_not_containing: Vec<String>,
    /// Take the community blocklist (origins `CAPI` and `lists`) too.
    #[serde(default)]
    pub include_capi: bool,
    /// Seconds a request to the LAPI may take (a 100,000-decision start-up stream is ~17 MB).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_interval() -> u64 {
    10
}

fn default_prefix() -> String {
    "crowdsec".into()
}

fn default_scopes() -> Vec<String> {
    vec!["ip".into(), "range".into()]
}

fn default_timeout() -> u64 {
    60
}

impl CrowdsecSource {
    /// The bouncer key, from whichever of its three settings is given.
    pub fn api_key(&self) -> Result<Secret, ConfigError> {
        let what = format!("sources.{}.api_key", self.name);
        secret::resolve(
            &what,
            self.api_key.as_ref(),
            self.api_key_file.as_deref(),
            self.api_key_env.as_deref(),
        )?
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "[[sources]] {:?}: set api_key_file (a key from `cscli bouncers add`)",
                self.name
            ))
        })
    }

    /// Checks what serde cannot.
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |why: String| {
            Err(ConfigError::Invalid(format!(
                "[[sources]] {:?}: {why}",
                self.name
            )))
        };
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return bad(format!(
                "url {:?} must start with http:// or https://",
                self.url
            ));
        }
        if self.interval_secs == 0 || self.timeout_secs == 0 {
            return bad("interval_secs and timeout_secs must be at least 1".into());
        }
        let prefix_ok = !self.source_prefix.is_empty()
            && self.source_prefix.len() <= 32
            && self
                .source_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !prefix_ok {
            return bad(format!(
                "source_prefix {:?}: use 1 to 32 letters, digits, '.', '_' and '-'",
                self.source_prefix
            ));
        }
        if let Some(scope) = self
            .scopes
            .iter()
            .find(|s| !matches!(s.to_ascii_lowercase().as_str(), "ip" | "range"))
        {
            return bad(format!(
                "scope {scope:?}: netban takes only \"ip\" and \"range\""
            ));
        }
        if self.scopes.is_empty() {
            return bad("scopes is empty: give \"ip\", \"range\" or both".into());
        }
        Ok(())
    }

    /// Whether the inline `api_key` is set (for the check of a readable netban.toml).
    pub fn has_inline_secret(&self) -> bool {
        self.api_key.is_some()
    }
}

/// Checks every source and that names and prefixes are unique.
pub fn check(sources: &[SourceSection]) -> Result<(), ConfigError> {
    let mut names = std::collections::BTreeSet::new();
    let mut prefixes = std::collections::BTreeSet::new();
    for source in sources {
        let SourceSection::Crowdsec(c) = source;
        c.check()?;
        if !names.insert(c.name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "two [[sources]] are named {:?}",
                c.name
            )));
        }
        if !prefixes.insert(c.source_prefix.clone()) {
            return Err(ConfigError::Invalid(format!(
                "two [[sources]] use source_prefix {:?}: give each its own (each lifts the bans \
                 of its prefix that its LAPI no longer holds)",
                c.source_prefix
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SourceSection>, String> {
        #[derive(Deserialize)]
        struct Doc {
            sources: Vec<SourceSection>,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        check(&doc.sources).map_err(|e| e.to_string())?;
        Ok(doc.sources)
    }

    #[test]
    fn defaults_and_checks() {
        let sources = parse(
            "[[sources]]\ntype = \"crowdsec\"\nname = \"lapi\"\nurl = \"http://127.0.0.1:8080/\"\n\
             api_key_env = \"K\"\n",
        )
        .unwrap();
        let SourceSection::Crowdsec(c) = &sources[0];
        assert_eq!(
            (c.interval_secs, c.source_prefix.as_str()),
            (10, "crowdsec")
        );
        assert_eq!(c.scopes, ["ip", "range"]);
        assert!(!c.include_capi);
        let two = "[[sources]]\ntype = \"crowdsec\"\nname = \"a\"\nurl = \"http://a/\"\n\
                   [[sources]]\ntype = \"crowdsec\"\nname = \"b\"\nurl = \"http://b/\"\n";
        assert!(parse(two).unwrap_err().contains("source_prefix"));
        let bad_scope = "[[sources]]\ntype = \"crowdsec\"\nname = \"a\"\nurl = \"http://a/\"\n\
                         scopes = [\"country\"]\n";
        assert!(parse(bad_scope).unwrap_err().contains("country"));
        let unknown =
            "[[sources]]\ntype = \"crowdsec\"\nname = \"a\"\nurl = \"http://a/\"\nkey = 1\n";
        assert!(parse(unknown).is_err());
        let ftp = "[[sources]]\ntype = \"crowdsec\"\nname = \"a\"\nurl = \"ftp://a/\"\n";
        assert!(parse(ftp).unwrap_err().contains("http://"));
    }
}
