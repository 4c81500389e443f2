//! systemd's service notification protocol (sd_notify(3)), spoken directly: one datagram per
//! state to the socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). Without that variable (not started by systemd) every call does nothing.
//!
//! - `READY=1` once the socket is bound and every task runs (`Type=notify` in the unit);
//! - `STOPPING=1` when shutdown begins;
//! - `WATCHDOG=1` every half of `$WATCHDOG_USEC`, but only while the daemon is alive inside:
//!   the ledger thread answers a [`Job::Alive`] and the engine's lock can be taken, each
//!   within that half. A wedged ledger thread or a deadlocked engine stops the pings, and
//!   systemd (`WatchdogSec=` in the unit) kills and restarts the daemon.

use crate::engine::Engine;
use crate::ledger_worker::{Job, LedgerHandle};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notifications, if systemd asked for them.
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for (`None` when it is unset or unusable, logged).
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy();
        let address = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())
            }
            None => SocketAddr::from_pathname(&*name),
        };
        let notifier = address.and_then(|address| {
            Ok(Notifier {
                socket: UnixDatagram::unbound()?,
                address,
            })
        });
        match notifier {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::error!(error = %e, socket = %name, "cannot use NOTIFY_SOCKET");
                None
            }
        }
    }

    /// Sends one state line (`READY=1`, …); failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::warn!(error = %e, state, "notifying systemd failed");
        }
    }
}

/// The watchdog interval systemd asked for (`$WATCHDOG_USEC`, for this process if
/// `$WATCHDOG_PID` names one).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every half `interval` while the daemon is alive inside (see the module
/// documentation); runs until the task is dropped.
pub async fn watchdog(
    notifier: std::sync::Arc<Notifier>,
    interval: Duration,
    ledger: LedgerHandle,
    engine: Engine,
) {
    let half = interval / 2;
    let mut ticks = tokio::time::interval(half);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent = false;
    loop {
        ticks.tick().await;
        let ledger_alive = tokio::time::timeout(half, ledger.ask(|reply| Job::Alive { reply }))
            .await
            .is_ok_and(|answer| answer.is_ok());
        let engine = engine.clone();
        let engine_alive = tokio::time::timeout(
            half,
            tokio::task::spawn_blocking(move || engine.active_bans()),
        )
        .await
        .is_ok_and(|joined| joined.is_ok());
        if ledger_alive && engine_alive {
            notifier.notify("WATCHDOG=1");
            silent = false;
        } else if !silent {
            silent = true;
            tracing::error!(
                ledger_alive,
                engine_alive,
                "the daemon is stuck inside; the watchdog is no longer fed, so systemd restarts it"
            );
        }
    }
}
