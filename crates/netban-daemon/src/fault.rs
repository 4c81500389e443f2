//! Fault injection for the tests that prove a panic is never silent (debug builds only; a
//! release build compiles every call to nothing).
//!
//! `NETBAN_FAULT=<point>` in the daemon's environment makes the code at that [`Point`] panic
//! (or stall) the first time it runs.

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// In a target worker, before it applies a change (no lock held).
    Worker,
    /// In the engine, while its state lock is held (applying committed bans).
    EngineLocked,
    /// The ledger thread, answering the watchdog: it stops for good instead ([`stall`]).
    LedgerStall,
}

impl Point {
    #[cfg(debug_assertions)]
    fn name(self) -> &'static str {
        match self {
            Point::Worker => "worker",
            Point::EngineLocked => "engine-locked",
            Point::LedgerStall => "ledger-stall",
        }
    }
}

/// Whether `NETBAN_FAULT` names `point` (always false in a release build).
#[inline]
fn armed(point: Point) -> bool {
    #[cfg(debug_assertions)]
    {
        static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let fault = FAULT.get_or_init(|| std::env::var("NETBAN_FAULT").ok());
        fault.as_deref() == Some(point.name())
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = point;
        false
    }
}

/// Panics when `NETBAN_FAULT` names `point` (debug builds only).
#[inline]
pub fn inject(point: Point) {
    if armed(point) {
        panic!("injected fault at {point:?} (NETBAN_FAULT)");
    }
}

/// Blocks this thread for good when `NETBAN_FAULT` names `point` (debug builds only): a
/// thread that is stuck, not dead.
#[inline]
pub fn stall(point: Point) {
    if armed(point) {
        tracing::warn!("injected fault at {point:?} (NETBAN_FAULT): this thread stops");
        loop {
            std::thread::park();
        }
    }
}
