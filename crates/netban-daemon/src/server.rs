//! The local socket: one JSON request per line, one JSON response per line
//! (see `netban-proto`). Each connection is its own task; bans go to the ledger thread and are
//! answered once they are durable.
//!
//! The socket is open to every local user (mode 0666); what each may ask is decided by the
//! kernel's peer credentials ([`crate::access`]). Every input is bounded ([`Limits`]): a request
//! line's length and the prefixes in it, the time a request may take to arrive and its answer to
//! be read, how long a connection may idle, and how many connections a user who is not an
//! administrator may hold. A client that breaks a limit is answered with an error (when it can
//! still read) and disconnected; nobody else waits for it.

use crate::access::{Access, Caller};
use crate::api::Refusals;

use crate::engine::Engine;
use crate::housekeeping::PolicyReloader;
use crate::ledger_worker::LedgerHandle;
use crate::reconciler::WorkerHandle;
use crate::requests;
use netban_proto::{Request, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// What one client may ask of the socket.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line (a full batch of IPv6 prefixes is under 5 MiB).
    pub max_request_bytes: usize,
    /// How long a connection may wait between requests.
    pub idle: Duration,
    /// How long a request may take to arrive once its first byte has, and its answer to be
    /// taken by the client.
    pub transfer: Duration,
    /// Connections one user other than root and the daemon's own may hold at once.
    pub connections_per_user: usize,
    /// Connections all users other than root and the daemon's own may hold at once.
    pub connections_unprivileged: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 8 << 20,
            idle: Duration::from_secs(600),
            transfer: Duration::from_secs(10),
            connections_per_user: 32,
            connections_unprivileged: 256,
        }
    }
}

/// Everything a connection needs to answer requests.
pub struct Context {
    pub engine: Engine,
    pub ledger: LedgerHandle,
    pub workers: Vec<WorkerHandle>,
    pub reloader: PolicyReloader,
    pub started_at: netban_core::Timestamp,
    pub ledger_description: String,
    /// Published by the ledger thread.
    pub ledger_health: watch::Receiver<netban_proto::LedgerHealth>,
    /// Measured by the ledger thread (commit durations, group sizes).
    pub ledger_instruments: Arc<crate::instruments::LedgerInstruments>,
    pub access: Access,
    pub limits: Limits,
    /// Refusals counted for `/metrics` (both front ends).
    pub refusals: crate::api::Refusals,
    /// The feed targets' boards, served by the HTTP API (`api/feeds.rs`).
    pub feeds: Vec<netban_targets::feed::Board>,
    /// CrowdSec sources' status; what the decision server needs.
    pub crowdsec: crate::crowdsec::Crowdsec,
}

/// Connections held by users other than root and the daemon's own, per uid.
#[derive(Default)]
struct Unprivileged {
    per_user: HashMap<u32, usize>,
    total: usize,
}

/// A connection's place among the unprivileged ones, given back when it ends.
struct Slot {
    registry: Arc<Mutex<Unprivileged>>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.total -= 1;
        if let Some(n) = r.per_user.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                r.per_user.remove(&self.uid);
            }
        }
    }
}

fn take_slot(registry: &Arc<Mutex<Unprivileged>>, uid: u32, limits: &Limits) -> Option<Slot> {
    let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
    let mine = r.per_user.get(&uid).copied().unwrap_or(0);
    if mine >= limits.connections_per_user || r.total >= limits.connections_unprivileged {
        return None;
    }
    r.total += 1;
    *r.per_user.entry(uid).or_default() += 1;
    Some(Slot {
        registry: registry.clone(),
        uid,
    })
}

