//! One SSH CLI session to a router: connect (host key checked), log in, get to the privileged
//! `#` prompt, turn paging and wrapping off, then run commands, pipelined, and hand back the
//! router's answer to each line. Built on russh; the only module of netban that speaks SSH.
//!
//! What it is not: it knows nothing of ACLs or bans (see the driver) and never retries; a
//! session that failed is dropped and the driver opens a new one.

use super::config::CiscoIosConfig;
use super::transcript::{learn_hostname, Segment, Transcript};
use crate::ssh::{self, HostKeyPolicy, TrustingClient};
use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{ChannelMsg, Disconnect, Preferred};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// Lines written ahead of the router's prompts. Enough to keep the pipe full over a WAN;
/// small enough not to overrun a router's typed-ahead input buffer.
pub const WINDOW: usize = 64;

/// The most text read while waiting for one prompt at login or enable (banners and MOTDs are
/// a few kB). A router (or something pretending to be one) that talks on without a prompt is
/// cut off there instead of filling memory.
pub const MAX_PROMPT_WAIT: usize = 256 * 1024;
/// The most text read for one batch of commands: `show access-lists` of a 100,000-entry ACL
/// is about 6 MB.
pub const MAX_TRANSCRIPT: usize = 64 * 1024 * 1024;

/// What to do when the router's host key is refused.
const HOST_KEY_ADVICE: &str =
    "check it on the console (`show ip ssh`, `show crypto key mypubkey rsa`) \
     and update the target's configuration";

/// Why a session could not be opened or used.
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
    #[error("{0}")]
    Enable(String),
    #[error("no answer from the router within {secs} s while {what}")]
    Timeout { secs: u64, what: String },
    #[error("the router closed the session while {0}")]
    Closed(String),
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
    #[error("{0}")]
    Unexpected(String),
    #[error(
        "the router sent more than {max} bytes while {what} without the expected prompt; \
         netban stopped reading and closed the session"
    )]
    TooMuchOutput { max: usize, what: String },
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

/// An open, privileged CLI session.
pub struct Session {
    handle: Handle<TrustingClient>,
    channel: russh::Channel<client::Msg>,
    hostname: String,
    timeout: Duration,
}

