//! The feed target: a 100,000-line list served by the daemon's HTTP listener, pulled the way a
//! firewall pulls it (one keep-alive connection, `If-None-Match` with the ETag it holds), beside
//! the same bytes served as a static file by Python's `http.server` (HTTP/1.1, keep-alive,
//! `If-Modified-Since`, its only validator) — and by nginx when it is installed.
//!
//! Goal (issue 15): p50 of an unchanged conditional pull ≤ 1 ms. The client is the same plain
//! HTTP/1.1 code for every server; loopback, no TLS (the cost of TLS is the listener's, not the
//! feed's).

use crate::table::{median, ms, p95, verdict, Row, Table};
use crate::Context;
use netban_testlab::netban::Daemon;
use netban_testlab::{free_port, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LINES: usize = 100_000;
const CONDITIONAL: usize = 500;
const FULL: usize = 50;
const TOKEN: &str = "bench-feed-token";

/// One HTTP/1.1 answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 client (reconnects when the server closes).
struct Client {
    port: u16,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(port: u16) -> Client {
        Client {
            port,
            connection: None,
        }
    }

    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: netban-bench\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        if self.connection.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.connection = Some(BufReader::with_capacity(1 << 20, stream));
        }
        let reader = self.connection.as_mut().expect("connected");
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line: {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            let text = line.trim_end();
            if text.is_empty() {
                break;
            }
            if let Some((n, v)) = text.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = answer
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        answer.body.resize(length, 0);
        reader
            .read_exact(&mut answer.body)
            .map_err(|e| e.to_string())?;
        if answer
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            self.connection = None;
        }
        Ok(answer)
    }

    /// Times `count` requests, checking each answer's status.
    fn time(
        &mut self,
        count: usize,
        path: &str,
        headers: &[(&str, &str)],
        status: u16,
    ) -> Result<Vec<Duration>, String> {
        (0..count)
            .map(|_| {
                let started = Instant::now();
                let answer = self.get(path, headers)?;
                let took = started.elapsed();
                if answer.status != status {
                    return Err(format!("{path}: {} instead of {status}", answer.status));
                }
                Ok(took)
            })
            .collect()
    }
}

/// A static server of `dir` on `port`, killed when dropped.
struct Static(Child);

impl Drop for Static {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_static(dir: &Path, port: u16) -> Result<Static, String> {
    let script = format!(
        "import functools, http.server as h\n\
         h.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'\n\
         h.SimpleHTTPRequestHandler.log_message = lambda *a: None\n\
         handler = functools.partial(h.SimpleHTTPRequestHandler, directory={:?})\n\
         h.ThreadingHTTPServer(('127.0.0.1', {port}), handler).serve_forever()\n",
        dir.display().to_string()
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    Ok(Static(child))
}

fn nginx_static(dir: &Path, port: u16) -> Option<Static> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\npid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {0}; \
             etag on; keepalive_requests 100000; }} }}\n",
            dir.display()
        ),
    )
    .ok()?;
    let child = Command::new(nginx)
        .args(["-c"])
        .arg(&conf)
        .args(["-p"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Static(child))
}

fn listening(port: u16) -> bool {
    wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// 100,000 addresses of the benchmarking range 198.18.0.0/15 (never routed anywhere).
fn addresses() -> Vec<String> {
    (0..LINES as u32)
        .map(|i| std::net::Ipv4Addr::from(0xC612_0000u32 + 1 + i).to_string())
        .collect()
}

/// p50/p95 of pulls from the reference at `port`.
fn pull_reference(port: u16, date: &str) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let mut client = Client::new(port);
    let conditional = client.time(CONDITIONAL, "/edl.txt", &[("If-Modified-Since", date)], 304)?;
    let full = client.time(FULL, "/edl.txt", &[], 200)?;
    Ok((conditional, full))
}

