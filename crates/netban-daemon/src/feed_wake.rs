//! The feed wake-up: with a PostgreSQL ledger, other hosts' writes reach this daemon as soon
//! as they commit, not at its next poll.
//!
//! A thread of its own waits on a [`FeedListener`] (its own database connection, `LISTEN
//! netban_feed`) and, on each wake-up, queues [`Job::ReadFeed`] for the ledger thread. A
//! burst of notifications that arrived together is one job, and jobs queued while the ledger
//! thread is busy are one group with one feed read. The feed stays the truth: a notification
//! lost while the listener was disconnected costs nothing, since a (re)connection is a
//! wake-up too and the housekeeping poll (`poll_millis`) goes on regardless.

use crate::ledger_worker::{Job, LedgerHandle};
use netban_ledger::postgres::notify::FeedListener;
use std::sync::mpsc;
use std::time::Duration;

/// How long one wait blocks before the thread checks whether it should stop.
const WAIT: Duration = Duration::from_millis(200);
/// How long the thread waits before connecting again after the connection failed.
const RETRY: Duration = Duration::from_secs(1);

/// Starts the thread; dropping the returned sender stops it (within [`WAIT`] or [`RETRY`]).
pub fn start(
    mut listener: FeedListener,
    ledger: LedgerHandle,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("netban-feed-wake".into())
        .spawn(move || {
            // Whether the last wait reached the database (to log the change, not every failure).
            let mut reachable = true;
            loop {
                let pause = match listener.wait(WAIT) {
                    Ok(woken) => {
                        if !std::mem::replace(&mut reachable, true) {
                            tracing::info!(ledger = %listener.target(), "listening to the ledger's change feed again");
                        }
                        if woken {
                            ledger.send(Job::ReadFeed);
                        }
                        Duration::ZERO
                    }
                    Err(error) => {
                        if std::mem::take(&mut reachable) {
                            tracing::warn!(%error, "cannot listen to the ledger's change feed; other hosts' bans arrive at the next poll until it reconnects");
                        }
                        RETRY
                    }
                };
                match stopped.recv_timeout(pause) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
        })
        .expect("spawning the feed wake-up thread");
    (stop, thread)
}
