//! What netban's SSH-based drivers share (the Cisco IOS CLI and NETCONF over SSH): opening the
//! SSH transport with russh and trusting the device's host key only when it matches a pinned
//! fingerprint or a known_hosts entry — never blindly. Authentication, channels and everything
//! above them stay in each driver's own session module.

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use std::path::PathBuf;
use std::sync::Arc;

/// How a device's host key is trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// `SHA256:…` as `ssh-keygen -lf` prints it.
    Fingerprint(String),
    KnownHosts(PathBuf),
}

/// Why the SSH transport could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The host key was refused; the message names the key the device presented.
    #[error("{0}")]
    HostKey(String),
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
}

/// russh's per-connection callbacks: only the host key check is ours.
pub struct TrustingClient {
    policy: HostKeyPolicy,
    host: String,
    port: u16,
    /// What the operator should do when the key is refused (device-specific).
    advice: &'static str,
}

impl client::Handler for TrustingClient {
    type Error = ConnectError;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = presented else {
            return Err(ConnectError::HostKey(format!(
                "{}:{} presented a host certificate; pin its host key instead",
                self.host, self.port
            )));
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let refuse = |why: String| {
            Err(ConnectError::HostKey(format!(
                "host key of {}:{} refused: it presented {} {fingerprint}, {why}; if the \
                 device's key really changed, {}",
                self.host,
                self.port,
                key.algorithm(),
                self.advice
            )))
        };
        match &self.policy {
            HostKeyPolicy::Fingerprint(pinned) if *pinned == fingerprint => Ok(true),
            HostKeyPolicy::Fingerprint(pinned) => {
                refuse(format!("but host_key_fingerprint is {pinned}"))
            }
            HostKeyPolicy::KnownHosts(path) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(true),
                    Ok(false) => {
                        refuse(format!("which is not in {} for this host", path.display()))
                    }
                    Err(russh::keys::Error::KeyChanged { line }) => refuse(format!(
                        "which differs from the key at line {line} of {}",
                        path.display()
                    )),
                    Err(e) => refuse(format!("and {} cannot be read: {e}", path.display())),
                }
            }
        }
    }
}

/// Opens TCP (no delay) to `host:port` and the SSH transport over it, checking the host key
/// against `policy`. `advice` completes the refusal message ("check it on the console and …").
pub async fn connect(
    config: Arc<client::Config>,
    host: &str,
    port: u16,
    policy: HostKeyPolicy,
    advice: &'static str,
) -> Result<Handle<TrustingClient>, ConnectError> {
    let addr = format!("{host}:{port}");
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|source| ConnectError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let client = TrustingClient {
        policy,
        host: host.to_string(),
        port,
        advice,
    };
    client::connect_stream(config, stream, client).await
}
