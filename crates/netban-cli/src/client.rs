//! A blocking connection to the daemon's socket.

use netban_proto::{Body, Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for the answer to a ban or an unban. The daemon answers one in
/// about a millisecond and 10,000 in well under a second; a daemon that has not answered in
/// this time is treated as gone (the client records the request itself, see `fallback`).
pub const BAN_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the client waits for any other answer: plans and syncs contact devices.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a call got no body back.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The daemon answered, with an error: it decided, so nothing is to be retried elsewhere.
    #[error("{0}")]
    Refused(String),
    /// No answer: the connection was reset or closed, the wait timed out, or the answer was
    /// unreadable. The request may or may not have been carried out.
    #[error("no answer from the daemon: {0}")]
    NoAnswer(String),
}

impl From<CallError> for ConnectError {
    fn from(e: CallError) -> ConnectError {
        ConnectError(e.to_string())
    }
}

pub struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    pub fn open(socket: &Path) -> Result<Connection, ConnectError> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| ConnectError(format!("{}: {e}", socket.display())))?;
        let writer = stream
            .try_clone()
            .map_err(|e| ConnectError(e.to_string()))?;
        Ok(Connection {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one request and waits up to `timeout` for its answer.
    pub fn call_within(&mut self, request: &Request, timeout: Duration) -> Result<Body, CallError> {
        let no_answer = |e: std::io::Error| CallError::NoAnswer(e.to_string());
        self.writer
            .set_read_timeout(Some(timeout))
            .map_err(no_answer)?;
        self.writer
            .write_all(&netban_proto::encode(request))
            .map_err(no_answer)?;
        let mut line = Vec::new();
        if self
            .reader
            .read_until(b'\n', &mut line)
            .map_err(no_answer)?
            == 0
        {
            return Err(CallError::NoAnswer(
                "the daemon closed the connection without answering".into(),
            ));
        }
        match netban_proto::decode::<Response>(&line) {
            Ok(Response::Ok { body }) => Ok(body),
            Ok(Response::Error { message }) => Err(CallError::Refused(message)),
            Err(e) => Err(CallError::NoAnswer(format!("unreadable answer: {e}"))),
        }
    }

    /// Sends one request and reads its answer (waiting up to [`ANSWER_TIMEOUT`]).
    pub fn call(&mut self, request: &Request) -> Result<Body, CallError> {
        self.call_within(request, ANSWER_TIMEOUT)
    }
}
