//! `/metrics`: the daemon's state in the Prometheus (OpenMetrics) text format.
//!
//! Gauges are read at scrape time from what already exists — the engine's ban table and
//! event counts, each worker's published `TargetStatus`, the ledger's health — so nothing on
//! the ban path does extra work for metrics. Names follow Prometheus conventions
//! (`netban_` prefix, base units, counters ending in `_total`).

use crate::server::Context;
use netban_proto::Health;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
struct SourceName {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetState {
    target: String,
    state: String,
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
    for ((family, source), n) in context.engine.ban_counts() {
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

    let ledger = context.ledger_health.borrow().clone();
    let spool = Gauge::<i64>::default();
    spool.set(ledger.spooled as i64);
    registry.register(
        "spool_depth",
        "Writes acknowledged while the shared ledger was unreachable, waiting in the spool",
        spool,
    );
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
