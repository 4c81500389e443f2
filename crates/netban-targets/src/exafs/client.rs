//! The ExaFS API v3 client: authentication (API key → JWT, reused until its `exp`, renewed
//! once on 401), the calls the driver needs (the communities or actions offered, the rule
//! lists, and create / read / delete one rule of a kind), and what each answer means.
//!
//! Not here: which rules to create or delete (the driver and the planner decide). The client
//! is shared by the requests of one apply running concurrently; only the token is behind a
//! lock, and only one task renews it at a time.

use super::key::{ApiKeySource, KeyError};
use super::rule::{validation_reason, CreateAnswer, RuleRecord};
use super::token::Token;
use crate::TargetError;
use netban_core::Family;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made: the request was certainly not processed.
    #[error("cannot connect to ExaFS at {url}: {}", error_chain(.source))]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The request left but no complete answer came back (timeout, reset): ExaFS may or may
    /// not have processed it.
    #[error("no answer from ExaFS at {url}: {}", error_chain(.source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// ExaFS refused the API key, or the key may not change rules.
    #[error("{0}")]
    Credentials(String),
    /// An internal error of ExaFS (5xx), often an HTML page.
    #[error("ExaFS server error {status} on {what}: {detail}")]
    Server {
        status: u16,
        what: String,
        detail: String,
    },
    /// An answer netban does not expect (wrong URL, another API version).
    #[error("unexpected answer {status} from ExaFS on {what}: {detail}")]
    Unexpected {
        status: u16,
        what: String,
        detail: String,
    },
    /// ExaFS (or something in front of it) answered with a redirect. netban follows none: the
    /// API key or token would go along to wherever it points.
    #[error(
        "ExaFS at {url} answered {status} redirecting to {location}; netban follows no \
         redirects (the API key would be sent along): set url to the address ExaFS really \
         serves the API on (https://…)"
    )]
    Redirected {
        url: String,
        status: u16,
        location: String,
    },
    /// The answer was longer than netban reads.
    #[error("ExaFS at {url} answered more than {max} bytes; netban stops reading there")]
    TooLong { url: String, max: usize },
}

impl ClientError {
    /// The whole-operation error this maps to.
    pub fn into_target(self) -> TargetError {
        match self {
            ClientError::Connect { .. }
            | ClientError::Transport { .. }
            | ClientError::Server { .. } => TargetError::unreachable(self),
            ClientError::Key(_) | ClientError::Credentials(_) | ClientError::Redirected { .. } => {
                TargetError::config(self)
            }
            ClientError::Unexpected { .. } | ClientError::TooLong { .. } => {
                TargetError::device(self)
            }
        }
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// The server's own words: the JSON `message`, the HTML title, or the start of the body.
    pub fn detail(&self) -> String {
        detail_of(&self.body)
    }
}

/// Where the rules of one kind live in the API: `/rules/rtbh`, `/rules/ipv4` (IPv4 flowspec)
/// or `/rules/ipv6` (IPv6 flowspec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulePath {
    Rtbh,
    Ipv4,
    Ipv6,
}

impl RulePath {
    /// The flowspec rules of `family`.
    pub fn flowspec(family: Family) -> RulePath {
        match family {
            Family::V4 => RulePath::Ipv4,
            Family::V6 => RulePath::Ipv6,
        }
    }

    fn path(self) -> &'static str {
        match self {
            RulePath::Rtbh => "/rules/rtbh",
            RulePath::Ipv4 => "/rules/ipv4",
            RulePath::Ipv6 => "/rules/ipv6",
        }
    }
}

/// What creating (or re-sending) a rule came to.
#[derive(Debug)]
pub enum Created<R = RuleRecord> {
    Rule(R),
    /// 400 `validation_errors`: ExaFS will not take this rule (outside the organisation's
    /// ranges, an unknown community…). The reason is the server's.
    Invalid(String),
    /// 403 for a rule limit: may pass when other rules go.
    LimitReached(String),
}

