//! The BGP blackhole target against real routers (BIRD 2 and FRR 8 from Debian, installed by
//! scripts/setup.d/bgp.sh), in throwaway network namespaces.
//!
//! Topology: the testlab's edge (attacker and client on a LAN, a router, a server behind it)
//! plus a "netban" namespace linked to the router (198.18.0.0/30, 2001:db8:ff::/64). The
//! driver runs in this test process but opens its BGP sessions from inside the netban
//! namespace (`netns`), so no BGP session ever touches the root namespace. The router turns
//! BLACKHOLE routes into kernel blackhole routes: the server's replies to a banned attacker are
//! dropped, so the attacker's TCP connections fail, while the client's still work.
//!
//! The garbage/NOTIFICATION test talks to a tiny fake peer that is this file's own code
//! (tests/bgp/fake_peer.rs), not a router; the zero-window test talks to a raw TCP socket that
//! stops reading (tests/bgp/unread_peer.rs), which is what such a peer is. The protocol-edge
//! tests (confederation AS_PATH, hold time 0, TCP MD5, GTSM) use BIRD and FRR configured so. Tests use the multi-threaded runtime so that the
//! blocking probes in the test body never stall the session tasks.

#![cfg(feature = "bgp")]

#[path = "bgp/fake_peer.rs"]
mod fake_peer;
#[path = "bgp/flowspec.rs"]
mod flowspec;
#[path = "bgp/unread_peer.rs"]
mod unread_peer;

use netban_core::plan::Plan;
use netban_targets::bgp::{Bgp, BgpConfig};
use netban_targets::{ItemOutcome, Target, TargetError};
use netban_testlab::peers::bgp_routers::{
    blackholes, rtbh, speaker_settings, Kind, Router, RouterOptions, Rtbh, PORT, ROUTER_AS,
    ROUTER_LINK_V4,
};
use netban_testlab::plans::{adds, prefix as p, removes};
use netban_testlab::{require_netns, wait_until, Edge, Host, Lab};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a blocked connection attempt is given (an allowed one completes in milliseconds).
const BLOCKED_WAIT: Duration = Duration::from_millis(700);
/// How long a route may take to reach (or leave) the router's kernel.
const ROUTE_WAIT: Duration = Duration::from_secs(15);

fn config_in(speaker: &Host, peer_address: &str, remote_as: u32) -> BgpConfig {
    serde_json::from_value(speaker_settings(speaker, peer_address, remote_as)).unwrap()
}

fn target(lab: &Rtbh) -> Bgp {
    Bgp::new("rtbh", config_in(&lab.speaker, ROUTER_LINK_V4, ROUTER_AS)).unwrap()
}

async fn apply_ok(t: &mut Bgp, plan: &Plan) {
    let report = t.apply(plan).await.unwrap();
    assert_eq!(report.items.len(), plan.len());
    for item in &report.items {
        assert!(matches!(item.result, ItemOutcome::Done { .. }), "{item:?}");
    }
}

async fn observed(t: &mut Bgp) -> Vec<String> {
    let mut v: Vec<String> = t
        .observe()
        .await
        .unwrap()
        .into_iter()
        .map(|h| {
            assert_eq!((h.expiry, h.handle.as_deref()), (None, None));
            h.prefix.to_string()
        })
        .collect();
    v.sort();
    v
}

/// Waits until the router's kernel holds exactly `want` as blackhole routes ("ip" notation).
fn wait_for_blackholes(router: &Router, host: &Host, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let ok = wait_until(ROUTE_WAIT, Duration::from_millis(5), || {
        blackholes(host) == want
    });
    assert!(
        ok,
        "{:?}: blackholes {:?}, want {want:?}{}",
        router.kind,
        blackholes(host),
        router.logs()
    );
}

fn connects(from: &Host, to: &str) -> bool {
    from.tcp_connects(to, PORT, BLOCKED_WAIT)
}

fn eventually_connects(from: &Host, to: &str) -> bool {
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        from.tcp_connects(to, PORT, Duration::from_secs(1))
    })
}

