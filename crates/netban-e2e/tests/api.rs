//! The HTTP API end to end: the real daemon serving HTTPS with a certificate from a CA made
//! here (rcgen), tokens made with the real `netban token`, a real HTTP client (reqwest over
//! rustls), nftables in a router namespace enforcing what the API banned, and `/metrics`
//! parsed with a Prometheus text parser.

use super::{nftables_target, World, BAD_INPUT};
use netban_testlab::nft::{self, elements as nft_elements};
use netban_testlab::{free_port, require_netns, wait_until};
use serde_json::{json, Value};
use std::time::Duration;

/// A CA, and a server certificate it signed for `netban.test` and 127.0.0.1.
pub(super) struct Pki {
    pub(super) ca: String,
    pub(super) cert: String,
    pub(super) key: String,
}

pub(super) fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["netban.test".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// An HTTPS client of the daemon's API, trusting only the test CA.
struct Api {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(port: u16, ca: &str) -> Api {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .resolve("netban.test", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap();
        Api {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client,
            base: format!("https://netban.test:{port}"),
        }
    }

    /// Sends a request; answers the status and the body (JSON, or the text as a string).
    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, Value) {
        self.runtime.block_on(async {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = self.client.request(method, format!("{}{path}", self.base));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some((content_type, bytes)) = body {
                request = request.header("content-type", content_type).body(bytes);
            }
            let response = request.send().await.expect("the API answers");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, value)
        })
    }

    fn json(&self, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send(method, path, Some(token), Some(("application/json", bytes)))
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send("GET", path, Some(token), None)
    }

    fn ban(&self, token: &str, prefix: &str, source: &str) -> (u16, Value) {
        self.json(
            "POST",
            "/v1/bans",
            token,
            json!({"prefixes": [prefix], "source": source, "duration": {"seconds": 600}}),
        )
    }
}

