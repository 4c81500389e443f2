//! `/ui/events`: a server-sent event stream telling the console that something it shows has
//! changed. Pushed, not polled: the engine's ban-table generation (bumped after each batch of
//! ledger events) and a targets generation (bumped by one small task per worker when the
//! status it publishes really differs from the last one).
//!
//! Each stream sends `ready` at once (the page refreshes then, so nothing that happened while
//! it connected is missed), then `change` when either generation moves, at most one every
//! [`COALESCE`] (a burst of 10,000 bans is a handful of refreshes, not 10,000), and ends when
//! the daemon stops.

use super::Console;
use crate::server::Context;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a stream gathers changes before it tells the page.
const COALESCE: Duration = Duration::from_millis(200);

/// What every stream watches.
pub(super) struct Live {
    bans: watch::Receiver<u64>,
    targets: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

impl Live {
    /// Starts one task per worker that turns its status changes into the targets generation;
    /// they end with the worker or at `shutdown`.
    pub(super) fn start(context: &Context, shutdown: watch::Receiver<bool>) -> Live {
        let (generation, targets) = watch::channel(0u64);
        let generation = Arc::new(generation);
        for worker in &context.workers {
            let mut status = worker.status_changes();
            let mut stop = shutdown.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                let mut shown = status.borrow_and_update().clone();
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => break,
                        changed = status.changed() => if changed.is_err() { break },
                    }
                    let now = status.borrow_and_update().clone();
                    // The worker republishes its counts on every pass; only a difference is
                    // news.
                    if now != shown {
                        shown = now;
                        generation.send_modify(|g| *g += 1);
                    }
                }
            });
        }
        Live {
            bans: context.engine.changes(),
            targets,
            shutdown,
        }
    }
}

/// One stream's watchers.
struct Watch {
    bans: watch::Receiver<u64>,
    targets: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    ready: bool,
}

impl Watch {
    fn generations(&mut self) -> String {
        format!(
            "bans={} targets={}",
            *self.bans.borrow_and_update(),
            *self.targets.borrow_and_update()
        )
    }

    /// The next event, or `None` once the daemon stops.
    async fn next(&mut self) -> Option<Event> {
        if !self.ready {
            self.ready = true;
            return Some(Event::default().event("ready").data(self.generations()));
        }
        tokio::select! {
            _ = self.shutdown.wait_for(|stop| *stop) => return None,
            changed = self.bans.changed() => changed.ok()?,
            changed = self.targets.changed() => changed.ok()?,
        }
        tokio::select! {
            _ = self.shutdown.wait_for(|stop| *stop) => return None,
            () = tokio::time::sleep(COALESCE) => {}
        }
        Some(Event::default().event("change").data(self.generations()))
    }
}

/// `GET /ui/events` (any valid token).
pub(super) async fn stream(
    State(console): State<Arc<Console>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let live = &console.live;
    let watch = Watch {
        bans: live.bans.clone(),
        targets: live.targets.clone(),
        shutdown: live.shutdown.clone(),
        ready: false,
    };
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok(event), watch))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
