//! BGP flowspec: ban → rule visible in GoBGP's, FRR's and BIRD's own tables (read back through
//! their CLIs, as the tests do), and 10,000 source-only rules announced → counted in GoBGP's
//! and FRR's RIBs, netban beside GoBGP's own CLI adding the same rules one process per rule
//! (`gobgp global rib -a ipv4-flowspec add match source X then discard`). In a two-namespace
//! lab per router, every speaker inside its namespace.

use super::apply_all;
use crate::table::{median, ms, secs, Row, Table};
use crate::Context;
use netban_core::plan::{Desired, Held, Plan};
use netban_core::{Expiry, Prefix};
use netban_targets::bgp::Bgp;
use netban_targets::Target;
use netban_testlab::peers::bgp_routers::{
    flow_lab, speaker_settings, FlowLab, FlowRule, Kind, Router, RouterOptions, ROUTER_AS,
    ROUTER_LINK_V4, SPEAKER_LINK_V4,
};
use netban_testlab::plans::adds;
use netban_testlab::wait_until;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Single bans timed per router.
const BANS: u32 = 10;
/// Rules in the bulk measurement.
const BULK: u32 = 10_000;
/// Rules GoBGP's CLI adds (one process each); its time is extrapolated to [`BULK`].
const CLI_SAMPLE: u32 = 500;
/// How long the routers may take to take the bulk.
const BULK_WAIT: Duration = Duration::from_secs(300);
/// The API port of the reference GoBGP speaker (its own namespace; the receiving GoBGP
/// listens on 50051 in the router's).
const SPEAKER_API_PORT: &str = "50052";

pub fn run(_context: &Context, table: &mut Table) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    table.section(
        "flowspec: GoBGP 3.10, FRR 8.4.4, BIRD 2.0.12 receiving (rules read back through their \
         CLIs); reference: GoBGP 3.10's CLI, one process per rule",
    );
    for kind in [Kind::Gobgp, Kind::Frr, Kind::Bird] {
        rt.block_on(measure(kind, table));
    }
    Ok(())
}

/// How many IPv4 flowspec rules the router holds, by its own summary count (`None`: BIRD, not
/// measured in bulk, or the CLI did not answer).
fn count_rules(router: &Router) -> Option<u64> {
    match router.kind {
        // "Table ipv4-flowspec\nDestination: 10000, Path: 10000"
        Kind::Gobgp => {
            let text = router.control(&["global", "rib", "-a", "ipv4-flowspec", "summary"])?;
            text.split("Destination:")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        }
        Kind::Frr => {
            let text = router.control(&["show bgp ipv4 flowspec summary json"])?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["peers"][SPEAKER_LINK_V4]["pfxRcd"].as_u64()
        }
        Kind::Bird => None,
    }
}

fn wait_count(router: &Router, want: u64) -> Instant {
    let mut last = None;
    let ok = wait_until(BULK_WAIT, Duration::from_millis(100), || {
        last = count_rules(router);
        last == Some(want)
    });
    assert!(
        ok,
        "{:?} holds {last:?} rules, want {want}{}",
        router.kind,
        router.logs()
    );
    Instant::now()
}

fn host_rule(i: u32) -> String {
    Ipv4Addr::from(0xcb00_7100 + i).to_string()
}

fn bulk_prefix(i: u32) -> Prefix {
    // 198.19.0.0/16 onwards: 10,000 distinct /32 sources.
    Prefix::host(Ipv4Addr::from(0xc613_0000 + i).into())
}

