//! Fault injection for the tests that prove a panic is never silent (debug builds only; a
//! release build compiles every call to nothing).
//!
//! `NETBAN_FAULT=<point>` in the daemon's environment makes the code at that [`Point`] panic
//! the first time it runs.

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// In a target worker, before it applies a change (no lock held).
    Worker,
    /// In the engine, while its state lock is held (applying committed bans).
    EngineLocked,
}

impl Point {
    #[cfg(debug_assertions)]
    fn name(self) -> &'static str {
        match self {
            Point::Worker => "worker",
            Point::EngineLocked => "engine-locked",
        }
    }
}

/// Panics when `NETBAN_FAULT` names `point` (debug builds only).
#[inline]
pub fn inject(point: Point) {
    #[cfg(debug_assertions)]
    {
        static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let fault = FAULT.get_or_init(|| std::env::var("NETBAN_FAULT").ok());
        if fault.as_deref() == Some(point.name()) {
            panic!("injected fault at {point:?} (NETBAN_FAULT)");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
