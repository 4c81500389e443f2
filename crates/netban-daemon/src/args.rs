//! The command line of `netban-daemon`: its clap definition, apart from what runs it, so that
//! `xtask` generates the man page netban-daemon(8) from the same source (see docs/packaging.md).

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "netban-daemon",
    version,
    about = "netban's daemon (usually started as `netban serve`)"
)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, env = "NETBAN_CONFIG", default_value = netban_config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Check the configuration (targets included) and exit.
    #[arg(long)]
    pub check_config: bool,
}
