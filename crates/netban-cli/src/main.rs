//! `netban`: the command fail2ban actions and operators call.
//!
//! A thin client: it parses and validates input (nothing malformed is ever sent), talks to the
//! daemon over its Unix socket with blocking I/O (no async runtime, so a ban costs about a
//! millisecond), and prints results for people or, with `--json`, for scripts. When the daemon
//! is not running, `ban` and `unban` record directly in the ledger (durably, under the same
//! policy) and the daemon enforces them when it starts; `list` and `history` read the ledger.
//!
//! Exit status: 0 success; 1 refused or invalid input (nothing changed for that input);
//! 2 usage error; 3 the daemon is needed and not reachable.

mod client;
mod fallback;
mod output;

use anyhow::{anyhow, Context as _, Result};
use clap::{Parser, Subcommand};
use netban_config::Config;
use netban_core::{BanDuration, OriginHost, Prefix, Reason, Source};
use netban_proto::{BanArgs, Body, Request, UnbanArgs};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "netban",
    version,
    about = "Ban abusive addresses on every enforcement point at once"
)]
struct Cli {
    /// Configuration file (for the socket path and, when the daemon is down, the ledger).
    #[arg(long, short, global = true, env = "NETBAN_CONFIG")]
    config: Option<PathBuf>,
    /// The daemon's socket (overrides the configuration).
    #[arg(long, global = true, env = "NETBAN_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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

/// An error for which the exit status says "the daemon is needed and not reachable".
#[derive(Debug)]
struct DaemonDown(String);
impl std::fmt::Display for DaemonDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DaemonDown {}

/// Input that was refused: exit status 1.
#[derive(Debug)]
struct Refused;
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}
impl std::error::Error for Refused {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Refused>() => ExitCode::from(1),
        Err(e) if e.is::<DaemonDown>() => {
            eprintln!("netban: error: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("netban: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The configuration: the named file, or the default one if it exists, or built-in defaults.
fn load_config(path: &Option<PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => {
            let default = PathBuf::from(netban_config::DEFAULT_CONFIG);
            if default.exists() {
                Ok(Config::load(&default)?)
            } else {
                Ok(Config::default())
            }
        }
    }
}

/// Parses every input address; prints each bad one and refuses the whole command if any.
fn parse_addresses(mut inputs: Vec<String>, stdin: bool) -> Result<Vec<Prefix>> {
    if stdin {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading standard input")?;
            let line = line.trim_end_matches('\r');
            if !line.is_empty() {
                inputs.push(line.to_string());
            }
        }
    }
    if inputs.is_empty() {
        eprintln!("netban: error: no address given");
        return Err(Refused.into());
    }
    let mut prefixes = Vec::with_capacity(inputs.len());
    let mut bad = false;
    for input in &inputs {
        match Prefix::parse(input) {
            Ok(p) => prefixes.push(p),
            Err(e) => {
                eprintln!("netban: error: {e}");
                bad = true;
            }
        }
    }
    if bad {
        eprintln!("netban: nothing was changed");
        return Err(Refused.into());
    }
    Ok(prefixes)
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Serve { args } = &cli.command {
        return serve(cli.config.as_ref(), args);
    }
    if let Command::CheckConfig = &cli.command {
        let mut args = Vec::new();
        if let Some(c) = &cli.config {
            args.push("--config".to_string());
            args.push(c.display().to_string());
        }
        args.push("--check-config".into());
        return serve(None, &args);
    }
    let config = load_config(&cli.config)?;
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| config.daemon.socket.clone());
    let connect = || client::Connection::open(&socket);
    match cli.command {
        Command::Ban {
            addresses,
            source,
            bantime,
            permanent,
            reason,
            failures,
            restored,
            origin_host,
            stdin,
            json,
        } => {
            let prefixes = parse_addresses(addresses, stdin)?;
            let args = BanArgs {
                prefixes,
                source,
                duration: if permanent {
                    BanDuration::Permanent
                } else {
                    BanDuration::from_fail2ban(bantime)
                },
                reason,
                failures,
                origin_host,
                restored: restored != 0,
            };
            let results = match connect() {
                Ok(mut conn) => match conn.call(&Request::Ban(args))? {
                    Body::Banned { results } => results,
                    other => return Err(anyhow!("unexpected answer from the daemon: {other:?}")),
                },
                Err(down) => {
                    let results = fallback::ban(&config, &args)
                        .with_context(|| format!("the daemon is not reachable ({down}) and"))?;
                    if results.iter().any(|r| r.spooled) {
                        eprintln!(
                            "netban: the daemon is not running ({down}) and {} does not answer; \
                             recorded in the spool {}, forwarded when `netban serve` runs and \
                             the ledger answers",
                            config.daemon.ledger,
                            config.daemon.spool.display()
                        );
                    } else {
                        eprintln!(
                            "netban: the daemon is not running ({down}); recorded in the ledger \
                             {}, enforced when `netban serve` starts",
                            config.daemon.ledger
                        );
                    }
                    results
                }
            };
            output::item_results("banned", &results, json)
        }
        Command::Unban {
            addresses,
            source,
            all,
            origin_host,
            stdin,
            json,
        } => {
            let prefixes = if all {
                Vec::new()
            } else {
                parse_addresses(addresses, stdin)?
            };
            let args = UnbanArgs {
                prefixes,
                source,
                origin_host,
                all_of_source: all,
            };
            let results = match connect() {
                Ok(mut conn) => match conn.call(&Request::Unban(args))? {
                    Body::Unbanned { results } => results,
                    other => return Err(anyhow!("unexpected answer from the daemon: {other:?}")),
                },
                Err(down) => {
                    let results = fallback::unban(&config, &args)
                        .with_context(|| format!("the daemon is not reachable ({down}) and"))?;
                    eprintln!("netban: the daemon is not running ({down}); recorded in the ledger");
                    results
                }
            };
            output::item_results("unbanned", &results, json)
        }
        Command::List { address, json } => {
            let filter = address
                .map(|a| parse_addresses(vec![a], false))
                .transpose()?
                .map(|v| v[0]);
            let bans = match connect() {
                Ok(mut conn) => match conn.call(&Request::List { prefix: filter })? {
                    Body::List { bans } => bans,
                    other => return Err(anyhow!("unexpected answer from the daemon: {other:?}")),
                },
                Err(_) => fallback::list(&config, filter)?,
            };
            output::list(&bans, json)
        }
        Command::History {
            address,
            limit,
            json,
        } => {
            let prefix = parse_addresses(vec![address], false)?[0];
            let events = match connect() {
                Ok(mut conn) => match conn.call(&Request::History { prefix, limit })? {
                    Body::History { events } => events,
                    other => return Err(anyhow!("unexpected answer from the daemon: {other:?}")),
                },
                Err(_) => fallback::history(&config, prefix, limit)?,
            };
            output::history(&events, json)
        }
        Command::Status { json } => {
            let mut conn = connect().map_err(daemon_down)?;
            match conn.call(&Request::Status)? {
                Body::Status(report) => output::status(&report, json),
                other => Err(anyhow!("unexpected answer from the daemon: {other:?}")),
            }
        }
        Command::Plan { target, json } => {
            let mut conn = connect().map_err(daemon_down)?;
            match conn.call(&Request::Plan { target })? {
                Body::Plan { targets } => output::plan(&targets, json),
                other => Err(anyhow!("unexpected answer from the daemon: {other:?}")),
            }
        }
        Command::Sync { target } => {
            let mut conn = connect().map_err(daemon_down)?;
            match conn.call(&Request::Sync { target })? {
                Body::Synced { targets } => {
                    println!("synced: {}", targets.join(", "));
                    Ok(())
                }
                other => Err(anyhow!("unexpected answer from the daemon: {other:?}")),
            }
        }
        Command::Reload => {
            let mut conn = connect().map_err(daemon_down)?;
            match conn.call(&Request::Reload)? {
                Body::Reloaded {
                    allowlist_entries,
                    lifted,
                } => {
                    println!("allowlist: {allowlist_entries} entries");
                    for p in lifted {
                        println!("lifted {p} (now allowlisted)");
                    }
                    Ok(())
                }
                other => Err(anyhow!("unexpected answer from the daemon: {other:?}")),
            }
        }
        Command::Serve { .. } | Command::CheckConfig => unreachable!("handled above"),
    }
}

