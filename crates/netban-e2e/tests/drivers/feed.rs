//! The daemon through the feed driver, pulled by the real `curl` and by a small Python client
//! that behaves like a firewall (`feed_client.py`: conditional GET, keeps its ETag), over
//! HTTPS with a certificate from a test CA: the list line by line, 304 while it is unchanged,
//! a new list after a ban and an unban, capacity and overflow, credentials refused, and each
//! consumer's pull in `netban status`.

use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::{free_port, wait_until};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "fw-pass-7Q";
const TOKEN: &str = "feed-token-3x9";

/// A CA, and a certificate it signed for 127.0.0.1 (an IP SAN: the clients connect by address).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (curl, Python) takes a leaf whose issuer is its own subject
    // for a self-signed certificate.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "netban feed test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "netban feed test server");
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("api.crt"), dir.join("api.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// What curl got: status, headers (lower-case names) and body.
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Curl {
    base: String,
    ca: PathBuf,
    scratch: PathBuf,
}

impl Curl {
    fn fetch(&self, path: &str, args: &[&str]) -> Fetched {
        let headers_file = self.scratch.join("headers.txt");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&self.ca)
            .arg("-D")
            .arg(&headers_file)
            .args(["-A", "curl-fw/8"])
            .args(args)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl runs (scripts/setup.d/feed.sh installs it)");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = std::fs::read_to_string(&headers_file).unwrap();
        let mut lines = raw.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        Fetched {
            status,
            headers,
            body: String::from_utf8(out.stdout).unwrap(),
        }
    }
}

/// The Python firewall's pull: (status, ETag, the lines it holds).
fn python_pull(
    url: &str,
    ca: &Path,
    state: &Path,
    token: Option<&str>,
) -> (u64, String, Vec<String>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers/feed_client.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(url).arg(ca).arg(state);
    command.args(token);
    let out = command.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = value["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (
        value["status"].as_u64().unwrap(),
        value["etag"].as_str().unwrap_or("").to_string(),
        lines,
    )
}