/// What deleting a rule came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// 404: no rule with that id.
    Gone,
    /// 401: the rule is not this key's user's (and the user is not an admin).
    NotAllowed(String),
}

/// The body of a request without one.
const NO_BODY: Option<&()> = None;

/// The longest answer body read: a listing of 100,000 rules is about 50 MB of JSON; anything
/// longer is not an ExaFS answer netban can use.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// How the HTTP client reaches ExaFS.
pub struct Transport<'a> {
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Plain http is allowed (`allow_insecure_http`); otherwise only https is ever spoken.
    pub allow_insecure_http: bool,
    /// PEM file of the CA that signed ExaFS's certificate (`ca_file`); when set, the only CA
    /// trusted.
    pub ca_file: Option<&'a std::path::Path>,
}

pub struct Client {
    http: reqwest::Client,
    /// `…/api/v3`
    api: String,
    key: ApiKeySource,
    token: Mutex<Option<Token>>,
}

fn epoch_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Client {
    pub fn new(
        base_url: &str,
        key: ApiKeySource,
        transport: &Transport<'_>,
    ) -> Result<Client, TargetError> {
        let timeout = transport.timeout;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(transport.max_in_flight)
            .user_agent(concat!("netban/", env!("CARGO_PKG_VERSION")))
            // No redirects at all: reqwest would carry the x-api-key header to any host.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!transport.allow_insecure_http);
        if let Some(path) = transport.ca_file {
            let shown = path.display();
            let pem = std::fs::read(path).map_err(|e| {
                TargetError::config(format!("exafs ca_file {shown}: cannot read it: {e}"))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    TargetError::config(format!(
                        "exafs ca_file {shown} holds no PEM certificate (-----BEGIN \
                         CERTIFICATE-----)"
                    ))
                })?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| TargetError::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            api: format!("{}/api/v3", base_url.trim_end_matches('/')),
            key,
            token: Mutex::new(None),
        })
    }

    /// The token to use: the cached one unless it is about to lapse or is `stale` (the one a
    /// request was just refused with), else a new one.
    pub async fn token(&self, stale: Option<&str>) -> Result<String, ClientError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if stale != Some(t.value.as_str()) && t.usable_at(epoch_now()) {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.authenticate().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn authenticate(&self) -> Result<Token, ClientError> {
        let key = self.key.read()?;
        let url = format!("{}/auth", self.api);
        let answer = self
            .exchange(self.http.get(&url).header("x-api-key", key.as_str()), &url)
            .await?;
        let what = "GET /api/v3/auth".to_string();
        match answer.status.as_u16() {
            200 => {
                let value: serde_json::Value =
                    serde_json::from_slice(&answer.body).map_err(|_| ClientError::Unexpected {
                        status: 200,
                        what: what.clone(),
                        detail: answer.detail(),
                    })?;
                let token = value["token"].as_str().filter(|t| !t.is_empty()).ok_or(
                    ClientError::Unexpected {
                        status: 200,
                        what,
                        detail: "no token in the answer".into(),
                    },
                )?;
                Ok(Token::new(token.to_string()))
            }
            401 | 403 => Err(ClientError::Credentials(format!(
                "ExaFS refused the API key ({} {}: {}). Likely causes: the key is wrong or was \
                 deleted, it has expired, or it is bound to another machine's address than \
                 the one netban connects from. Create a key for this machine in ExaFS (API \
                 keys) and put it in the key file or variable",
                answer.status.as_u16(),
                what,
                answer.detail()
            ))),
            404 | 405 => Err(ClientError::Credentials(format!(
                "{url} answered {}: the url does not point at an ExaFS with API v3; set url \
                 to the ExaFS base URL",
                answer.status.as_u16()
            ))),
            s if s >= 500 => Err(ClientError::Server {
                status: s,
                what,
                detail: answer.detail(),
            }),
            s => Err(ClientError::Unexpected {
                status: s,
                what,
                detail: answer.detail(),
            }),
        }
    }

    /// Sends one request and reads the whole answer.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Answer, ClientError> {
        let transport = |source: reqwest::Error| {
            let url = url.to_string();
            if source.is_connect() {
                ClientError::Connect { url, source }
            } else {
                ClientError::Transport { url, source }
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_else(|| "nowhere (no Location)".into());
            return Err(ClientError::Redirected {
                url: url.to_string(),
                status: status.as_u16(),
                location: shorten(&location, 200),
            });
        }
        let too_long = || ClientError::TooLong {
            url: url.to_string(),
            max: MAX_BODY,
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(too_long());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    }

    /// A call with the token; on 401 (token lapsed) or 403 "auth token is invalid" (ExaFS
    /// restarted with another secret) it authenticates once more and repeats the call.
    async fn call<B: serde::Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.api);
        let mut stale: Option<String> = None;
        loop {
            let token = self.token(stale.as_deref()).await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("x-access-token", &token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let answer = self.exchange(request, &url).await?;
            let refused_token = answer.status == StatusCode::UNAUTHORIZED
                && answer.detail().contains("auth token")
                || answer.status == StatusCode::FORBIDDEN
                    && answer.detail().contains("auth token is invalid");
            if refused_token && stale.is_none() {
                stale = Some(token);
                continue;
            }
            if answer.status == StatusCode::FORBIDDEN && answer.detail().contains("read only") {
                return Err(ClientError::Credentials(format!(
                    "the ExaFS API key is read-only ({}); create a key that may change rules",
                    answer.detail()
                )));
            }
            return Ok(answer);
        }
    }

    fn unexpected(what: &str, answer: &Answer) -> ClientError {
        let status = answer.status.as_u16();
        if status >= 500 {
            ClientError::Server {
                status,
                what: what.to_string(),
                detail: answer.detail(),
            }
        } else {
            ClientError::Unexpected {
                status,
                what: what.to_string(),
                detail: answer.detail(),
            }
        }
    }

    /// `GET /communities`: (id, name) of every RTBH community the key's user may use.
    pub async fn communities(&self) -> Result<Vec<(u32, String)>, ClientError> {
        self.offered("/communities").await
    }

    /// `GET /actions`: (id, name) of every flowspec action the key's user may use.
    pub async fn actions(&self) -> Result<Vec<(u32, String)>, ClientError> {
        self.offered("/actions").await
    }

    /// A list of (id, name) pairs; ExaFS answers 404 (JSON) when it is empty.
    async fn offered(&self, path: &str) -> Result<Vec<(u32, String)>, ClientError> {
        let what = format!("GET /api/v3{path}");
        let answer = self.call(Method::GET, path, NO_BODY).await?;
        match answer.status.as_u16() {
            200 => serde_json::from_slice(&answer.body).map_err(|e| ClientError::Unexpected {
                status: 200,
                what,
                detail: format!("not a list of [id, name]: {e}"),
            }),
            404 if is_json(&answer.body) => Ok(Vec::new()),
            _ => Err(Self::unexpected(&what, &answer)),
        }
    }

    /// `GET /rules`: the rules of the named lists (`rtbh_any_rw`: the RTBH rules the key's
    /// user may change; `flowspec_ipv4_rw`, `flowspec_ipv6_rw`: the flowspec rules in the
    /// user's ranges with an action the user may use), unparsed, one list after the other.
    pub async fn rules(&self, lists: &[&str]) -> Result<Vec<serde_json::Value>, ClientError> {
        let what = "GET /api/v3/rules";
        let answer = self
            .call(Method::GET, "/rules?time_format=timestamp", NO_BODY)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(Self::unexpected(what, &answer));
        }
        let mut value: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|_| ClientError::Unexpected {
                status: 200,
                what: what.into(),
                detail: answer.detail(),
            })?;
        let mut all = Vec::new();
        for list in lists {
            match value.get_mut(*list).map(serde_json::Value::take) {
                Some(serde_json::Value::Array(rules)) => all.extend(rules),
                _ => {
                    return Err(ClientError::Unexpected {
                        status: 200,
                        what: what.into(),
                        detail: format!("no {list} list in the answer (not ExaFS API v3?)"),
                    })
                }
            }
        }
        Ok(all)
    }

    /// `POST /rules/…`: creates the rule, or (the same rule exists) sets the existing rule's
    /// expiry and answers with its id. ExaFS answers with the rule as it lists it (`R`).
    pub async fn create<R: DeserializeOwned>(
        &self,
        kind: RulePath,
        rule: &(impl serde::Serialize + Sync),
    ) -> Result<Created<R>, ClientError> {
        let what = format!("POST /api/v3{}", kind.path());
        let answer = self.call(Method::POST, kind.path(), Some(rule)).await?;
        match answer.status.as_u16() {
            200 | 201 => {
                let created: CreateAnswer<R> =
                    serde_json::from_slice(&answer.body).map_err(|e| ClientError::Unexpected {
                        status: answer.status.as_u16(),
                        what,
                        detail: format!("{e}: {}", answer.detail()),
                    })?;
                Ok(Created::Rule(created.rule))
            }
            400 => match validation_reason(&answer.body) {
                Some(reason) => Ok(Created::Invalid(reason)),
                None => Err(Self::unexpected(&what, &answer)),
            },
            403 if answer.detail().contains("limit") => Ok(Created::LimitReached(answer.detail())),
            _ => Err(Self::unexpected(&what, &answer)),
        }
    }

    /// `GET /rules/…/{id}`: the rule, or `None` if there is none this user may see.
    pub async fn rule<R: DeserializeOwned>(
        &self,
        kind: RulePath,
        id: i64,
    ) -> Result<Option<R>, ClientError> {
        let what = format!("GET /api/v3{}/{id}", kind.path());
        let answer = self
            .call(
                Method::GET,
                &format!("{}/{id}?time_format=timestamp", kind.path()),
                NO_BODY,
            )
            .await?;
        match answer.status.as_u16() {
            200 => serde_json::from_slice(&answer.body).map(Some).map_err(|e| {
                ClientError::Unexpected {
                    status: 200,
                    what,
                    detail: e.to_string(),
                }
            }),
            401 | 404 if is_json(&answer.body) => Ok(None),
            _ => Err(Self::unexpected(&what, &answer)),
        }
    }

    /// `DELETE /rules/…/{id}`: ExaFS withdraws the route (or flow) and deletes the rule.
    pub async fn delete(&self, kind: RulePath, id: i64) -> Result<Deleted, ClientError> {
        let what = format!("DELETE /api/v3{}/{id}", kind.path());
        let answer = self
            .call(Method::DELETE, &format!("{}/{id}", kind.path()), NO_BODY)
            .await?;
        match answer.status.as_u16() {
            200 | 201 | 204 => Ok(Deleted::Deleted),
            404 if is_json(&answer.body) => Ok(Deleted::Gone),
            401 if is_json(&answer.body) => Ok(Deleted::NotAllowed(answer.detail())),
            _ => Err(Self::unexpected(&what, &answer)),
        }
    }
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok()
}