/// Accepts connections on `listener` until `shutdown` turns true.
pub async fn run(
    listener: UnixListener,
    context: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    let registry = Arc::new(Mutex::new(Unprivileged::default()));
    // After a failed accept (out of file descriptors, say): wait before the next, doubling up
    // to a second, so the loop never spins.
    let mut backoff = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::ZERO;
                    let cred = match stream.peer_cred() {
                        Ok(cred) => cred,
                        Err(e) => {
                            tracing::warn!(error = %e, "no peer credentials; connection closed");
                            continue;
                        }
                    };
                    // Every user but root and the daemon's own has a bounded number of
                    // connections, counted before anything else is looked up for it.
                    let slot = if context.access.is_superuser(cred.uid()) {
                        None
                    } else {
                        match take_slot(&registry, cred.uid(), &context.limits) {
                            Some(slot) => Some(slot),
                            None => {
                                tracing::debug!(uid = cred.uid(), "connection limit reached; refused");
                                refuse(stream, "too many connections").await;
                                continue;
                            }
                        }
                    };
                    let caller = context.access.caller(&cred);
                    let context = context.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Err(e) = serve_connection(stream, caller, context).await {
                            tracing::debug!(error = %e, %caller, "client connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
}

/// Tells a connection it is refused (without waiting on it) and closes it.
async fn refuse(stream: UnixStream, message: &str) {
    let answer = netban_proto::encode(&Response::Error {
        message: message.into(),
    });
    let _ = stream.try_write(&answer);
}

/// Why a connection stopped reading requests.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("request longer than {0} bytes")]
    TooLong(usize),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("request not complete within {0:?}")]
    Slow(Duration),
    #[error("connection closed in the middle of a request")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one request line into `line` (newline included); `Ok(false)` at a clean end.
async fn read_request(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
    limits: &Limits,
) -> Result<bool, ReadError> {
    line.clear();
    match tokio::time::timeout(limits.idle, reader.fill_buf()).await {
        Err(_) => return Err(ReadError::Idle(limits.idle)),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok([])) => return Ok(false),
        Ok(Ok(_)) => {}
    }
    let rest = async {
        loop {
            let buf = reader.fill_buf().await?;
            if buf.is_empty() {
                return Err(ReadError::Truncated);
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > limits.max_request_bytes {
                return Err(ReadError::TooLong(limits.max_request_bytes));
            }
            line.extend_from_slice(&buf[..take]);
            reader.consume(take);
            if done {
                return Ok(true);
            }
        }
    };
    tokio::time::timeout(limits.transfer, rest)
        .await
        .map_err(|_| ReadError::Slow(limits.transfer))?
}

async fn serve_connection(
    stream: UnixStream,
    caller: Caller,
    context: Arc<Context>,
) -> Result<(), ReadError> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let limits = &context.limits;
    loop {
        let response = match read_request(&mut reader, &mut line, limits).await {
            Ok(false) => return Ok(()),
            Ok(true) => match decode(&mut line).await {
                Ok(request) => match caller.permits(&request) {
                    Ok(()) => handle(request, caller, &context).await,
                    Err(denied) => {
                        context.refusals.count(Refusals::FORBIDDEN);
                        error(denied.to_string())
                    }
                },
                Err(e) => {
                    context.refusals.count(Refusals::INPUT);
                    error(format!("malformed request: {e}"))
                }
            },
            Err(e @ (ReadError::TooLong(_) | ReadError::Slow(_))) => {
                // Answered (if the client still reads) and closed: the rest of its line is
                // never read.
                let answer = netban_proto::encode(&error(e.to_string()));
                let _ = tokio::time::timeout(limits.transfer, write.write_all(&answer)).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        tokio::time::timeout(
            limits.transfer,
            write.write_all(&netban_proto::encode(&response)),
        )
        .await
        .map_err(|_| ReadError::Slow(limits.transfer))??;
    }
}

/// Requests longer than this are decoded on a blocking thread, so that a client sending a
/// large batch never holds a runtime thread that other connections' answers wait on.
const DECODE_INLINE_BYTES: usize = 64 << 10;

/// Decodes a request line (`line` is taken, and given back empty for the next read).
async fn decode(line: &mut Vec<u8>) -> Result<Request, serde_json::Error> {
    if line.len() <= DECODE_INLINE_BYTES {
        return netban_proto::decode::<Request>(line);
    }
    let taken = std::mem::take(line);
    tokio::task::spawn_blocking(move || netban_proto::decode::<Request>(&taken))
        .await
        .expect("decoding a request does not panic")
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

/// Every request goes through [`requests::handle`], which the HTTP API calls too.
async fn handle(request: Request, caller: Caller, context: &Context) -> Response {
    match requests::handle(request, caller.role, None, context).await {
        Ok(body) => Response::Ok { body },
        Err(refusal) => error(refusal.to_string()),
    }
}