fn target_status(daemon: &Daemon, name: &str) -> Value {
    daemon.status()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn firewalls_pull_the_feed_conditionally_with_credentials_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path();
    let (ca, cert, key) = pki(scratch);
    let password = secret(scratch, "edl.pw", PASSWORD);
    let token = secret(scratch, "edl.token", TOKEN);
    let port = free_port();
    let config = format!(
        "[policy]\nescalation = {{ enabled = false, factor = 2.0, max_secs = 604800, window_secs = 2592000 }}\n\n\
         [reconciler]\nresync_secs = 3600\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntokens = \"{}\"\n\n\
         [[targets]]\nname = \"edl\"\ntype = \"feed\"\nfamilies = [\"v4\"]\ncapacity = 3\ncomments = true\n\
         username = \"fw\"\npassword_file = \"{}\"\ntoken_file = \"{}\"\n\n\
         [[targets]]\nname = \"v6\"\ntype = \"feed\"\nfamilies = [\"v6\"]\nhosts = \"prefix\"\n\
         anonymous = true\npath = \"/feeds/site-a/v6.txt\"\n",
        cert.display(),
        key.display(),
        scratch.join("tokens.toml").display(),
        password.display(),
        token.display(),
    );
    let daemon =
        Daemon::start(&Binaries::locate(), &scratch.join("netban"), &config).expect("daemon");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "the API listens\n{}",
        daemon.log()
    );
    let curl = Curl {
        base: format!("https://127.0.0.1:{port}"),
        ca: ca.clone(),
        scratch: scratch.to_path_buf(),
    };
    let basic = format!("fw:{PASSWORD}");
    let basic = basic.as_str();
    let url = format!("{}/feeds/edl", curl.base);

    // Nothing published before the first plan: 503, and the firewall keeps what it has.
    assert_eq!(curl.fetch("/feeds/edl", &["-u", basic]).status, 503);

    // Five IPv4 bans for three lines: permanent first, then the longest; one IPv6 ban.
    for (prefix, bantime) in [
        ("203.0.113.1", "-1"),
        ("203.0.113.2", "86400"),
        ("203.0.113.3", "3600"),
        ("203.0.113.4", "600"),
        ("198.51.100.0/24", "7200"),
        ("2001:db8::5", "600"),
    ] {
        daemon.client_ok(&["ban", prefix, "--source", "sshd", "--bantime", bantime]);
    }
    let expected = "# netban feed edl\n# 3 entries\n198.51.100.0/24\n203.0.113.1\n203.0.113.2\n";
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            curl.fetch("/feeds/edl", &["-u", basic]).body == expected
        }),
        "the feed serves the placed bans: {:?}\n{}",
        curl.fetch("/feeds/edl", &["-u", basic]).body,
        daemon.log()
    );
    let full = curl.fetch("/feeds/edl", &["-u", basic]);
    assert_eq!(full.status, 200);
    assert_eq!(
        full.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let etag = full.header("etag").unwrap().to_string();
    let last_modified = full.header("last-modified").unwrap().to_string();

    // Refused without, or with wrong, credentials: 401, a challenge per scheme, no list.
    for args in [
        vec![],
        vec!["-u", "fw:wrong"],
        vec!["-u", "other:fw-pass-7Q"],
        vec!["-H", "Authorization: Bearer wrong-token"],
    ] {
        let refused = curl.fetch("/feeds/edl", &args);
        assert_eq!(refused.status, 401, "{args:?}");
        assert!(
            !refused.body.contains("203.0.113"),
            "{args:?}: {}",
            refused.body
        );
        let challenges: Vec<&str> = refused
            .headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic")),
            "{challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer")),
            "{challenges:?}"
        );
    }
    let refused_md5 = curl.fetch("/feeds/edl.md5", &[]);
    assert_eq!(refused_md5.status, 401);

    // Conditional requests: unchanged → 304 with no body, by ETag or by date; HEAD.
    let by_etag = curl.fetch(
        "/feeds/edl",
        &["-u", basic, "-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!((by_etag.status, by_etag.body.as_str()), (304, ""));
    assert_eq!(by_etag.header("etag"), Some(etag.as_str()));
    let by_date = curl.fetch(
        "/feeds/edl",
        &[
            "-u",
            basic,
            "-H",
            &format!("If-Modified-Since: {last_modified}"),
        ],
    );
    assert_eq!((by_date.status, by_date.body.as_str()), (304, ""));
    // (curl -I prints the headers as its output: discarded, they are in the -D file.)
    let head = curl.fetch("/feeds/edl", &["-u", basic, "-I", "-o", "/dev/null"]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert_eq!(
        head.header("content-length"),
        Some(expected.len().to_string().as_str())
    );
    // Cisco FMC's MD5 URL.
    let md5 = curl.fetch("/feeds/edl.md5", &["-u", basic]);
    std::fs::write(scratch.join("served.txt"), expected).unwrap();
    let md5sum = Command::new("md5sum")
        .arg(scratch.join("served.txt"))
        .output()
        .unwrap();
    let md5sum = String::from_utf8(md5sum.stdout).unwrap();
    assert_eq!(md5.status, 200);
    assert_eq!(md5.body, md5sum.split(' ').next().unwrap());

    // The Python firewall: a full pull, then 304 while nothing changes.
    let state = scratch.join("python-fw");
    let (status, py_etag, lines) = python_pull(&url, &ca, &state, Some(TOKEN));
    assert_eq!((status, py_etag.as_str()), (200, etag.as_str()));
    assert_eq!(
        lines,
        [
            "# netban feed edl",
            "# 3 entries",
            "198.51.100.0/24",
            "203.0.113.1",
            "203.0.113.2"
        ]
    );
    let (status, _, held) = python_pull(&url, &ca, &state, Some(TOKEN));
    assert_eq!((status, &held), (304, &lines));

    // Capacity honoured, the rest visible as overflow; each consumer's pull in status.
    let edl = target_status(&daemon, "edl");
    assert_eq!(
        (edl["held"].as_u64(), edl["overflow"].as_u64()),
        (Some(3), Some(2)),
        "{edl}"
    );
    let consumers = edl["consumers"].as_array().unwrap();
    let consumer = |identity: &str| {
        consumers
            .iter()
            .find(|c| c["identity"] == identity)
            .unwrap_or_else(|| panic!("{identity} in {consumers:?}"))
            .clone()
    };
    let python = consumer("token");
    assert_eq!(python["address"], "127.0.0.1");
    assert_eq!(python["user_agent"], "firewall-sim/1.0");
    assert_eq!(
        (python["etag"].as_str(), python["entries"].as_u64()),
        (Some(etag.as_str()), Some(3))
    );
    assert_eq!(python["current"], true);
    assert_eq!(consumer("fw")["user_agent"], "curl-fw/8");

    // An unban: a new list (the next longest ban takes the freed line); the Python firewall
    // gets it at its next pull, curl's copy shows as outdated until curl pulls again.
    daemon.client_ok(&["unban", "203.0.113.2", "--source", "sshd"]);
    let changed = "# netban feed edl\n# 3 entries\n198.51.100.0/24\n203.0.113.1\n203.0.113.3\n";
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            python_pull(&url, &ca, &state, Some(TOKEN)).0 == 200
        }),
        "a new version after the unban"
    );
    let (_, new_etag, lines) = python_pull(&url, &ca, &state, Some(TOKEN));
    assert_ne!(new_etag, etag);
    assert_eq!(lines.join("\n") + "\n", changed);
    let by_old_etag = curl.fetch(
        "/feeds/edl",
        &["-u", basic, "-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(
        (by_old_etag.status, by_old_etag.body.as_str()),
        (200, changed)
    );
    daemon.client_ok(&["ban", "203.0.113.9", "--source", "sshd", "--bantime", "-1"]);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            python_pull(&url, &ca, &state, Some(TOKEN))
                .2
                .contains(&"203.0.113.9".to_string())
        }),
        "a new permanent ban takes a line"
    );
    let text = String::from_utf8(daemon.client(&["status"]).stdout).unwrap();
    assert!(
        text.contains("consumer 127.0.0.1 (token, firewall-sim/1.0)") && text.contains("(current)"),
        "{text}"
    );
    assert!(
        text.contains("consumer 127.0.0.1 (fw, curl-fw/8)") && text.contains("OUTDATED"),
        "{text}"
    );

    let metrics = curl.fetch("/metrics", &[]).body;
    assert!(
        metrics.contains("netban_feed_consumers{target=\"edl\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("netban_feed_consumers_outdated{target=\"edl\"} 1"),
        "{metrics}"
    );

    // The IPv6 feed: anonymous, at its own path, prefixes with their length.
    let v6 = curl.fetch("/feeds/site-a/v6.txt", &[]);
    assert_eq!((v6.status, v6.body.as_str()), (200, "2001:db8::5/128\n"));
}
