//! Turning `[[targets]]` tables into drivers and engine slots.
//!
//! Each table has common keys, read here, and driver keys, checked strictly by the driver's
//! own config type (`netban_targets::config::TargetKind`):
//!
//! - `name` (required, unique), `type` (the driver);
//! - `sources`: only bans from these jails/sources (default: all);
//! - `fallback`: the name of a target that takes the bans this one cannot hold;
//! - `capacity_v4`, `capacity_v6`: hold at most this many bans (the placement rule in
//!   `netban_core::placement` decides which), on top of any limit the device itself has;
//! - `fallback_only`: hold only what other targets overflow to this one (it must be named as
//!   some target's `fallback`). Without it, a fallback target holds every ban in its scope
//!   as well as the overflow;
//! - `aggregate_v4`, `aggregate_v6` (prefix lengths, say 28 and 64), `aggregate_min`
//!   (default 2): on a target with limited capacity, when the bans do not fit, merge the bans
//!   that share a covering prefix of that length into it (never over the allowlist or
//!   protected networks; `netban_core::aggregation`). Off unless set: a covering prefix also
//!   blocks addresses nobody banned.
//! - `scope`: `"host"` (every host enforces its own instance; the default for nftables) or
//!   `"fleet"` (one device the fleet shares, driven by one daemon at a time through a lease
//!   in a shared PostgreSQL ledger; the default for every network device). With a SQLite
//!   ledger every target is driven by this daemon.
//!
//! Besides the drivers, each built target reports what the policy and the secret rules need:
//! the addresses of its device (protected from bans, [`management_protections`]) and the
//! secrets written inline in its table (refused in a netban.toml every user can read).

use crate::engine::{Scope, TargetId, TargetSpec};
use netban_core::aggregation::Aggregation;
use netban_core::placement::Capacity;
use netban_core::policy::{Protected, Protection};
use netban_core::{Prefix, Source};
use netban_proto::TargetScope;
use netban_targets::config::{ManagementAddress, TargetKind};
use netban_targets::feed::{Board, Feed};
use netban_targets::{Target, TargetError};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Why the `[[targets]]` tables cannot be used; each names the target and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TargetConfigError {
    /// A key is missing, unknown or of the wrong type (the parser's words).
    #[error("target {target}: {problem}")]
    Table { target: String, problem: String },
    #[error("target name {0:?}: use letters, digits, '-' and '_' (at most 32)")]
    BadName(String),
    #[error("target name {0:?} is used twice")]
    DuplicateName(String),
    /// The driver refused its settings.
    #[error("target {target}: {source}")]
    Driver { target: String, source: TargetError },
    #[error("target {target}: fallback {fallback:?} is not a configured target")]
    UnknownFallback { target: String, fallback: String },
    #[error("target {0}: a target cannot be its own fallback")]
    OwnFallback(String),
    #[error(
        "target {0}: fallback_only, but no target names it as its fallback (it would hold nothing)"
    )]
    UnusedFallbackOnly(String),
    #[error(
        "target {target}: path {path} is already target {other}'s; give each feed its own path"
    )]
    FeedPath {
        target: String,
        other: String,
        path: String,
    },
    /// `aggregate_*` settings that cannot work.
    #[error("target {target}: {problem}")]
    Aggregation { target: String, problem: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    name: String,
    #[serde(default)]
    sources: Option<Vec<Source>>,
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    capacity_v4: Option<usize>,
    #[serde(default)]
    capacity_v6: Option<usize>,
    #[serde(default)]
    fallback_only: bool,
    #[serde(default)]
    aggregate_v4: Option<u8>,
    #[serde(default)]
    aggregate_v6: Option<u8>,
    #[serde(default)]
    aggregate_min: Option<usize>,
    #[serde(default)]
    scope: Option<TargetScope>,
}

const COMMON_KEYS: [&str; 10] = [
    "name",
    "sources",
    "fallback",
    "capacity_v4",
    "capacity_v6",
    "fallback_only",
    "aggregate_v4",
    "aggregate_v6",
    "aggregate_min",
    "scope",
];

/// The narrowest and broadest covering prefixes `aggregate_v4`/`aggregate_v6` accept.
const AGGREGATE_V4: std::ops::RangeInclusive<u8> = 16..=31;
const AGGREGATE_V6: std::ops::RangeInclusive<u8> = 32..=127;