fn daemon_down(e: client::ConnectError) -> anyhow::Error {
    DaemonDown(format!(
        "the daemon is not reachable ({e}); start it with `netban serve`"
    ))
    .into()
}

/// Replaces this process with `netban-daemon` from the same directory.
fn serve(config: Option<&PathBuf>, args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe().context("locating this program")?;
    let daemon = me.with_file_name("netban-daemon");
    let mut command = std::process::Command::new(&daemon);
    if let Some(c) = config {
        command.arg("--config").arg(c);
    }
    command.args(args);
    let error = command.exec();
    Err(anyhow!(
        "cannot run {}: {error} (install netban-daemon beside netban)",
        daemon.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fail2ban's action puts `<ip>` after `--`: whatever it holds is then an address (and
    /// refused if it is not one), never an option; and `--all` never comes with addresses.
    #[test]
    fn addresses_after_double_dash_are_never_options() {
        let cli = Cli::try_parse_from(["netban", "unban", "--source", "sshd", "--", "--all"])
            .expect("`--` ends the options");
        let Command::Unban { addresses, all, .. } = cli.command else {
            panic!("not an unban")
        };
        assert_eq!(addresses, ["--all"]);
        assert!(!all);
        let cli = Cli::try_parse_from(["netban", "ban", "--source", "sshd", "--", "-1"])
            .expect("`--` ends the options");
        let Command::Ban { addresses, .. } = cli.command else {
            panic!("not a ban")
        };
        assert_eq!(addresses, ["-1"]);
        for args in [
            &[
                "netban",
                "unban",
                "--all",
                "--source",
                "sshd",
                "203.0.113.7",
            ][..],
            &[
                "netban",
                "unban",
                "203.0.113.7",
                "--all",
                "--source",
                "sshd",
            ],
            &["netban", "unban", "--all", "--source", "sshd", "--stdin"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["netban", "unban", "--all", "--source", "sshd"]).is_ok());
    }
}
