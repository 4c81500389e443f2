//! The `[[targets]]` section of an AWS WAFv2 IP set target, and its checks.

use crate::aws_access::AwsAccess;
use crate::TargetError;
use netban_core::Family;
use serde::Deserialize;

/// Which IP sets netban writes to:
///
/// ```toml
/// [[targets]]
/// name = "waf"
/// type = "aws_waf"
/// waf_scope = "REGIONAL"             # or "CLOUDFRONT" (then region must be us-east-1)
/// ipset_v4 = { name = "netban-v4", id = "a1b2c3d4-…" }
/// ipset_v6 = { name = "netban-v6", id = "…" }   # at least one of the two
/// min_write_interval_ms = 1000       # at most one UpdateIPSet per set per this interval
/// max_addresses = 10000              # per set (AWS's limit), foreign entries included
/// region = "eu-west-1"
/// # endpoint_url, profile, credentials_file: see docs/targets/aws.md
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsWafConfig {
    /// WAFv2's own scope of the IP sets (`scope` is netban's: host or fleet).
    #[serde(default)]
    pub waf_scope: WafScope,
    #[serde(default)]
    pub ipset_v4: Option<IpSetRef>,
    #[serde(default)]
    pub ipset_v6: Option<IpSetRef>,
    #[serde(default = "default_interval")]
    pub min_write_interval_ms: u64,
    #[serde(default = "default_max")]
    pub max_addresses: usize,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<String>,
}

/// WAFv2's scope of an IP set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum WafScope {
    #[default]
    #[serde(rename = "REGIONAL")]
    Regional,
    #[serde(rename = "CLOUDFRONT")]
    Cloudfront,
}

/// One IP set, by name and id (both are needed by the API).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpSetRef {
    pub name: String,
    pub id: String,
}

/// AWS's limit of addresses in one IP set.
pub const MAX_ADDRESSES: usize = 10_000;

fn default_interval() -> u64 {
    1_000
}
fn default_max() -> usize {
    MAX_ADDRESSES
}

impl AwsWafConfig {
    pub fn access(&self) -> AwsAccess {
        AwsAccess {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            profile: self.profile.clone(),
            credentials_file: self.credentials_file.clone(),
        }
    }

    /// The configured IP sets with their family, IPv4 first.
    pub fn sets(&self) -> Vec<(Family, &IpSetRef)> {
        [(Family::V4, &self.ipset_v4), (Family::V6, &self.ipset_v6)]
            .into_iter()
            .filter_map(|(f, s)| s.as_ref().map(|s| (f, s)))
            .collect()
    }

    pub fn validated(self, target: &str) -> Result<Self, TargetError> {
        let bad = |msg: String| Err(TargetError::config(format!("aws_waf {target}: {msg}")));
        self.access().validate(&format!("aws_waf {target}"))?;
        if self.sets().is_empty() {
            return bad("give ipset_v4, ipset_v6 or both ({ name = \"…\", id = \"…\" })".into());
        }
        for (_, set) in self.sets() {
            // WAFv2's documented shapes: name [\w-]{1,128}, id [0-9a-f-]{1,36}.
            let name_ok = !set.name.is_empty()
                && set.name.len() <= 128
                && set
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let id_ok = !set.id.is_empty()
                && set.id.len() <= 36
                && set.id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if !name_ok || !id_ok {
                return bad(format!(
                    "IP set {:?} / {:?}: the name is 1-128 letters, digits, '_' or '-', the id \
                     is the set's UUID (see `aws wafv2 list-ip-sets`)",
                    set.name, set.id
                ));
            }
        }
        if self.max_addresses == 0 || self.max_addresses > MAX_ADDRESSES {
            return bad(format!(
                "max_addresses = {}: give 1..={MAX_ADDRESSES} (AWS's limit per IP set)",
                self.max_addresses
            ));
        }
        if self.min_write_interval_ms > 60_000 {
            return bad(format!(
                "min_write_interval_ms = {}: at most 60000; AWS allows about one write per \
                 second",
                self.min_write_interval_ms
            ));
        }
        if self.waf_scope == WafScope::Cloudfront
            && self.region.as_deref().is_some_and(|r| r != "us-east-1")
        {
            return bad(
                "waf_scope CLOUDFRONT is served from region us-east-1: set region = \"us-east-1\""
                    .into(),
            );
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;

    fn parse(json: &str) -> Result<AwsWafConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_every_key() {
        let c = parse(r#"{"ipset_v4": {"name": "nb4", "id": "0a1b-2c"}}"#).unwrap();
        assert_eq!(c.waf_scope, WafScope::Regional);
        assert_eq!((c.min_write_interval_ms, c.max_addresses), (1_000, 10_000));
        assert_eq!(c.sets().len(), 1);
        assert!(c.validated("t").is_ok());
        let kind: TargetKind = serde_json::from_str(
            r#"{"type": "aws_waf", "waf_scope": "CLOUDFRONT", "region": "us-east-1",
                "ipset_v4": {"name": "a", "id": "1"}, "ipset_v6": {"name": "b", "id": "2"},
                "min_write_interval_ms": 0, "max_addresses": 500, "endpoint_url": "http://x",
                "profile": "p", "credentials_file": "/c"}"#,
        )
        .unwrap();
        assert_eq!(kind.kind(), "aws_waf");
        assert!(parse(r#"{"ipset_v4": {"name": "a", "id": "1", "arn": "x"}}"#).is_err());
        assert!(parse(r#"{"waf_scope": "regional"}"#).is_err());
    }

    #[test]
    fn values_that_reach_aws_are_checked() {
        let base = parse(r#"{"ipset_v4": {"name": "nb4", "id": "0a1b"}}"#).unwrap();
        let with = |f: &dyn Fn(&mut AwsWafConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c.validated("t")
        };
        for bad in [
            with(&|c| c.ipset_v4 = None),
            with(&|c| c.ipset_v4.as_mut().unwrap().name = "a b".into()),
            with(&|c| c.ipset_v4.as_mut().unwrap().id = "zz".into()),
            with(&|c| c.max_addresses = 10_001),
            with(&|c| c.max_addresses = 0),
            with(&|c| c.min_write_interval_ms = 60_001),
            with(&|c| {
                c.waf_scope = WafScope::Cloudfront;
                c.region = Some("eu-west-1".into());
            }),
        ] {
            assert!(matches!(bad, Err(TargetError::Config(_))), "{bad:?}");
        }
    }
}