/// The aggregation settings of a target, checked against its capacity.
fn aggregation(
    common: &Common,
    capacity: Capacity,
) -> Result<Option<Aggregation>, TargetConfigError> {
    let problem = |problem: String| TargetConfigError::Aggregation {
        target: common.name.clone(),
        problem,
    };
    for (key, len, range, cap) in [
        (
            "aggregate_v4",
            common.aggregate_v4,
            AGGREGATE_V4,
            capacity.v4,
        ),
        (
            "aggregate_v6",
            common.aggregate_v6,
            AGGREGATE_V6,
            capacity.v6,
        ),
    ] {
        let Some(len) = len else { continue };
        if !range.contains(&len) {
            return Err(problem(format!(
                "{key} = {len}: use a prefix length from {} to {}",
                range.start(),
                range.end()
            )));
        }
        if cap.is_none() {
            return Err(problem(format!(
                "{key} merges bans only to fit a limited capacity, and this \
                 target has none for that family (set capacity_v4/capacity_v6)"
            )));
        }
    }
    if common.aggregate_v4.is_none() && common.aggregate_v6.is_none() {
        if common.aggregate_min.is_some() {
            return Err(problem(
                "aggregate_min needs aggregate_v4 or aggregate_v6".to_string(),
            ));
        }
        return Ok(None);
    }
    let min_members = common.aggregate_min.unwrap_or(2);
    if min_members < 2 {
        return Err(problem(format!(
            "aggregate_min = {min_members}: a covering prefix must stand for at least 2 bans"
        )));
    }
    Ok(Some(Aggregation {
        len_v4: common.aggregate_v4,
        len_v6: common.aggregate_v6,
        min_members,
    }))
}

/// A built target: the driver, and how it takes part in the engine. The `n`th built target
/// is [`TargetId::nth`]`(n)`.
pub struct Built {
    pub driver: Box<dyn Target>,
    pub spec: TargetSpec,
    /// Whether each host drives its own instance or one host drives it for the fleet.
    pub scope: TargetScope,
    /// Where the driver reaches its device (never banned unless `protect_targets = false`).
    pub management: Vec<ManagementAddress>,
    /// The secrets written inline in this table, as `targets.NAME.KEY`.
    pub inline_secrets: Vec<String>,
    /// A feed's board, which the HTTP API serves (`api/feeds.rs`).
    pub feed: Option<Board>,
}

/// The boards of the feeds among `built`, each at a path of its own.
pub fn feed_boards(built: &[Built]) -> Result<Vec<Board>, TargetConfigError> {
    let mut paths = BTreeMap::new();
    let mut boards = Vec::new();
    for board in built.iter().filter_map(|b| b.feed.clone()) {
        if let Some(other) = paths.insert(board.path().to_string(), board.name().to_string()) {
            return Err(TargetConfigError::FeedPath {
                target: board.name().to_string(),
                other,
                path: board.path().to_string(),
            });
        }
        boards.push(board);
    }
    Ok(boards)
}

/// The secrets written inline in every table, as `targets.NAME.KEY`.
pub fn inline_secrets(built: &[Built]) -> Vec<String> {
    built
        .iter()
        .flat_map(|b| b.inline_secrets.iter().cloned())
        .collect()
}

/// The targets' device addresses as protected networks, each with its target and setting;
/// a DNS name is resolved now (every address it has). Also returns what could not be
/// resolved, for the log and `check-config` (such a device is then not protected).
pub fn management_protections(built: &[Built]) -> (Vec<Protected>, Vec<String>) {
    use std::net::ToSocketAddrs;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for b in built {
        for m in &b.management {
            let reason = Protection::Management {
                target: b.spec.info.name.clone(),
                setting: m.setting.to_string(),
            };
            let addrs: Vec<std::net::IpAddr> = match m.host.parse() {
                Ok(addr) => vec![addr],
                Err(_) => match (m.host.as_str(), 0).to_socket_addrs() {
                    Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                    Err(e) => {
                        problems.push(format!(
                            "target {}: cannot resolve {} {:?} ({e}); it is not protected",
                            b.spec.info.name, m.setting, m.host
                        ));
                        Vec::new()
                    }
                },
            };
            for addr in addrs {
                found.push(Protected {
                    prefix: Prefix::host(addr),
                    reason: reason.clone(),
                });
            }
        }
    }
    (found, problems)
}

