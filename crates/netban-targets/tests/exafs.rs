//! The ExaFS target against the real ExaFS 1.4.1 and exabgp-process 1.0.5 (see
//! `netban_testlab::peers::exafs` for how they are installed, started and seeded). Every test starts its own ExaFS on free
//! loopback ports, calls the `Target` methods directly and asserts both the API state and the
//! announce/withdraw lines exabgp-process prints (RTBH rules, and flowspec rules with
//! `rule = "flowspec"`). The daemon through this driver is tested in
//! netban-e2e (`drivers`), its benchmark is in bench/.
#![cfg(feature = "exafs")]

use netban_core::plan::{self, Desired, Held, Ownership, Plan};
use netban_core::{Expiry, Prefix, Timestamp};
use netban_targets::exafs::{
    Exafs, ExafsConfig, FlowProtocol, KeySetting, RuleKind, MARGIN_SECS, ROUNDING_SECS,
};
use netban_targets::{ItemOutcome, OwnershipKind, Step, Target, TargetError};
use netban_testlab::peers::exafs::{
    Peer, COMMUNITY, COMMUNITY_NAME, DISCARD_ACTION, KEY, READ_ONLY_KEY,
};
use netban_testlab::plans::{in_secs, now, prefix as p};
use std::collections::{BTreeMap, BTreeSet};

/// The driver's configuration for `peer`: over https with the peer's CA as `ca_file` when it
/// serves https, else plain http on loopback, allowed explicitly.
fn config_for(peer: &Peer, key: &str) -> ExafsConfig {
    let file = peer.key_file(&format!("key-{key}"), key, 0o600);
    with_transport(
        peer,
        ExafsConfig::new(&peer.url(), KeySetting::File(file), COMMUNITY),
    )
}

fn with_transport(peer: &Peer, config: ExafsConfig) -> ExafsConfig {
    if peer.url().starts_with("https://") {
        ExafsConfig {
            ca_file: Some(peer.ca_file()),
            ..config
        }
    } else {
        ExafsConfig {
            allow_insecure_http: true,
            ..config
        }
    }
}

fn target(peer: &Peer) -> Exafs {
    Exafs::new("rtbh", config_for(peer, KEY)).expect("driver")
}

fn adds(items: &[(&str, Expiry)]) -> Plan {
    Plan {
        add: items.iter().map(|(s, e)| Desired::new(p(s), *e)).collect(),
        ..Plan::default()
    }
}

/// Applies `plan`, asserts every item is done, returns what adds and refreshes now hold.
async fn apply_ok(t: &mut Exafs, plan: &Plan) -> BTreeMap<Prefix, Held> {
    let report = t.apply(plan).await.expect("apply");
    assert_eq!(report.items.len(), plan.len());
    let mut held = BTreeMap::new();
    for item in report.items {
        match item.result {
            ItemOutcome::Done { held: Some(h) } => {
                held.insert(item.prefix, h);
            }
            ItemOutcome::Done { held: None } => assert_eq!(item.step, Step::Remove),
            other => panic!("{} {:?}: {other:?}", item.prefix, item.step),
        }
    }
    held
}

async fn observed(t: &mut Exafs) -> BTreeMap<Prefix, Held> {
    t.observe()
        .await
        .expect("observe")
        .into_iter()
        .map(|h| (h.prefix, h))
        .collect()
}

/// The expiry ExaFS holds for a ban ending at `end`: a 10-minute mark, at least the margin
/// after the end, never before it.
fn assert_expires_after(held_expires: i64, end: i64) {
    assert_eq!(held_expires % ROUNDING_SECS, 0, "{held_expires}");
    assert!(held_expires >= end + MARGIN_SECS, "{held_expires} < {end}");
    assert!(held_expires < end + MARGIN_SECS + ROUNDING_SECS);
}

