//! CrowdSec, both ways.
//!
//! - `source.rs`: CrowdSec as a source. One task per `[[sources]]` table of type `crowdsec`
//!   polls a Local API's decision stream as a bouncer and records its ban decisions as
//!   netban bans (`crowdsec:<scenario or origin>`), through the ledger thread like every ban.
//!   Operator docs: docs/sources/crowdsec.md.
//! - `server.rs`: netban as a CrowdSec decision server. `/v1/decisions/stream` and
//!   `/v1/decisions` on the API listener, for existing CrowdSec bouncers, authenticated by
//!   bouncer tokens. Operator docs: docs/targets/crowdsec-server.md.
//! - `wire.rs`: the decision JSON and Go durations, shared by both.

pub mod server;
pub mod source;
mod wire;

use crate::engine::Engine;
use crate::ledger_worker::LedgerHandle;
use netban_config::sources::SourceSection;
use netban_proto::SourceStatus;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the rest of the daemon sees of CrowdSec.
#[derive(Clone, Default)]
pub struct Crowdsec {
    /// Each source's status, published by its task.
    pub sources: Vec<watch::Receiver<SourceStatus>>,
    /// This host's name (the decision server records each key's decisions under it).
    pub host: String,
}

impl Crowdsec {
    /// The sources' status now, for `netban status` and `/metrics`.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.sources.iter().map(|s| s.borrow().clone()).collect()
    }
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("[[sources]] {name:?}: {source}")]
    Key {
        name: String,
        #[source]
        source: netban_config::ConfigError,
    },
    #[error("[[sources]] {name:?}: cannot build its HTTP client: {source}")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Starts one poller per CrowdSec source; they run until `shutdown`.
pub fn start(
    sections: &[SourceSection],
    host: String,
    engine: &Engine,
    ledger: &LedgerHandle,
    shutdown: &watch::Receiver<bool>,
) -> Result<(Crowdsec, Vec<JoinHandle<()>>), StartError> {
    let mut crowdsec = Crowdsec {
        sources: Vec::new(),
        host,
    };
    let mut tasks = Vec::new();
    for section in sections {
        let SourceSection::Crowdsec(section) = section;
        let name = section.name.clone();
        let key = section.api_key().map_err(|source| StartError::Key {
            name: name.clone(),
            source,
        })?;
        let (poller, status) =
            source::Poller::new(section.clone(), key, engine.clone(), ledger.clone())
                .map_err(|source| StartError::Client { name, source })?;
        crowdsec.sources.push(status);
        tasks.push(tokio::spawn(poller.run(shutdown.clone())));
    }
    Ok((crowdsec, tasks))
}
