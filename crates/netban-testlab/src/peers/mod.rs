//! The real peer of each driver, started per test (or per benchmark) on free loopback ports or
//! inside a lab namespace, in its own scratch directory, and killed by PID when dropped. Each
//! is installed by `scripts/setup.d/DRIVER.sh`. The driver tests (netban-targets), the driver
//! end-to-end tests (netban-e2e) and the benchmarks (bench/) all use these, so each peer is
//! set up in one place.

#[cfg(feature = "bgp")]
pub mod bgp_routers;
#[cfg(feature = "chromium")]
pub mod chromium;
#[cfg(feature = "crowdsec")]
pub mod crowdsec;
#[cfg(feature = "exafs")]
pub mod exafs;
#[cfg(feature = "aws")]
pub mod imds;
#[cfg(feature = "cisco-ios")]
pub mod ios;
#[cfg(feature = "aws")]
pub mod moto;
#[cfg(feature = "netconf")]
pub mod netconfd;