#[tokio::test]
async fn ban_and_unban_round_trip_v4_and_v6() {
    let peer = Peer::start();
    let api = peer.api();
    let mut t = target(&peer);
    assert_eq!(t.info().ownership, OwnershipKind::Recorded);
    t.prepare().await.expect("prepare");
    assert!(observed(&mut t).await.is_empty());

    let end = now().0 + 3_600;
    let plan = adds(&[
        ("203.0.113.7", Expiry::At(Timestamp(end))),
        ("2001:db8::7", Expiry::At(Timestamp(end))),
        ("203.0.113.64/26", Expiry::Never),
        ("2001:db8:1::/48", Expiry::Never),
    ]);
    let held = apply_ok(&mut t, &plan).await;
    assert_eq!(held.len(), 4);
    for (prefix, h) in &held {
        assert!(h.handle.as_deref().unwrap().parse::<i64>().is_ok(), "{h:?}");
        match h.expiry {
            Some(Expiry::At(Timestamp(e))) => assert_expires_after(e, end),
            Some(Expiry::Never) => assert!(!prefix.is_host()),
            None => panic!("no expiry read back for {prefix}"),
        }
    }

    // The API holds them, active, in our community, with the comment; ExaBGP was told.
    for (addr, mask) in [
        ("203.0.113.7", 32),
        ("2001:db8::7", 128),
        ("203.0.113.64", 26),
        ("2001:db8:1::", 48),
    ] {
        let rule = api.rule_for(addr, mask).await.expect("rule in ExaFS");
        assert_eq!(rule["rstate"], "active rule", "{rule}");
        assert_eq!(rule["community"], COMMUNITY_NAME);
        assert_eq!(rule["comment"], "netban");
        let prefix = p(&format!("{addr}/{mask}"));
        assert_eq!(
            rule["id"].as_i64().unwrap().to_string(),
            *held[&prefix].handle.as_ref().unwrap()
        );
        assert!(
            peer.wait_lines("announce", &prefix.to_string(), 1),
            "{prefix}"
        );
    }
    let permanent = api.rule_for("203.0.113.64", 26).await.unwrap();
    assert!(permanent["expires"].as_i64().unwrap() > now().0 + 9 * 365 * 86_400);

    // Read back exactly as applied.
    let back = observed(&mut t).await;
    assert_eq!(back, held);

    // Unban everything: DELETE, and ExaBGP withdraws.
    let removes = Plan {
        remove: back.values().cloned().collect(),
        ..Plan::default()
    };
    apply_ok(&mut t, &removes).await;
    assert!(api.rules().await.is_empty());
    for prefix in held.keys() {
        assert!(
            peer.wait_lines("withdraw", &prefix.to_string(), 1),
            "{prefix}"
        );
    }
    assert!(observed(&mut t).await.is_empty());
    // Removing again (already gone) is done, not an error.
    apply_ok(&mut t, &removes).await;
}