/// A short account of an answer body: the JSON `message`, an HTML page's title, or the
/// start of the text.
pub fn detail_of(body: &[u8]) -> String {
    const MAX: usize = 200;
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        return match value.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => shorten(&value.to_string(), MAX),
        };
    }
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    for tag in ["title", "h1"] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        if let Some(start) = lower.find(&open) {
            let from = start + open.len();
            if let Some(len) = lower[from..].find(&close) {
                let inner = text[from..from + len].trim();
                if !inner.is_empty() {
                    return format!("HTML page: {}", shorten(inner, MAX));
                }
            }
        }
    }
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        "empty answer".into()
    } else {
        shorten(&flat, MAX)
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The error and its sources in one line (reqwest's own message alone says little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_come_from_json_html_or_text() {
        assert_eq!(
            detail_of(br#"{"message":"rule 3 not found "}"#),
            "rule 3 not found "
        );
        assert_eq!(
            detail_of(br#"{"message":["RTBH Rule saved"]}"#),
            r#"["RTBH Rule saved"]"#
        );
        let html = b"<!doctype html>\n<html><head><TITLE>500 Internal Server Error</TITLE></head>\
                     <body><h1>Internal Server Error</h1></body></html>";
        assert_eq!(detail_of(html), "HTML page: 500 Internal Server Error");
        assert_eq!(
            detail_of(b"<html><h1>Not Found</h1></html>"),
            "HTML page: Not Found"
        );
        assert_eq!(detail_of(b"  plain\n text "), "plain text");
        assert_eq!(detail_of(b""), "empty answer");
        let long = "é".repeat(300);
        assert!(detail_of(long.as_bytes()).len() <= 204);
    }

    #[tokio::test]
    async fn errors_map_to_target_errors() {
        // Port 1 on loopback: nothing listens there.
        let url = "http://127.0.0.1:1/api/v3/auth";
        let source = reqwest::Client::new().get(url).send().await.unwrap_err();
        let connect = ClientError::Connect {
            url: url.into(),
            source,
        };
        assert!(connect.to_string().contains("127.0.0.1:1"), "{connect}");
        let connect = connect.into_target();
        assert!(matches!(connect, TargetError::Unreachable(_)));
        // The HTTP client's error is still there for whoever inspects the chain.
        let client_error = connect.cause().downcast_ref::<ClientError>().unwrap();
        assert!(std::error::Error::source(client_error).is_some_and(|s| s.is::<reqwest::Error>()));
        assert!(matches!(
            ClientError::Credentials("bad key".into()).into_target(),
            TargetError::Config(m) if m.to_string() == "bad key"
        ));
        let server = ClientError::Server {
            status: 500,
            what: "w".into(),
            detail: "d".into(),
        };
        assert!(matches!(server.into_target(), TargetError::Unreachable(_)));
        let odd = ClientError::Unexpected {
            status: 404,
            what: "w".into(),
            detail: "d".into(),
        };
        assert!(matches!(odd.into_target(), TargetError::Device(_)));
    }

    /// A server written for this test (no real ExaFS sends such answers) that answers every
    /// connection with `head` and then `body_len` bytes of JSON-ish filler.
    fn oversized_server(head: String, body_len: usize) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let mut request = [0u8; 4096];
                let _ = s.read(&mut request);
                let _ = s.write_all(head.as_bytes());
                let block = vec![b' '; 64 * 1024];
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(block.len());
                    if s.write_all(&block[..n]).is_err() {
                        break;
                    }
                    left -= n;
                }
            }
        });
        url
    }

    #[tokio::test]
    async fn answers_are_read_up_to_the_bound() {
        let transport = Transport {
            timeout: Duration::from_secs(30),
            max_in_flight: 1,
            allow_insecure_http: true,
            ca_file: None,
        };
        // Content-Length says too much: refused before reading the body.
        let declared = oversized_server(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            ),
            0,
        );
        // No length, more than the bound: reading stops there.
        let streamed = oversized_server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
            MAX_BODY + 1024 * 1024,
        );
        for url in [declared, streamed] {
            let client = Client::new(&url, ApiKeySource::Env("UNUSED".into()), &transport).unwrap();
            let request = client.http.get(&url);
            match client.exchange(request, &url).await {
                Err(ClientError::TooLong { max, .. }) => assert_eq!(max, MAX_BODY),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
