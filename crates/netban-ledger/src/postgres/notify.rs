//! A wake-up for the change feed: `LISTEN netban_feed` on a connection of its own.
//!
//! Every transaction of the ledger that writes an event also sends `NOTIFY netban_feed`
//! (no payload: the events table is the truth, the notification only says "read the feed
//! now"). PostgreSQL delivers it right after the writer's commit, to every session listening
//! on the primary, so another host's ban reaches this daemon without waiting for its next
//! poll. Notifications are not queued for a listener that is disconnected: they are lost, and
//! that is fine, because [`FeedListener::wait`] reports every (re)connection as a wake-up too,
//! and the reader then finds in the feed whatever was written meanwhile.
//!
//! The connection is bounded like the leases' (keepalives, `tcp_user_timeout`, a short
//! `connect_timeout`): a listener cut off from the database notices within seconds, and the
//! next call connects again, through a multi-host string with `target_session_attrs=read-write`
//! to whichever server is the primary now (a standby refuses `LISTEN`). Every [`CHECK_EVERY`]
//! it also asks its server whether it still takes writes, and connects again if not.

use super::watch_config;
use crate::LedgerError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};
use std::path::Path;
use std::time::{Duration, Instant};

/// The channel every writing transaction notifies.
pub const CHANNEL: &str = "netban_feed";
/// What a writing transaction sends before it commits.
pub const NOTIFY_SQL: &str = "NOTIFY netban_feed";

/// Waits for other sessions' commits on a PostgreSQL ledger (see the module documentation).
pub struct FeedListener {
    config: Config,
    target: String,
    client: Option<Client>,
    /// When the server was last seen taking writes (see [`CHECK_EVERY`]).
    checked: Instant,
}

/// How often a listener checks that its server still takes writes. A server fenced by the
/// operator (`default_transaction_read_only`) while a standby is promoted keeps its sessions
/// open, and a listener left there would hear nothing of the new primary's commits.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

impl std::fmt::Debug for FeedListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedListener")
            .field("target", &self.target)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl FeedListener {
    /// Prepares a listener on the ledger `url` names; it connects at the first
    /// [`FeedListener::wait`].
    pub fn new(url: &str, password_file: Option<&Path>) -> Result<FeedListener, LedgerError> {
        let config = watch_config(url, password_file)?;
        let target = super::describe(&config);
        Ok(FeedListener {
            config,
            target,
            client: None,
            checked: Instant::now(),
        })
    }

    /// Waits up to `timeout` for a notification. `Ok(true)`: the feed may hold new events
    /// (a notification arrived; those that arrived together are taken as one; or the listener
    /// has just connected, so notifications may have been missed before). `Ok(false)`:
    /// nothing within `timeout`. An error means the connection failed or broke; the next
    /// call connects again (the caller decides how long to back off).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, LedgerError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.checked.elapsed() >= CHECK_EVERY {
            if let Some(client) = self.client.as_mut() {
                let read_only = client
                    .query_one("SHOW transaction_read_only", &[])
                    .map(|row| row.get::<_, String>(0) == "on");
                self.checked = Instant::now();
                match read_only {
                    Ok(false) => {}
                    // Connect again: `target_session_attrs=read-write` finds the primary.
                    Ok(true) | Err(_) => self.client = None,
                }
            }
        }
        let Some(client) = self.client.as_mut() else {
            self.connect()?;
            return Ok(true);
        };
        let woken = (|| {
            let woken = client
                .notifications()
                .timeout_iter(timeout)
                .next()?
                .is_some();
            // Take whatever else is already buffered: a burst of commits is one wake-up.
            let mut pending = client.notifications();
            let mut pending = pending.iter();
            while pending.next()?.is_some() {}
            Ok(woken)
        })();
        if woken.is_err() {
            self.client = None;
        }
        woken
    }

    /// Whether the listener has an open connection (it had when `wait` last returned).
    pub fn is_connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// The servers and database, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn connect(&mut self) -> Result<(), LedgerError> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|error| LedgerError::Connect {
                target: self.target.clone(),
                error,
            })?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        self.client = Some(client);
        self.checked = Instant::now();
        Ok(())
    }
}