async fn established(t: &mut Bgp, router: &Router) {
    t.prepare().await.unwrap();
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        t.all_established() && router.established()
    });
    if !ok {
        let netban_says = t.observe().await.err();
        panic!(
            "{:?} session not established (netban: {netban_says:?}){}",
            router.kind,
            router.logs()
        );
    }
}

/// Ban → blackhole route → the attacker's TCP fails and the client's works; unban → works.
async fn ban_blocks_the_attacker_until_unbanned(kind: Kind, tag: &str) {
    let lab = rtbh(tag);
    let router = Router::start(kind, &lab.edge.router, lab.dir.path());
    let mut t = target(&lab);
    established(&mut t, &router).await;
    assert!(observed(&mut t).await.is_empty());

    let bans = [Edge::ATTACKER_V4, Edge::ATTACKER_V6, "203.0.113.64/26"];
    let started = Instant::now();
    apply_ok(&mut t, &adds(&bans)).await;
    wait_for_blackholes(&router, &lab.edge.router, &bans);
    eprintln!(
        "{kind:?}: ban → kernel blackhole routes in {:?}",
        started.elapsed()
    );
    for server in [Edge::SERVER_V4, Edge::SERVER_V6] {
        assert!(
            !connects(&lab.edge.attacker, server),
            "{kind:?}: attacker reaches {server}"
        );
        assert!(
            connects(&lab.edge.client, server),
            "{kind:?}: client blocked from {server}"
        );
    }
    let mut want: Vec<String> = bans.iter().map(|s| p(s).to_string()).collect();
    want.sort();
    assert_eq!(observed(&mut t).await, want);

    // Unban the IPv4 address only: IPv4 works again, IPv6 stays blocked.
    apply_ok(&mut t, &removes(&[Edge::ATTACKER_V4])).await;
    wait_for_blackholes(
        &router,
        &lab.edge.router,
        &[Edge::ATTACKER_V6, "203.0.113.64/26"],
    );
    assert!(
        eventually_connects(&lab.edge.attacker, Edge::SERVER_V4),
        "{kind:?}: v4 after unban"
    );
    assert!(
        !connects(&lab.edge.attacker, Edge::SERVER_V6),
        "{kind:?}: v6 still banned"
    );

    apply_ok(&mut t, &removes(&[Edge::ATTACKER_V6, "203.0.113.64/26"])).await;
    wait_for_blackholes(&router, &lab.edge.router, &[]);
    assert!(
        eventually_connects(&lab.edge.attacker, Edge::SERVER_V6),
        "{kind:?}: v6 after unban"
    );
    assert!(observed(&mut t).await.is_empty());

    // Shutting the target down closes the session (Cease); the router sees it go.
    t.shutdown().await;
    let down = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        !router.established()
    });
    assert!(down, "{kind:?} still established after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_blackholes_the_attacker_until_unbanned() {
    require_netns!();
    ban_blocks_the_attacker_until_unbanned(Kind::Bird, "bird-ban").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_blackholes_the_attacker_until_unbanned() {
    require_netns!();
    ban_blocks_the_attacker_until_unbanned(Kind::Frr, "frr-ban").await;
}

/// The router restarts mid-run: while it is down the target says so, a change made meanwhile
/// is kept, and when it is back every active ban is announced again by the session itself.
async fn restarted_router_gets_every_ban_back(kind: Kind, tag: &str) {
    let lab = rtbh(tag);
    let mut router = Router::start(kind, &lab.edge.router, lab.dir.path());
    let mut t = target(&lab);
    established(&mut t, &router).await;
    let bans = [
        Edge::ATTACKER_V4,
        Edge::ATTACKER_V6,
        "203.0.113.64/26",
        "2001:db8:a:1::/64",
    ];
    apply_ok(&mut t, &adds(&bans)).await;
    wait_for_blackholes(&router, &lab.edge.router, &bans);

    router.stop();
    wait_for_blackholes(&router, &lab.edge.router, &[]);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || !t
            .all_established()),
        "{kind:?}: the driver did not notice the router going"
    );
    match t.observe().await {
        Err(TargetError::Unreachable(m)) => {
            assert!(m.to_string().contains("not established"), "{m}")
        }
        other => panic!("{kind:?}: observe with the router down: {other:?}"),
    }
    // An unban while the router is down: reported as unreachable, but kept.
    match t.apply(&removes(&["203.0.113.64/26"])).await {
        Err(TargetError::Unreachable(_)) => {}
        other => panic!("{kind:?}: apply with the router down: {other:?}"),
    }

    router.start_again();
    let remaining = [Edge::ATTACKER_V4, Edge::ATTACKER_V6, "2001:db8:a:1::/64"];
    wait_for_blackholes(&router, &lab.edge.router, &remaining);
    assert!(
        !connects(&lab.edge.attacker, Edge::SERVER_V4),
        "{kind:?}: attacker after restart"
    );
    let mut want: Vec<String> = remaining.iter().map(|s| p(s).to_string()).collect();
    want.sort();
    assert_eq!(observed(&mut t).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_restarted_gets_every_ban_back() {
    require_netns!();
    restarted_router_gets_every_ban_back(Kind::Bird, "bird-restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_restarted_gets_every_ban_back() {
    require_netns!();
    restarted_router_gets_every_ban_back(Kind::Frr, "frr-restart").await;
}

/// A router that goes silent (frozen with SIGSTOP: no KEEPALIVE, no FIN, no RST) is found out
/// by the hold timer (3 s, keepalives every second); a ban made meanwhile is kept, and once the
/// router thaws the session comes back and every ban is advertised again.
async fn silent_router_is_found_out_by_the_hold_timer(kind: Kind, tag: &str) {
    let lab = rtbh(tag);
    let router = Router::start(kind, &lab.edge.router, lab.dir.path());
    let config = BgpConfig {
        hold_time_secs: 3,
        ..config_in(&lab.speaker, ROUTER_LINK_V4, ROUTER_AS)
    };
    let mut t = Bgp::new("rtbh", config).unwrap();
    established(&mut t, &router).await;
    apply_ok(&mut t, &adds(&[Edge::ATTACKER_V4])).await;
    wait_for_blackholes(&router, &lab.edge.router, &[Edge::ATTACKER_V4]);

    router.signal("-STOP");
    let frozen = Instant::now();
    let noticed = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        !t.all_established()
    });
    let after = frozen.elapsed();
    router.signal("-CONT");
    println!("{kind:?}: session dropped {after:?} after the router froze");
    assert!(
        noticed,
        "{kind:?}: the hold timer never fired{}",
        router.logs()
    );
    // Not at once (nothing on the wire said so), and within the hold time plus a keepalive.
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_secs(5),
        "{kind:?}: session dropped {after:?} after the router froze"
    );
    // Thawed: a ban made before the session is back is kept and goes out with the rest.
    let _ = t.apply(&adds(&[Edge::ATTACKER_V6])).await;
    wait_for_blackholes(
        &router,
        &lab.edge.router,
        &[Edge::ATTACKER_V4, Edge::ATTACKER_V6],
    );
    assert!(!connects(&lab.edge.attacker, Edge::SERVER_V6));
    assert!(connects(&lab.edge.client, Edge::SERVER_V6));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_silent_is_found_out_by_the_hold_timer_and_gets_every_ban_back() {
    require_netns!();
    silent_router_is_found_out_by_the_hold_timer(Kind::Bird, "bird-hold").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_silent_is_found_out_by_the_hold_timer_and_gets_every_ban_back() {
    require_netns!();
    silent_router_is_found_out_by_the_hold_timer(Kind::Frr, "frr-hold").await;
}

/// Polls `observe` until it reports a configuration error, and returns its message.
fn eventually_config_error(t: &mut Bgp, router: &Router) -> String {
    let mut last = None;
    let got = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        last = Some(tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(t.observe())
        }));
        matches!(last, Some(Err(TargetError::Config(_))))
    });
    match last {
        Some(Err(TargetError::Config(m))) if got => m.to_string(),
        other => panic!("no configuration error: {other:?}{}", router.logs()),
    }
}