#[tokio::test]
async fn refresh_extends_never_shortens_and_revives_a_withdrawn_rule() {
    let peer = Peer::start();
    let api = peer.api();
    let mut t = target(&peer);
    t.prepare().await.unwrap();
    let a = p("203.0.113.10");
    let b = p("203.0.113.11");
    let first = apply_ok(
        &mut t,
        &adds(&[
            ("203.0.113.10", in_secs(600)),
            ("203.0.113.11", in_secs(3_600)),
        ]),
    )
    .await;
    let owned: BTreeSet<(Prefix, Option<String>)> = first
        .values()
        .map(|h| (h.prefix, h.handle.clone()))
        .collect();
    let tracking = t.info().expiry;

    // A later expiry (another source's longer ban) is a refresh: POST again, same id.
    let later = now().0 + 7_200;
    let mut desired: BTreeMap<Prefix, Expiry> =
        [(a, Expiry::At(Timestamp(later))), (b, in_secs(3_600))].into();
    let held: Vec<Held> = observed(&mut t).await.into_values().collect();
    let refresh = plan::plan(&desired, &held, &Ownership::Recorded(&owned), tracking);
    assert_eq!(refresh.refresh.len(), 1, "{refresh:?}");
    assert!(refresh.add.is_empty() && refresh.remove.is_empty());
    let after = apply_ok(&mut t, &refresh).await;
    assert_eq!(after[&a].handle, first[&a].handle);
    let rule = api.rule_for("203.0.113.10", 32).await.unwrap();
    assert_expires_after(rule["expires"].as_i64().unwrap(), later);
    assert!(peer.wait_lines("announce", "203.0.113.10/32", 2));

    // An earlier desired expiry changes nothing (no shortening), and what was written reads
    // back as not stale (no refresh loop).
    desired.insert(a, in_secs(900));
    let held: Vec<Held> = observed(&mut t).await.into_values().collect();
    assert!(plan::plan(&desired, &held, &Ownership::Recorded(&owned), tracking).is_empty());

    // Someone re-sends b with a past expiry (ExaFS overwrites it and withdraws the route).
    // ExaFS rounds expiries to the nearest 10 minutes, so "past" must be 20 minutes back to
    // stay in the past after rounding.
    let shortened = api.create("203.0.113.11", 32, now().0 - 1_200).await;
    assert_eq!(shortened["rstate"], "withdrawed rule");
    assert_eq!(
        shortened["id"].as_i64().unwrap().to_string(),
        *first[&b].handle.as_ref().unwrap()
    );
    // netban sees it expired and re-sends the ban's expiry: ExaFS announces it again.
    let held: Vec<Held> = observed(&mut t).await.into_values().collect();
    let revive = plan::plan(&desired, &held, &Ownership::Recorded(&owned), tracking);
    assert_eq!(revive.refresh.len(), 1, "{revive:?}");
    assert_eq!(revive.refresh[0].0.prefix, b);
    apply_ok(&mut t, &revive).await;
    assert_eq!(
        api.rule_for("203.0.113.11", 32).await.unwrap()["rstate"],
        "active rule"
    );
    assert!(peer.wait_lines("announce", "203.0.113.11/32", 2));
}

#[tokio::test]
async fn outside_the_organisation_is_rejected_with_the_reason_and_the_rest_proceeds() {
    let peer = Peer::start();
    let api = peer.api();
    let mut t = target(&peer);
    t.prepare().await.unwrap();
    let plan = adds(&[
        ("198.51.100.7", in_secs(3_600)),
        ("203.0.113.20", in_secs(3_600)),
        ("2001:db9::1", in_secs(3_600)),
        ("2001:db8::20", in_secs(3_600)),
    ]);
    let report = t.apply(&plan).await.expect("apply");
    let by_prefix: BTreeMap<Prefix, ItemOutcome> = report
        .items
        .into_iter()
        .map(|i| (i.prefix, i.result))
        .collect();
    for outside in ["198.51.100.7", "2001:db9::1"] {
        match &by_prefix[&p(outside)] {
            ItemOutcome::Rejected { reason } => {
                assert!(reason.contains("must be in organization range"), "{reason}")
            }
            other => panic!("{outside}: {other:?}"),
        }
    }
    for inside in ["203.0.113.20", "2001:db8::20"] {
        assert!(matches!(
            by_prefix[&p(inside)],
            ItemOutcome::Done { held: Some(_) }
        ));
    }
    assert_eq!(api.rules().await.len(), 2);
    assert!(peer.wait_lines("announce", "2001:db8::20/128", 1));
    assert_eq!(peer.count_lines("announce", "198.51.100.7/32"), 0);
}

