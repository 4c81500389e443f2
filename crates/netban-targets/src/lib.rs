//! Enforcement points ("targets"): one driver per kind of device behind one trait.
//!
//! A target only *observes* what its device holds and *applies* the changes it is given. It
//! never decides policy: which bans it should hold (scope, placement under capacity, fallback)
//! is decided by the core and the daemon's reconciler. Each driver lives in its own module
//! folder with its configuration, its protocol client and its tests against the real peer,
//! and is registered by one line in [`config`] (docs/dev/adding-a-driver.md lists the few
//! files outside its folder a new driver touches).
//!
//! Contract of [`Target`]:
//! - `observe` returns every entry in the device area netban works in (its own table, ACL,
//!   rule range, tenant…), including entries netban did not create when the area is shared;
//!   the reconciler, not the driver, decides which of them netban owns.
//! - `apply` carries out one [`Plan`] as one device transaction where the device has such a
//!   thing (an `nft -f` batch, a NETCONF commit, one CLI configuration session), and reports
//!   per item. An `Err` means nothing can be assumed about the batch: the reconciler will
//!   observe again and re-plan before retrying. Errors are [`TargetError`]: a category
//!   (unreachable, device, configuration) around the driver's own typed error.
//! - Neither method is called concurrently on one target: each target has its own worker.

#[cfg(feature = "aws")]
mod aws_access;
#[cfg(feature = "aws")]
pub mod aws_nacl;
#[cfg(feature = "aws")]
pub mod aws_waf;
#[cfg(feature = "bgp")]
pub mod bgp;
#[cfg(feature = "cisco-ios")]
pub mod cisco_ios;
pub mod config;
#[cfg(feature = "exafs")]
pub mod exafs;
pub mod feed;
#[cfg(feature = "netconf")]
pub mod netconf;
pub mod nftables;
#[cfg(any(feature = "cisco-ios", feature = "netconf"))]
pub mod ssh;

use async_trait::async_trait;
use netban_core::placement::Capacity;
use netban_core::plan::{ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::{Family, Prefix};

/// Whether netban may remove everything it reads back, or only what it recorded creating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnershipKind {
    /// The whole area observed is netban's (its own table, ACL, rule-number range, session).
    Exclusive,
    /// The area is shared with operators or other tools (ExaFS, a NETCONF tenant, a WAF IP
    /// set): only entries recorded in the ledger as created by netban are removed.
    Recorded,
}

/// What a target is and what its device can hold. Fixed for the life of a driver.
#[derive(Clone, Debug)]
pub struct TargetInfo {
    /// The operator's name for this target (from the configuration).
    pub name: String,
    /// The driver kind (`nftables`, `exafs`, …).
    pub kind: &'static str,
    pub families: Vec<Family>,
    /// Slots per family the device can give netban; unbounded for most.
    pub capacity: Capacity,
    pub ownership: OwnershipKind,
    pub expiry: ExpiryTracking,
    /// Whether its entries depend on which sources ban a prefix (BGP flowspec rules shaped
    /// per source); if so, its plans carry the sources ([`netban_core::plan::Desired::sources`]).
    pub sources: SourceTracking,
    /// The most plan items one `apply` receives; the reconciler splits larger plans.
    pub max_batch: usize,
}

impl TargetInfo {
    pub fn handles(&self, prefix: &Prefix) -> bool {
        self.families.contains(&prefix.family())
    }
}

/// Which step of a plan an item result belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Add,
    Remove,
    Refresh,
}

/// What happened to one item of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Done. For adds and refreshes, the entry as now held (with its device handle).
    Done { held: Option<Held> },
    /// The device refused this item for a reason retrying will not fix (e.g. ExaFS: address
    /// outside the organisation's ranges). Reported, not retried until the ban changes.
    Rejected { reason: String },
    /// Failed for a reason that may pass (timeout, 5xx); retried with backoff.
    Failed { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemReport {
    pub prefix: Prefix,
    pub step: Step,
    pub result: ItemOutcome,
}

/// Per-item results of one `apply`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub items: Vec<ItemReport>,
}