async fn measure(kind: Kind, table: &mut Table) {
    let lab = flow_lab(&format!("nfy-{}", format!("{kind:?}").to_lowercase()));
    let options = RouterOptions {
        flowspec: true,
        ..RouterOptions::default()
    };
    let router = Router::start_with(kind, &lab.router, lab.dir.path(), options);
    let mut settings = speaker_settings(&lab.speaker, ROUTER_LINK_V4, ROUTER_AS);
    let map = settings.as_object_mut().unwrap();
    map.insert("mode".into(), "flowspec".into());
    map.remove("next_hop_v6");
    let mut t = Bgp::new("flowspec", serde_json::from_value(settings).unwrap()).unwrap();
    t.prepare().await.unwrap();
    let up = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        t.all_established() && router.established()
    });
    assert!(up, "{kind:?}: session not established{}", router.logs());

    // Ban → rule in the router's table, polled through its CLI as the tests do. The cost of
    // one poll (both families) is measured on its own: the latency includes up to one poll.
    let mut latencies = Vec::new();
    let mut applies = Vec::new();
    let mut polls = Vec::new();
    let mut first_poll_hits = 0;
    let mut held = std::collections::BTreeSet::new();
    for i in 0..BANS {
        let source = host_rule(i);
        held.insert(FlowRule::discard(&format!("{source}/32"), None, &[]));
        let started = Instant::now();
        apply_all(&mut t, &adds(&[&source])).await;
        applies.push(started.elapsed());
        let mut tries = 0;
        let ok = wait_until(Duration::from_secs(15), Duration::from_millis(1), || {
            let before = Instant::now();
            let rules = router.flowspec_rules();
            polls.push(before.elapsed());
            tries += 1;
            rules.as_ref() == Some(&held)
        });
        assert!(ok, "{kind:?}: rule for {source} not seen{}", router.logs());
        latencies.push(started.elapsed());
        if tries == 1 {
            first_poll_hits += 1;
        }
    }
    let latency = median(latencies);
    let poll = median(polls);
    table.row(
        Row::netban(
            format!("{kind:?}: ban → rule seen in its table, median of {BANS}"),
            ms(latency),
        )
        .note(format!(
            "until the end of the CLI poll that shows it; one poll costs {} (median), the \
             first poll after the apply ({} median) saw it {first_poll_hits}/{BANS} times",
            ms(poll),
            ms(median(applies))
        )),
    );
    let singles: Vec<Held> = (0..BANS)
        .map(|i| Held {
            prefix: Prefix::parse(&host_rule(i)).unwrap(),
            expiry: None,
            handle: None,
        })
        .collect();
    apply_all(
        &mut t,
        &Plan {
            remove: singles,
            ..Plan::default()
        },
    )
    .await;
    if kind == Kind::Bird {
        t.shutdown().await;
        return;
    }
    assert!(wait_until(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || count_rules(&router) == Some(0)
    ));

    // 10,000 rules in one apply → counted in the router's RIB.
    let plan = Plan {
        add: (0..BULK)
            .map(|i| Desired::new(bulk_prefix(i), Expiry::Never))
            .collect(),
        ..Plan::default()
    };
    let started = Instant::now();
    apply_all(&mut t, &plan).await;
    let sent = started.elapsed();
    let accepted = wait_count(&router, u64::from(BULK)) - started;
    let withdraw = Plan {
        remove: (0..BULK)
            .map(|i| Held {
                prefix: bulk_prefix(i),
                expiry: None,
                handle: None,
            })
            .collect(),
        ..Plan::default()
    };
    let started = Instant::now();
    apply_all(&mut t, &withdraw).await;
    let removed = wait_count(&router, 0) - started;
    t.shutdown().await;
    assert!(wait_until(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || !router.established()
    ));

    // GoBGP as the speaker in netban's namespace, same AS and address, one CLI call per rule.
    let reference = cli_reference(&lab, &router);
    let extrapolated = reference.mul_f64(f64::from(BULK) / f64::from(CLI_SAMPLE));
    table.row(
        Row::versus(
            format!("{kind:?}: {BULK} rules announced → all in its RIB"),
            accepted,
            extrapolated,
        )
        .note(format!(
            "netban's UPDATEs written in {}; reference: {CLI_SAMPLE} CLI adds → in the RIB \
             in {}, ×{}",
            ms(sent),
            secs(reference),
            BULK / CLI_SAMPLE
        )),
    );
    table.row(Row::netban(
        format!("{kind:?}: {BULK} rules withdrawn → gone from its RIB"),
        secs(removed),
    ));
}

/// GoBGP 3.10 speaking for netban's address: `CLI_SAMPLE` rules added one `gobgp` process
/// each; returns the time from the first add until the router counts them all.
fn cli_reference(lab: &FlowLab, router: &Router) -> Duration {
    let _gobgpd = super::bgp::reference_speaker(
        &lab.speaker,
        lab.dir.path(),
        "ipv4-flowspec",
        SPEAKER_API_PORT,
    );
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
            router.established()
        }),
        "the GoBGP speaker did not establish{}",
        router.logs()
    );
    let started = Instant::now();
    for i in 0..CLI_SAMPLE {
        let source = format!("{}/32", bulk_prefix(i).net().addr());
        let mut cmd = std::process::Command::new("gobgp");
        cmd.args([
            "-p",
            SPEAKER_API_PORT,
            "global",
            "rib",
            "-a",
            "ipv4-flowspec",
        ])
        .args(["add", "match", "source", &source, "then", "discard"]);
        let out = lab.speaker.enter(|| cmd.output()).unwrap().unwrap();
        assert!(
            out.status.success(),
            "gobgp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_count(router, u64::from(CLI_SAMPLE)) - started
}
