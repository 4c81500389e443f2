//! Flow specification rules (`mode = "flowspec"`) against three independent implementations:
//! GoBGP 3 (its RIB), FRR 8 (`show bgp ipv4|ipv6 flowspec detail`) and BIRD 2 (`flow4`/`flow6`
//! tables), each read back through the router's own control interface and parsed by
//! `netban_testlab::peers::bgp_routers`. One test per router: source-only rules of both
//! families appear, an unban withdraws its rule, a router restart gets every rule back from
//! the session itself, a shutdown takes them away; then a second target, `mode = "both"`,
//! whose rules match protocol tcp and destination ports 22 and 443 does the same for both
//! families, beside its blackhole routes (which BIRD and FRR put in the kernel), and (GoBGP,
//! BIRD) turns a prefix banned by sshd (tcp/22 rule) and then also by recidive into one
//! source-only rule, withdrawing the tcp/22 one, and back. None of these
//! routers installs a rule in the kernel (see docs/targets/bgp.md, "Flowspec"), so what is
//! checked is what each router parsed and holds.

use super::{apply_ok, established, observed};
use netban_core::plan::Plan;
use netban_core::Source;
use netban_targets::bgp::Bgp;
use netban_targets::Target;
use netban_testlab::peers::bgp_routers::{
    blackholes, flow_lab, speaker_settings, FlowRule, Kind, Router, RouterOptions, ROUTER_AS,
    ROUTER_LINK_V4,
};
use netban_testlab::plans::{adds, removes};
use netban_testlab::{wait_until, Host};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a rule may take to reach (or leave) the router's table.
const RULE_WAIT: Duration = Duration::from_secs(15);

/// A target of `mode` in `speaker`'s namespace; `flowspec` is its `[targets.flowspec]`.
fn flowspec_target(speaker: &Host, mode: &str, flowspec: Option<serde_json::Value>) -> Bgp {
    let mut settings = speaker_settings(speaker, ROUTER_LINK_V4, ROUTER_AS);
    let table = settings.as_object_mut().unwrap();
    table.insert("mode".into(), mode.into());
    if mode == "flowspec" {
        // Rules carry no next hop: a flowspec-only target does not need one.
        table.remove("next_hop_v6");
    }
    if let Some(f) = flowspec {
        table.insert("flowspec".into(), f);
    }
    Bgp::new("flowspec", serde_json::from_value(settings).unwrap()).unwrap()
}

/// Waits until the router holds exactly `want`; returns how long that took.
fn wait_for_rules(router: &Router, want: &[FlowRule]) -> Duration {
    let want: BTreeSet<FlowRule> = want.iter().cloned().collect();
    let started = Instant::now();
    let mut held = None;
    let ok = wait_until(RULE_WAIT, Duration::from_millis(10), || {
        held = router.flowspec_rules();
        held.as_ref() == Some(&want)
    });
    assert!(
        ok,
        "{:?} holds {held:?}, want {want:?}{}",
        router.kind,
        router.logs()
    );
    started.elapsed()
}

fn source(s: &str) -> FlowRule {
    FlowRule::discard(s, None, &[])
}

/// `plan` with every added entry banned by `sources` (the daemon's engine fills these in for
/// a target whose rules are shaped per source).
fn with_sources(mut plan: Plan, sources: &[&str]) -> Plan {
    for d in &mut plan.add {
        d.sources = sources.iter().map(|s| Source::new(s).unwrap()).collect();
    }
    plan
}

/// A plan that refreshes `list` (held) because their sources are now `sources`: what the
/// reconciler sends a shaped target when a prefix's sources change.
fn refreshes(list: &[&str], sources: &[&str]) -> Plan {
    let shaped = with_sources(adds(list), sources);
    Plan {
        refresh: removes(list).remove.into_iter().zip(shaped.add).collect(),
        ..Plan::default()
    }
}