pub fn run(context: &Context, table: &mut Table) -> Result<(), String> {
    table.section(&format!(
        "feed: a {LINES}-line list over HTTP on loopback, one keep-alive client; \
         reference: the same file served statically"
    ));
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let token_file = work.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .map_err(|e| e.to_string())?;
    let port = free_port();
    let config = format!(
        "[policy]\nescalation = {{ enabled = false, factor = 2.0, max_secs = 604800, window_secs = 2592000 }}\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntokens = \"{}\"\n\n\
         [[targets]]\nname = \"edl\"\ntype = \"feed\"\nfamilies = [\"v4\"]\ntoken_file = \"{}\"\n",
        work.path().join("tokens.toml").display(),
        token_file.display()
    );
    let daemon = Daemon::start(&context.bins, &work.path().join("netban"), &config)
        .map_err(|e| e.to_string())?;
    if !listening(port) {
        return Err(format!("the API does not listen\n{}", daemon.log()));
    }
    let bans = addresses();
    let out = daemon.client_with_stdin(
        &["ban", "--stdin", "--source", "sshd", "--bantime", "86400"],
        Some(&bans.join("\n")),
    );
    if !out.status.success() {
        return Err(format!(
            "ban --stdin: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let mut client = Client::new(port);
    let published = wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        client.get("/feeds/edl", &auth).is_ok_and(|a| {
            a.status == 200 && a.body.iter().filter(|&&b| b == b'\n').count() == LINES
        })
    });
    if !published {
        return Err(format!(
            "the feed never held {LINES} lines\n{}",
            daemon.log()
        ));
    }
    let full = client.get("/feeds/edl", &auth)?;
    let etag = full.header("etag").ok_or("no ETag")?.to_string();
    let date = full
        .header("last-modified")
        .ok_or("no Last-Modified")?
        .to_string();
    let size = full.body.len();

    // netban: conditional pulls (ETag, as PAN-OS and FortiGate keep it), then full pulls.
    let conditional = [auth[0], ("If-None-Match", etag.as_str())];
    let netban_304 = client.time(CONDITIONAL, "/feeds/edl", &conditional, 304)?;
    let by_date = [auth[0], ("If-Modified-Since", date.as_str())];
    let netban_304_date = client.time(CONDITIONAL, "/feeds/edl", &by_date, 304)?;
    let netban_full = client.time(FULL, "/feeds/edl", &auth, 200)?;
    drop(daemon);

    // The same bytes as a static file.
    let site = work.path().join("site");
    std::fs::create_dir_all(&site).map_err(|e| e.to_string())?;
    std::fs::write(site.join("edl.txt"), &full.body).map_err(|e| e.to_string())?;
    let python_port = free_port();
    let python = python_static(&site, python_port)?;
    if !listening(python_port) {
        return Err("python3 -m http.server did not listen".into());
    }
    // The static file is older than now: `If-Modified-Since: now` is answered 304.
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    let (python_304, python_full) = pull_reference(python_port, &now)?;
    drop(python);

    let p50 = median(netban_304.clone());
    table.row(Row::netban(
        format!("list served: {LINES} lines, {:.1} MB", size as f64 / 1e6),
        "",
    ));
    table.row(
        Row::versus(
            "unchanged pull, p50 (netban If-None-Match; ref If-Modified-Since)",
            p50,
            median(python_304.clone()),
        )
        .note("reference: python3 http.server (HTTP/1.1)"),
    );
    table.row(Row::versus(
        "unchanged pull, p95",
        p95(netban_304),
        p95(python_304),
    ));
    table.row(Row::netban(
        "unchanged pull by If-Modified-Since, p50",
        ms(median(netban_304_date)),
    ));
    table.row(
        Row::versus(
            "full pull, p50",
            median(netban_full.clone()),
            median(python_full.clone()),
        )
        .note("reference: python3 http.server"),
    );
    table.row(Row::versus(
        "full pull, p95",
        p95(netban_full.clone()),
        p95(python_full),
    ));
    let nginx_port = free_port();
    if let Some(nginx) = nginx_static(&site, nginx_port) {
        if listening(nginx_port) {
            let (nginx_304, nginx_full) = pull_reference(nginx_port, &now)?;
            table.row(
                Row::versus("unchanged pull, p50", p50, median(nginx_304)).note("reference: nginx"),
            );
            table.row(
                Row::versus("full pull, p50", median(netban_full), median(nginx_full))
                    .note("reference: nginx"),
            );
        }
        drop(nginx);
    } else {
        table.row(Row::netban("nginx reference", "").note("nginx not installed: skipped"));
    }
    table.row(
        Row::netban("goal: unchanged conditional pull p50 ≤ 1 ms", ms(p50))
            .note(verdict(p50 <= Duration::from_millis(1))),
    );
    Ok(())
}
