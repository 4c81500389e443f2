//! A tiny EC2 instance metadata service (IMDSv2) for the discovery test. This is the
//! project's own test code, not a real peer: moto's server implements only a few metadata
//! paths (no `network/interfaces/macs/…`), so the test serves the three paths netban reads,
//! with IMDSv2's token rule (PUT /latest/api/token with a TTL header first; every GET must
//! carry the token, else 401), on a free loopback port.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const TOKEN: &str = "netban-imds-test-token";

pub struct Imds {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// GETs refused for a missing or wrong token.
    pub refused: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Imds {
    /// Serves `mac` as the primary interface, in `subnet`.
    pub fn start(mac: &str, subnet: &str) -> Imds {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let (mac, subnet) = (mac.to_string(), subnet.to_string());
        let (stop2, refused2) = (stop.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = serve(stream, &mac, &subnet, &refused2);
                }
            }
        });
        Imds {
            addr,
            stop,
            refused,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(stream: TcpStream, mac: &str, subnet: &str, refused: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (status, body) = match (method, path) {
        ("PUT", "/latest/api/token")
            if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
        {
            ("200 OK", TOKEN.to_string())
        }
        ("PUT", _) => ("400 Bad Request", String::new()),
        ("GET", _) if header("x-aws-ec2-metadata-token") != Some(TOKEN) => {
            refused.fetch_add(1, Ordering::SeqCst);
            ("401 Unauthorized", String::new())
        }
        ("GET", "/latest/meta-data/mac") => ("200 OK", mac.to_string()),
        ("GET", p) if p == format!("/latest/meta-data/network/interfaces/macs/{mac}/subnet-id") => {
            ("200 OK", subnet.to_string())
        }
        _ => ("404 Not Found", String::new()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         x-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