async fn rules_follow_bans_and_survive_a_restart(kind: Kind, tag: &str) {
    let lab = flow_lab(tag);
    let options = RouterOptions {
        flowspec: true,
        ..RouterOptions::default()
    };
    let mut router = Router::start_with(kind, &lab.router, lab.dir.path(), options);

    // Source-only rules, both families, a host and a network.
    let mut t = flowspec_target(&lab.speaker, "flowspec", None);
    established(&mut t, &router).await;
    let bans = ["203.0.113.7", "203.0.113.64/26", "2001:db8:a::7"];
    let started = Instant::now();
    apply_ok(&mut t, &adds(&bans)).await;
    wait_for_rules(
        &router,
        &[
            source("203.0.113.7/32"),
            source("203.0.113.64/26"),
            source("2001:db8:a::7/128"),
        ],
    );
    eprintln!(
        "{kind:?}: ban → rules in the router's table in {:?}",
        started.elapsed()
    );
    assert_eq!(
        observed(&mut t).await,
        ["2001:db8:a::7/128", "203.0.113.64/26", "203.0.113.7/32"]
    );

    apply_ok(&mut t, &removes(&["203.0.113.7"])).await;
    let remaining = [source("203.0.113.64/26"), source("2001:db8:a::7/128")];
    wait_for_rules(&router, &remaining);

    if kind == Kind::Frr {
        // FRR advertises the rules it took back to netban (eBGP, AS_PATH 65000 65001); netban
        // reads and drops them, and the session stays up.
        // (FRR advertises after its own update delay: wait for it.)
        let mut summary = serde_json::Value::Null;
        let echoed = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            let text = router
                .control(&["show bgp ipv4 flowspec summary json"])
                .unwrap_or_default();
            summary = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
            summary["peers"]["198.18.0.2"]["pfxSnt"] == 1
        });
        assert!(echoed, "FRR did not echo the rule: {summary}");
        let peer = &summary["peers"]["198.18.0.2"];
        assert_eq!(
            (&peer["connectionsEstablished"], &peer["connectionsDropped"]),
            (&serde_json::json!(1), &serde_json::json!(0)),
            "{summary}"
        );
    }
    assert!(t.all_established() && router.established());

    // The router restarts: the session comes back and announces every rule again.
    router.stop();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || !t
            .all_established()),
        "{kind:?}: the driver did not notice the router going"
    );
    router.start_again();
    let back = wait_for_rules(&router, &remaining);
    eprintln!("{kind:?}: restarted router → rules back in {back:?}");

    // A shutdown closes the session (Cease): the router drops netban's rules.
    t.shutdown().await;
    wait_for_rules(&router, &[]);
    drop(t);

    // Both a blackhole route and a rule narrowed to tcp destination ports 22 and 443, both
    // families; bans of sshd narrowed to tcp/22 only, bans of recidive not narrowed.
    let mut t = flowspec_target(
        &lab.speaker,
        "both",
        Some(serde_json::json!({
            "protocol": "tcp",
            "destination_ports": [443, 22],
            "sources": {
                "sshd": { "protocol": "tcp", "destination_ports": [22] },
                "recidive": {},
            },
        })),
    );
    established(&mut t, &router).await;
    let bans = ["203.0.113.7", "2001:db8:a::7"];
    apply_ok(&mut t, &adds(&bans)).await;
    wait_for_rules(
        &router,
        &[
            FlowRule::discard("203.0.113.7/32", Some(6), &[22, 443]),
            FlowRule::discard("2001:db8:a::7/128", Some(6), &[22, 443]),
        ],
    );
    // GoBGP keeps routes in its RIB only; BIRD and FRR turn them into kernel blackholes.
    let kernel_blackholes = |want: &[&str]| {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        kind == Kind::Gobgp
            || wait_until(RULE_WAIT, Duration::from_millis(10), || {
                blackholes(&lab.router) == want
            })
    };
    assert!(
        kernel_blackholes(&bans),
        "{kind:?}: {:?}",
        blackholes(&lab.router)
    );

    // Per-source shapes: 203.0.113.9 and 2001:db8:a::9 banned by sshd get tcp/22 rules; when
    // recidive bans them too (the plan refreshes them with both sources) each becomes ONE
    // source-only rule and the tcp/22 rule is withdrawn (a rule is its whole NLRI). Not on
    // FRR: its zebra 8.4.4 crashed (SIGSEGV in dplane_ctx_fini; no kernel route is removed
    // after that) when a source's rule changed shape twice beside its blackhole route: in 4 of
    // 4 runs announcing the new rule before withdrawing the old, 1 of 3 the other way round
    // (docs/targets/bgp.md, "Per-source shapes").
    if kind != Kind::Frr {
        reshape_per_source(&mut t, &router).await;
    }

    apply_ok(&mut t, &removes(&bans)).await;
    wait_for_rules(&router, &[]);
    assert!(
        kernel_blackholes(&[]),
        "{kind:?}: {:?}",
        blackholes(&lab.router)
    );
    assert!(observed(&mut t).await.is_empty());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gobgp_holds_the_flowspec_rules_of_the_bans() {
    netban_testlab::require_netns!();
    rules_follow_bans_and_survive_a_restart(Kind::Gobgp, "nfs-gobgp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_holds_the_flowspec_rules_of_the_bans() {
    netban_testlab::require_netns!();
    rules_follow_bans_and_survive_a_restart(Kind::Frr, "nfs-frr").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_holds_the_flowspec_rules_of_the_bans() {
    netban_testlab::require_netns!();
    rules_follow_bans_and_survive_a_restart(Kind::Bird, "nfs-bird").await;
}

/// Bans of sshd (tcp/22) that recidive (unrestricted) then also bans: see the caller.
async fn reshape_per_source(t: &mut Bgp, router: &Router) {
    let kind = router.kind;
    let repeat = ["203.0.113.9", "2001:db8:a::9"];
    let narrowed = [
        FlowRule::discard("203.0.113.7/32", Some(6), &[22, 443]),
        FlowRule::discard("2001:db8:a::7/128", Some(6), &[22, 443]),
    ];
    apply_ok(t, &with_sources(adds(&repeat), &["sshd"])).await;
    let mut want = narrowed.to_vec();
    want.push(FlowRule::discard("203.0.113.9/32", Some(6), &[22]));
    want.push(FlowRule::discard("2001:db8:a::9/128", Some(6), &[22]));
    wait_for_rules(router, &want);
    let started = Instant::now();
    apply_ok(t, &refreshes(&repeat, &["recidive", "sshd"])).await;
    let mut want = narrowed.to_vec();
    want.push(source("203.0.113.9/32"));
    want.push(source("2001:db8:a::9/128"));
    wait_for_rules(router, &want);
    eprintln!(
        "{kind:?}: second source → rule reshaped in the router's table in {:?}",
        started.elapsed()
    );
    // recidive's ban ends first: back to tcp/22.
    apply_ok(t, &refreshes(&repeat, &["sshd"])).await;
    let mut want = narrowed.to_vec();
    want.push(FlowRule::discard("203.0.113.9/32", Some(6), &[22]));
    want.push(FlowRule::discard("2001:db8:a::9/128", Some(6), &[22]));
    wait_for_rules(router, &want);
    apply_ok(t, &removes(&repeat)).await;
}
