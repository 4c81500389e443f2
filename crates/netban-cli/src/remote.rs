//! `netban --server https://HOST:PORT --token-file F …`: the client's commands over a
//! daemon's HTTP API (see docs/api/) instead of the local socket, with the same output and
//! exit statuses. Blocking: reqwest over rustls (the HTTP stack already in the workspace),
//! each call run to completion on a current-thread runtime made here; nothing of it (no
//! runtime, no TLS set-up, no certificate read) runs unless `--server` is given, so the
//! socket path costs what it did.
//!
//! Unlike the socket path there is no fallback: a remote client has no ledger of its own, so
//! a server that does not answer is an error (exit status 3) and nothing is recorded.

use crate::args::Command;
use crate::output;
use netban_config::secret::{self, SecretError};
use netban_core::BanDuration;
use netban_proto::{
    BanArgs, HistoryEvent, ItemResult, ListedBan, StatusReport, TargetPlan,
    MAX_PREFIXES_PER_REQUEST,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the client waits to connect (and complete TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("--server {0:?}: {1}")]
    BadServer(String, &'static str),
    #[error(
        "--server needs --token-file FILE (or NETBAN_TOKEN_FILE): a file holding the API token"
    )]
    NoTokenFile,
    #[error(transparent)]
    TokenFile(#[from] SecretError),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("--ca-file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    /// No answer: not listening, TLS failed (an untrusted certificate, say), timed out.
    #[error("cannot reach {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error(
        "{server} refused the token ({message}); check --token-file, or make a new token with \
         `netban token add` on the daemon's host"
    )]
    Unauthenticated { server: String, message: String },
    /// The daemon answered with a refusal: its message, as the socket path prints it.
    #[error("{0}")]
    Refused(String),
    #[error("unreadable answer from {server}: {message}")]
    BadAnswer { server: String, message: String },
    #[error(
        "{0} is not available with --server (the HTTP API has no such request); run it on \
         the daemon's host"
    )]
    NotRemote(&'static str),
}

/// A connection to one daemon's API, with its token.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    authorization: String,
}

