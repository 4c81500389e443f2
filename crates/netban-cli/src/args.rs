//! The command line of `netban`: its clap definition, apart from what runs it, so that
//! `xtask` generates the man page netban(1) and the shell completions from the same source
//! (see docs/packaging.md).

use clap::{Parser, Subcommand};
use netban_core::{OriginHost, Reason, Source};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "netban",
    version,
    about = "Ban abusive addresses on every enforcement point at once"
)]
pub struct Cli {
    /// Configuration file (for the socket path and, when the daemon is down, the ledger).
    #[arg(long, short, global = true, env = "NETBAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The daemon's socket (overrides the configuration).
    #[arg(long, global = true, env = "NETBAN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Talk to a daemon's HTTP API instead of the local socket (https://HOST:PORT; plain
    /// http only to a loopback address). ban, unban, list, history, status, plan and sync
    /// work this way, with the same output; nothing is recorded locally if it does not answer.
    #[arg(long, global = true, env = "NETBAN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// With --server: a file holding the API token (`netban token add`), readable by its
    /// owner only.
    #[arg(long, global = true, env = "NETBAN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// With --server: trust the CAs in this PEM file (a private CA) instead of the built-in
    /// public roots.
    #[arg(long, global = true, env = "NETBAN_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ban addresses or prefixes.
    Ban {
        /// Addresses or CIDR prefixes (IPv4 or IPv6).
        addresses: Vec<String>,
        /// Who asks: the fail2ban jail name, or another named origin.
        #[arg(long, short, default_value = "manual", value_parser = parse_source)]
        source: Source,
        /// Ban length in seconds; -1 = permanent (fail2ban's <bantime>).
        #[arg(
            long,
            short = 't',
            default_value_t = 3600,
            allow_negative_numbers = true,
            conflicts_with = "permanent"
        )]
        bantime: i64,
        /// Ban until unbanned.
        #[arg(long)]
        permanent: bool,
        #[arg(long, value_parser = parse_reason)]
        reason: Option<Reason>,
        /// Failures that triggered the ban (fail2ban's <failures>).
        #[arg(long)]
        failures: Option<u32>,
        /// 1 when fail2ban restores a ban at its start (<restored>): never escalates.
        #[arg(long, default_value_t = 0)]
        restored: u8,
        /// The reporting host (defaults to the daemon's host name).
        #[arg(long, value_parser = parse_origin)]
        origin_host: Option<OriginHost>,
        /// Also read addresses from standard input, one per line.
        #[arg(long)]
        stdin: bool,
        /// Print the per-address results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift bans: one source's, or every source's when --source is not given.
    Unban {
        addresses: Vec<String>,
        #[arg(long, short, value_parser = parse_source)]
        source: Option<Source>,
        /// Lift every ban of --source (fail2ban's actionflush). Never with addresses: an
        /// address that reads as `--all` must not turn an unban into a flush.
        #[arg(long, requires = "source", conflicts_with_all = ["addresses", "stdin"])]
        all: bool,
        #[arg(long, value_parser = parse_origin)]
        origin_host: Option<OriginHost>,
        #[arg(long)]
        stdin: bool,
        /// Print the per-address results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Active bans (effective expiry and every source).
    List {
        /// Only bans overlapping this address or prefix.
        address: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Per target: health, counts, last sync, last error.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// What each target would change now, changing nothing.
    Plan {
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Observe every target (or one) and repair drift now.
    Sync {
        #[arg(long)]
        target: Option<String>,
    },
    /// Every ban, unban and expiry of an address (and of prefixes around it).
    History {
        address: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Re-read the allowlist files now (the daemon also notices changes itself).
    Reload,
    /// Check the configuration, targets included.
    CheckConfig,
    /// The HTTP API's tokens (`[api] tokens`, default /etc/netban/tokens.toml).
    Token {
        /// The token store (overrides the configuration).
        #[arg(long)]
        store: Option<PathBuf>,
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Run the daemon (execs netban-daemon, installed beside this program).
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn parse_source(s: &str) -> Result<Source, String> {
    Source::new(s).map_err(|e| e.to_string())
}
fn parse_reason(s: &str) -> Result<Reason, String> {
    Reason::new(s).map_err(|e| e.to_string())
}
fn parse_origin(s: &str) -> Result<OriginHost, String> {
    OriginHost::new(s).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token and print it (once: only its SHA-256 is kept).
    Add {
        /// A name for it (letters, digits, '_' and '-'); history names its bans `api.NAME`.
        name: String,
        /// What it may do: read, ban (ban and unban under a source), admin, or bouncer (a
        /// CrowdSec bouncer's X-Api-Key on /v1/decisions; served every effective ban).
        #[arg(long, value_enum, default_value = "ban")]
        role: RoleArg,
        /// The only sources it may ban as (comma-separated; default: any).
        #[arg(long, value_delimiter = ',', value_parser = parse_source)]
        sources: Vec<Source>,
        /// The only IPv4 prefix lengths it may ban (comma-separated; default: any).
        #[arg(long, value_delimiter = ',')]
        prefix_lengths_v4: Vec<u8>,
        /// The only IPv6 prefix lengths it may ban (comma-separated; default: any).
        #[arg(long, value_delimiter = ',')]
        prefix_lengths_v6: Vec<u8>,
        /// When it stops working: a duration from now (30d, 12h, 90m, 2w) or an RFC 3339
        /// time (2027-01-31T00:00:00Z); default: never.
        #[arg(long)]
        expires: Option<String>,
    },
    /// The tokens (names, roles, limits; never the tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: it opens nothing from its next request on.
    Revoke { name: String },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RoleArg {
    Read,
    Ban,
    Admin,
    /// A CrowdSec bouncer's key (`X-Api-Key` on /v1/decisions), nothing else.
    Bouncer,
}
