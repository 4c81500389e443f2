//! One NETCONF session over SSH's `netconf` subsystem (RFC 6242), built on russh: connect
//! (host key checked against a pinned fingerprint or a known_hosts file, never blindly), key
//! authentication, hello and capability exchange, base:1.1 chunked framing when both sides
//! offer it (else base:1.0), message ids, and the RFC 6241 operations netban uses.
//!
//! What it is not: it knows nothing of bans or SSR tenants and never retries; a session that
//! failed is dropped and the driver opens a new one. Operations are sent one at a time.

use super::framing::{encode, Decoder, Framing, FramingError};
use super::reply::{Element, Hello, ParseError, Reply, RpcError};
use super::rpc::{self, Datastore};
pub use crate::ssh::HostKeyPolicy;
use crate::ssh::{self, TrustingClient};
use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{ChannelMsg, Disconnect};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach and log in to a NETCONF server.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub private_key: PathBuf,
    pub private_key_passphrase: Option<netban_config::secret::Secret>,
    pub host_key: HostKeyPolicy,
    pub timeout: Duration,
    pub keepalive: Duration,
}

/// Why a session could not be opened or an operation not carried out.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    HostKey(String),
    #[error("{0}")]
    Auth(String),
    #[error("the server refused the netconf subsystem: {0}")]
    Subsystem(String),
    #[error("no answer from the server within {secs} s while {what}")]
    Timeout { secs: u64, what: String },
    #[error("the server closed the session while {0}")]
    Closed(String),
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
    #[error(transparent)]
    Framing(#[from] FramingError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The server answered the operation with `<rpc-error>`s.
    #[error("{operation} refused: {}", join(.errors))]
    Rpc {
        operation: &'static str,
        errors: Vec<RpcError>,
    },
}

impl From<ssh::ConnectError> for SessionError {
    fn from(e: ssh::ConnectError) -> Self {
        match e {
            ssh::ConnectError::Connect { addr, source } => SessionError::Connect { addr, source },
            ssh::ConnectError::HostKey(m) => SessionError::HostKey(m),
            ssh::ConnectError::Ssh(e) => SessionError::Ssh(e),
        }
    }
}

impl SessionError {
    /// True when the session itself is unusable (as opposed to a refused operation).
    pub fn is_transport(&self) -> bool {
        !matches!(self, SessionError::Rpc { .. })
    }