impl Session {
    /// Connects, logs in and prepares the terminal. Every step is bounded by the timeout.
    pub async fn open(config: &CiscoIosConfig) -> Result<Session, SessionError> {
        let timeout = Duration::from_secs(config.timeout_secs);
        let policy = match (&config.host_key_fingerprint, &config.known_hosts) {
            (Some(fp), _) => HostKeyPolicy::Fingerprint(fp.clone()),
            (None, Some(path)) => HostKeyPolicy::KnownHosts(path.clone()),
            (None, None) => {
                return Err(SessionError::HostKey(
                    "no host key pinned (host_key_fingerprint or known_hosts)".into(),
                ))
            }
        };
        let ssh_config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(config.keepalive_secs)),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            preferred: preferred(config.legacy_algorithms),
            ..client::Config::default()
        });
        let connecting = async {
            ssh::connect(
                ssh_config,
                &config.host,
                config.port,
                policy,
                HOST_KEY_ADVICE,
            )
            .await
            .map_err(SessionError::from)
        };
        let mut handle = bounded(timeout, "connecting", connecting).await?;
        bounded(timeout, "logging in", authenticate(&mut handle, config)).await?;
        let channel = bounded(timeout, "opening the shell", async {
            let channel = handle.channel_open_session().await?;
            channel
                .request_pty(false, "vt100", 200, 24, 0, 0, &[])
                .await?;
            channel.request_shell(false).await?;
            Ok::<_, SessionError>(channel)
        })
        .await?;
        let mut session = Session {
            handle,
            channel,
            hostname: String::new(),
            timeout,
        };
        session.login(config).await?;
        Ok(session)
    }

    /// The router's hostname, as its prompt shows it.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// True once the SSH connection is gone (closed by the router, keepalives unanswered).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Waits for the first prompt, enters privileged EXEC, turns paging and wrapping off.
    async fn login(&mut self, config: &CiscoIosConfig) -> Result<(), SessionError> {
        let text = self
            .read_until("waiting for the first prompt", |t| {
                learn_hostname(t).is_some()
            })
            .await?;
        self.hostname = learn_hostname(&text).unwrap_or_default();
        if text.trim_end().ends_with('>') {
            self.enable(config).await?;
        }
        let segs = self.run(&["terminal length 0".into()]).await?;
        if let Some(e) = segs[0].error() {
            return Err(SessionError::Unexpected(format!(
                "`terminal length 0` refused: {}",
                e.message()
            )));
        }
        // Width 0 (no wrapping) where the image knows it; 511 (the widest) otherwise.
        let segs = self.run(&["terminal width 0".into()]).await?;
        if segs[0].error().is_some() {
            self.run(&["terminal width 511".into()]).await?;
        }
        Ok(())
    }

    async fn enable(&mut self, config: &CiscoIosConfig) -> Result<(), SessionError> {
        self.write("enable\n").await?;
        let hostname = self.hostname.clone();
        let is_prompt = move |t: &str| {
            let last = t.trim_end().rsplit('\n').next().unwrap_or("").trim_start();
            last.starts_with(&hostname) && (last.ends_with('#') || last.ends_with('>'))
        };
        let is_prompt2 = is_prompt.clone();
        let text = self
            .read_until("entering enable mode", move |t| {
                t.trim_end().ends_with("Password:") || is_prompt(t)
            })
            .await?;
        let text = if text.trim_end().ends_with("Password:") {
            let Some(secret) = &config.enable_secret else {
                return Err(SessionError::Enable(format!(
                    "{} asks for an enable secret: set enable_secret, or give the user \
                     privilege 15 so it logs in at the # prompt",
                    self.hostname
                )));
            };
            self.write(&format!("{}\n", secret.expose())).await?;
            self.read_until("sending the enable secret", move |t| {
                t.trim_end().ends_with("Password:") || is_prompt2(t)
            })
            .await?
        } else {
            text
        };
        if !text.trim_end().ends_with('#') {
            if text.trim_end().ends_with("Password:") {
                let _ = self.write("\n").await;
            }
            let said = text
                .lines()
                .find(|l| l.trim_start().starts_with('%'))
                .map(|l| format!(" (the router said \"{}\")", l.trim()))
                .unwrap_or_default();
            return Err(SessionError::Enable(format!(
                "{} refused enable{said}: check enable_secret, or give the user privilege 15",
                self.hostname
            )));
        }
        Ok(())
    }

    /// Writes `lines` (each one command, without line end) and returns the router's answer to
    /// each, in order. At most [`WINDOW`] lines are ahead of the router's prompts.
    pub async fn run(&mut self, lines: &[String]) -> Result<Vec<Segment>, SessionError> {
        let mut transcript = Transcript::new(&self.hostname);
        let mut sent = 0;
        let mut received = 0usize;
        while transcript.completed() < lines.len() {
            let ahead = sent - transcript.completed().min(sent);
            if sent < lines.len() && ahead < WINDOW {
                let upto = (sent + WINDOW - ahead).min(lines.len());
                let mut chunk = String::new();
                for line in &lines[sent..upto] {
                    chunk.push_str(line);
                    chunk.push('\n');
                }
                self.write(&chunk).await?;
                sent = upto;
            }
            let what = "waiting for the router's prompt";
            let text = self.read_some(what).await?;
            received += text.len();
            if received > MAX_TRANSCRIPT {
                return Err(SessionError::TooMuchOutput {
                    max: MAX_TRANSCRIPT,
                    what: what.into(),
                });
            }
            transcript.push(&text);
        }
        transcript.finish(lines.len()).ok_or_else(|| {
            SessionError::Unexpected("the router's answer ended without a prompt".into())
        })
    }

    async fn write(&mut self, text: &str) -> Result<(), SessionError> {
        let data = text.as_bytes().to_vec();
        match tokio::time::timeout(self.timeout, self.channel.data_bytes(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SessionError::Closed("sending commands".into())),
            Err(_) => Err(SessionError::Timeout {
                secs: self.timeout.as_secs(),
                what: "sending commands".into(),
            }),
        }
    }

    /// The next piece of output (any channel data), within the timeout.
    async fn read_some(&mut self, what: &str) -> Result<String, SessionError> {
        loop {
            let msg = tokio::time::timeout(self.timeout, self.channel.wait())
                .await
                .map_err(|_| SessionError::Timeout {
                    secs: self.timeout.as_secs(),
                    what: what.to_string(),
                })?;
            match msg {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    return Ok(String::from_utf8_lossy(&data).into_owned())
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                    return Err(SessionError::Closed(what.to_string()))
                }
                Some(ChannelMsg::ExitStatus { .. }) => {
                    return Err(SessionError::Closed(what.to_string()))
                }
                Some(_) => {}
            }
        }
    }

    /// Reads until the text so far (carriage returns dropped) satisfies `done`.
    async fn read_until(
        &mut self,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, SessionError> {
        let mut text = String::new();
        loop {
            let piece = self.read_some(what).await?;
            text.extend(piece.chars().filter(|c| *c != '\r'));
            if done(&text) {
                return Ok(text);
            }
            if text.len() > MAX_PROMPT_WAIT {
                return Err(SessionError::TooMuchOutput {
                    max: MAX_PROMPT_WAIT,
                    what: what.into(),
                });
            }
        }
    }

    /// Leaves the CLI and closes the connection (best effort).
    pub async fn close(self) {
        let _ = self.write_exit().await;
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "netban done", "en")
            .await;
    }

    async fn write_exit(&self) -> Result<(), russh::Error> {
        self.channel.data_bytes(b"exit\n".to_vec()).await
    }
}

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

