//! Target configuration: a closed, tagged set of driver configs. Each `[[targets]]` table in
//! netban.toml has the common keys (read by the daemon: `name`, `sources`, `fallback`,
//! `resync_secs`) and a `type` that selects one variant here; the variant's own keys are
//! checked strictly (`deny_unknown_fields`).

use crate::{nftables, Target, TargetError};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetKind {
    Nftables(nftables::NftablesConfig),
}

impl TargetKind {
    /// Builds the driver. Cheap: no device is contacted until `prepare`.
    pub fn build(&self, name: &str) -> Result<Box<dyn Target>, TargetError> {
        match self {
            TargetKind::Nftables(c) => Ok(Box::new(nftables::Nftables::new(name, c.clone())?)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TargetKind::Nftables(_) => "nftables",
        }
    }
}