impl Remote {
    /// Checks the server's URL, reads the token (from a file only its owner may read) and
    /// the CA file, if any. Nothing is sent yet.
    pub fn open(
        server: &str,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> Result<Remote, RemoteError> {
        let base = checked_base(server)?;
        let token = secret::read_file("API token", token_file.ok_or(RemoteError::NoTokenFile)?)?;
        let mut http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(crate::client::ANSWER_TIMEOUT)
            .user_agent(concat!("netban/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            http = http.tls_built_in_root_certs(false);
            for certificate in ca_certificates(path)? {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http
            .build()
            .map_err(|e| RemoteError::Client(error_chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        Ok(Remote {
            runtime,
            http,
            base,
            authorization: format!("Bearer {}", token.expose()),
        })
    }

    /// Sends one request; the answer's JSON when the daemon accepted it (or, for a ban, when
    /// it refused every prefix: 422 with each one's reason).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, RemoteError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: reqwest::Error| RemoteError::Unreachable {
            server: self.base.clone(),
            message: error_chain(&e),
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a known method");
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization);
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, text) = self
            .runtime
            .block_on(async {
                let response = request.send().await?;
                let status = response.status().as_u16();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            })
            .map_err(unreachable)?;
        let value: Option<Value> = serde_json::from_str(&text).ok();
        let error = || {
            value
                .as_ref()
                .and_then(|v| v["error"].as_str())
                .map_or_else(|| format!("HTTP {status}: {}", text.trim()), str::to_string)
        };
        match status {
            200 => value.ok_or_else(|| RemoteError::BadAnswer {
                server: self.base.clone(),
                message: format!("not JSON: {}", text.trim()),
            }),
            422 if value.as_ref().is_some_and(|v| v.get("results").is_some()) => {
                Ok(value.expect("checked"))
            }
            401 => Err(RemoteError::Unauthenticated {
                server: self.base.clone(),
                message: error(),
            }),
            _ => Err(RemoteError::Refused(error())),
        }
    }

    fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        field: Option<&str>,
    ) -> Result<T, RemoteError> {
        let mut value = self.call(method, path, body)?;
        if let Some(field) = field {
            value = value[field].take();
        }
        serde_json::from_value(value).map_err(|e| RemoteError::BadAnswer {
            server: self.base.clone(),
            message: e.to_string(),
        })
    }

    /// `POST /v1/bans`: the per-prefix results.
    pub fn ban(&self, args: &netban_proto::BanArgs) -> Result<Vec<ItemResult>, RemoteError> {
        let mut body = json!({
            "prefixes": args.prefixes,
            "source": args.source,
            "duration": args.duration,
            "restored": args.restored,
        });
        if let Some(reason) = &args.reason {
            body["reason"] = json!(reason);
        }
        if let Some(failures) = args.failures {
            body["failures"] = json!(failures);
        }
        self.call_as("POST", "/v1/bans", Some(&body), Some("results"))
    }

    /// `DELETE /v1/bans/{prefix}[?source=…]`, one prefix at a time.
    pub fn unban(
        &self,
        prefix: &netban_core::Prefix,
        source: Option<&netban_core::Source>,
    ) -> Result<Vec<ItemResult>, RemoteError> {
        let query = source.map_or(String::new(), |s| {
            format!("?source={}", netban_proto::percent_encode(s.as_str()))
        });
        self.call_as(
            "DELETE",
            &format!(
                "/v1/bans/{}{query}",
                netban_proto::percent_encode(&prefix.to_string())
            ),
            None,
            Some("results"),
        )
    }

    pub fn list(&self, filter: Option<netban_core::Prefix>) -> Result<Vec<ListedBan>, RemoteError> {
        let query = filter.map_or(String::new(), |p| {
            format!("?prefix={}", netban_proto::percent_encode(&p.to_string()))
        });
        self.call_as("GET", &format!("/v1/bans{query}"), None, Some("bans"))
    }

    pub fn history(
        &self,
        prefix: netban_core::Prefix,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, RemoteError> {
        let path = format!(
            "/v1/bans/{}?history={limit}",
            netban_proto::percent_encode(&prefix.to_string())
        );
        self.call_as("GET", &path, None, Some("history"))
    }

    pub fn status(&self) -> Result<StatusReport, RemoteError> {
        self.call_as("GET", "/v1/status", None, None)
    }

    pub fn plan(&self, target: Option<&str>) -> Result<Vec<TargetPlan>, RemoteError> {
        let query = target.map_or(String::new(), |t| {
            format!("?target={}", netban_proto::percent_encode(t))
        });
        self.call_as("GET", &format!("/v1/plan{query}"), None, Some("targets"))
    }

    /// Syncs one target, or each in turn (the API syncs one per request).
    pub fn sync(&self, target: Option<&str>) -> Result<Vec<String>, RemoteError> {
        let names = match target {
            Some(name) => vec![name.to_string()],
            None => self.status()?.targets.into_iter().map(|t| t.name).collect(),
        };
        let mut synced = Vec::new();
        for name in names {
            let path = format!("/v1/targets/{}/sync", netban_proto::percent_encode(&name));
            let done: Vec<String> = self.call_as("POST", &path, None, Some("synced"))?;
            synced.extend(done);
        }
        Ok(synced)
    }
}

/// The server's base URL without a trailing slash: https, or http to a loopback address
/// only (the token must not cross a network in clear).
fn checked_base(server: &str) -> Result<String, RemoteError> {
    let bad = |why| RemoteError::BadServer(server.to_string(), why);
    let base = server.trim_end_matches('/');
    let (secure, rest) = if let Some(rest) = base.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = base.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad("use https://HOST:PORT"));
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(bad(
            "give only the scheme, host and port (https://HOST:PORT)",
        ));
    }
    if !secure {
        let host = match rest.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => rest.rsplit_once(':').map_or(rest, |(host, _)| host),
        };
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(bad(
                "plain http would send the token in clear: use https (http only to a loopback address)",
            ));
        }
    }
    Ok(base.to_string())
}

