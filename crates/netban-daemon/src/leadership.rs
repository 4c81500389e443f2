//! Leadership: whether this daemon may drive a target now.
//!
//! A per-host target (`scope = "host"`, each host's own nftables) is always driven by its
//! host. A shared target (`scope = "fleet"`: the edge router, the NACL, ExaFS) is driven by
//! exactly one daemon of the fleet at a time, the holder of its lease in the shared ledger
//! (`netban_ledger::postgres::lease`). With a SQLite ledger there is no fleet: every target
//! is driven by this daemon.
//!
//! The lease keeper (a thread of its own, on its own database connection) claims every shared
//! target's lease each [`RENEW`]. A successful claim sent at `t` lets this daemon drive until
//! `t + TTL - MARGIN` by its own monotonic clock, whatever happens next: a daemon cut off from
//! the database stops by itself before the server lets another host claim the lease, so two
//! daemons never drive one device at once. A daemon killed outright is replaced within
//! `TTL + RENEW` (3.5 s); one that stops cleanly releases its leases at once.
//!
//! Workers read their [`Leadership`] from a `watch` channel; they are woken only when it
//! changes hands or a lease of ours that lapsed by the clock is renewed, and check
//! [`Leadership::drives_at`] before every device operation.

use netban_core::Timestamp;
use netban_ledger::postgres::lease::{Claim, PostgresLeases};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a claim lasts on the server.
pub const TTL: Duration = Duration::from_secs(3);
/// How often the keeper claims (renews its own leases, tries for the others).
pub const RENEW: Duration = Duration::from_millis(500);
/// How long before the server-side expiry this daemon stops driving.
pub const MARGIN: Duration = Duration::from_millis(500);

/// A device operation on a shared target was not started, or was abandoned, because this
/// daemon's lease ran out.
#[derive(Debug, thiserror::Error)]
#[error("this host's lease on the shared target ran out (the ledger did not renew it); another host may drive it now")]
pub struct LeaseLapsed;

/// Whether this daemon drives a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This daemon drives the target, until `until` (`None`: for good — a per-host target,
    /// or a ledger no other host shares).
    Driving {
        since: Timestamp,
        until: Option<Instant>,
    },
    /// Another daemon drives it, or this one cannot tell (`driver: None`: the database is
    /// unreachable, so it must not drive).
    Standby {
        driver: Option<String>,
        since: Option<Timestamp>,
    },
}

impl Leadership {
    /// Whether this daemon may touch the device at `now`.
    pub fn drives_at(&self, now: Instant) -> bool {
        match self {
            Leadership::Driving { until, .. } => until.is_none_or(|u| now < u),
            Leadership::Standby { .. } => false,
        }
    }

    /// When this daemon must have stopped touching the device (`None`: never).
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Leadership::Driving { until, .. } => *until,
            Leadership::Standby { .. } => Some(Instant::now()),
        }
    }

    /// Same holder and kind (ignores the renewed deadline): what wakes a worker.
    fn same_hands(&self, other: &Leadership) -> bool {
        match (self, other) {
            (Leadership::Driving { since: a, .. }, Leadership::Driving { since: b, .. }) => a == b,
            (Leadership::Standby { driver: a, .. }, Leadership::Standby { driver: b, .. }) => {
                a == b
            }
            _ => false,
        }
    }
}

/// The lease of one shared target, as the keeper publishes it.
pub struct SharedTarget {
    /// The lease's name: the target's name, the same on every host.
    pub lease: String,
    pub leadership: watch::Sender<Leadership>,
}

/// Claims the leases of the shared targets until told to stop, then releases them.
pub struct LeaseKeeper {
    leases: PostgresLeases,
    /// This daemon's name in the lease table (its host name).
    me: String,
    targets: Vec<SharedTarget>,
    /// Whether the last claim reached the database (to log the change, not every failure).
    reachable: bool,
}

impl LeaseKeeper {
    pub fn new(leases: PostgresLeases, me: String, targets: Vec<SharedTarget>) -> LeaseKeeper {
        LeaseKeeper {
            leases,
            me,
            targets,
            reachable: true,
        }
    }

    /// Starts the keeper's thread; dropping the returned sender stops it (after it releases
    /// what it holds).
    pub fn start(mut self) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("netban-leases".into())
            .spawn(move || {
                loop {
                    self.claim_all();
                    match stopped.recv_timeout(RENEW) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
                self.release_all();
            })
            .expect("spawning the lease thread");
        (stop, thread)
    }

    fn claim_all(&mut self) {
        for target in &self.targets {
            let sent = Instant::now();
            let claim = self.leases.claim(&target.lease, &self.me, TTL);
            if claim.is_ok() && !std::mem::replace(&mut self.reachable, true) {
                tracing::info!(lease = %target.lease, "the ledger answers lease claims again");
            }
            let next = match claim {
                Ok(Claim::Held { since, .. }) => Leadership::Driving {
                    since: Timestamp(since),
                    until: Some(sent + TTL - MARGIN),
                },
                Ok(Claim::HeldBy { holder, since }) => Leadership::Standby {
                    driver: Some(holder),
                    since: Some(Timestamp(since)),
                },
                Err(error) => {
                    if std::mem::take(&mut self.reachable) {
                        tracing::error!(lease = %target.lease, %error, "cannot claim the lease of a shared target; not driving it once the current lease runs out");
                    }
                    // Keep driving until the deadline of the last successful claim, which
                    // lapses by itself; a standby no longer knows who drives.
                    let current = target.leadership.borrow().clone();
                    match current {
                        driving @ Leadership::Driving { .. } => driving,
                        Leadership::Standby { .. } => Leadership::Standby {
                            driver: None,
                            since: None,
                        },
                    }
                }
            };
            target.leadership.send_if_modified(|current| {
                let moved = !current.same_hands(&next);
                // Our lease lapsed by the clock (claims failed or came back late) and is ours
                // again: the hands are the same, but the workers stopped at the old deadline
                // and wait to be woken.
                let now = Instant::now();
                let resumed = !moved && !current.drives_at(now) && next.drives_at(now);
                if moved {
                    match &next {
                        Leadership::Driving { .. } => {
                            tracing::info!(lease = %target.lease, "this host now drives the shared target")
                        }
                        Leadership::Standby {
                            driver: Some(host), ..
                        } => tracing::info!(lease = %target.lease, driver = %host, "another host drives the shared target"),
                        Leadership::Standby { driver: None, .. } => {}
                    }
                }
                *current = next;
                moved || resumed
            });
        }
    }

    fn release_all(&mut self) {
        for target in &self.targets {
            if matches!(*target.leadership.borrow(), Leadership::Driving { .. }) {
                if let Err(error) = self.leases.release(&target.lease, &self.me) {
                    tracing::warn!(lease = %target.lease, %error, "could not release the lease; another host takes over when it expires");
                }
            }
            target.leadership.send_replace(Leadership::Standby {
                driver: None,
                since: None,
            });
        }
    }
}