    /// The rpc-errors of a refused operation.
    pub fn rpc_errors(&self) -> &[RpcError] {
        match self {
            SessionError::Rpc { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn join(errors: &[RpcError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An open NETCONF session.
pub struct Session {
    handle: Handle<TrustingClient>,
    channel: russh::Channel<client::Msg>,
    decoder: Decoder,
    framing: Framing,
    hello: Hello,
    next_id: u64,
    timeout: Duration,
}

/// What the session waits for while the server's hello does not come.
const WAITING_FOR_HELLO: &str = "waiting for the server's hello";

/// How long the server's hello, and then its answer to the probe, may take before a new
/// session is abandoned and reopened: netconfd now and then never sends its hello on a new
/// session (about one session in twenty under load here); a new session gets one at once.
const OPENING_PATIENCE: Duration = Duration::from_secs(5);

/// Sessions tried when the hello, or the answer to the probe, does not come.
const OPENING_ATTEMPTS: usize = 3;

/// The probe every new session must answer before it is used: a `<get-config>` of running
/// whose subtree filter selects nothing (a namespace no device has), so any answer, data or
/// error, proves the session works. netconfd now and then says hello and then never answers
/// the first request (seen in CI under load); the probe catches that within
/// [`OPENING_PATIENCE`] instead of failing the first real batch after `timeout_secs`.
const PROBE_FILTER: &str = "<netban-probe xmlns=\"urn:netban:session-probe\"/>";
const PROBE: &str = "session probe";

impl Session {
    /// Connects, authenticates, opens the subsystem, exchanges hellos and proves the session
    /// answers (see [`PROBE_FILTER`]); every step bounded. A session whose server never says
    /// hello or never answers the probe is dropped and opened again (up to
    /// [`OPENING_ATTEMPTS`] times).
    pub async fn open(endpoint: &Endpoint) -> Result<Session, SessionError> {
        let probe_wait = format!("waiting for the reply to {PROBE}");
        let mut attempt = 1;
        loop {
            match Session::open_once(endpoint).await {
                Err(SessionError::Timeout { what, .. })
                    if (what == WAITING_FOR_HELLO || what == probe_wait)
                        && attempt < OPENING_ATTEMPTS =>
                {
                    tracing::debug!(attempt, %what, "NETCONF session never answered; reopening");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn open_once(endpoint: &Endpoint) -> Result<Session, SessionError> {
        let timeout = endpoint.timeout;
        let ssh_config = Arc::new(client::Config {
            keepalive_interval: Some(endpoint.keepalive),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            ..client::Config::default()
        });
        let connecting = async {
            ssh::connect(
                ssh_config,
                &endpoint.host,
                endpoint.port,
                endpoint.host_key.clone(),
                "check it out of band and update host_key_fingerprint or known_hosts",
            )
            .await
            .map_err(SessionError::from)
        };
        let mut handle = bounded(timeout, "connecting", connecting).await?;
        bounded(
            timeout,
            "authenticating",
            authenticate(&mut handle, endpoint),
        )
        .await?;
        let mut decoder = Decoder::new();
        let channel = bounded(timeout, "opening the netconf subsystem", async {
            let mut channel = handle.channel_open_session().await?;
            channel.request_subsystem(true, "netconf").await?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => break,
                    Some(ChannelMsg::Failure) => {
                        return Err(SessionError::Subsystem(format!(
                            "{} answered the subsystem request with a failure",
                            endpoint.host
                        )))
                    }
                    Some(ChannelMsg::Data { data }) => decoder.push(&data),
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        return Err(SessionError::Closed("opening the netconf subsystem".into()))
                    }
                    Some(_) => {}
                }
            }
            Ok::<_, SessionError>(channel)
        })
        .await?;
        let mut session = Session {
            handle,
            channel,
            decoder,
            framing: Framing::EndOfMessage,
            hello: Hello {
                capabilities: Vec::new(),
                session_id: None,
            },
            next_id: 1,
            timeout,
        };
        session.exchange_hellos().await?;
        session.probe().await?;
        Ok(session)
    }

    /// Sends the probe and waits at most [`OPENING_PATIENCE`] for any answer.
    async fn probe(&mut self) -> Result<(), SessionError> {
        let patience = self.timeout.min(OPENING_PATIENCE);
        let timeout = std::mem::replace(&mut self.timeout, patience);
        let answer = self
            .rpc(
                PROBE,
                &rpc::get_config(Datastore::Running, Some(PROBE_FILTER)),
            )
            .await;
        self.timeout = timeout;
        match answer {
            Ok(_) | Err(SessionError::Rpc { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends our hello at once, then reads the server's. (Sending ours first matters with
    /// netconfd: a base:1.0 hello written after the server's hello is acted on only when more
    /// bytes arrive, and the first chunked message after it is lost.)
    async fn exchange_hellos(&mut self) -> Result<(), SessionError> {
        self.send(&rpc::hello()).await?;
        let patience = self.timeout.min(OPENING_PATIENCE);
        let timeout = std::mem::replace(&mut self.timeout, patience);
        let message = self.read_message(WAITING_FOR_HELLO).await;
        self.timeout = timeout;
        let message = message?;
        let hello = Hello::parse(&message)?;
        if hello.session_id.is_none() {
            return Err(
                ParseError::Unexpected("the server's hello has no session-id".into()).into(),
            );
        }
        if hello.has(rpc::BASE_1_1) {
            self.framing = Framing::Chunked;
            self.decoder.set_framing(Framing::Chunked);
        } else if !hello.has(rpc::BASE_1_0) {
            return Err(ParseError::Unexpected(
                "the server offers neither base:1.0 nor base:1.1".into(),
            )
            .into());
        }
        self.hello = hello;
        Ok(())
    }

    /// The server's hello.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub fn session_id(&self) -> Option<u32> {
        self.hello.session_id
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    async fn send(&mut self, message: &str) -> Result<(), SessionError> {
        let bytes = encode(self.framing, message);
        bounded(self.timeout, "sending", async {
            self.channel.data(&bytes[..]).await?;
            Ok(())
        })
        .await
    }

    async fn read_message(&mut self, what: &str) -> Result<Vec<u8>, SessionError> {
        let timeout = self.timeout;
        let read = async {
            loop {
                if let Some(message) = self.decoder.next_message()? {
                    return Ok(message);
                }
                match self.channel.wait().await {
                    Some(ChannelMsg::Data { data }) => self.decoder.push(&data),
                    Some(ChannelMsg::ExtendedData { .. }) => {}
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        return Err(SessionError::Closed(what.to_string()))
                    }
                    Some(_) => {}
                }
            }
        };
        bounded(timeout, what, read).await
    }

    /// Sends one operation and waits for its reply. `Err(Rpc)` when the reply has errors.
    pub async fn rpc(
        &mut self,
        operation_name: &'static str,
        operation: &str,
    ) -> Result<Reply, SessionError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&rpc::envelope(id, operation)).await?;
        let id_text = id.to_string();
        loop {
            let message = self
                .read_message(&format!("waiting for the reply to {operation_name}"))
                .await?;
            let Some(reply) = Reply::parse(&message)? else {
                continue; // a notification
            };
            if reply.message_id.as_deref() != Some(id_text.as_str()) {
                return Err(ParseError::Unexpected(format!(
                    "reply to {operation_name} has message-id {:?}, expected {id}",
                    reply.message_id
                ))
                .into());
            }
            for w in &reply.warnings {
                tracing::debug!(operation = operation_name, warning = %w, "NETCONF warning");
            }
            if !reply.errors.is_empty() {
                return Err(SessionError::Rpc {
                    operation: operation_name,
                    errors: reply.errors,
                });
            }
            return Ok(reply);
        }
    }

    /// get-config of `source`, filtered by a subtree filter; returns `<data>`.
    pub async fn get_config(
        &mut self,
        source: Datastore,
        filter: Option<&str>,
    ) -> Result<Element, SessionError> {
        let reply = self
            .rpc("get-config", &rpc::get_config(source, filter))
            .await?;
        Ok(reply.data.unwrap_or_default())
    }

    pub async fn edit_config(
        &mut self,
        target: Datastore,
        config: &str,
    ) -> Result<(), SessionError> {
        let rollback = self.hello.has(rpc::ROLLBACK_ON_ERROR);
        self.expect_ok("edit-config", &rpc::edit_config(target, config, rollback))
            .await
    }

    pub async fn lock(&mut self, target: Datastore) -> Result<(), SessionError> {
        self.expect_ok("lock", &rpc::lock(target)).await
    }

    pub async fn unlock(&mut self, target: Datastore) -> Result<(), SessionError> {
        self.expect_ok("unlock", &rpc::unlock(target)).await
    }

    pub async fn discard_changes(&mut self) -> Result<(), SessionError> {
        self.expect_ok("discard-changes", &rpc::discard_changes())
            .await
    }

    pub async fn commit(&mut self) -> Result<(), SessionError> {
        self.expect_ok("commit", &rpc::commit(None)).await
    }

    /// True if the server offers confirmed commits.
    pub fn has_confirmed_commit(&self) -> bool {
        self.hello.has(rpc::CONFIRMED_COMMIT_1_1) || self.hello.has(rpc::CONFIRMED_COMMIT_1_0)
    }

    /// A confirmed commit, rolled back by the server unless confirmed within `secs`.
    pub async fn commit_confirmed(&mut self, secs: u64) -> Result<(), SessionError> {
        self.expect_ok("confirmed commit", &rpc::commit(Some((secs, None))))
            .await
    }

    /// Confirms the pending confirmed commit of this session.
    pub async fn confirm_commit(&mut self) -> Result<(), SessionError> {
        self.expect_ok("confirming commit", &rpc::confirm_commit(None))
            .await
    }

    async fn expect_ok(&mut self, name: &'static str, operation: &str) -> Result<(), SessionError> {
        let reply = self.rpc(name, operation).await?;
        if !reply.ok {
            return Err(ParseError::Unexpected(format!("{name}: reply without <ok/>")).into());
        }
        Ok(())
    }

    /// Ends the session politely (close-session, then the SSH disconnect); best effort.
    pub async fn close(mut self) {
        let short = self.timeout.min(Duration::from_secs(2));
        self.timeout = short;
        let _ = self.rpc("close-session", &rpc::close_session()).await;
        let _ = tokio::time::timeout(
            short,
            self.handle
                .disconnect(Disconnect::ByApplication, "netban done", "en"),
        )
        .await;
    }
}

/// Runs `fut` within `timeout`, naming `what` in the error.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| SessionError::Timeout {
            secs: timeout.as_secs(),
            what: what.to_string(),
        })?
}

async fn authenticate(
    handle: &mut Handle<TrustingClient>,
    endpoint: &Endpoint,
) -> Result<(), SessionError> {
    let path = &endpoint.private_key;
    let passphrase = endpoint.private_key_passphrase.as_ref().map(|s| s.expose());
    let key = russh::keys::load_secret_key(path, passphrase).map_err(|e| {
        SessionError::Auth(format!("cannot load private_key {}: {e}", path.display()))
    })?;
    let hash = handle.best_supported_rsa_hash().await?.flatten();
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
    if handle
        .authenticate_publickey(&endpoint.username, key)
        .await?
        .success()
    {
        return Ok(());
    }
    Err(SessionError::Auth(format!(
        "the server refused user {:?} with the key {}: add its public key to that user's \
         authorized keys on the server, or fix username/private_key",
        endpoint.username,
        path.display()
    )))
}
