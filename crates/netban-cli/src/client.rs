//! A blocking connection to the daemon's socket.

use anyhow::{anyhow, Result};
use netban_proto::{Body, Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for an answer. Plans and syncs contact devices, so this is long;
/// a ban is answered in about a millisecond.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(|e| ConnectError(e.to_string()))?;
        let writer = stream
            .try_clone()
            .map_err(|e| ConnectError(e.to_string()))?;
        Ok(Connection {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one request and reads its answer; a daemon-side error becomes `Err`.
    pub fn call(&mut self, request: &Request) -> Result<Body> {
        self.writer.write_all(&netban_proto::encode(request))?;
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line)? == 0 {
            return Err(anyhow!(
                "the daemon closed the connection without answering"
            ));
        }
        match netban_proto::decode::<Response>(&line)? {
            Response::Ok { body } => Ok(body),
            Response::Error { message } => Err(anyhow!("{message}")),
        }
    }
}