/// `netban token add NAME ARGS…` through the real client; the token it prints.
pub(super) fn add_token(
    daemon: &netban_testlab::netban::Daemon,
    name: &str,
    args: &[&str],
) -> String {
    let mut all = vec!["token", "add", name];
    all.extend_from_slice(args);
    let out = daemon.client_ok(&all);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_api_bans_through_the_same_admission_path_and_refuses_what_it_must() {
    require_netns!();
    let world = World::new("ha-api");
    let edge = &world.edge;
    let pki = pki();
    let dir = world.dir.path();
    for (file, text) in [
        ("ca.pem", &pki.ca),
        ("api.crt", &pki.cert),
        ("api.key", &pki.key),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let allow = dir.join("allow.txt");
    std::fs::write(&allow, "198.51.100.0/24\n").unwrap();
    let port = free_port();
    let config = format!(
        "[policy]\nallowlist = [\"2001:db8:b::/64\"]\nallowlist_files = [\"{}\"]\nprotected = [\"198.18.0.0/24\"]\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntokens = \"{}\"\nrate_per_second = 1000\n\n{}",
        allow.display(),
        dir.join("api.crt").display(),
        dir.join("api.key").display(),
        dir.join("tokens.toml").display(),
        nftables_target(&edge.router)
    );
    let daemon = world.daemon(&config);
    let api = Api::new(port, &pki.ca);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "the API listens\n{}",
        daemon.log()
    );

    // Tokens, made by the real CLI into the store the configuration names.
    let admin = add_token(&daemon, "ops", &["--role", "admin"]);
    let siem = add_token(
        &daemon,
        "siem",
        &[
            "--role",
            "ban",
            "--sources",
            "sshd",
            "--prefix-lengths-v4",
            "32",
        ],
    );
    let reader = add_token(&daemon, "viewer", &["--role", "read"]);
    let revoked = add_token(&daemon, "old", &["--role", "admin"]);
    daemon.client_ok(&["token", "revoke", "old"]);
    let listed = String::from_utf8(daemon.client_ok(&["token", "list"]).stdout).unwrap();
    assert!(
        listed.contains("siem") && !listed.contains("old"),
        "{listed}"
    );
    assert!(
        !std::fs::read_to_string(dir.join("tokens.toml"))
            .unwrap()
            .contains(&siem["nbt_".len()..]),
        "the store keeps digests only"
    );

    // Every address and source the socket refuses, the API refuses: 422 with the reason.
    let mut checked = 0;
    for (args, fragment) in BAD_INPUT {
        let (prefix, source) = match args {
            ["ban", prefix] => (*prefix, "sshd"),
            ["ban", prefix, "--source", source] => (*prefix, *source),
            _ => continue,
        };
        let (status, body) = api.ban(&admin, prefix, source);
        assert_eq!(status, 422, "{prefix:?} as {source:?}: {body}");
        assert!(
            body.to_string()
                .to_lowercase()
                .contains(&fragment.to_lowercase()),
            "{prefix:?}: {body} should mention {fragment:?}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "{checked} cases");

    // Refused before anything is recorded: no token, unknown, revoked; wrong content type,
    // a body over the limit, malformed JSON, unknown fields; a ban token on admin routes; a
    // token limited to sshd banning as recidive, or a /24; a read token banning.
    let good = serde_json::to_vec(
        &json!({"prefixes": ["203.0.113.50"], "source": "sshd", "duration": {"seconds": 600}}),
    )
    .unwrap();
    let refusals: Vec<(&str, u16, (u16, Value))> = vec![
        (
            "no token",
            401,
            api.send("POST", "/v1/bans", None, Some(("application/json", good.clone()))),
        ),
        ("no token, read", 401, api.send("GET", "/v1/bans", None, None)),
        (
            "unknown token",
            401,
            api.send(
                "POST",
                "/v1/bans",
                Some("nbt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
                Some(("application/json", good.clone())),
            ),
        ),
        (
            "revoked token",
            401,
            api.send("POST", "/v1/bans", Some(&revoked), Some(("application/json", good.clone()))),
        ),
        (
            "text/plain",
            415,
            api.send("POST", "/v1/bans", Some(&admin), Some(("text/plain", good.clone()))),
        ),
        (
            "9 MiB body",
            413,
            api.send(
                "POST",
                "/v1/bans",
                Some(&admin),
                Some(("application/json", vec![b' '; 9 << 20])),
            ),
        ),
        (
            "malformed JSON",
            422,
            api.send("POST", "/v1/bans", Some(&admin), Some(("application/json", b"{\"prefixes\":".to_vec()))),
        ),
        (
            "unknown field",
            422,
            api.json(
                "POST",
                "/v1/bans",
                &admin,
                json!({"prefixes": ["203.0.113.50"], "source": "sshd", "duration": {"seconds": 1}, "origin_host": "elsewhere"}),
            ),
        ),
        ("ban token syncing", 403, api.send("POST", "/v1/targets/edge/sync", Some(&siem), None)),
        ("ban token planning", 403, api.get("/v1/plan", &siem)),
        (
            "ban token unbanning every source",
            403,
            api.send("DELETE", "/v1/bans/203.0.113.50", Some(&siem), None),
        ),
        ("sshd token as recidive", 403, api.ban(&siem, "203.0.113.50", "recidive")),
        ("sshd token banning a /24", 403, api.ban(&siem, "203.0.113.0/24", "sshd")),
        ("read token banning", 403, api.ban(&reader, "203.0.113.50", "sshd")),
        ("no such target", 404, api.send("POST", "/v1/targets/nope/sync", Some(&admin), None)),
        ("no such route", 404, api.get("/v2/bans", &admin)),
    ];
    for (what, expected, (status, body)) in &refusals {
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            body.get("error").is_some(),
            "{what}: an error body, got {body}"
        );
    }
    // Nothing was recorded or enforced.
    assert!(daemon.listed().is_empty(), "{:?}", daemon.listed());
    let mut ledger = netban_ledger::sqlite::SqliteLedger::open(&daemon.ledger).unwrap();
    assert_eq!(
        ledger.last_event_id().unwrap(),
        0,
        "the ledger is unchanged"
    );
    assert!(
        nft_elements(&edge.router).is_empty(),
        "the device is unchanged"
    );

    // A ban through the API is durable when answered and enforced in nftables.
    let attacker = netban_testlab::Edge::ATTACKER_V4.to_string();
    let (status, body) = api.ban(&siem, &attacker, "sshd");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["error"], Value::Null, "{body}");
    assert!(daemon.listed().iter().any(|l| l.contains(&attacker)));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            nft_elements(&edge.router).contains(&attacker)
        }),
        "the API's ban reaches nftables\n{}",
        daemon.log()
    );
    // Read it back: the effective ban, its source, and history naming the token.
    let (status, shown) = api.get(&format!("/v1/bans/{attacker}"), &reader);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["banned"], true, "{shown}");
    assert_eq!(shown["sources"][0]["source"], "sshd", "{shown}");
    assert_eq!(shown["history"][0]["origin_host"], "api.siem", "{shown}");
    let (status, listed) = api.get("/v1/bans", &reader);
    assert_eq!(status, 200);
    assert_eq!(listed["bans"].as_array().unwrap().len(), 1, "{listed}");

    // Every route in the OpenAPI document answers (with an admin token).
    let doc: Value = serde_json::from_str(include_str!("../../../docs/api/openapi.json")).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if !["get", "post", "delete"].contains(&method.as_str()) {
                continue;
            }
            let concrete = path
                .replace("{prefix}", "203.0.113.77")
                .replace("{name}", "edge");
            let (status, body) = match (method.as_str(), path.as_str()) {
                ("post", "/v1/bans") => api.ban(&admin, "203.0.113.77", "manual"),
                (m, _) => api.send(&m.to_uppercase(), &concrete, Some(&admin), None),
            };
            assert_eq!(status, 200, "{method} {path}: {body}");
        }
    }

    // Someone deletes netban's element on the router and adds one of their own to its set:
    // the next sync repairs both, and /metrics counts them as drift.
    nft::by_hand(&edge.router, nft::ByHand::Delete, "ban4", &attacker).unwrap();
    nft::by_hand(&edge.router, nft::ByHand::Add, "ban4", "203.0.113.99").unwrap();
    let (status, body) = api.send("POST", "/v1/targets/edge/sync", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    let elements = nft_elements(&edge.router);
    assert!(
        elements.contains(&attacker) && !elements.contains("203.0.113.99"),
        "{elements:?}"
    );

    // /metrics (loopback: on the API listener, no token), parsed as Prometheus text.
    let (status, text) = api.send("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let text = text.as_str().expect("metrics are text").to_string();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value(
            "netban_active_bans",
            &[("family", "ipv4"), ("source", "sshd")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            "netban_target_health",
            &[("target", "edge"), ("state", "ok")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        value("netban_ledger_events_total", &[("kind", "ban")]).unwrap() >= 2.0,
        "{text}"
    );
    // Exactly the two changes made by hand above: no sync before found drift.
    for kind in ["missing", "unexpected"] {
        assert_eq!(
            value(
                "netban_target_drift_total",
                &[("target", "edge"), ("kind", kind)]
            ),
            Some(1.0),
            "{text}"
        );
    }
    assert!(
        value("netban_refusals_total", &[("reason", "forbidden")]).unwrap() >= 6.0,
        "{text}"
    );
    assert!(
        value("netban_refusals_total", &[("reason", "unauthenticated")]).unwrap() >= 3.0,
        "{text}"
    );
    assert!(
        value(
            "netban_target_last_sync_timestamp_seconds",
            &[("target", "edge")]
        )
        .unwrap()
            > 0.0
    );
    // Measured where the work happens: the target's device calls, the ledger's commits.
    let buckets = |name: &str, labels: &[(&str, &str)]| -> Vec<(f64, f64)> {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no histogram {name}\n{text}"));
        let prometheus_parse::Value::Histogram(counts) = &sample.value else {
            panic!("{name} is not a histogram\n{text}");
        };
        counts.iter().map(|c| (c.less_than, c.count)).collect()
    };
    for (name, labels, at_least) in [
        (
            "netban_target_apply_duration_seconds",
            &[("target", "edge")][..],
            1.0,
        ),
        (
            "netban_target_observe_duration_seconds",
            &[("target", "edge")][..],
            1.0,
        ),
        // Each ban above was a group of its own: one request per commit at least.
        ("netban_ledger_commit_duration_seconds", &[][..], 2.0),
        ("netban_ledger_commit_group_size", &[][..], 2.0),
    ] {
        let counts = buckets(name, labels);
        let count = value(&format!("{name}_count"), labels).unwrap();
        let sum = value(&format!("{name}_sum"), labels).unwrap();
        assert!(count >= at_least, "{name}: {count} observations\n{text}");
        assert!(sum > 0.0, "{name}: sum {sum}");
        assert!(
            counts
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}: buckets cumulative, bounds ascending: {counts:?}"
        );
        assert_eq!(
            counts.last(),
            Some(&(f64::INFINITY, count)),
            "{name}: the +Inf bucket holds every observation"
        );
    }
    // This test's requests come one at a time: groups of one.
    let group = buckets("netban_ledger_commit_group_size", &[]);
    assert!(group[0].0 == 1.0 && group[0].1 >= 1.0, "{group:?}");
    for kind in [
        "unreachable",
        "device",
        "configuration",
        "item_failed",
        "item_rejected",
    ] {
        assert_eq!(
            value(
                "netban_target_errors_total",
                &[("target", "edge"), ("kind", kind)]
            ),
            Some(0.0),
            "{kind}\n{text}"
        );
    }
    assert_eq!(
        value("netban_spool_depth", &[]),
        None,
        "no spool with a SQLite ledger, so no spool depth"
    );

    // An unban by the token's source lifts it from nftables.
    let (status, body) = api.send(
        "DELETE",
        &format!("/v1/bans/{attacker}?source=sshd"),
        Some(&siem),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            !nft_elements(&edge.router).contains(&attacker)
        }),
        "the API's unban reaches nftables"
    );
}
