//! Target configuration: a closed, tagged set of driver configs. Each `[[targets]]` table in
//! netban.toml has the common keys (read by the daemon: `name`, `sources`, `fallback`,
//! `fallback_only`, `capacity_v4`, `capacity_v6`) and a `type` that selects one variant here;
//! the variant's own keys are checked strictly (`deny_unknown_fields`). Adding a driver adds
//! one variant and one arm in each match below.

use crate::{nftables, Target, TargetError};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetKind {
    Nftables(nftables::NftablesConfig),
    #[cfg(feature = "exafs")]
    Exafs(crate::exafs::ExafsConfig),
    #[cfg(feature = "bgp")]
    Bgp(crate::bgp::BgpConfig),
    #[cfg(feature = "cisco-ios")]
    CiscoIos(crate::cisco_ios::CiscoIosConfig),
    #[cfg(feature = "netconf")]
    Netconf(crate::netconf::NetconfConfig),
    #[cfg(feature = "aws")]
    AwsNacl(crate::aws_nacl::AwsNaclConfig),
    #[cfg(feature = "aws")]
    AwsWaf(crate::aws_waf::AwsWafConfig),
}

impl TargetKind {
    /// Builds the driver. Cheap: no device is contacted until `prepare`.
    pub fn build(&self, name: &str) -> Result<Box<dyn Target>, TargetError> {
        match self {
            TargetKind::Nftables(c) => Ok(Box::new(nftables::Nftables::new(name, c.clone())?)),
            #[cfg(feature = "exafs")]
            TargetKind::Exafs(c) => Ok(Box::new(crate::exafs::Exafs::new(name, c.clone())?)),
            #[cfg(feature = "bgp")]
            TargetKind::Bgp(c) => Ok(Box::new(crate::bgp::Bgp::new(name, c.clone())?)),
            #[cfg(feature = "cisco-ios")]
            TargetKind::CiscoIos(c) => {
                Ok(Box::new(crate::cisco_ios::CiscoIos::new(name, c.clone())?))
            }
            #[cfg(feature = "netconf")]
            TargetKind::Netconf(c) => Ok(Box::new(crate::netconf::Netconf::new(name, c.clone())?)),
            #[cfg(feature = "aws")]
            TargetKind::AwsNacl(c) => Ok(Box::new(crate::aws_nacl::AwsNacl::new(name, c.clone())?)),
            #[cfg(feature = "aws")]
            TargetKind::AwsWaf(c) => Ok(Box::new(crate::aws_waf::AwsWaf::new(name, c.clone())?)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TargetKind::Nftables(_) => "nftables",
            #[cfg(feature = "exafs")]
            TargetKind::Exafs(_) => "exafs",
            #[cfg(feature = "bgp")]
            TargetKind::Bgp(_) => "bgp",
            #[cfg(feature = "cisco-ios")]
            TargetKind::CiscoIos(_) => "cisco_ios",
            #[cfg(feature = "netconf")]
            TargetKind::Netconf(_) => "netconf",
            #[cfg(feature = "aws")]
            TargetKind::AwsNacl(_) => "aws_nacl",
            #[cfg(feature = "aws")]
            TargetKind::AwsWaf(_) => "aws_waf",
        }
    }
}
