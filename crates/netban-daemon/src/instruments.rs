//! What the daemon measures where the work happens, for `/metrics`: how long each target's
//! observe and apply take, its errors by kind, how long the ledger's transactions take and how
//! many requests share one.
//!
//! Recorded on the hot paths (a worker around each device call, the ledger thread around each
//! commit), so everything here is atomics: recording never takes a lock and never waits for a
//! scrape, and a scrape reads a [`HistogramSnapshot`] without stopping anyone. Each instrument
//! has one writer (its worker, or the ledger thread); the scrape only reads.

use netban_targets::TargetError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram of one writer's observations, lock-free: one counter per bucket and the sum.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending; observations above the last go to `+Inf`.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more than `bounds` (`+Inf`).
    buckets: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

/// Seconds, for device calls and ledger commits: 0.5 ms to 60 s.
pub const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Counts of things, for group sizes: powers of two up to the ledger's largest group.
pub const COUNTS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // One writer per histogram: the update succeeds at the first try.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// The observations so far. The count is the sum of the buckets, so the two always agree.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            buckets: self
                .bounds
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(counts)
                .collect(),
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram as read at one scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations in this bucket alone); the last bound is `f64::MAX`
    /// (`+Inf`).
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }
}

/// Why a target's work failed, as `/metrics` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetErrorKind {
    /// A whole observe or apply: the device did not answer.
    Unreachable,
    /// A whole observe or apply: the device answered something unexpected.
    Device,
    /// A whole observe or apply: configuration or credentials.
    Configuration,
    /// One item failed (retried on its own).
    ItemFailed,
    /// One item the device refused for good.
    ItemRejected,
}

impl TargetErrorKind {
    pub const ALL: [TargetErrorKind; 5] = [
        TargetErrorKind::Unreachable,
        TargetErrorKind::Device,
        TargetErrorKind::Configuration,
        TargetErrorKind::ItemFailed,
        TargetErrorKind::ItemRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetErrorKind::Unreachable => "unreachable",
            TargetErrorKind::Device => "device",
            TargetErrorKind::Configuration => "configuration",
            TargetErrorKind::ItemFailed => "item_failed",
            TargetErrorKind::ItemRejected => "item_rejected",
        }
    }

    pub fn of(error: &TargetError) -> TargetErrorKind {
        match error {
            TargetError::Unreachable(_) => TargetErrorKind::Unreachable,
            TargetError::Device(_) => TargetErrorKind::Device,
            TargetError::Config(_) => TargetErrorKind::Configuration,
        }
    }
}

/// One target's instruments, written by its worker alone.
#[derive(Debug)]
pub struct TargetInstruments {
    /// Each `observe` of the device (a full sync, a plan), successful or not.
    pub observe: Histogram,
    /// Each `apply` of one batch, successful or not.
    pub apply: Histogram,
    errors: [AtomicU64; 5],
    /// Entries a resync found missing from the device, or there unexpectedly, against what
    /// the worker had applied since the sync before ([`netban_core::plan::drift`]).
    drift_missing: AtomicU64,
    drift_unexpected: AtomicU64,
}

impl Default for TargetInstruments {
    fn default() -> Self {
        TargetInstruments {
            observe: Histogram::new(SECONDS),
            apply: Histogram::new(SECONDS),
            errors: Default::default(),
            drift_missing: AtomicU64::new(0),
            drift_unexpected: AtomicU64::new(0),
        }
    }
}

impl TargetInstruments {
    pub fn error(&self, kind: TargetErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the entries of a drift a resync found (and repairs).
    pub fn drift(&self, drift: &netban_core::plan::Drift) {
        self.drift_missing
            .fetch_add(drift.missing.len() as u64, Ordering::Relaxed);
        self.drift_unexpected
            .fetch_add(drift.unexpected.len() as u64, Ordering::Relaxed);
    }

    /// Drifted entries so far: (missing, unexpected).
    pub fn drifted(&self) -> (u64, u64) {
        (
            self.drift_missing.load(Ordering::Relaxed),
            self.drift_unexpected.load(Ordering::Relaxed),
        )
    }

    /// Errors so far, by kind (in [`TargetErrorKind::ALL`] order).
    pub fn errors(&self) -> impl Iterator<Item = (TargetErrorKind, u64)> + '_ {
        TargetErrorKind::ALL
            .into_iter()
            .map(|kind| (kind, self.errors[kind as usize].load(Ordering::Relaxed)))
    }
}

/// The ledger thread's instruments, written by that thread alone.
#[derive(Debug)]
pub struct LedgerInstruments {
    /// Each transaction that records a group's writes (in the ledger, or in the spool while a
    /// shared ledger is away), from its start to its commit (fsync included).
    pub commit: Histogram,
    /// The requests (bans, unbans, lifts) answered by each such transaction.
    pub group_size: Histogram,
    /// Whether this daemon has a spool (a PostgreSQL ledger): `spool_depth` is shown only then.
    pub has_spool: bool,
}

impl LedgerInstruments {
    pub fn new(has_spool: bool) -> LedgerInstruments {
        LedgerInstruments {
            commit: Histogram::new(SECONDS),
            group_size: Histogram::new(COUNTS),
            has_spool,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 1.5, 4.0, 9.0, 9.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(1.0, 2), (2.0, 1), (4.0, 1), (f64::MAX, 2)],
            "bounds are inclusive upper bounds, as Prometheus's `le`"
        );
        assert_eq!(s.count(), 6);
        assert_eq!(s.sum, 25.0);
    }

    #[test]
    fn a_scrape_reads_while_threads_record() {
        let h = std::sync::Arc::new(Histogram::new(COUNTS));
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..10_000).for_each(|i| h.observe(f64::from(i % 7))))
            })
            .collect();
        let _ = h.snapshot();
        writers.into_iter().for_each(|w| w.join().unwrap());
        let s = h.snapshot();
        assert_eq!(s.count(), 40_000);
        assert_eq!(
            s.sum,
            4.0 * (0..10_000).map(|i| f64::from(i % 7)).sum::<f64>()
        );
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let t = TargetInstruments::default();
        t.error(TargetErrorKind::of(&TargetError::unreachable("timed out")));
        t.error(TargetErrorKind::ItemRejected);
        t.error(TargetErrorKind::ItemRejected);
        let counts: Vec<_> = t.errors().map(|(k, n)| (k.as_str(), n)).collect();
        assert_eq!(
            counts,
            [
                ("unreachable", 1),
                ("device", 0),
                ("configuration", 0),
                ("item_failed", 0),
                ("item_rejected", 2)
            ]
        );
    }
}
