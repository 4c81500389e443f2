//! The `[[targets]]` section of an ExaFS target, and its checks.

use super::flow::{FlowMatch, FlowProtocol};
use crate::TargetError;
use serde::Deserialize;
use std::path::PathBuf;

/// Where and as whom the ExaFS target works.
///
/// ```toml
/// [[targets]]
/// name = "rtbh"
/// type = "exafs"
/// url = "https://exafs.example.org"          # the ExaFS base URL (API v3 lives under /api/v3)
/// api_key_file = "/etc/netban/exafs.key"     # mode 0600 (or 0400); or api_key_env = "EXAFS_API_KEY"
/// rule = "rtbh"                              # or "flowspec" (below)
/// community = 1                              # rtbh: the community id (ExaFS: Administration > Communities)
/// # action = 4                               # flowspec: the action id; default: the action named "Discard"
/// # protocol = "tcp"                         # flowspec: "tcp", "udp", "icmp", "gre"; default: any
/// # ports = [22]                             # flowspec: destination ports (protocol tcp or udp)
/// comment = "netban"                         # stored on every rule netban creates
/// max_in_flight = 8                          # concurrent requests within one apply
/// timeout_secs = 30                          # per request
/// # ca_file = "/etc/netban/exafs-ca.pem"     # a private CA: then the only CA trusted
/// # allow_insecure_http = false              # plain http:// refused unless true (warned at start)
/// ```
///
/// netban follows no HTTP redirect (the key would go along): `url` must be where the API is.
///
/// The API key is never written in netban.toml: it comes from a file only its owner can read,
/// or from the daemon's environment.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExafsConfig {
    /// Base URL of the ExaFS instance (`http` or `https`), without `/api/v3`.
    pub url: String,
    /// A file holding the API key (surrounding whitespace ignored). Refused if group or
    /// others may read it.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// The name of an environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Which kind of ExaFS rule a ban becomes: RTBH (the default) or flowspec.
    #[serde(default)]
    pub rule: RuleKind,
    /// `rule = "rtbh"`: the id of the RTBH community every rule is created with.
    #[serde(default)]
    pub community: Option<u32>,
    /// `rule = "flowspec"`: the id of the ExaFS action every rule takes; `None`: the action
    /// named "Discard" (ExaFS's seed data has it), found at start.
    #[serde(default)]
    pub action: Option<u32>,
    /// `rule = "flowspec"`: the protocol every rule matches besides the source; `None`: any.
    #[serde(default)]
    pub protocol: Option<FlowProtocol>,
    /// `rule = "flowspec"`: the destination ports every rule matches (needs `protocol` tcp
    /// or udp); empty: any.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The comment stored on the rules netban creates.
    #[serde(default = "default_comment")]
    pub comment: String,
    /// How many requests one apply keeps in flight at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long one request may take before it counts as failed.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// A PEM file with the CA certificate(s) that signed ExaFS's certificate, for a private
    /// CA. When set, it is the only CA trusted (the system's roots are not).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allow a plain `http://` url. Refused by default: the API key and the tokens would
    /// cross the network in clear. When allowed, every start logs a warning.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// Which kind of ExaFS rule a ban becomes (`rule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// An RTBH rule: ExaFS announces a route for the banned prefix with the community
    /// (`POST /api/v3/rules/rtbh`).
    #[default]
    Rtbh,
    /// A flowspec rule matching the banned prefix as source, then the action (discard):
    /// `POST /api/v3/rules/ipv4` or `/ipv6`.
    Flowspec,
}

/// What the target creates, once the configuration is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleSetting {
    Rtbh {
        community: u32,
    },
    Flowspec {
        rule_match: FlowMatch,
        action: Option<u32>,
    },
}

/// The most requests in flight the configuration may ask for. ExaFS is one Flask application
/// on one database; more only queues up there.
pub const MAX_IN_FLIGHT: usize = 64;
/// The longest comment accepted (ExaFS stores it as text, the UI shows it in a tooltip).
pub const MAX_COMMENT_LEN: usize = 255;

fn default_comment() -> String {
    "netban".to_string()
}
fn default_max_in_flight() -> usize {
    8
}
fn default_timeout_secs() -> u64 {
    30
}

impl ExafsConfig {
    /// A configuration with the defaults for everything optional.
    /// An RTBH configuration (`rule = "rtbh"`) in `community`.
    pub fn new(url: &str, key: KeySetting, community: u32) -> ExafsConfig {
        let (api_key_file, api_key_env) = match key {
            KeySetting::File(path) => (Some(path), None),
            KeySetting::Env(name) => (None, Some(name)),
        };
        ExafsConfig {
            url: url.to_string(),
            api_key_file,
            api_key_env,
            rule: RuleKind::Rtbh,
            community: Some(community),
            action: None,
            protocol: None,
            ports: Vec::new(),
            comment: default_comment(),
            max_in_flight: default_max_in_flight(),
            timeout_secs: default_timeout_secs(),
            ca_file: None,
            allow_insecure_http: false,
        }
    }