/// BIRD configured for another AS than netban's: it refuses the OPEN with a NOTIFICATION,
/// which the target reports as a configuration error naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_expecting_another_as_is_a_config_error() {
    require_netns!();
    let lab = rtbh("bird-as");
    let router = Router::start_expecting(Kind::Bird, &lab.edge.router, lab.dir.path(), 65009);
    let mut t = target(&lab);
    t.prepare().await.unwrap();
    let m = eventually_config_error(&mut t, &router);
    assert!(m.to_string().contains("bad peer AS"), "{m}");
}

/// netban told the wrong `remote_as`: it refuses the router's OPEN itself and says what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_remote_as_is_a_config_error() {
    require_netns!();
    let lab = rtbh("bird-remote-as");
    let router = Router::start(Kind::Bird, &lab.edge.router, lab.dir.path());
    let mut t = Bgp::new("rtbh", config_in(&lab.speaker, ROUTER_LINK_V4, 65111)).unwrap();
    t.prepare().await.unwrap();
    let m = eventually_config_error(&mut t, &router);
    assert!(
        m.to_string().contains("AS 65000 but remote_as is 65111"),
        "{m}"
    );
}

/// A peer that first answers with garbage, then with a NOTIFICATION, then behaves: the target
/// answers the garbage with a header-error NOTIFICATION, retries with backoff, and announces
/// the ban made meanwhile once a session holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_notifications_are_survived() {
    require_netns!();
    let lab = Lab::new("bgp-garbage").unwrap();
    let router = lab.host("router").unwrap();
    let speaker = lab.host("netban").unwrap();
    lab.link(&router, &["198.18.0.1/30"], &speaker, &["198.18.0.2/30"])
        .unwrap();
    let peer = fake_peer::FakePeer::start(&router, "198.18.0.1:179", ROUTER_AS);

    let mut t = Bgp::new("rtbh", config_in(&speaker, ROUTER_LINK_V4, ROUTER_AS)).unwrap();
    t.prepare().await.unwrap();
    // The first two connections fail; the ban is kept and announced on the third.
    let _ = t
        .apply(&adds(&[Edge::ATTACKER_V4, Edge::ATTACKER_V6]))
        .await;
    let report = peer.wait_for_report(Duration::from_secs(20));
    assert_eq!(report.connections, 3, "{report:?}");
    assert_eq!(
        report
            .answer_to_garbage
            .as_ref()
            .map(|n| (n.code, n.subcode)),
        Some((1, 1)),
        "{report:?}"
    );
    let mut announced: Vec<String> = report.announced.iter().map(|n| n.to_string()).collect();
    announced.sort();
    assert_eq!(announced, ["2001:db8:a::7/128", "203.0.113.7/32"]);
    assert_eq!(report.communities, vec![0xffff_029a, 0xffff_ff01]);
    let mut want = vec![
        p(Edge::ATTACKER_V4).to_string(),
        p(Edge::ATTACKER_V6).to_string(),
    ];
    want.sort();
    assert_eq!(observed(&mut t).await, want);
    t.shutdown().await;
}

