//! nftables target (being written): netban's own table in the host or a named namespace.

use crate::{ApplyReport, Target, TargetError, TargetInfo};
use async_trait::async_trait;
use netban_core::plan::{Held, Plan};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesConfig {
    #[serde(default)]
    pub netns: Option<String>,
}

pub struct Nftables {
    info: TargetInfo,
}

impl Nftables {
    pub fn new(name: &str, config: NftablesConfig) -> Result<Self, TargetError> {
        let _ = (name, config);
        todo!()
    }
}

#[async_trait]
impl Target for Nftables {
    fn info(&self) -> &TargetInfo {
        &self.info
    }
    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        todo!()
    }
    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        let _ = plan;
        todo!()
    }
}