    /// Checks everything that can be checked without the network; the key itself is read
    /// (and its file's permissions checked) by [`super::key::ApiKeySource::read`].
    pub(super) fn validated(self) -> Result<ExafsConfig, TargetError> {
        let bad = |msg: String| Err(TargetError::config(msg));
        let url = self.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || reqwest::Url::parse(url).is_err()
        {
            return bad(format!(
                "exafs url {:?} is not an http:// or https:// URL; set it to the ExaFS base \
                 URL, e.g. \"https://exafs.example.org\"",
                self.url
            ));
        }
        if url.starts_with("http://") && !self.allow_insecure_http {
            return bad(format!(
                "exafs url {:?} is plain http: the API key would cross the network in clear; \
                 use https:// (with ca_file for a private CA), or set allow_insecure_http = \
                 true if the path is trusted (e.g. loopback)",
                self.url
            ));
        }
        if self.ca_file.is_some() && url.starts_with("http://") {
            return bad("exafs ca_file is set but url is http://; use https://".into());
        }
        if url.ends_with("/api/v3") {
            return bad(format!(
                "exafs url {:?} should be the ExaFS base URL without /api/v3",
                self.url
            ));
        }
        match (&self.api_key_file, &self.api_key_env) {
            (Some(_), Some(_)) => {
                return bad("exafs: set only one of api_key_file and api_key_env".into())
            }
            (None, None) => {
                return bad(
                    "exafs: set api_key_file (a file only netban can read) or api_key_env (an \
                     environment variable); the key is never written in netban.toml"
                        .into(),
                )
            }
            _ => {}
        }
        self.rule_setting().map_err(TargetError::config)?;
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return bad(format!(
                "exafs max_in_flight must be between 1 and {MAX_IN_FLIGHT} (got {})",
                self.max_in_flight
            ));
        }
        if !(1..=600).contains(&self.timeout_secs) {
            return bad(format!(
                "exafs timeout_secs must be between 1 and 600 (got {})",
                self.timeout_secs
            ));
        }
        if self.comment.len() > MAX_COMMENT_LEN || self.comment.chars().any(char::is_control) {
            return bad(format!(
                "exafs comment must be at most {MAX_COMMENT_LEN} bytes without control \
                 characters"
            ));
        }
        let mut ports = self.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        Ok(ExafsConfig {
            url: url.to_string(),
            ports,
            ..self
        })
    }

    /// What the target creates, or what is wrong with the rule settings.
    pub fn rule_setting(&self) -> Result<RuleSetting, String> {
        match self.rule {
            RuleKind::Rtbh => {
                let flowspec_only = [
                    ("action", self.action.is_some()),
                    ("protocol", self.protocol.is_some()),
                    ("ports", !self.ports.is_empty()),
                ];
                if let Some((key, _)) = flowspec_only.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "exafs {key} is a setting of flowspec rules: add rule = \"flowspec\", \
                         or remove {key} for RTBH rules"
                    ));
                }
                match self.community {
                    Some(community) if community >= 1 => Ok(RuleSetting::Rtbh { community }),
                    Some(_) => {
                        Err("exafs community must be an ExaFS community id (1 or more)".into())
                    }
                    None => Err(
                        "exafs: set community to the id of the RTBH community the rules \
                                 are created in (ExaFS: Administration > Communities), or set \
                                 rule = \"flowspec\""
                            .into(),
                    ),
                }
            }
            RuleKind::Flowspec => {
                if self.community.is_some() {
                    return Err(
                        "exafs community is a setting of RTBH rules; flowspec rules \
                                (rule = \"flowspec\") carry an action instead: remove \
                                community"
                            .into(),
                    );
                }
                if self.action == Some(0) {
                    return Err("exafs action must be an ExaFS action id (1 or more)".into());
                }
                let rule_match = FlowMatch::new(self.protocol, &self.ports)?;
                Ok(RuleSetting::Flowspec {
                    rule_match,
                    action: self.action,
                })
            }
        }
    }
}