/// The router (a confederation member, netban a member peer) announces a route to netban whose
/// AS_PATH starts with an AS_CONFED_SEQUENCE. netban does not decode received UPDATEs, so the
/// session (and with it every blackhole) stays: with a 3 s hold time netban must read past
/// that UPDATE to the KEEPALIVEs behind it, and the session is watched for longer than that;
/// the router counts one session, never dropped. (netban itself cannot be a confederation
/// member: both routers refuse its routes there, whose AS_PATH has no AS_CONFED_SEQUENCE; see
/// docs/targets/bgp.md.)
async fn confederation_as_path_keeps_the_session(kind: Kind, tag: &str) {
    let lab = rtbh(tag);
    let options = RouterOptions {
        confederation: true,
        ..RouterOptions::default()
    };
    let router = Router::start_with(kind, &lab.edge.router, lab.dir.path(), options);
    let config = BgpConfig {
        hold_time_secs: 3,
        ..config_in(&lab.speaker, ROUTER_LINK_V4, ROUTER_AS)
    };
    let mut t = Bgp::new("rtbh", config).unwrap();
    established(&mut t, &router).await;
    let sent = wait_until(ROUTE_WAIT, Duration::from_millis(50), || {
        router.advertised_confed_route()
    });
    assert!(sent, "{kind:?} did not announce its route{}", router.logs());
    let dropped = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        !(t.all_established() && router.established())
    });
    assert!(!dropped, "{kind:?}: the session went down{}", router.logs());
    assert_eq!(
        router.session_counts(),
        (1, 0),
        "{kind:?}: the session was reset{}",
        router.logs()
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_confederation_as_path_keeps_the_session() {
    require_netns!();
    confederation_as_path_keeps_the_session(Kind::Bird, "hp-bird-confed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_confederation_as_path_keeps_the_session() {
    require_netns!();
    confederation_as_path_keeps_the_session(Kind::Frr, "hp-frr-confed").await;
}

/// A router proposing hold time 0 (no keepalives, no hold timer) is refused with OPEN error
/// "unacceptable hold time": netban could not notice it dying. A configuration error.
async fn hold_time_zero_is_refused(kind: Kind, tag: &str) {
    let lab = rtbh(tag);
    let options = RouterOptions {
        hold_time: Some(0),
        ..RouterOptions::default()
    };
    let router = Router::start_with(kind, &lab.edge.router, lab.dir.path(), options);
    let mut t = target(&lab);
    t.prepare().await.unwrap();
    let m = eventually_config_error(&mut t, &router);
    assert!(m.contains("hold time 0 s"), "{kind:?}: {m}");
    assert!(!router.established());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_hold_time_zero_is_refused() {
    require_netns!();
    hold_time_zero_is_refused(Kind::Bird, "hp-bird-hold0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_hold_time_zero_is_refused() {
    require_netns!();
    hold_time_zero_is_refused(Kind::Frr, "hp-frr-hold0").await;
}

/// FRR takes one word as password.
const MD5_PASSWORD: &str = "hp-s3cret-md5";

/// A password file of mode 0600 in `dir`.
fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn protected(lab: &Rtbh, md5: Option<&Path>, ttl_hops: Option<u8>) -> Bgp {
    let mut c = config_in(&lab.speaker, ROUTER_LINK_V4, ROUTER_AS);
    c.peers[0].md5_password_file = md5.map(Path::to_path_buf);
    c.peers[0].ttl_security_hops = ttl_hops;
    Bgp::new("rtbh", c).unwrap()
}

/// How long a session that should not come up is given (one that should is up in about a
/// second; the driver retries every 1-2 s).
const NEVER_UP: Duration = Duration::from_secs(6);

/// Waits [`NEVER_UP`] and asserts the session did not come up on either side.
async fn never_up(t: &mut Bgp, router: &Router, what: &str) {
    t.prepare().await.unwrap();
    let up = wait_until(NEVER_UP, Duration::from_millis(50), || {
        t.all_established() || router.established()
    });
    assert!(!up, "{:?}: the session came up with {what}", router.kind);
    t.shutdown().await;
}

/// TCP MD5 (RFC 2385) against a router that requires it: with the right password the session
/// comes up and bans go through; with a wrong password or none, the router's kernel drops
/// netban's segments and the session never comes up.
async fn md5_password(kind: Kind, tag: &str) {
    let lab = rtbh(tag);
    let right = password_file(lab.dir.path(), "right.md5", MD5_PASSWORD);
    let wrong = password_file(lab.dir.path(), "wrong.md5", "not-the-password");
    let options = RouterOptions {
        md5_password: Some(MD5_PASSWORD.into()),
        ..RouterOptions::default()
    };
    let router = Router::start_with(kind, &lab.edge.router, lab.dir.path(), options);

    let mut t = protected(&lab, Some(&right), None);
    established(&mut t, &router).await;
    apply_ok(&mut t, &adds(&[Edge::ATTACKER_V4])).await;
    wait_for_blackholes(&router, &lab.edge.router, &[Edge::ATTACKER_V4]);
    t.shutdown().await;
    let down = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        !router.established()
    });
    assert!(down, "{kind:?} still established after shutdown");

    never_up(
        &mut protected(&lab, Some(&wrong), None),
        &router,
        "a wrong password",
    )
    .await;
    never_up(&mut protected(&lab, None, None), &router, "no password").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_md5_password() {
    require_netns!();
    md5_password(Kind::Bird, "hp-bird-md5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_md5_password() {
    require_netns!();
    md5_password(Kind::Frr, "hp-frr-md5").await;
}

/// GTSM (RFC 5082) against a router that requires it: netban with `ttl_security_hops = 1`
/// comes up and bans go through; without it netban's packets arrive with TTL 64 and the
/// router's kernel drops them. Against a router without GTSM, netban with it drops the
/// router's TTL-64 answers itself: never up.
async fn gtsm(kind: Kind, tag: &str) {
    let lab = rtbh(tag);
    let options = RouterOptions {
        ttl_security: true,
        ..RouterOptions::default()
    };
    let mut router = Router::start_with(kind, &lab.edge.router, lab.dir.path(), options);
    let mut t = protected(&lab, None, Some(1));
    established(&mut t, &router).await;
    apply_ok(&mut t, &adds(&[Edge::ATTACKER_V4])).await;
    wait_for_blackholes(&router, &lab.edge.router, &[Edge::ATTACKER_V4]);
    t.shutdown().await;
    let down = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        !router.established()
    });
    assert!(down, "{kind:?} still established after shutdown");
    // netban without GTSM against a router that requires it is not asserted: FRR 8.4 and
    // BIRD 2.0.12 both set IP_MINTTL on an accepted connection only after accept(), so an OPEN
    // that arrives first gets through now and then (FRR once in a loaded CI run, BIRD once in
    // a clean-clone run on 2026-12-02). The guarantee netban's docs give for GTSM is netban's
    // own side (below).
    router.stop();

    let dir = lab.dir.path().join("no-gtsm");
    std::fs::create_dir_all(&dir).unwrap();
    let router = Router::start(kind, &lab.edge.router, &dir);
    never_up(
        &mut protected(&lab, None, Some(1)),
        &router,
        "no GTSM on the router",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_gtsm() {
    require_netns!();
    gtsm(Kind::Bird, "hp-bird-gtsm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_gtsm() {
    require_netns!();
    gtsm(Kind::Frr, "hp-frr-gtsm").await;
}

/// A peer that stops reading (its TCP window stays closed) while it keeps sending KEEPALIVEs,
/// so the hold timer never fires: a write that makes no progress for the hold time ends the
/// session, the target says why, the session reconnects, and shutdown is prompt. (Before,
/// the session task waited on that write forever: no reconnect, no shutdown.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_does_not_wedge_the_session() {
    require_netns!();
    let lab = Lab::new("hp-bgp-unread").unwrap();
    let router = lab.host("router").unwrap();
    let speaker = lab.host("netban").unwrap();
    lab.link(&router, &["198.18.0.1/30"], &speaker, &["198.18.0.2/30"])
        .unwrap();
    // netban's send buffer small in its namespace (tcp_wmem is per namespace): the window
    // closes after a few hundred kB instead of several MB.
    speaker
        .run_ok("sysctl", ["-w", "net.ipv4.tcp_wmem=4096 16384 65536"])
        .unwrap();
    let peer = unread_peer::UnreadPeer::start(&router, "198.18.0.1:179", ROUTER_AS, 90);
    let config = BgpConfig {
        hold_time_secs: 3,
        send_timeout_secs: 30,
        ..config_in(&speaker, ROUTER_LINK_V4, ROUTER_AS)
    };
    let mut t = Bgp::new("rtbh", config).unwrap();
    t.prepare().await.unwrap();
    assert!(t.all_established());

    // 50,000 /32s: about 250 kB of UPDATEs, far more than the window and the buffers.
    let bans: Vec<String> = (0..50_000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string())
        .collect();
    let bans: Vec<&str> = bans.iter().map(String::as_str).collect();
    let started = Instant::now();
    let result = t.apply(&adds(&bans)).await;
    let took = started.elapsed();
    match result {
        Err(TargetError::Unreachable(m)) => {
            assert!(m.to_string().contains("stopped reading"), "{m}")
        }
        other => panic!(
            "apply to a peer that does not read: {:?}",
            other.map(|_| ())
        ),
    }
    println!("write stall noticed after {took:?} (hold time 3 s)");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let reconnected = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        peer.connections() >= 2
    });
    assert!(reconnected, "the session did not reconnect");
    let started = Instant::now();
    t.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}
