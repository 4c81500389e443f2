//! Why running nft failed, as the driver knows it; each variant says what the operator should
//! do, and [`From<NftError> for TargetError`] sorts it into the reconciler's categories.

use crate::TargetError;
use std::process::ExitStatus;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "network namespace {netns:?} does not exist (no /run/netns/{netns}); create it with \
         `ip netns add {netns}` or fix `netns` in the nftables target {target:?}"
    )]
    NoNamespace { netns: String, target: String },
    #[error("{place} cannot be entered: {stderr}")]
    NamespaceRefused { place: String, stderr: String },
    #[error("ip not found; install iproute2 (needed to run nft in a network namespace)")]
    IpNotFound,
    #[error("nft not found ({nft_path:?}){}; install nftables or set nft_path", in_place(.place))]
    NftNotFound {
        nft_path: String,
        /// Where it was looked for, when nft ran through `ip netns exec`.
        place: Option<String>,
    },
    #[error("cannot start nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("running nft: {0}")]
    Wait(#[source] std::io::Error),
    #[error("nft {args} did not finish within {timeout:?} in {place}")]
    Timeout {
        args: String,
        timeout: Duration,
        place: String,
    },
    #[error(
        "nft was refused in {place} (Operation not permitted): netban needs root or \
         CAP_NET_ADMIN there"
    )]
    NotPermitted { place: String },
    /// nft ran and refused; `stderr` is shortened.
    #[error("nft {args} in {place} failed ({status}): {stderr}")]
    Refused {
        args: String,
        place: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("table inet {table} does not exist in {place}; prepare creates it")]
    NoTable { table: String, place: String },
    #[error("set {set} is missing from table inet {table} in {place}; prepare re-creates it")]
    NoSet {
        set: &'static str,
        table: String,
        place: String,
    },
    /// `nft -j list` printed something the listing parser does not understand.
    #[error("{0}")]
    Listing(String),
    /// The batch was refused twice, before and after re-reading the sets.
    #[error("{second} (first attempt: {first})")]
    RefusedTwice {
        first: Box<NftError>,
        #[source]
        second: Box<NftError>,
    },
}

fn in_place(place: &Option<String>) -> String {
    place
        .as_ref()
        .map(|p| format!(" in {p}"))
        .unwrap_or_default()
}

impl NftError {
    /// nft ran and answered something netban did not expect (a refused transaction, an
    /// unreadable listing, a missing table or set): re-reading may show why.
    pub fn is_device(&self) -> bool {
        matches!(
            self,
            NftError::Spawn(_)
                | NftError::Wait(_)
                | NftError::Refused { .. }
                | NftError::NoTable { .. }
                | NftError::NoSet { .. }
                | NftError::Listing(_)
                | NftError::RefusedTwice { .. }
        )
    }
}

impl From<NftError> for TargetError {
    fn from(e: NftError) -> Self {
        match e {
            NftError::Timeout { .. } => TargetError::unreachable(e),
            e if e.is_device() => TargetError::device(e),
            e => TargetError::config(e),
        }
    }
}