/// Where the API key comes from (for building a config in code).
#[derive(Clone, Debug)]
pub enum KeySetting {
    File(PathBuf),
    Env(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ExafsConfig, String> {
        let c: ExafsConfig = toml_like(text)?;
        c.validated().map_err(|e| e.to_string())
    }

    /// netban-targets does not depend on toml; the daemon hands the table over as serde data,
    /// so JSON exercises the same derive.
    fn toml_like(json: &str) -> Result<ExafsConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_normalised_url() {
        let c =
            parse(r#"{"url": "https://exafs.example.org/", "api_key_env": "K", "community": 1}"#)
                .unwrap();
        assert_eq!(c.url, "https://exafs.example.org");
        assert_eq!(c.comment, "netban");
        assert_eq!(c.max_in_flight, 8);
        assert_eq!(c.timeout_secs, 30);
    }

    #[test]
    fn refusals_say_what_to_fix() {
        let cases = [
            (
                r#"{"url": "exafs.example.org", "api_key_env": "K", "community": 1}"#,
                "http",
            ),
            (
                r#"{"url": "https://x/api/v3", "api_key_env": "K", "community": 1}"#,
                "without /api/v3",
            ),
            (
                r#"{"url": "https://x", "community": 1}"#,
                "never written in netban.toml",
            ),
            (
                r#"{"url": "https://x", "api_key_env": "K", "api_key_file": "/k", "community": 1}"#,
                "only one",
            ),
            (
                r#"{"url": "https://x", "api_key_env": "K", "community": 0}"#,
                "community id",
            ),
            (
                r#"{"url": "https://x", "api_key_env": "K", "community": 1, "max_in_flight": 0}"#,
                "max_in_flight",
            ),
            (
                r#"{"url": "https://x", "api_key_env": "K", "community": 1, "comment": "a\nb"}"#,
                "control",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        // Plain http only when asked for.
        let err =
            parse(r#"{"url": "http://exafs.example.org", "api_key_env": "K", "community": 1}"#)
                .unwrap_err();
        assert!(err.contains("allow_insecure_http = true"), "{err}");
        parse(
            r#"{"url": "http://127.0.0.1:5000", "api_key_env": "K", "community": 1,
                "allow_insecure_http": true}"#,
        )
        .unwrap();
        // Unknown keys (e.g. an inline key) are refused by serde.
        let err =
            parse(r#"{"url": "https://x", "api_key": "secret", "community": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `api_key`"), "{err}");
    }

    #[test]
    fn rule_kinds_and_their_settings() {
        let base = r#""url": "https://x", "api_key_env": "K""#;
        let rtbh = parse(&format!("{{{base}, \"community\": 3}}")).unwrap();
        assert_eq!(rtbh.rule, RuleKind::Rtbh);
        assert_eq!(rtbh.rule_setting(), Ok(RuleSetting::Rtbh { community: 3 }));
        let flowspec = parse(&format!(
            r#"{{{base}, "rule": "flowspec", "protocol": "tcp", "ports": [2222, 22, 22]}}"#
        ))
        .unwrap();
        assert_eq!(flowspec.ports, [22, 2222]);
        assert_eq!(
            flowspec.rule_setting(),
            Ok(RuleSetting::Flowspec {
                rule_match: FlowMatch::new(Some(FlowProtocol::Tcp), &[22, 2222]).unwrap(),
                action: None,
            })
        );
        let any = parse(&format!(r#"{{{base}, "rule": "flowspec", "action": 4}}"#)).unwrap();
        assert_eq!(
            any.rule_setting(),
            Ok(RuleSetting::Flowspec {
                rule_match: FlowMatch::default(),
                action: Some(4),
            })
        );
        let cases = [
            (format!("{{{base}}}"), "set community"),
            (
                format!(r#"{{{base}, "community": 1, "ports": [22]}}"#),
                "ports is a setting of flowspec rules",
            ),
            (
                format!(r#"{{{base}, "community": 1, "protocol": "udp"}}"#),
                "protocol is a setting of flowspec rules",
            ),
            (
                format!(r#"{{{base}, "rule": "flowspec", "community": 1}}"#),
                "remove community",
            ),
            (
                format!(r#"{{{base}, "rule": "flowspec", "ports": [22]}}"#),
                "need protocol = \"tcp\" or \"udp\"",
            ),
            (
                format!(r#"{{{base}, "rule": "flowspec", "action": 0}}"#),
                "action id",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        for (text, want) in [
            (
                format!(r#"{{{base}, "rule": "blackhole"}}"#),
                "unknown variant `blackhole`",
            ),
            (
                format!(r#"{{{base}, "rule": "flowspec", "protocol": "sctp"}}"#),
                "unknown variant `sctp`",
            ),
            (
                format!(r#"{{{base}, "rule": "flowspec", "protocol": "tcp", "ports": [70000]}}"#),
                "70000",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
