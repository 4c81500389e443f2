//! The HTTP API's benchmarks (issue 14), with CrowdSec's LAPI beside them where it is installed.
//!
//! 1. One ban over keep-alive HTTPS (a CA made here, rustls on both ends), acknowledged only
//!    once durable, beside the socket client on the same daemon (one kept-open connection, and
//!    a `netban ban` process per ban). Goal: ≤ 2 ms median.
//! 2. 10,000 bans from 8 HTTPS clients (each its own connection and token, one ban per
//!    request) until all are in the nft set of a router namespace. Goal: ≤ 1.5 s. Each client
//!    waits for one answer before it sends again, so this is bound by the acknowledgement's
//!    latency (a durable commit) times 1,250; 2b. is the same with 8 requests in flight per
//!    client (8 keep-alive connections each), as a detector that does not wait in line sends.
//! 3. `/metrics` at 1,000,000 active bans: the scrape's time, and the ban latency while a
//!    client scrapes in a loop beside it without. Goal: ≤ 50 ms, no spike.
//!
//! The reference: CrowdSec's LAPI (Debian's crowdsec 1.4.6), started here on its own SQLite
//! database with TLS from the same CA (`bench/reference/crowdsec_lapi.sh`), inside a namespace:
//! `cscli decisions add` per ban (a process per ban, like `netban ban`), and its HTTP API
//! (`POST /v1/alerts` with a machine's JWT, one decision per alert, keep-alive HTTPS). For 2.,
//! the same 8 clients post 10,000 alerts and, with `crowdsec-firewall-bouncer` installed, the
//! bouncer (nftables mode, polling every second) puts them in its set in that namespace.
//! Without crowdsec the rows say "reference unavailable: crowdsec not installed".

use crate::core::{addresses, held, in_netns};
use crate::table::{median, ms, p95, verdict, Row, Table};
use crate::Context;
use netban_testlab::netban::Daemon;
use netban_testlab::{free_port, nft, wait_until, Host, Lab, Process};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many HTTPS clients share the burst, and how many bans it has.
const CLIENTS: usize = 8;
const BURST: usize = 10_000;
/// Requests each client has in flight at once in 2b.
const IN_FLIGHT: usize = 8;

pub fn run(o: &Context, table: &mut Table) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("nab-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = benchmarks(o, &work, table);
    match &result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Err(_) => eprintln!("api: kept {} (logs) for inspection", work.display()),
    }
    result
}

/// A CA and a server certificate it signed for 127.0.0.1, written to `dir` (both servers use
/// it; both clients trust only the CA).
struct Pki {
    ca: String,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn pki(dir: &Path) -> Result<Pki, String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .map_err(e)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(e)?;
    let pki = Pki {
        ca: ca.pem(),
        ca_file: dir.join("ca.pem"),
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
    };
    for (file, text) in [
        (&pki.ca_file, pki.ca.clone()),
        (&pki.cert_file, cert.pem()),
        (&pki.key_file, key.serialize_pem()),
    ] {
        std::fs::write(file, text).map_err(|e| e.to_string())?;
    }
    Ok(pki)
}

/// An HTTPS client with one kept-alive connection, blocking (its own one-thread runtime).
struct Https {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Https {
    fn new(port: u16, ca: &str) -> Result<Https, String> {
        Https::with_connections(port, ca, 1)
    }

    /// A client that keeps up to `connections` keep-alive connections (one per request it
    /// has in flight at once).
    fn with_connections(port: u16, ca: &str, connections: usize) -> Result<Https, String> {
        let e = |e: reqwest::Error| e.to_string();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).map_err(e)?)
            .pool_max_idle_per_host(connections)
            // CrowdSec's LAPI refuses a machine login without a `name/version` user agent.
            .user_agent("netban-bench/0.1")
            .build()
            .map_err(e)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Https {
            runtime,
            client,
            base: format!("https://127.0.0.1:{port}"),
        })
    }

    /// Sends a request; answers the status and the body's text.
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, String), String> {
        self.runtime.block_on(async {
            let mut request = self.client.request(method, format!("{}{path}", self.base));
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(|e| e.to_string())?;
            Ok((status, text))
        })
    }

    fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.send(reqwest::Method::GET, path, None, None)
    }

    /// `POST /v1/bans` of one address; an error unless it was acknowledged (durable).
    fn netban_ban(&self, token: &str, address: &str) -> Result<(), String> {
        self.runtime
            .block_on(post_ban(&self.client, &self.base, token, address))
    }
}