#[tokio::test]
async fn wrong_read_only_and_exposed_keys_are_configuration_errors() {
    let peer = Peer::start();
    let mut wrong = Exafs::new("rtbh", config_for(&peer, "not-the-key")).unwrap();
    match wrong.prepare().await {
        Err(TargetError::Config(m)) => {
            assert!(
                m.to_string().contains("ExaFS refused the API key (403"),
                "{m}"
            );
            assert!(m.to_string().contains("bound to another machine"), "{m}");
        }
        other => panic!("{other:?}"),
    }

    let mut read_only = Exafs::new("rtbh", config_for(&peer, READ_ONLY_KEY)).unwrap();
    read_only.prepare().await.expect("a read-only key may read");
    match read_only
        .apply(&adds(&[("203.0.113.30", in_secs(600))]))
        .await
    {
        Err(TargetError::Config(m)) => assert!(m.to_string().contains("read-only"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(peer.api().rules().await.is_empty());

    let exposed = peer.key_file("exposed.key", KEY, 0o644);
    let config = with_transport(
        &peer,
        ExafsConfig::new(&peer.url(), KeySetting::File(exposed), COMMUNITY),
    );
    match Exafs::new("rtbh", config) {
        Err(TargetError::Config(m)) => assert!(m.to_string().contains("chmod 600"), "{m}"),
        Ok(_) => panic!("a key file others may read was accepted"),
        Err(other) => panic!("{other:?}"),
    }

    let mut config = config_for(&peer, KEY);
    config.community = Some(99);
    let mut unknown = Exafs::new("rtbh", config).unwrap();
    match unknown.prepare().await {
        Err(TargetError::Config(m)) => assert!(m.to_string().contains("1 (65535:65283)"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reused_rule_id_is_verified_and_not_deleted() {
    let peer = Peer::start();
    let api = peer.api();
    let mut t = target(&peer);
    t.prepare().await.unwrap();
    let held = apply_ok(&mut t, &adds(&[("203.0.113.40", in_secs(3_600))])).await;
    let ours = held[&p("203.0.113.40")].clone();
    let id: i64 = ours.handle.as_ref().unwrap().parse().unwrap();

    // An operator deletes netban's rule and creates another: SQLite hands out the same id.
    assert_eq!(api.delete(id).await, 201);
    let other = api.create("203.0.113.41", 32, now().0 + 3_600).await;
    assert_eq!(
        other["id"].as_i64(),
        Some(id),
        "ExaFS on SQLite reuses the id"
    );

    // netban's unban of its (gone) rule must not delete the operator's.
    let report = t
        .apply(&Plan {
            remove: vec![ours],
            ..Plan::default()
        })
        .await
        .unwrap();
    assert!(matches!(report.items[0].result, ItemOutcome::Done { .. }));
    assert!(api.rule_for("203.0.113.41", 32).await.is_some());
    assert_eq!(peer.count_lines("withdraw", "203.0.113.41/32"), 0);
}

/// https with the private CA as `ca_file`: the whole round trip works. Without `ca_file` the
/// public roots do not know that CA: refused at the TLS handshake, nothing sent. A plain
/// http url without `allow_insecure_http` is refused before any connection.
#[tokio::test]
async fn https_with_a_private_ca_and_plain_http_only_when_allowed() {
    let peer = Peer::start_tls();
    let mut t = target(&peer);
    t.prepare().await.expect("https with ca_file");
    apply_ok(&mut t, &adds(&[("203.0.113.50", in_secs(3_600))])).await;
    assert!(peer.api().rule_for("203.0.113.50", 32).await.is_some());
    assert!(peer.wait_lines("announce", "203.0.113.50/32", 1));

    let public_roots_only = ExafsConfig {
        ca_file: None,
        ..config_for(&peer, KEY)
    };
    let mut t = Exafs::new("rtbh", public_roots_only).unwrap();
    match t.prepare().await {
        Err(TargetError::Unreachable(m)) => {
            assert!(m.to_string().contains("certificate"), "{m}")
        }
        other => panic!("a certificate of an unknown CA was accepted: {other:?}"),
    }

    let plain = Peer::start();
    let file = plain.key_file("key", KEY, 0o600);
    let config = ExafsConfig::new(&plain.url(), KeySetting::File(file), COMMUNITY);
    match Exafs::new("rtbh", config) {
        Err(TargetError::Config(m)) => {
            assert!(m.to_string().contains("allow_insecure_http = true"), "{m}")
        }
        Ok(_) => panic!("plain http accepted without allow_insecure_http"),
        Err(other) => panic!("{other:?}"),
    }
}

/// A tiny redirecting HTTP(S) server written for this test (no real ExaFS redirects its API):
/// every request gets `307 Location: <target><path>`. Served over TLS with the peer's
/// certificate when given one.
const REDIRECTOR: &str = r#"
import http.server, ssl, sys
port, target = int(sys.argv[1]), sys.argv[2]
class Redirect(http.server.BaseHTTPRequestHandler):
    def answer(self):
        self.send_response(307)
        self.send_header("Location", target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_DELETE = answer
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Redirect)
if len(sys.argv) > 4:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// The redirector's process, killed on drop.
struct Redirector {
    child: std::process::Child,
    port: u16,
}

impl Redirector {
    /// Redirects to `target`, over https with `peer`'s certificate.
    fn start(peer: &Peer, target: &str) -> Redirector {
        let port = netban_testlab::free_port();
        let d = peer.dir.path();
        let child = std::process::Command::new("python3")
            .args(["-c", REDIRECTOR, &port.to_string(), target])
            .arg(d.join("server.pem"))
            .arg(d.join("server.key"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("python3");
        let up = netban_testlab::wait_until(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        assert!(up, "the redirector did not listen");
        Redirector { child, port }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the connections made to a listener on another loopback host, 127.0.0.2 (and keeps
/// whatever they sent).
struct Catcher {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Catcher {
    fn start() -> Catcher {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                    .unwrap();
                let mut buf = [0u8; 4096];
                if let Ok(n) = stream.read(&mut buf) {
                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        });
        Catcher {
            port,
            seen,
            connections,
        }
    }
}

/// ExaFS's address redirects elsewhere, to another host and from https to plain http (there
/// the real ExaFS answers): netban follows neither, says so and where to, and the API key
/// never reaches the redirect target.
#[tokio::test]
async fn redirects_are_refused_and_the_key_never_follows() {
    let peer = Peer::start_tls();
    let catcher = Catcher::start();
    let plain = Peer::start();
    for (target, what) in [
        (
            format!("https://127.0.0.2:{}", catcher.port),
            "another host",
        ),
        (plain.url(), "plain http (the real ExaFS)"),
    ] {
        let redirector = Redirector::start(&peer, &target);
        let config = ExafsConfig {
            url: redirector.url(),
            ..config_for(&peer, KEY)
        };
        let mut t = Exafs::new("rtbh", config).unwrap();
        match t.prepare().await {
            Err(TargetError::Config(m)) => {
                let m = m.to_string();
                assert!(
                    m.contains("answered 307 redirecting to") && m.contains(&target),
                    "{what}: {m}"
                );
                assert!(m.contains("follows no redirects"), "{what}: {m}");
                assert!(!m.contains(KEY), "{what}: the key is in the message: {m}");
            }
            other => panic!("{what}: the redirect was not refused: {other:?}"),
        }
    }
    assert_eq!(
        catcher
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "something reached the redirect target: {:?}",
        String::from_utf8_lossy(&catcher.seen.lock().unwrap())
    );
    // Had netban followed the redirect to the plain-http ExaFS, that ExaFS would have taken
    // the key and prepare would have succeeded: the refusal above is the proof.
}

/// A flowspec target (`rule = "flowspec"`, the default action) matching `protocol` and
/// destination `ports` besides the source.
fn flowspec_target(peer: &Peer, protocol: Option<FlowProtocol>, ports: &[u16]) -> Exafs {
    let config = ExafsConfig {
        rule: RuleKind::Flowspec,
        community: None,
        protocol,
        ports: ports.to_vec(),
        ..config_for(peer, KEY)
    };
    Exafs::new("flowspec", config).expect("driver")
}

/// The flow line ExaFS has exabgp-process print for a rule of `source` (`proto` the
/// protocol/next-header part, if any).
fn flow_line(action: &str, source: &str, ports_and_proto: &str) -> String {
    format!("{action} flow route {{ match {{ source {source}; {ports_and_proto}}} then {{ discard; }} }}")
}

/// Whether exabgp-process's `line` (whitespace already collapsed) is `want`.
fn peer_line_is(line: &str, want: &str) -> bool {
    line == want.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn id_of(rule: &serde_json::Value) -> String {
    match &rule["id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Two flowspec targets on one ExaFS: one for an sshd jail (tcp, destination port 22), one
/// matching the source alone. Their rules are created with the default action (Discard),
/// IPv4 and IPv6, with the exact flow lines exabgp-process prints; each target reads back
/// only its own match; a refresh keeps the id; a rule deleted behind netban's back comes back;
/// a rule ExaFS withdrew is replaced (ExaFS makes a new one) and the withdrawn one deleted;
/// unbans withdraw and delete; a source outside the organisation is rejected with ExaFS's
/// reason; an action ExaFS does not offer is a configuration error.
#[tokio::test]
async fn flowspec_rules_per_match_with_their_flow_lines_and_drift_repaired() {
    let peer = Peer::start();
    let api = peer.api();
    let mut ssh = flowspec_target(&peer, Some(FlowProtocol::Tcp), &[22]);
    let mut any = flowspec_target(&peer, None, &[]);
    ssh.prepare().await.expect("prepare ssh");
    any.prepare().await.expect("prepare any");
    assert!(observed(&mut ssh).await.is_empty());

    let end = now().0 + 3_600;
    let ssh_held = apply_ok(
        &mut ssh,
        &adds(&[
            ("203.0.113.7", Expiry::At(Timestamp(end))),
            ("2001:db8:a::7", Expiry::At(Timestamp(end))),
        ]),
    )
    .await;
    let any_held = apply_ok(&mut any, &adds(&[("203.0.113.7", Expiry::Never)])).await;

    // In ExaFS: two rules for 203.0.113.7 (tcp/22, and any protocol), one for the IPv6 source,
    // all active, Discard, with netban's comment and the ids the driver holds.
    let v4_rules = api.flow_rules_for("203.0.113.7", 32).await;
    assert_eq!(v4_rules.len(), 2, "{v4_rules:?}");
    for rule in &v4_rules {
        assert_eq!(rule["rstate"], "active rule", "{rule}");
        assert_eq!(rule["action"], "Discard");
        assert_eq!(rule["comment"], "netban");
        let (held, want_proto, want_ports) = if rule["protocol"] == "tcp" {
            (&ssh_held, "tcp", serde_json::json!("22"))
        } else {
            (&any_held, "all", serde_json::Value::Null)
        };
        assert_eq!(rule["protocol"], want_proto);
        assert_eq!(rule["dest_port"], want_ports);
        assert_eq!(Some(id_of(rule)), held[&p("203.0.113.7")].handle, "{rule}");
    }
    let v6_rule = api.flow_rules_for("2001:db8:a::7", 128).await.remove(0);
    assert_eq!(
        (&v6_rule["next_header"], &v6_rule["dest_port"]),
        (&serde_json::json!("tcp"), &serde_json::json!("22"))
    );
    assert_eq!(Some(id_of(&v6_rule)), ssh_held[&p("2001:db8:a::7")].handle);
    assert_expires_after(v6_rule["expires"].as_i64().unwrap(), end);

    let ssh_v4 = flow_line(
        "announce",
        "203.0.113.7/32",
        "destination-port [=22]; protocol =tcp; ",
    );
    let ssh_v6 = flow_line(
        "announce",
        "2001:db8:a::7/128",
        "destination-port [=22]; next-header =tcp; ",
    );
    let any_v4 = flow_line("announce", "203.0.113.7/32", "");
    for line in [&ssh_v4, &ssh_v6, &any_v4] {
        assert!(
            peer.wait_exact(line, 1),
            "{line}\n{:?}",
            peer.exabgp_lines()
        );
    }

    // Each target reads back exactly its own rules.
    assert_eq!(observed(&mut ssh).await, ssh_held);
    assert_eq!(observed(&mut any).await, any_held);
    // An operator's rule with another match belongs to neither.
    api.create_flow(
        serde_json::json!({"source": "203.0.113.9", "source_mask": 32, "protocol": "tcp",
                           "dest_port": "80", "action": DISCARD_ACTION}),
        now().0 + 3_600,
    )
    .await;
    assert_eq!(observed(&mut ssh).await, ssh_held);
    assert_eq!(observed(&mut any).await, any_held);

    let owned = |held: &BTreeMap<Prefix, Held>| -> BTreeSet<(Prefix, Option<String>)> {
        held.values()
            .map(|h| (h.prefix, h.handle.clone()))
            .collect()
    };
    let tracking = ssh.info().expiry;

    // A longer ban is a refresh: same id, later expiry, announced again.
    let later = now().0 + 7_200;
    let desired: BTreeMap<Prefix, Expiry> = [
        (p("203.0.113.7"), Expiry::At(Timestamp(later))),
        (p("2001:db8:a::7"), Expiry::At(Timestamp(end))),
    ]
    .into();
    let held: Vec<Held> = observed(&mut ssh).await.into_values().collect();
    let refresh = plan::plan(
        &desired,
        &held,
        &Ownership::Recorded(&owned(&ssh_held)),
        tracking,
    );
    assert_eq!(refresh.refresh.len(), 1, "{refresh:?}");
    let refreshed = apply_ok(&mut ssh, &refresh).await;
    assert_eq!(
        refreshed[&p("203.0.113.7")].handle,
        ssh_held[&p("203.0.113.7")].handle
    );
    assert!(peer.wait_exact(&ssh_v4, 2));

    // Deleted in ExaFS behind netban's back: the next resync's plan adds it again.
    assert_eq!(
        api.delete_flow(true, id_of(&v6_rule).parse().unwrap())
            .await,
        201
    );
    let withdraw_ssh_v6 = ssh_v6.replacen("announce", "withdraw", 1);
    assert!(peer.wait_exact(&withdraw_ssh_v6, 1));
    let held: Vec<Held> = observed(&mut ssh).await.into_values().collect();
    let repair = plan::plan(
        &desired,
        &held,
        &Ownership::Recorded(&owned(&ssh_held)),
        tracking,
    );
    assert_eq!(repair.add.len(), 1, "{repair:?}");
    apply_ok(&mut ssh, &repair).await;
    assert!(peer.wait_exact(&ssh_v6, 2));

    // Withdrawn by ExaFS (an operator re-sent the rule with a past expiry and ExaFS's
    // cleaning job ran): read back as expired, re-sent; ExaFS makes a new rule beside the
    // withdrawn one, and netban deletes the withdrawn one.
    let old_id = any_held[&p("203.0.113.7")].handle.clone().unwrap();
    let shortened = api
        .create_flow(
            serde_json::json!({"source": "203.0.113.7", "source_mask": 32, "protocol": "all",
                               "action": DISCARD_ACTION}),
            now().0 - 1_200,
        )
        .await;
    assert_eq!(id_of(&shortened), old_id, "ExaFS updates the active rule");
    api.withdraw_expired().await;
    let withdraw_any = any_v4.replacen("announce", "withdraw", 1);
    assert!(
        peer.wait_exact(&withdraw_any, 1),
        "{:?}",
        peer.exabgp_lines()
    );
    let held: Vec<Held> = observed(&mut any).await.into_values().collect();
    assert!(
        matches!(held[0].expiry, Some(Expiry::At(t)) if t.0 <= now().0),
        "{held:?}"
    );
    let permanent: BTreeMap<Prefix, Expiry> = [(p("203.0.113.7"), Expiry::Never)].into();
    let revive = plan::plan(
        &permanent,
        &held,
        &Ownership::Recorded(&owned(&any_held)),
        tracking,
    );
    assert_eq!(revive.refresh.len(), 1, "{revive:?}");
    let revived = apply_ok(&mut any, &revive).await;
    let new_id = revived[&p("203.0.113.7")].handle.clone().unwrap();
    assert_ne!(new_id, old_id);
    assert!(peer.wait_exact(&any_v4, 3));
    // The withdrawn rule's deletion (which makes ExaFS withdraw its flow) came before the new
    // rule's announce: the flow is on the network.
    let any_lines: Vec<String> = peer
        .exabgp_lines()
        .into_iter()
        .filter(|l| peer_line_is(l, &any_v4) || peer_line_is(l, &withdraw_any))
        .collect();
    assert_eq!(
        any_lines
            .iter()
            .map(|l| peer_line_is(l, &any_v4))
            .collect::<Vec<_>>(),
        [true, true, false, false, true],
        "netban's announce, the operator's re-send (ExaFS announces it again), withdrawn by \
         the job, withdrawn by the deletion, announced anew"
    );
    let any_rules: Vec<serde_json::Value> = api
        .flow_rules_for("203.0.113.7", 32)
        .await
        .into_iter()
        .filter(|r| r["protocol"] == "all")
        .collect();
    assert_eq!(
        any_rules.len(),
        1,
        "the withdrawn rule is deleted: {any_rules:?}"
    );
    assert_eq!(id_of(&any_rules[0]), new_id);
    assert_eq!(any_rules[0]["rstate"], "active rule");

    // Unban everything: DELETE, and ExaBGP withdraws each flow.
    for t in [&mut ssh, &mut any] {
        let removes = Plan {
            remove: observed(t).await.into_values().collect(),
            ..Plan::default()
        };
        apply_ok(t, &removes).await;
        assert!(observed(t).await.is_empty());
    }
    let withdraw_ssh_v4 = ssh_v4.replacen("announce", "withdraw", 1);
    // The IPv6 rule was withdrawn once before (deleted by the operator), the any-protocol
    // rule twice (ExaFS's job, then the deletion of the withdrawn rule).
    for (line, times) in [
        (&withdraw_ssh_v4, 1),
        (&withdraw_ssh_v6, 2),
        (&withdraw_any, 3),
    ] {
        assert!(
            peer.wait_exact(line, times),
            "{line}\n{:?}",
            peer.exabgp_lines()
        );
    }
    let left: Vec<String> = api
        .flow_rules()
        .await
        .iter()
        .map(|r| r["source"].to_string())
        .collect();
    assert_eq!(
        left,
        ["\"203.0.113.9\""],
        "only the operator's rule is left"
    );

    // A source outside the organisation's ranges: rejected with ExaFS's reason.
    let report = ssh
        .apply(&adds(&[("198.51.100.7", in_secs(3_600))]))
        .await
        .expect("apply");
    match &report.items[0].result {
        ItemOutcome::Rejected { reason } => {
            assert!(reason.contains("must be in organization range"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // An action ExaFS does not offer: a configuration error naming the ones it does.
    let config = ExafsConfig {
        action: Some(9),
        ..ExafsConfig {
            rule: RuleKind::Flowspec,
            community: None,
            ..config_for(&peer, KEY)
        }
    };
    let mut unknown = Exafs::new("flowspec", config).unwrap();
    match unknown.prepare().await {
        Err(TargetError::Config(m)) => assert!(m.to_string().contains("4 (Discard)"), "{m}"),
        other => panic!("{other:?}"),
    }
}
