//! The `[[targets]]` section of an AWS Network ACL target, and its checks.

use crate::aws_access::AwsAccess;
use crate::TargetError;
use netban_core::placement::Capacity;
use serde::Deserialize;

/// Which NACL netban writes to and how much of it netban may use. Every key is optional:
///
/// ```toml
/// [[targets]]
/// name = "vpc"
/// type = "aws_nacl"
/// network_acl_id = "acl-0123456789abcdef0"  # or subnet_id = "subnet-…", or neither: IMDSv2
/// rule_range = [1, 99]        # rule numbers netban owns; must sit below the operator's rules
/// max_rules_v4 = 20           # the NACL's ingress quota per family (20, or 40 after a raise)
/// max_rules_v6 = 20
/// reserved_v4 = 2             # the operator's own ingress rules per family (allow + default)
/// reserved_v6 = 2
/// region = "eu-west-1"        # default: the SDK's chain
/// # endpoint_url, profile, credentials_file, imds_endpoint: see docs/targets/aws.md
/// fallback = "host"           # common key: where bans that do not fit go
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsNaclConfig {
    /// The NACL (`acl-…`).
    #[serde(default)]
    pub network_acl_id: Option<String>,
    /// A subnet whose associated NACL netban uses (`subnet-…`).
    #[serde(default)]
    pub subnet_id: Option<String>,
    /// The instance metadata service, for discovery when neither id is given.
    #[serde(default = "default_imds")]
    pub imds_endpoint: String,
    /// The first and last rule numbers netban owns (inclusive).
    #[serde(default = "default_range")]
    pub rule_range: [u16; 2],
    #[serde(default = "default_max_rules")]
    pub max_rules_v4: u16,
    #[serde(default = "default_max_rules")]
    pub max_rules_v6: u16,
    #[serde(default = "default_reserved")]
    pub reserved_v4: u16,
    #[serde(default = "default_reserved")]
    pub reserved_v6: u16,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<String>,
}

/// The highest rule number AWS accepts for a custom rule (32767 is the default `*` rule).
pub const MAX_RULE_NUMBER: u16 = 32_766;
/// The highest per-family rule quota AWS grants (after a raise).
pub const MAX_RULES_QUOTA: u16 = 40;

fn default_imds() -> String {
    "http://169.254.169.254".to_string()
}
fn default_range() -> [u16; 2] {
    [1, 99]
}
fn default_max_rules() -> u16 {
    20
}
fn default_reserved() -> u16 {
    2
}

impl Default for AwsNaclConfig {
    fn default() -> Self {
        AwsNaclConfig {
            network_acl_id: None,
            subnet_id: None,
            imds_endpoint: default_imds(),
            rule_range: default_range(),
            max_rules_v4: default_max_rules(),
            max_rules_v6: default_max_rules(),
            reserved_v4: default_reserved(),
            reserved_v6: default_reserved(),
            region: None,
            endpoint_url: None,
            profile: None,
            credentials_file: None,
        }
    }
}

