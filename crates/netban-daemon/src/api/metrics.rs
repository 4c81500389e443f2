//! `/metrics`: the daemon's state in the Prometheus (OpenMetrics) text format.
//!
//! Gauges are read at scrape time from what already exists — the engine's ban counts (kept by
//! the ban table as it changes, so a scrape at a million bans does not count them) and event
//! counts, each worker's published `TargetStatus`, the ledger's health. Durations and errors
//! are recorded where the work happens, in lock-free [`crate::instruments`] (a worker around
//! each device call, the ledger thread around each commit), and only read here. Names follow
//! Prometheus conventions (`netban_` prefix, base units, counters ending in `_total`).

use crate::instruments::HistogramSnapshot;
use crate::server::Context;
use netban_proto::Health;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests refused, by why (the socket's and the API's): counted where they are refused.
#[derive(Default)]
pub struct Refusals([AtomicU64; 5]);

impl Refusals {
    /// A prefix refused by policy (allowlist, protected network, breadth).
    pub const POLICY: usize = 0;
    /// Malformed input, a batch too large, an unknown target.
    pub const INPUT: usize = 1;
    /// No valid token.
    pub const UNAUTHENTICATED: usize = 2;
    /// A token (or socket caller) without the right role, source or prefix length.
    pub const FORBIDDEN: usize = 3;
    /// Over a token's rate.
    pub const RATE: usize = 4;
    const NAMES: [&'static str; 5] = ["policy", "input", "unauthenticated", "forbidden", "rate"];

    pub fn count(&self, reason: usize) {
        self.add(reason, 1);
    }

    pub fn add(&self, reason: usize, n: u64) {
        self.0[reason].fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilySource {
    family: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Target {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetKind {
    target: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceName {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetState {
    target: String,
    state: String,
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count(), &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One histogram per target, read at the scrape from each worker's instruments.
#[derive(Debug)]
struct PerTarget(Vec<(Target, HistogramSnapshot)>);

impl EncodeMetric for PerTarget {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (target, histogram) in &self.0 {
            histogram.encode(encoder.encode_family(target)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const HEALTHS: [Health; 5] = [
    Health::Starting,
    Health::Ok,
    Health::Degraded,
    Health::Down,
    Health::Standby,
];

/// The text of one scrape.
pub fn render(context: &Context) -> String {
    let mut registry = Registry::with_prefix("netban");

    let active = Family::<FamilySource, Gauge>::default();
    for (family, source, n) in context.engine.ban_counts() {
        let family = match family {
            netban_core::Family::V4 => "ipv4",
            netban_core::Family::V6 => "ipv6",
        };
        active
            .get_or_create(&FamilySource {
                family: family.into(),
                source: source.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(
        "active_bans",
        "Active (prefix, source) bans, by address family and source",
        active,
    );

    let events = Family::<Kind, Counter>::default();
    for (kind, n) in context.engine.events_applied() {
        events
            .get_or_create(&Kind {
                kind: kind.as_str().into(),
            })
            .inc_by(n);
    }
    registry.register(
        "ledger_events",
        "Ledger events applied since start, by kind (ban, extend, unban, expire, lift)",
        events,
    );

    let refusals = Family::<Reason, Counter>::default();
    for (i, name) in Refusals::NAMES.iter().enumerate() {
        refusals
            .get_or_create(&Reason {
                reason: (*name).into(),
            })
            .inc_by(context.refusals.0[i].load(Ordering::Relaxed));
    }
    registry.register(
        "refusals",
        "Requests (or prefixes in them) refused since start, by reason",
        refusals,
    );

    let health = Family::<TargetState, Gauge>::default();
    let gauges = [
        ("target_desired", "Bans the target should hold"),
        ("target_held", "Entries the target holds"),
        (
            "target_pending",
            "Prefixes waiting to be planned and applied",
        ),
        (
            "target_overflow",
            "Bans the target cannot hold (capacity), sent to its fallback",
        ),
        (
            "target_consecutive_failures",
            "Failed attempts since the last success",
        ),
        (
            "target_last_sync_timestamp_seconds",
            "When the target was last synced successfully (Unix time)",
        ),
    ]
    .map(|(name, help)| (name, help, Family::<Target, Gauge>::default()));
    for status in context.workers.iter().map(|w| w.status()) {
        for state in HEALTHS {
            health
                .get_or_create(&TargetState {
                    target: status.name.clone(),
                    state: state.as_str().into(),
                })
                .set(i64::from(status.health == state));
        }
        let target = Target {
            target: status.name.clone(),
        };
        let values = [
            status.desired as i64,
            status.held as i64,
            status.pending as i64,
            status.overflow as i64,
            i64::from(status.consecutive_failures),
            status.last_sync.map_or(0, |t| t.0),
        ];
        for ((_, _, family), value) in gauges.iter().zip(values) {
            family.get_or_create(&target).set(value);
        }
    }
    registry.register(
        "target_health",
        "1 for the target's current health (starting, ok, degraded, down, standby)",
        health,
    );
    for (name, help, family) in gauges {
        registry.register(name, help, family);
    }

    let errors = Family::<TargetKind, Counter>::default();
    let drift = Family::<TargetKind, Counter>::default();
    let (mut apply, mut observe) = (Vec::new(), Vec::new());
    for worker in &context.workers {
        let instruments = worker.instruments();
        for (kind, n) in instruments.errors() {
            errors
                .get_or_create(&TargetKind {
                    target: worker.name.clone(),
                    kind: kind.as_str().into(),
                })
                .inc_by(n);
        }
        let (missing, unexpected) = instruments.drifted();
        for (kind, n) in [("missing", missing), ("unexpected", unexpected)] {
            drift
                .get_or_create(&TargetKind {
                    target: worker.name.clone(),
                    kind: kind.into(),
                })
                .inc_by(n);
        }
        let target = Target {
            target: worker.name.clone(),
        };
        apply.push((target.clone(), instruments.apply.snapshot()));
        observe.push((target, instruments.observe.snapshot()));
    }

    // Feeds: who pulls them, and how many consumers hold an older version than the one
    // published (a firewall that stopped pulling shows here).
    let consumers = Family::<Target, Gauge>::default();
    let outdated = Family::<Target, Gauge>::default();
    for board in &context.feeds {
        let target = Target {
            target: board.name().to_string(),
        };
        let current = board.current().map(|p| p.etag.clone());
        let all = board.consumers();
        let stale = all
            .iter()
            .filter(|c| c.holds.as_ref().map(|h| &h.etag) != current.as_ref())
            .count();
        consumers.get_or_create(&target).set(all.len() as i64);
        outdated.get_or_create(&target).set(stale as i64);
    }
    registry.register(
        "feed_consumers",
        "Consumers (address and identity) that pulled the feed since start",
        consumers,
    );
    registry.register(
        "feed_consumers_outdated",
        "Consumers whose copy of the feed is not the version published now",
        outdated,
    );

    registry.register(
        "target_errors",
        "Failed device operations since start, by kind: a whole observe or apply \
         (unreachable, device, configuration) or one item (item_failed, item_rejected)",
        errors,
    );
    registry.register(
        "target_drift",
        "Entries a resync found changed on the device outside netban since the sync before, \
         by kind: missing (netban had them there) or unexpected (netban had not); each is \
         repaired by that resync",
        drift,
    );
    registry.register(
        "target_apply_duration_seconds",
        "Time to apply one batch of changes to the target, successful or not",
        PerTarget(apply),
    );
    registry.register(
        "target_observe_duration_seconds",
        "Time to read what the target holds (a full sync, a plan), successful or not",
        PerTarget(observe),
    );

    let ledger_instruments = &context.ledger_instruments;
    registry.register(
        "ledger_commit_duration_seconds",
        "Time to record one group of writes durably (one transaction and its fsync)",
        ledger_instruments.commit.snapshot(),
    );
    registry.register(
        "ledger_commit_group_size",
        "Requests (bans, unbans, lifts) recorded by one transaction (group commit)",
        ledger_instruments.group_size.snapshot(),
    );

    let ledger = context.ledger_health.borrow().clone();
    if ledger_instruments.has_spool {
        let spool = Gauge::<i64>::default();
        spool.set(ledger.spooled as i64);
        registry.register(
            "spool_depth",
            "Writes acknowledged while the shared ledger was unreachable, waiting in the spool",
            spool,
        );
    }
    let unreachable = Gauge::<i64>::default();
    unreachable.set(i64::from(ledger.unreachable_since.is_some()));
    registry.register(
        "ledger_unreachable",
        "1 while the (shared) ledger does not answer",
        unreachable,
    );

    let source_gauges = [
        (
            "source_up",
            "1 while the polled source (a CrowdSec LAPI) answers",
        ),
        (
            "source_decisions",
            "The source's active decisions netban follows",
        ),
    ]
    .map(|(name, help)| (name, help, Family::<SourceName, Gauge>::default()));
    let source_counters = [
        ("source_bans", "Bans recorded from the source since start"),
        (
            "source_unbans",
            "Unbans recorded from the source since start",
        ),
        (
            "source_refused",
            "Decisions of the source refused since start",
        ),
    ]
    .map(|(name, help)| (name, help, Family::<SourceName, Counter>::default()));
    for status in context.crowdsec.statuses() {
        let label = SourceName {
            source: status.name.clone(),
        };
        let gauges = [
            i64::from(status.down_since.is_none() && status.last_poll.is_some()),
            status.decisions as i64,
        ];
        for ((_, _, family), value) in source_gauges.iter().zip(gauges) {
            family.get_or_create(&label).set(value);
        }
        let counters = [status.bans, status.unbans, status.refused];
        for ((_, _, family), value) in source_counters.iter().zip(counters) {
            family.get_or_create(&label).inc_by(value);
        }
    }
    for (name, help, family) in source_gauges {
        registry.register(name, help, family);
    }
    for (name, help, family) in source_counters {
        registry.register(name, help, family);
    }

    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String does not fail");
    text
}