/// The scope of a target whose configuration says none: what its driver registers (a host's
/// own firewall is enforced by every host itself; a network device is one the fleet shares).
fn default_scope(kind: &TargetKind) -> TargetScope {
    if kind.shared_by_default() {
        TargetScope::Fleet
    } else {
        TargetScope::Host
    }
}

/// Builds every target; errors name the target and say what to fix.
pub fn build(tables: &[toml::Table]) -> Result<Vec<Built>, TargetConfigError> {
    let mut commons = Vec::new();
    let mut built = Vec::new();
    let mut names = BTreeMap::new();
    for (position, table) in tables.iter().enumerate() {
        let label = table
            .get("name")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let label = label.unwrap_or_else(|| format!("#{}", position + 1));
        let mut common_table = toml::Table::new();
        let mut driver_table = toml::Table::new();
        for (key, value) in table {
            if COMMON_KEYS.contains(&key.as_str()) {
                common_table.insert(key.clone(), value.clone());
            } else {
                driver_table.insert(key.clone(), value.clone());
            }
        }
        let table_error = |e: toml::de::Error| TargetConfigError::Table {
            target: label.clone(),
            problem: e.to_string().trim().to_string(),
        };
        if let Some(value @ ("REGIONAL" | "CLOUDFRONT")) =
            common_table.get("scope").and_then(|v| v.as_str())
        {
            return Err(TargetConfigError::Table {
                target: label.clone(),
                problem: format!(
                    "scope = {value:?}: `scope` is netban's (\"host\" or \"fleet\"); \
                     the WAF's own scope is `waf_scope = {value:?}`"
                ),
            });
        }
        let common: Common = common_table.try_into().map_err(table_error)?;
        if !valid_name(&common.name) {
            return Err(TargetConfigError::BadName(common.name));
        }
        if names
            .insert(common.name.clone(), TargetId::nth(position))
            .is_some()
        {
            return Err(TargetConfigError::DuplicateName(common.name));
        }
        let kind: TargetKind = driver_table.try_into().map_err(table_error)?;
        let inline_secrets = kind
            .inline_secrets()
            .into_iter()
            .map(|key| format!("targets.{}.{key}", common.name))
            .collect();
        let management = kind.management_addresses();
        let driver_error = |source| TargetConfigError::Driver {
            target: label.clone(),
            source,
        };
        // A feed is built here rather than through `build`, to keep a handle on its board.
        let (driver, feed): (Box<dyn Target>, _) = match &kind {
            TargetKind::Feed(config) => {
                let feed = Feed::new(&common.name, config.clone()).map_err(driver_error)?;
                let board = feed.board();
                (Box::new(feed), Some(board))
            }
            _ => (kind.build(&common.name).map_err(driver_error)?, None),
        };
        let info = driver.info().clone();
        let capacity = Capacity {
            v4: min_some(info.capacity.v4, common.capacity_v4),
            v6: min_some(info.capacity.v6, common.capacity_v6),
        };
        let aggregation = aggregation(&common, capacity)?;
        let scope = Scope {
            sources: common
                .sources
                .clone()
                .map(|s| s.into_iter().collect::<BTreeSet<_>>()),
            fallback_only: common.fallback_only,
        };
        let target_scope = common.scope.unwrap_or_else(|| default_scope(&kind));
        let spec = TargetSpec {
            info,
            scope,
            fallback: None,
            capacity,
            aggregation,
        };
        commons.push(common);
        built.push(Built {
            driver,
            spec,
            scope: target_scope,
            management,
            inline_secrets,
            feed,
        });
    }
    for (position, common) in commons.iter().enumerate() {
        if let Some(fallback) = &common.fallback {
            let Some(&id) = names.get(fallback) else {
                return Err(TargetConfigError::UnknownFallback {
                    target: common.name.clone(),
                    fallback: fallback.clone(),
                });
            };
            if id == TargetId::nth(position) {
                return Err(TargetConfigError::OwnFallback(common.name.clone()));
            }
            built[position].spec.fallback = Some(id);
        }
    }
    for (position, common) in commons.iter().enumerate() {
        let id = TargetId::nth(position);
        if common.fallback_only && !built.iter().any(|b| b.spec.fallback == Some(id)) {
            return Err(TargetConfigError::UnusedFallbackOnly(common.name.clone()));
        }
    }
    Ok(built)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn min_some(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(v4: Option<u8>, v6: Option<u8>, min: Option<usize>) -> Common {
        Common {
            name: "edge".into(),
            sources: None,
            fallback: None,
            capacity_v4: None,
            capacity_v6: None,
            fallback_only: false,
            aggregate_v4: v4,
            aggregate_v6: v6,
            aggregate_min: min,
            scope: None,
        }
    }
    const V4_ONLY: Capacity = Capacity {
        v4: Some(20),
        v6: None,
    };

    #[test]
    fn scope_is_host_or_fleet_and_the_wafs_own_scope_has_its_own_key() {
        let table = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
        let error = build(&[table(
            "name = \"waf\"\ntype = \"aws_waf\"\nscope = \"REGIONAL\"",
        )])
        .err()
        .unwrap()
        .to_string();
        assert!(error.contains("waf_scope = \"REGIONAL\""), "{error}");
        let built = build(&[
            table("name = \"local\"\ntype = \"nftables\""),
            table("name = \"router\"\ntype = \"nftables\"\nscope = \"fleet\""),
        ])
        .unwrap();
        let scopes: Vec<TargetScope> = built.iter().map(|b| b.scope).collect();
        assert_eq!(scopes, [TargetScope::Host, TargetScope::Fleet]);
        let error = build(&[table("name = \"x\"\ntype = \"nftables\"\nscope = \"site\"")])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("host") && error.contains("fleet"), "{error}");
    }

    #[test]
    fn management_addresses_are_protected_with_their_target_and_inline_secrets_named() {
        let table = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
        let built = build(&[
            table(
                "name = \"edge\"\ntype = \"cisco_ios\"\nhost = \"198.51.100.1\"\n\
                 username = \"u\"\npassword = \"hs-inline-pw\"\n\
                 host_key_fingerprint = \"SHA256:xxxxxxxx\"",
            ),
            table(
                "name = \"rtbh\"\ntype = \"bgp\"\nlocal_as = 65000\n\
                 router_id = \"198.51.100.9\"\nnext_hop_v4 = \"198.51.100.254\"\npeers = [{ address = \"2001:db8::1\", \
                 remote_as = 65001 }]",
            ),
            table("name = \"local\"\ntype = \"nftables\""),
            table(
                "name = \"conductor\"\ntype = \"netconf\"\nhost = \"localhost\"\n\
                 username = \"u\"\nprivate_key = \"/k\"\n\
                 host_key_fingerprint = \"SHA256:abc\"\npreset = \"ssr\"\n\
                 tenant = \"t\"\nneighborhood = \"n\"",
            ),
        ])
        .unwrap();
        assert_eq!(inline_secrets(&built), ["targets.edge.password"]);
        let (found, problems) = management_protections(&built);
        assert!(problems.is_empty(), "{problems:?}");
        let shown: Vec<String> = found
            .iter()
            .map(|p| format!("{} {}", p.prefix, p.reason))
            .collect();
        assert!(
            shown.contains(&"198.51.100.1/32 the management address of target edge (host)".into()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"2001:db8::1/128 the management address of target rtbh (peers)".into()),
            "{shown:?}"
        );
        // A DNS name is resolved: localhost is 127.0.0.1 (and ::1 where configured).
        assert!(
            shown
                .contains(&"127.0.0.1/32 the management address of target conductor (host)".into()),
            "{shown:?}"
        );
    }

    #[test]
    fn aggregation_settings_are_checked() {
        assert_eq!(
            aggregation(&common(None, None, None), V4_ONLY).unwrap(),
            None
        );
        assert_eq!(
            aggregation(&common(Some(28), None, None), V4_ONLY).unwrap(),
            Some(Aggregation {
                len_v4: Some(28),
                len_v6: None,
                min_members: 2
            })
        );
        let error = |c: Common| aggregation(&c, V4_ONLY).unwrap_err().to_string();
        assert!(error(common(Some(8), None, None)).contains("from 16 to 31"));
        assert!(error(common(Some(32), None, None)).contains("from 16 to 31"));
        assert!(error(common(None, Some(128), None)).contains("from 32 to 127"));
        // IPv6 has no capacity here: merging could never be needed.
        assert!(error(common(None, Some(64), None)).contains("has none for that family"));
        assert!(error(common(Some(28), None, Some(1))).contains("at least 2 bans"));
        assert!(error(common(None, None, Some(3))).contains("needs aggregate_v4"));
    }
}