/// The certificates in a PEM file.
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, RemoteError> {
    let error = |message: String| RemoteError::CaFile {
        path: path.into(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(error("no certificate in it (PEM expected)".into()));
    }
    Ok(certificates)
}

/// An error with its causes ("error sending request: … : invalid peer certificate: …").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs one command against the server: what `main` does over the socket, printed the same.
pub fn run(remote: &Remote, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ban {
            addresses,
            source,
            bantime,
            permanent,
            reason,
            failures,
            restored,
            origin_host,
            stdin,
            json,
        } => {
            if origin_host.is_some() {
                return Err(
                    RemoteError::NotRemote("--origin-host (history names the API token)").into(),
                );
            }
            let prefixes = crate::parse_addresses(addresses, stdin)?;
            let mut results = Vec::new();
            for chunk in prefixes.chunks(MAX_PREFIXES_PER_REQUEST) {
                results.extend(remote.ban(&BanArgs {
                    prefixes: chunk.to_vec(),
                    source: source.clone(),
                    duration: if permanent {
                        BanDuration::Permanent
                    } else {
                        BanDuration::from_fail2ban(bantime)
                    },
                    reason: reason.clone(),
                    failures,
                    origin_host: None,
                    restored: restored != 0,
                })?);
            }
            output::item_results("banned", &results, json)
        }
        Command::Unban {
            addresses,
            source,
            all,
            origin_host,
            stdin,
            json,
        } => {
            if all {
                return Err(RemoteError::NotRemote("unban --all").into());
            }
            if origin_host.is_some() {
                return Err(
                    RemoteError::NotRemote("--origin-host (history names the API token)").into(),
                );
            }
            let mut results = Vec::new();
            for prefix in crate::parse_addresses(addresses, stdin)? {
                results.extend(remote.unban(&prefix, source.as_ref())?);
            }
            output::item_results("unbanned", &results, json)
        }
        Command::List { address, json } => {
            let filter = address
                .map(|a| crate::parse_addresses(vec![a], false))
                .transpose()?
                .map(|v| v[0]);
            output::list(&remote.list(filter)?, json)
        }
        Command::History {
            address,
            limit,
            json,
        } => {
            let prefix = crate::parse_addresses(vec![address], false)?[0];
            output::history(&remote.history(prefix, limit)?, json)
        }
        Command::Status { json } => crate::show_status(&remote.status()?, json),
        Command::Plan { target, json } => crate::show_plan(&remote.plan(target.as_deref())?, json),
        Command::Sync { target } => {
            println!("synced: {}", remote.sync(target.as_deref())?.join(", "));
            Ok(())
        }
        Command::Reload => Err(RemoteError::NotRemote("reload").into()),
        Command::Serve { .. } | Command::CheckConfig | Command::Token { .. } => {
            unreachable!("local commands are run by main")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_https_or_loopback_http() {
        for good in [
            "https://netban.example:8440",
            "https://netban.example:8440/",
            "http://127.0.0.1:8440",
            "http://[::1]:8440",
            "http://localhost:8440",
        ] {
            assert!(checked_base(good).is_ok(), "{good}");
        }
        for bad in [
            "netban.example:8440",
            "http://10.0.0.1:8440",
            "http://netban.example:8440",
            "https://",
            "https://h:1/v1",
            "https://user@h:1",
            "ftp://h",
        ] {
            assert!(checked_base(bad).is_err(), "{bad}");
        }
        assert_eq!(
            netban_proto::percent_encode("2001:db8::/64"),
            "2001%3Adb8%3A%3A%2F64"
        );
    }
}
