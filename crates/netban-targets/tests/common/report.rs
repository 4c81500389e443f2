//! Checks on what a driver's `apply` reported, shared by the driver tests that include this
//! file (`#[path = "common/report.rs"] mod report;`).

use netban_targets::{ApplyReport, ItemOutcome};

/// Every item of `report` is done.
pub fn assert_all_done(report: &ApplyReport) {
    for item in &report.items {
        assert!(
            matches!(item.result, ItemOutcome::Done { .. }),
            "{} {:?}: {:?}",
            item.prefix,
            item.step,
            item.result
        );
    }
}