/// `POST /v1/bans` of one address on `base`; an error unless it was acknowledged (durable).
async fn post_ban(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    address: &str,
) -> Result<(), String> {
    let body = json!({"prefixes": [address], "source": "sshd", "duration": {"seconds": 600}});
    let response = client
        .post(format!("{base}/v1/bans"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("/v1/bans: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_str(&text).unwrap_or_default();
    if status != 200 || !answer["results"][0]["error"].is_null() {
        return Err(format!("POST /v1/bans {address}: {status} {text}"));
    }
    Ok(())
}

/// Bans every address of `addresses`, one per request, from one HTTPS client per token, each
/// with `in_flight` requests outstanding at a time (on as many keep-alive connections); every
/// client connects (and shakes hands) before the clock starts. Returns when all are
/// acknowledged: when the clock started, and how long it took.
fn ban_from_clients(
    port: u16,
    ca: &str,
    tokens: Vec<String>,
    addresses: &[String],
    in_flight: usize,
) -> Result<(Instant, Duration), String> {
    let clients = tokens.len();
    let ready = Arc::new(std::sync::Barrier::new(clients + 1));
    let threads: Vec<_> = addresses
        .chunks(addresses.len().div_ceil(clients))
        .zip(tokens)
        .map(|(chunk, token)| {
            let (chunk, ca, ready) = (chunk.to_vec(), ca.to_string(), ready.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let https = Https::with_connections(port, &ca, in_flight).and_then(|h| {
                    // Open the connections the client will use before the clock starts.
                    h.runtime.block_on(async {
                        let mut opening = tokio::task::JoinSet::new();
                        for _ in 0..in_flight {
                            let (client, base) = (h.client.clone(), h.base.clone());
                            opening.spawn(async move {
                                client.get(format!("{base}/metrics")).send().await
                            });
                        }
                        while let Some(opened) = opening.join_next().await {
                            opened
                                .map_err(|e| e.to_string())?
                                .map_err(|e| e.to_string())?;
                        }
                        Ok::<_, String>(())
                    })?;
                    Ok(h)
                });
                ready.wait();
                let https = https?;
                https.runtime.block_on(async {
                    let mut requests = tokio::task::JoinSet::new();
                    for part in chunk.chunks(chunk.len().div_ceil(in_flight)) {
                        let (client, base) = (https.client.clone(), https.base.clone());
                        let (part, token) = (part.to_vec(), token.clone());
                        requests.spawn(async move {
                            for address in &part {
                                post_ban(&client, &base, &token, address).await?;
                            }
                            Ok::<_, String>(())
                        });
                    }
                    while let Some(done) = requests.join_next().await {
                        done.map_err(|e| e.to_string())??;
                    }
                    Ok(())
                })
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    for thread in threads {
        thread
            .join()
            .map_err(|_| "a client panicked".to_string())??;
    }
    Ok((start, start.elapsed()))
}

/// Times `f` once per address.
fn timed(
    addresses: &[String],
    mut f: impl FnMut(&str) -> Result<(), String>,
) -> Result<Vec<Duration>, String> {
    addresses
        .iter()
        .map(|a| {
            let start = Instant::now();
            f(a).map(|()| start.elapsed())
        })
        .collect()
}

/// A daemon with the API on 127.0.0.1 (HTTPS) and `targets`; its port.
fn api_daemon(o: &Context, dir: &Path, pki: &Pki, targets: &str) -> Result<(Daemon, u16), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let port = free_port();
    let body = format!(
        "[policy.escalation]\nenabled = false\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\ntokens = \"{}\"\nrate_per_second = 1000000\n\n{targets}",
        pki.cert_file.display(),
        pki.key_file.display(),
        dir.join("tokens.toml").display(),
    );
    let daemon = Daemon::start(&o.bins, dir, &body).map_err(|e| e.to_string())?;
    let listening = wait_until(Duration::from_secs(30), Duration::from_millis(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    if !listening {
        return Err(format!("the API did not listen\n{}", daemon.log()));
    }
    Ok((daemon, port))
}

/// A ban token made by the real `netban token add`.
fn token(daemon: &Daemon, name: &str) -> Result<String, String> {
    let out = daemon.client(&["token", "add", name, "--role", "ban", "--sources", "sshd"]);
    if !out.status.success() {
        return Err(format!(
            "netban token add: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn nft_target(router: &Host) -> String {
    format!(
        "[[targets]]\nname = \"edge\"\ntype = \"nftables\"\nnetns = \"{}\"\n",
        router.name()
    )
}

/// The burst of 2.: a daemon in `dir` with the nftables target on `router`, one ban token per
/// client, [`BURST`] bans from [`CLIENTS`] clients with `in_flight` requests each; rows for
/// when all were acknowledged (with what the daemon's metrics say of its commits) and all in
/// the set. Answers both times.
fn burst(
    o: &Context,
    dir: &Path,
    pki: &Pki,
    router: &Host,
    in_flight: usize,
    table: &mut Table,
) -> Result<(Duration, Duration), String> {
    let (daemon, port) = api_daemon(o, dir, pki, &nft_target(router))?;
    let tokens: Vec<String> = (0..CLIENTS)
        .map(|i| token(&daemon, &format!("client{i}")))
        .collect::<Result<_, _>>()?;
    let all = addresses(BURST, 6_000);
    let (start, acked) = ban_from_clients(port, &pki.ca, tokens, &all, in_flight)?;
    let done = wait_until(Duration::from_secs(60), Duration::from_millis(2), || {
        held(&daemon) == Some(BURST as u64)
    });
    let enforced = start.elapsed();
    let in_set = nft::count(router, "ban4");
    if !done || in_set != BURST {
        return Err(format!(
            "burst incomplete: held {:?}, in set {in_set}",
            held(&daemon)
        ));
    }
    // What the daemon's own metrics say about the burst's commits.
    let (_, text) = Https::new(port, &pki.ca)?.get("/metrics")?;
    drop(daemon);
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let commits = sample("netban_ledger_commit_duration_seconds_count");
    table.row(
        Row::netban(format!("all {BURST} acknowledged"), ms(acked)).note(format!(
            "/metrics: {commits} commits, {:.1} requests and {:.2} ms each (mean)",
            sample("netban_ledger_commit_group_size_sum") / commits,
            sample("netban_ledger_commit_duration_seconds_sum") / commits * 1e3
        )),
    );
    table.row(Row::netban(
        format!("… and all {BURST} in the nft set (verified by nft)"),
        ms(enforced),
    ));
    Ok((acked, enforced))
}

/// One ban per line over one kept-open socket connection, each timed.
fn socket_bans(socket: &Path, addresses: &[String]) -> Result<Vec<Duration>, String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    timed(addresses, |address| {
        let request = json!({
            "op": "ban", "prefixes": [address], "source": "sshd", "duration": {"seconds": 600},
            "reason": null, "failures": null, "origin_host": null,
        });
        let mut bytes = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        writer.write_all(&bytes).map_err(|e| e.to_string())?;
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_str(&line).unwrap_or_default();
        if answer["status"] != "ok" || !answer["body"]["results"][0]["error"].is_null() {
            return Err(format!("socket ban {address}: {line}"));
        }
        Ok(())
    })
}

fn benchmarks(o: &Context, work: &Path, table: &mut Table) -> Result<(), String> {
    let pki = pki(work)?;
    let lab = Lab::new("nab").map_err(|e| e.to_string())?;
    let router = lab.host("router").map_err(|e| e.to_string())?;
    let mut crowdsec = match Lapi::available() {
        Ok(()) => Some(Lapi::start(
            &lab,
            &work.join("crowdsec"),
            &pki,
            &o.reference("crowdsec_lapi.sh"),
        )?),
        Err(why) => {
            table.text(&format!("reference unavailable: {why}"));
            None
        }
    };
    let unavailable = |table: &mut Table, what: &str| {
        table.row(Row::netban(what, "").note("reference unavailable: crowdsec not installed"));
    };

    // 1. One ban over keep-alive HTTPS, beside the socket client and CrowdSec.
    table.section(&format!(
        "api 1. One ban over keep-alive HTTPS (test CA; acknowledged = durable), nftables in {}",
        router.name()
    ));
    let n = if o.quick { 100 } else { 300 };
    let (daemon, port) = api_daemon(o, &work.join("one"), &pki, &nft_target(&router))?;
    let api_token = token(&daemon, "bench")?;
    let https = Https::new(port, &pki.ca)?;
    // The first request pays for the TLS handshake: not counted.
    https.netban_ban(&api_token, "198.19.250.1")?;
    let api_times = timed(&addresses(n, 0), |a| https.netban_ban(&api_token, a))?;
    let socket_times = socket_bans(&daemon.socket, &addresses(n, 2_000))?;
    let cli_times = timed(&addresses(n / 3, 4_000), |a| {
        let out = daemon.client(&["ban", a, "--source", "sshd", "--bantime", "600"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })?;
    drop(daemon);
    let api = median(api_times.clone());
    table.row(
        Row::netban("POST /v1/bans over keep-alive HTTPS, median", ms(api))
            .note(format!("p95 {}; n={n}", ms(p95(api_times)))),
    );
    table.row(
        Row::netban(
            "socket client, one kept-open connection, median",
            ms(median(socket_times.clone())),
        )
        .note(format!("p95 {}; same daemon", ms(p95(socket_times)))),
    );
    let cli = median(cli_times);
    table.row(Row::netban("`netban ban` (a process per ban), median", ms(cli)).note("same daemon"));
    match &mut crowdsec {
        Some(lapi) => {
            let alerts = lapi.post_alerts(&addresses(n, 30_000))?;
            let alert = median(alerts.clone());
            table.row(
                Row::versus(
                    "API vs CrowdSec LAPI POST /v1/alerts (keep-alive HTTPS, JWT)",
                    api,
                    alert,
                )
                .note(format!("LAPI p95 {}", ms(p95(alerts)))),
            );
            let cscli = median(lapi.cscli_adds(&addresses(n / 3, 32_000))?);
            table.row(Row::versus(
                "`netban ban` vs `cscli decisions add` (a process per ban)",
                cli,
                cscli,
            ));
            table.row(Row::versus("API vs `cscli decisions add`", api, cscli));
        }
        None => unavailable(
            table,
            "vs CrowdSec LAPI POST /v1/alerts, cscli decisions add",
        ),
    }
    table.row(
        Row::netban("goal: API ban acknowledged ≤ 2 ms median", "")
            .note(verdict(api <= Duration::from_millis(2))),
    );

    // 2. 10,000 bans from 8 HTTPS clients until all are in the nft set.
    table.section(&format!(
        "api 2. {BURST} bans from {CLIENTS} HTTPS clients (one ban per request) until all are in the nft set"
    ));
    let (acked, enforced) = burst(o, &work.join("burst"), &pki, &router, 1, table)?;
    match &mut crowdsec {
        Some(lapi) => {
            let burst = lapi.burst(&addresses(BURST, 40_000))?;
            table.row(
                Row::versus(
                    format!(
                        "acknowledged vs LAPI POST /v1/alerts × {BURST} from {CLIENTS} clients"
                    ),
                    acked,
                    burst.acked,
                )
                .note(format!(
                    "LAPI refused {} (500: database is locked)",
                    burst.refused
                )),
            );
            match burst.enforced {
                Some(Ok(t)) => table.row(
                    Row::versus(
                        "in the set vs crowdsec-firewall-bouncer's nft set",
                        enforced,
                        t,
                    )
                    .note("bouncer polls every 1 s"),
                ),
                Some(Err(why)) => {
                    table.row(Row::netban("vs crowdsec-firewall-bouncer's nft set", "").note(why))
                }
                None => table.row(
                    Row::netban("vs crowdsec-firewall-bouncer", "")
                        .note("reference unavailable: crowdsec-firewall-bouncer not installed"),
                ),
            }
        }
        None => unavailable(table, "vs CrowdSec LAPI and its firewall bouncer"),
    }
    table.row(
        Row::netban(
            format!(
                "goal: {BURST} bans from {CLIENTS} clients enforced ≤ 1.5 s (one in flight each)"
            ),
            "",
        )
        .note(verdict(enforced <= Duration::from_millis(1500))),
    );
    drop(crowdsec);

    // 2b. The same, each client with several requests in flight.
    table.section(&format!(
        "api 2b. {BURST} bans from {CLIENTS} HTTPS clients, each with {IN_FLIGHT} requests in \
         flight (one ban per request) until all are in the nft set"
    ));
    let (_, enforced_in_flight) = burst(
        o,
        &work.join("burst-in-flight"),
        &pki,
        &router,
        IN_FLIGHT,
        table,
    )?;
    table.row(
        Row::netban(
            format!("goal: {BURST} bans from {CLIENTS} clients enforced ≤ 1.5 s"),
            "",
        )
        .note(format!(
            "{}; {:.1}× faster than one request in flight per client",
            verdict(enforced_in_flight <= Duration::from_millis(1500)),
            enforced.as_secs_f64() / enforced_in_flight.as_secs_f64()
        )),
    );

    // 3. /metrics at 1,000,000 active bans, and the ban latency while it is scraped.
    let million = if o.quick { 100_000 } else { 1_000_000 };
    table.section(&format!(
        "api 3. /metrics with {million} active bans (no target), and ban latency while scraped"
    ));
    let dir = work.join("million");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    crate::core::fill_ledger(&dir.join("ledger.db"), million)?;
    let (daemon, port) = api_daemon(o, &dir, &pki, "")?;
    let api_token = token(&daemon, "bench")?;
    let https = Https::new(port, &pki.ca)?;
    let (status, text) = https.get("/metrics")?;
    let expected = format!("netban_active_bans{{family=\"ipv6\",source=\"sshd\"}} {million}");
    if status != 200 || !text.contains(&expected) {
        return Err(format!(
            "/metrics does not show {million} bans: {status}\n{text}"
        ));
    }
    let scrapes = (0..30)
        .map(|_| {
            let start = Instant::now();
            https.get("/metrics").map(|_| start.elapsed())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scrape = median(scrapes.clone());
    table.row(
        Row::netban("GET /metrics (HTTPS, kept-alive), median", ms(scrape)).note(format!(
            "max {}; {} bytes",
            ms(*scrapes.iter().max().expect("30 scrapes")),
            text.len()
        )),
    );
    https.netban_ban(&api_token, "198.19.250.2")?;
    let quiet = timed(&addresses(n, 50_000), |a| https.netban_ban(&api_token, a))?;
    let (tight, tight_scrapes) = bans_while_scraped(
        &https,
        &api_token,
        port,
        &pki.ca,
        &addresses(n, 52_000),
        None,
    )?;
    let (paced, paced_scrapes) = bans_while_scraped(
        &https,
        &api_token,
        port,
        &pki.ca,
        &addresses(n, 54_000),
        Some(SCRAPE_PAUSE),
    )?;
    drop(daemon);
    let worst = |t: &[Duration]| ms(*t.iter().max().expect("bans"));
    let quiet_p95 = p95(quiet.clone());
    table.row(
        Row::netban(
            "API ban, nobody scraping: median",
            ms(median(quiet.clone())),
        )
        .note(format!("p95 {}, max {}", ms(quiet_p95), worst(&quiet))),
    );
    let paced_p95 = p95(paced.clone());
    for (what, times, scrapes) in [
        (
            format!(
                "… /metrics scraped every {} ms: median",
                SCRAPE_PAUSE.as_millis()
            ),
            &paced,
            paced_scrapes,
        ),
        (
            "… /metrics scraped back to back: median".to_string(),
            &tight,
            tight_scrapes,
        ),
    ] {
        table.row(Row::netban(what, ms(median(times.clone()))).note(format!(
            "p95 {}, max {}; {scrapes} scrapes meanwhile",
            ms(p95(times.clone())),
            worst(times),
        )));
    }
    table.row(
        Row::netban(
            format!("goal: scrape at {million} bans ≤ 50 ms; no ban latency spike"),
            "",
        )
        .note(format!(
            "{} / {} (p95 while scraped every {} ms within 1 ms of p95 without){}",
            verdict(scrape <= Duration::from_millis(50)),
            verdict(paced_p95 <= quiet_p95 + Duration::from_millis(1)),
            SCRAPE_PAUSE.as_millis(),
            if o.quick { " (quick run)" } else { "" }
        )),
    );
    table.row(Row::netban("reference", "").note(
        "none: CrowdSec's LAPI has no metrics of its decisions to scrape at this size \
         (1,000,000 decisions take ~2 min to import there)",
    ));
    drop(router);
    drop(lab);
    Ok(())
}

/// The pause between scrapes of the paced loop: 1,500 times Prometheus's default rate.
const SCRAPE_PAUSE: Duration = Duration::from_millis(10);

/// API bans (timed) while another client scrapes `/metrics` in a loop, pausing `pause`
/// between scrapes (`None`: back to back, which on 2 cores mostly measures the CPU the
/// scraper takes); the times and the scrapes made meanwhile.
fn bans_while_scraped(
    https: &Https,
    token: &str,
    port: u16,
    ca: &str,
    addresses: &[String],
    pause: Option<Duration>,
) -> Result<(Vec<Duration>, usize), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let scraped = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (stop, scraped, ca) = (stop.clone(), scraped.clone(), ca.to_string());
        std::thread::spawn(move || -> Result<(), String> {
            let https = Https::new(port, &ca)?;
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = https.get("/metrics")?;
                if status != 200 {
                    return Err(format!("/metrics answered {status}"));
                }
                scraped.fetch_add(1, Ordering::Relaxed);
                if let Some(pause) = pause {
                    std::thread::sleep(pause);
                }
            }
            Ok(())
        })
    };
    // Bans start once the scraper is scraping.
    wait_until(Duration::from_secs(10), Duration::from_millis(1), || {
        scraped.load(Ordering::Relaxed) > 0 || scraper.is_finished()
    });
    let times = timed(addresses, |a| https.netban_ban(token, a));
    stop.store(true, Ordering::Relaxed);
    scraper
        .join()
        .map_err(|_| "the scraper panicked".to_string())??;
    Ok((times?, scraped.load(Ordering::Relaxed)))
}

/// A throwaway CrowdSec LAPI inside a lab namespace, with TLS from the benchmark's CA.
/// Dropping it stops the LAPI and the bouncer.
struct Lapi {
    host: Host,
    /// The LAPI, then the bouncer once started.
    processes: Vec<Process>,
    dir: PathBuf,
    config: PathBuf,
    ca: String,
    ca_file: PathBuf,
    port: u16,
    password: String,
    bouncer_key: String,
    /// The decisions posted so far (what the bouncer's set should hold).
    decisions: usize,
}

/// The reference's side of the burst.
struct LapiBurst {
    acked: Duration,
    /// Alerts the LAPI refused (500 "database is locked" under concurrent writers): each
    /// client goes on with its next one, as a detector that does not retry would.
    refused: usize,
    /// Until the bouncer's set held them all (`None`: no bouncer installed).
    enforced: Option<Result<Duration, String>>,
}

impl Lapi {
    /// Whether crowdsec (the LAPI) and cscli are installed.
    fn available() -> Result<(), String> {
        let found = |program: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {program}"))
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if found("crowdsec") && found("cscli") && Path::new("/etc/crowdsec/profiles.yaml").exists()
        {
            Ok(())
        } else {
            Err("crowdsec not installed".into())
        }
    }

    fn start(lab: &Lab, dir: &Path, pki: &Pki, script: &Path) -> Result<Lapi, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let host = lab.host("crowdsec").map_err(|e| e.to_string())?;
        let port = free_port();
        let bouncer_key = format!("nabbench{}", std::process::id());
        let out = Command::new("bash")
            .arg(script)
            .arg(dir)
            .arg(format!("127.0.0.1:{port}"))
            .arg(&pki.cert_file)
            .arg(&pki.key_file)
            .arg(&bouncer_key)
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let credentials = std::fs::read_to_string(dir.join("etc/local_api_credentials.yaml"))
            .map_err(|e| e.to_string())?;
        let password = credentials
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .ok_or("no password in the LAPI's credentials")?
            .trim()
            .to_string();
        let config = dir.join("etc/config.yaml");
        let process = host
            .spawn(
                "crowdsec",
                [
                    OsStr::new("-c"),
                    config.as_os_str(),
                    OsStr::new("-no-cs"),
                    OsStr::new("-no-capi"),
                ],
            )
            .map_err(|e| e.to_string())?;
        let lapi = Lapi {
            host,
            processes: vec![process],
            dir: dir.to_path_buf(),
            config,
            ca: pki.ca.clone(),
            ca_file: pki.ca_file.clone(),
            port,
            password,
            bouncer_key,
            decisions: 0,
        };
        let up = lapi.inside(|| {
            let https = Https::new(port, &lapi.ca)?;
            let up = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
                https.get("/health").is_ok_and(|(s, _)| s == 200)
            });
            Ok(up)
        })?;
        if !up {
            return Err(format!(
                "the CrowdSec LAPI did not answer; see {}/log",
                dir.display()
            ));
        }
        Ok(lapi)
    }

    /// Runs `work` on a thread inside the LAPI's namespace (its sockets stay there).
    fn inside<T: Send>(
        &self,
        work: impl FnOnce() -> Result<T, String> + Send,
    ) -> Result<T, String> {
        self.host.enter(work).map_err(|e| e.to_string())?
    }

    /// A client logged in as the LAPI's machine: the client and its JWT.
    fn login(port: u16, ca: &str, password: &str) -> Result<(Https, String), String> {
        let https = Https::new(port, ca)?;
        let body = json!({"machine_id": "nab-bench", "password": password});
        let (status, text) = https.send(
            reqwest::Method::POST,
            "/v1/watchers/login",
            None,
            Some(&body),
        )?;
        let answer: Value = serde_json::from_str(&text).unwrap_or_default();
        match answer["token"].as_str() {
            Some(jwt) if status == 200 => Ok((https, jwt.to_string())),
            _ => Err(format!("LAPI login: {status} {text}")),
        }
    }

    /// One alert with one ban decision, as `cscli decisions add` sends it.
    fn alert(address: &str, now: &str) -> Value {
        json!([{
            "scenario": "netban-bench", "scenario_hash": "", "scenario_version": "",
            "message": "netban-bench", "events_count": 1, "start_at": now, "stop_at": now,
            "capacity": 0, "leakspeed": "0", "simulated": false, "events": [],
            "source": {"scope": "Ip", "value": address},
            "decisions": [{"duration": "10m", "type": "ban", "scope": "Ip", "value": address,
                "origin": "cscli", "scenario": "netban-bench"}],
        }])
    }

    fn post_alert(https: &Https, jwt: &str, address: &str, now: &str) -> Result<(), String> {
        let body = Lapi::alert(address, now);
        let (status, text) =
            https.send(reqwest::Method::POST, "/v1/alerts", Some(jwt), Some(&body))?;
        if status != 201 {
            return Err(format!("LAPI POST /v1/alerts {address}: {status} {text}"));
        }
        Ok(())
    }

    /// `POST /v1/alerts` per address over one kept-alive connection, each timed.
    fn post_alerts(&mut self, addresses: &[String]) -> Result<Vec<Duration>, String> {
        let (port, ca, password) = (self.port, self.ca.clone(), self.password.clone());
        let now = utc_now();
        let times = self.inside(move || {
            let (https, jwt) = Lapi::login(port, &ca, &password)?;
            timed(addresses, |a| Lapi::post_alert(&https, &jwt, a, &now))
        })?;
        self.decisions += addresses.len();
        Ok(times)
    }

    /// `cscli decisions add -i ADDRESS` per address (a process each, inside the namespace),
    /// each timed.
    fn cscli_adds(&mut self, addresses: &[String]) -> Result<Vec<Duration>, String> {
        let mut times = Vec::with_capacity(addresses.len());
        for address in addresses {
            let mut cscli = Command::new("cscli");
            cscli
                .arg("-c")
                .arg(&self.config)
                .args(["decisions", "add", "-i", address, "-d", "10m"])
                .env("SSL_CERT_FILE", &self.ca_file);
            let start = Instant::now();
            let ok = in_netns(&self.host, &mut cscli)?;
            times.push(start.elapsed());
            if !ok {
                return Err(format!("cscli decisions add {address} failed"));
            }
        }
        self.decisions += addresses.len();
        Ok(times)
    }

    /// The burst through the LAPI, and (with the bouncer installed) until its set holds it.
    fn burst(&mut self, addresses: &[String]) -> Result<LapiBurst, String> {
        let bouncer = self.start_bouncer()?;
        let now = utc_now();
        let ready = std::sync::Barrier::new(CLIENTS + 1);
        let this = &*self;
        let refused = AtomicUsize::new(0);
        let start = std::thread::scope(|scope| -> Result<Instant, String> {
            let clients: Vec<_> = addresses
                .chunks(addresses.len() / CLIENTS)
                .map(|chunk| {
                    let (ready, now, refused) = (&ready, &now, &refused);
                    scope.spawn(move || {
                        this.inside(|| {
                            let client = Lapi::login(this.port, &this.ca, &this.password);
                            ready.wait();
                            let (https, jwt) = client?;
                            for address in chunk {
                                if let Err(e) = Lapi::post_alert(&https, &jwt, address, now) {
                                    if !e.contains(": 500 ") {
                                        return Err(e);
                                    }
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Ok(())
                        })
                    })
                })
                .collect();
            ready.wait();
            let start = Instant::now();
            for client in clients {
                client
                    .join()
                    .map_err(|_| "a LAPI client panicked".to_string())??;
            }
            Ok(start)
        })?;
        let acked = start.elapsed();
        let refused = refused.into_inner();
        self.decisions += addresses.len() - refused;
        let enforced = bouncer.map(|()| {
            let want = self.decisions;
            let done = wait_until(Duration::from_secs(180), Duration::from_millis(20), || {
                crowdsec_set_count(&self.host) >= want
            });
            match done {
                true => Ok(start.elapsed()),
                false => Err(format!(
                    "not all in the bouncer's set within 180 s ({} of {want})",
                    crowdsec_set_count(&self.host)
                )),
            }
        });
        Ok(LapiBurst {
            acked,
            refused,
            enforced,
        })
    }

    /// Starts crowdsec-firewall-bouncer (nftables) in the LAPI's namespace and waits until its
    /// set holds the decisions made so far; `None` if it is not installed.
    fn start_bouncer(&mut self) -> Result<Option<()>, String> {
        let installed = Command::new("sh")
            .arg("-c")
            .arg("command -v crowdsec-firewall-bouncer")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            return Ok(None);
        }
        let config = self.dir.join("bouncer.yaml");
        let yaml = format!(
            "mode: nftables\npid_dir: {dir}/\nupdate_frequency: 1s\ndaemonize: true\n\
             log_mode: file\nlog_dir: {dir}/log/\nlog_level: info\n\
             api_url: https://127.0.0.1:{port}/\napi_key: {key}\ninsecure_skip_verify: false\n\
             disable_ipv6: false\ndeny_action: DROP\ndeny_log: false\n\
             supported_decisions_types:\n  - ban\n\
             blacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
             nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n\
             \x20 ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n\
             prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n",
            dir = self.dir.display(),
            port = self.port,
            key = self.bouncer_key,
        );
        std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
        let mut command = self.host.command("crowdsec-firewall-bouncer");
        command
            .arg("-c")
            .arg(&config)
            .env("SSL_CERT_FILE", &self.ca_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let bouncer = self
            .host
            .spawn_command(command)
            .map_err(|e| e.to_string())?;
        self.processes.push(bouncer);
        let want = self.decisions;
        let filled = wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
            crowdsec_set_count(&self.host) >= want
        });
        if !filled {
            return Err(format!(
                "crowdsec-firewall-bouncer did not fill its set ({} of {want}); see {}/log",
                crowdsec_set_count(&self.host),
                self.dir.display()
            ));
        }
        Ok(Some(()))
    }
}

/// Elements in crowdsec-firewall-bouncer's IPv4 set on `host` (0 if it does not exist).
fn crowdsec_set_count(host: &Host) -> usize {
    let Ok(out) = host.run(
        "nft",
        ["-j", "list", "set", "ip", "crowdsec", "crowdsec-blacklists"],
    ) else {
        return 0;
    };
    let value: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    value["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["elem"].as_array())
        .map(Vec::len)
        .sum()
}

/// Now in UTC, RFC 3339 (what the LAPI wants in an alert).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
