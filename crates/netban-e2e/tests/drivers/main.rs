//! The daemon through each driver: the real `netban-daemon` with a driver's target, driven by
//! the real `netban` client, against the driver's real peer (started by
//! `netban_testlab::peers`). One test binary (one link step) with a module per driver; the
//! drivers' own tests, without the daemon, are netban-targets' `tests/<driver>.rs`.
//!
//! Needs the binaries built (`cargo build --workspace --bins`; `scripts/test.sh` does it) and
//! the peers installed (`scripts/setup.sh`); the AWS placement test and the source-based RTBH
//! test (`srtbh`, BGP through BIRD and FRR) need network namespaces.

mod aws;
mod cisco_ios;
mod exafs;
mod feed;
mod flowspec;
mod netconf;
mod protection;
mod secrets;
mod srtbh;