/// `prefix-` followed by 1-32 lowercase hex digits: the shape of EC2 resource ids.
pub(super) fn is_resource_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        !hex.is_empty()
            && hex.len() <= 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl AwsNaclConfig {
    pub fn access(&self) -> AwsAccess {
        AwsAccess {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            profile: self.profile.clone(),
            credentials_file: self.credentials_file.clone(),
        }
    }

    /// The first and last rule numbers netban owns.
    pub fn range(&self) -> std::ops::RangeInclusive<u16> {
        self.rule_range[0]..=self.rule_range[1]
    }

    /// How many bans per family netban may hold: the quota minus the operator's rules.
    pub fn capacity(&self) -> Capacity {
        Capacity {
            v4: Some(usize::from(
                self.max_rules_v4.saturating_sub(self.reserved_v4),
            )),
            v6: Some(usize::from(
                self.max_rules_v6.saturating_sub(self.reserved_v6),
            )),
        }
    }

    /// Checks every value that reaches AWS and that the numbers fit together.
    pub fn validated(self, target: &str) -> Result<Self, TargetError> {
        let bad = |msg: String| Err(TargetError::config(format!("aws_nacl {target}: {msg}")));
        self.access().validate(&format!("aws_nacl {target}"))?;
        if self.network_acl_id.is_some() && self.subnet_id.is_some() {
            return bad("give network_acl_id or subnet_id, not both".into());
        }
        if let Some(id) = &self.network_acl_id {
            if !is_resource_id(id, "acl-") {
                return bad(format!("network_acl_id {id:?} is not a NACL id (acl-…)"));
            }
        }
        if let Some(id) = &self.subnet_id {
            if !is_resource_id(id, "subnet-") {
                return bad(format!("subnet_id {id:?} is not a subnet id (subnet-…)"));
            }
        }
        if !(self.imds_endpoint.starts_with("http://")
            || self.imds_endpoint.starts_with("https://"))
        {
            return bad(format!(
                "imds_endpoint {:?}: give an http:// URL",
                self.imds_endpoint
            ));
        }
        let [first, last] = self.rule_range;
        if first == 0 || last > MAX_RULE_NUMBER || first > last {
            return bad(format!(
                "rule_range = [{first}, {last}]: give [first, last] with 1 <= first <= last <= \
                 {MAX_RULE_NUMBER}, below the operator's own rules (usually 100)"
            ));
        }
        for (family, max, reserved) in [
            ("v4", self.max_rules_v4, self.reserved_v4),
            ("v6", self.max_rules_v6, self.reserved_v6),
        ] {
            if max == 0 || max > MAX_RULES_QUOTA {
                return bad(format!(
                    "max_rules_{family} = {max}: AWS allows 20 ingress rules per family, at \
                     most {MAX_RULES_QUOTA} after a quota raise"
                ));
            }
            if reserved >= max {
                return bad(format!(
                    "reserved_{family} = {reserved} leaves no rule for netban out of \
                     max_rules_{family} = {max}"
                ));
            }
        }
        let cap = self.capacity();
        let need = cap.v4.unwrap_or(0) + cap.v6.unwrap_or(0);
        let have = usize::from(last - first) + 1;
        if have < need {
            return bad(format!(
                "rule_range = [{first}, {last}] has {have} rule numbers but netban may hold \
                 {need} entries (IPv4 and IPv6 share the numbers): widen the range"
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;

    fn parse(json: &str) -> Result<AwsNaclConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c, AwsNaclConfig::default());
        assert_eq!(c.range(), 1..=99);
        assert_eq!(
            c.capacity(),
            Capacity {
                v4: Some(18),
                v6: Some(18)
            }
        );
        assert!(c.validated("t").is_ok());
    }

    #[test]
    fn every_key_and_the_tagged_kind() {
        let kind: TargetKind = serde_json::from_str(
            r#"{"type": "aws_nacl", "network_acl_id": "acl-0a1b", "rule_range": [10, 60],
                "max_rules_v4": 40, "max_rules_v6": 20, "reserved_v4": 4, "reserved_v6": 1,
                "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:5000",
                "profile": "p", "credentials_file": "/c", "imds_endpoint": "http://127.0.0.1:1"}"#,
        )
        .unwrap();
        assert_eq!(kind.kind(), "aws_nacl");
        let err = parse(r#"{"rule_ranges": [1, 2]}"#).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn values_that_reach_aws_and_numbers_that_do_not_fit_are_refused() {
        let with = |f: fn(&mut AwsNaclConfig)| {
            let mut c = AwsNaclConfig::default();
            f(&mut c);
            c.validated("t")
        };
        for bad in [
            with(|c| c.network_acl_id = Some("acl-XYZ".into())),
            with(|c| c.network_acl_id = Some("acl-1; rm".into())),
            with(|c| c.subnet_id = Some("sg-1".into())),
            with(|c| {
                c.network_acl_id = Some("acl-1".into());
                c.subnet_id = Some("subnet-1".into());
            }),
            with(|c| c.rule_range = [0, 99]),
            with(|c| c.rule_range = [50, 10]),
            with(|c| c.rule_range = [1, 32_767]),
            with(|c| c.rule_range = [1, 20]), // 18 + 18 do not fit in 20 numbers
            with(|c| c.max_rules_v4 = 41),
            with(|c| c.reserved_v6 = 20),
            with(|c| c.imds_endpoint = "169.254.169.254".into()),
            with(|c| c.region = Some("Mars 1".into())),
        ] {
            assert!(matches!(bad, Err(TargetError::Config(_))), "{bad:?}");
        }
        assert!(with(|c| c.subnet_id = Some("subnet-0abc".into())).is_ok());
    }
}
