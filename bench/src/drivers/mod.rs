//! One benchmark per driver, each against its real peer (started by `netban_testlab::peers`)
//! and beside the way the seed scripts or the usual tool do it, one process per ban.
// A build without the driver sections (`bench/run.sh --only core`) leaves the helpers unused.
#![cfg_attr(
    not(any(
        feature = "exafs",
        feature = "bgp",
        feature = "cisco-ios",
        feature = "netconf",
        feature = "aws",
        feature = "crowdsec"
    )),
    allow(dead_code)
)]

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "bgp")]
pub mod bgp;
#[cfg(feature = "cisco-ios")]
pub mod cisco_ios;
#[cfg(feature = "exafs")]
pub mod exafs;
#[cfg(feature = "netconf")]
pub mod netconf;

use netban_core::plan::{Desired, Plan};
use netban_core::Expiry;
use netban_targets::{ItemOutcome, Target};

/// Applies `plan` and insists every item is done.
pub async fn apply_all(target: &mut dyn Target, plan: &Plan) {
    let report = target.apply(plan).await.expect("apply");
    assert_eq!(report.items.len(), plan.len());
    let not_done = report
        .items
        .iter()
        .find(|item| !matches!(item.result, ItemOutcome::Done { .. }));
    if let Some(item) = not_done {
        panic!("{} {:?}: {:?}", item.prefix, item.step, item.result);
    }
}

/// A plan that adds each of `prefixes` with one expiry.
pub fn adds(prefixes: &[String], expiry: Expiry) -> Plan {
    Plan {
        add: prefixes
            .iter()
            .map(|s| Desired {
                prefix: netban_testlab::plans::prefix(s),
                expiry,
            })
            .collect(),
        ..Plan::default()
    }
}

/// A size from the environment (`NETBAN_BENCH_…`), or `default`.
pub fn size_from_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
