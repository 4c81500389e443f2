//! Flowspec rules shaped per source, through the daemon: the real `netban-daemon` with a BGP
//! target in `mode = "flowspec"` whose sshd bans become "tcp/22 only" rules
//! (`[targets.flowspec.sources.sshd]`), driven by the real `netban` client, announcing to a
//! real GoBGP 3 whose RIB is read back (`gobgp global rib -a ipv4-flowspec -j`).
//!
//! What it shows is the engine's part: a second source banning the same prefix for LESS time
//! changes nothing about the effective ban, yet it must change the rule (recidive's shape is
//! the default, every packet), and the end of that second ban must change it back.

use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::peers::bgp_routers::{
    flow_lab, FlowRule, Kind, Router, RouterOptions, ROUTER_AS, ROUTER_LINK_V4, SPEAKER_AS,
    SPEAKER_LINK_V4,
};
use netban_testlab::{require_netns, wait_until};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a rule may take to reach (or leave) GoBGP's RIB.
const WAIT: Duration = Duration::from_secs(15);

fn daemon_config(netns: &str) -> String {
    format!(
        "[policy]\nprotect_own_addresses = false\n\n\
         [reconciler]\nresync_secs = 3600\nretry_min_secs = 1\nretry_max_secs = 2\n\n\
         [[targets]]\nname = \"edge-flowspec\"\ntype = \"bgp\"\nmode = \"flowspec\"\n\
         local_as = {SPEAKER_AS}\nrouter_id = \"{SPEAKER_LINK_V4}\"\n\
         peers = [{{ address = \"{ROUTER_LINK_V4}\", remote_as = {ROUTER_AS} }}]\n\
         netns = \"{netns}\"\nconnect_timeout_secs = 3\nconnect_retry_max_secs = 2\n\n\
         [targets.flowspec.sources.sshd]\nprotocol = \"tcp\"\ndestination_ports = [22]\n"
    )
}

fn wait_for_rules(router: &Router, want: &[FlowRule], daemon: &Daemon) {
    let want: BTreeSet<FlowRule> = want.iter().cloned().collect();
    let mut held = None;
    let ok = wait_until(WAIT, Duration::from_millis(10), || {
        held = router.flowspec_rules();
        held.as_ref() == Some(&want)
    });
    assert!(
        ok,
        "GoBGP holds {held:?}, want {want:?}\n{}{}",
        daemon.log(),
        router.logs()
    );
}

#[test]
fn a_rule_takes_the_shape_of_every_source_banning_its_prefix() {
    require_netns!();
    let lab = flow_lab("nfyfse");
    let options = RouterOptions {
        flowspec: true,
        ..RouterOptions::default()
    };
    let router = Router::start_with(Kind::Gobgp, &lab.router, lab.dir.path(), options);
    let daemon = Daemon::start(
        &Binaries::locate(),
        &lab.dir.path().join("netban"),
        &daemon_config(lab.speaker.name()),
    )
    .expect("daemon");
    let up = wait_until(WAIT, Duration::from_millis(20), || router.established());
    assert!(up, "no session\n{}{}", daemon.log(), router.logs());

    let (v4, v6) = ("203.0.113.7", "2001:db8:a::7");
    let sshd_rules = [
        FlowRule::discard("203.0.113.7/32", Some(6), &[22]),
        FlowRule::discard("2001:db8:a::7/128", Some(6), &[22]),
    ];
    let source_only = [
        FlowRule::discard("203.0.113.7/32", None, &[]),
        FlowRule::discard("2001:db8:a::7/128", None, &[]),
    ];
    daemon.client_ok(&["ban", "--source", "sshd", "--bantime", "3600", v4, v6]);
    wait_for_rules(&router, &sshd_rules, &daemon);

    // recidive, for less time than sshd: the effective ban does not change, the rule does.
    let started = Instant::now();
    daemon.client_ok(&["ban", "--source", "recidive", "--bantime", "600", v4, v6]);
    wait_for_rules(&router, &source_only, &daemon);
    eprintln!(
        "second source → source-only rule in GoBGP (tcp/22 rule withdrawn) in {:?}",
        started.elapsed()
    );

    daemon.client_ok(&["unban", "--source", "recidive", v4, v6]);
    wait_for_rules(&router, &sshd_rules, &daemon);
    daemon.client_ok(&["unban", "--source", "sshd", v4, v6]);
    wait_for_rules(&router, &[], &daemon);
}