/// russh's algorithm preferences, plus the SHA-1 key exchanges, CBC ciphers and hmac-sha1
/// old IOS images need when asked for.
fn preferred(legacy: bool) -> Preferred {
    let mut p = Preferred::default();
    if legacy {
        let mut kex = p.kex.to_vec();
        kex.extend([
            russh::kex::DH_GEX_SHA1,
            russh::kex::DH_G14_SHA1,
            russh::kex::DH_G1_SHA1,
        ]);
        let mut cipher = p.cipher.to_vec();
        cipher.extend([russh::cipher::AES_128_CBC, russh::cipher::AES_256_CBC]);
        let mut mac = p.mac.to_vec();
        mac.push(russh::mac::HMAC_SHA1);
        p.kex = Cow::Owned(kex);
        p.cipher = Cow::Owned(cipher);
        p.mac = Cow::Owned(mac);
    }
    p
}

/// Public-key first (if configured), then password, then keyboard-interactive answered with
/// the password (IOS offers either, depending on `aaa` configuration).
async fn authenticate(
    handle: &mut Handle<TrustingClient>,
    config: &CiscoIosConfig,
) -> Result<(), SessionError> {
    let user = config.username.as_str();
    let mut tried = Vec::new();
    if let Some(path) = &config.private_key {
        let passphrase = config.private_key_passphrase.as_ref().map(|s| s.expose());
        let key = russh::keys::load_secret_key(path, passphrase).map_err(|e| {
            SessionError::Auth(format!("cannot load private_key {}: {e}", path.display()))
        })?;
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        if handle.authenticate_publickey(user, key).await?.success() {
            return Ok(());
        }
        tried.push("public key");
    }
    if let Some(password) = &config.password {
        match handle
            .authenticate_password(user, password.expose())
            .await?
        {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { .. } => tried.push("password"),
        }
        let mut reply = handle
            .authenticate_keyboard_interactive_start(user, None)
            .await?;
        for _ in 0..3 {
            match reply {
                KeyboardInteractiveAuthResponse::Success => return Ok(()),
                KeyboardInteractiveAuthResponse::Failure { .. } => break,
                KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let answers = prompts
                        .iter()
                        .map(|_| password.expose().to_string())
                        .collect();
                    reply = handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await?;
                }
            }
        }
        tried.push("keyboard-interactive");
    }
    Err(SessionError::Auth(format!(
        "the router refused user {user:?} ({} tried): check username, password/private_key \
         and the router's `username`/`aaa` and `ip ssh` configuration",
        tried.join(", ")
    )))
}
