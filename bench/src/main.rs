//! `netban-bench`: every netban benchmark beside its reference, run on this machine in one run
//! and printed as one table (`bench/run.sh` builds a release and runs it).
//!
//! A benchmark is a [`Section`]: a name, whether it runs by default or only with `--drivers`,
//! and a function that measures and adds rows to the [`Table`]. To add one, write a module
//! with a `run(&Context, &mut Table)` function and list it in [`SECTIONS`]. Each section states
//! its workload and its reference (a process per ban the way fail2ban or the seed scripts do
//! it, GoBGP, netmiko, ncclient, boto3, CrowdSec's LAPI) and prints the ratio; the references' scripts are in
//! `bench/reference/`.

mod api;
mod core;
#[cfg(feature = "crowdsec")]
mod crowdsec;
mod drivers;
mod feed;
mod fleet;
mod table;

use netban_testlab::netban::Binaries;
use netban_testlab::netns_available;
use std::path::PathBuf;
use std::process::ExitCode;
use table::Table;

/// What every section gets: the built binaries, the reference scripts, the run's options.
pub struct Context {
    pub bins: Binaries,
    /// `bench/reference/`.
    pub reference: PathBuf,
    /// Smaller sizes for the core benchmarks.
    pub quick: bool,
}

impl Context {
    /// A reference script in `bench/reference/`.
    pub fn reference(&self, script: &str) -> PathBuf {
        self.reference.join(script)
    }
}

/// Which runs include a section.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(any(
        feature = "exafs",
        feature = "bgp",
        feature = "cisco-ios",
        feature = "netconf",
        feature = "aws",
        feature = "crowdsec"
    )),
    allow(dead_code)
)]
enum Group {
    /// Every run.
    Core,
    /// Runs with `--drivers` (each starts a driver's real peer; minutes each).
    Drivers,
    /// Runs with `--fleet` (several daemons on a PostgreSQL ledger, the SSH reference; a few
    /// minutes).
    Fleet,
}

/// One benchmark: a name for `--only`, its group and its measurement.
struct Section {
    name: &'static str,
    group: Group,
    run: fn(&Context, &mut Table) -> Result<(), String>,
}

const SECTIONS: &[Section] = &[
    Section {
        name: "core",
        group: Group::Core,
        run: core::run,
    },
    Section {
        name: "api",
        group: Group::Core,
        run: api::run,
    },
    #[cfg(feature = "exafs")]
    Section {
        name: "exafs",
        group: Group::Drivers,
        run: drivers::exafs::run,
    },
    #[cfg(feature = "bgp")]
    Section {
        name: "bgp",
        group: Group::Drivers,
        run: drivers::bgp::run,
    },
    #[cfg(feature = "bgp")]
    Section {
        name: "flowspec",
        group: Group::Drivers,
        run: drivers::flowspec::run,
    },
    #[cfg(feature = "cisco-ios")]
    Section {
        name: "cisco_ios",
        group: Group::Drivers,
        run: drivers::cisco_ios::run,
    },
    #[cfg(feature = "netconf")]
    Section {
        name: "netconf",
        group: Group::Drivers,
        run: drivers::netconf::run,
    },
    #[cfg(feature = "aws")]
    Section {
        name: "aws",
        group: Group::Drivers,
        run: drivers::aws::run,
    },
    #[cfg(feature = "crowdsec")]
    Section {
        name: "crowdsec",
        group: Group::Drivers,
        run: crowdsec::run,
    },
    Section {
        name: "feed",
        group: Group::Core,
        run: feed::run,
    },
    Section {
        name: "fleet",
        group: Group::Fleet,
        run: fleet::run,
    },
];

const USAGE: &str =
    "usage: netban-bench [--bin-dir DIR] [--reference-dir DIR] [--quick] [--drivers] \
                     [--fleet] [--only NAME[,NAME…]]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut bin_dir, mut reference) = (None, PathBuf::from("bench/reference"));
    let (mut quick, mut drivers, mut fleet, mut only) = (false, false, false, None::<Vec<String>>);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bin-dir" => bin_dir = args.next().map(PathBuf::from),
            "--reference-dir" => reference = args.next().map(PathBuf::from).unwrap_or(reference),
            "--quick" => quick = true,
            "--drivers" => drivers = true,
            "--fleet" => fleet = true,
            "--only" => {
                only = args
                    .next()
                    .map(|v| v.split(',').map(str::to_string).collect())
            }
            "-h" | "--help" => {
                println!("{USAGE}\nsections: {}", names().join(", "));
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("{USAGE} (got {other:?})");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(unknown) = only
        .iter()
        .flatten()
        .find(|n| !names().contains(&n.as_str()))
    {
        eprintln!(
            "netban-bench: no section {unknown:?}; sections: {}",
            names().join(", ")
        );
        return ExitCode::from(2);
    }
    if let Err(e) = netns_available() {
        eprintln!("netban-bench: network namespaces are needed (run as root): {e}");
        return ExitCode::FAILURE;
    }
    let context = Context {
        bins: match bin_dir {
            Some(d) => Binaries::in_dir(&d),
            None => Binaries::locate(),
        },
        reference,
        quick,
    };
    let chosen = SECTIONS.iter().filter(|s| match &only {
        Some(names) => names.iter().any(|n| n == s.name),
        None => match s.group {
            Group::Core => true,
            Group::Drivers => drivers,
            Group::Fleet => fleet,
        },
    });
    let build = if cfg!(debug_assertions) {
        "DEBUG build (figures not representative; bench/run.sh builds a release)"
    } else {
        "release build"
    };
    let mut table = Table::start(&format!(
        "netban benchmarks: {} cores, {build}{}; every figure from this run",
        cores(),
        if quick { ", quick sizes" } else { "" }
    ));
    let mut failed = false;
    for section in chosen {
        // A section that fails (an error, or a peer's assertion) is reported and the others
        // still run.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (section.run)(&context, &mut table)
        }));
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => "panicked (see above)".to_string(),
        };
        eprintln!("netban-bench: {}: {error}", section.name);
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn names() -> Vec<&'static str> {
    SECTIONS.iter().map(|s| s.name).collect()
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