impl ApplyReport {
    /// Every item of `plan` done, with no handle (for devices without per-entry ids).
    pub fn all_done(plan: &Plan) -> ApplyReport {
        let done = |prefix: Prefix, step| ItemReport {
            prefix,
            step,
            result: ItemOutcome::Done { held: None },
        };
        let mut items = Vec::with_capacity(plan.len());
        items.extend(plan.add.iter().map(|d| done(d.prefix, Step::Add)));
        items.extend(plan.remove.iter().map(|h| done(h.prefix, Step::Remove)));
        items.extend(
            plan.refresh
                .iter()
                .map(|(_, d)| done(d.prefix, Step::Refresh)),
        );
        ApplyReport { items }
    }
}

/// A driver's own error behind a [`TargetError`]: its typed error (an SSH session error, an
/// HTTP client error, an SDK error, an I/O error…) or, for a condition netban itself detected,
/// a message. Downcast it to reach the driver's type.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a whole observe or apply failed: the category the reconciler acts on, and the driver's
/// error as its source.
///
/// Every error in this crate displays as a complete sentence for an operator (`netban status`
/// shows it as is), including the text of its own cause; `source()` hands the typed cause to
/// programs. So print one error's `Display`, not its whole chain.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The device could not be reached or did not answer in time. Retried with backoff.
    #[error("unreachable: {0}")]
    Unreachable(#[source] Cause),
    /// The device answered with something netban did not expect. Retried with backoff.
    #[error("device error: {0}")]
    Device(#[source] Cause),
    /// The configuration or credentials are wrong; retrying will not help until an operator
    /// acts. Still retried (slowly), and reported in `status`.
    #[error("configuration error: {0}")]
    Config(#[source] Cause),
}

impl TargetError {
    pub fn unreachable(cause: impl Into<Cause>) -> Self {
        TargetError::Unreachable(cause.into())
    }

    pub fn device(cause: impl Into<Cause>) -> Self {
        TargetError::Device(cause.into())
    }

    pub fn config(cause: impl Into<Cause>) -> Self {
        TargetError::Config(cause.into())
    }

    /// The driver's error, whatever the category.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            TargetError::Unreachable(c) | TargetError::Device(c) | TargetError::Config(c) => {
                c.as_ref()
            }
        }
    }
}

/// A driver error with the device it concerns, as an operator reads it: "router
/// 10.0.0.1:22: …", optionally followed by what to do. Its source is the driver's error.
#[derive(Debug, thiserror::Error)]
#[error("{device}: {source}{}", .advice.map(|a| format!("; {a}")).unwrap_or_default())]
pub struct OnDevice {
    pub device: String,
    #[source]
    pub source: Cause,
    pub advice: Option<&'static str>,
}

impl OnDevice {
    pub fn new(device: impl Into<String>, source: impl Into<Cause>) -> Self {
        OnDevice {
            device: device.into(),
            source: source.into(),
            advice: None,
        }
    }

    /// Adds what the operator should do, when the driver's error alone does not say it.
    pub fn with_advice(mut self, advice: &'static str) -> Self {
        self.advice = Some(advice);
        self
    }
}

/// One enforcement point. See the crate documentation for the contract.
#[async_trait]
pub trait Target: Send {
    fn info(&self) -> &TargetInfo;

    /// Prepares the device area (creates netban's table or checks the ACL exists). Called
    /// before the first observe and after an error; must be idempotent.
    async fn prepare(&mut self) -> Result<(), TargetError> {
        Ok(())
    }

    /// Everything the device holds in netban's area.
    async fn observe(&mut self) -> Result<Vec<Held>, TargetError>;

    /// Carries out `plan` (already split to at most `max_batch` items).
    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError>;

    /// Releases the device session. The default does nothing.
    async fn shutdown(&mut self) {}
}
