//! `netban`: the command fail2ban actions and operators call.
//!
//! A thin client: it parses and validates input (nothing malformed is ever sent), talks to the
//! daemon over its Unix socket with blocking I/O (no async runtime, so a ban costs about a
//! millisecond), and prints results for people or, with `--json`, for scripts. When the daemon
//! is not running, `ban` and `unban` record directly in the ledger (durably, under the same
//! policy) and the daemon enforces them when it starts; `list` and `history` read the ledger.
//!
//! With `--server https://…` the same commands go to a daemon's HTTP API instead
//! (`remote.rs`: a blocking HTTP client, set up only then), printed the same, without the
//! local fallback.
//!
//! Exit status: 0 success; 1 refused or invalid input (nothing changed for that input);
//! 2 usage error; 3 the daemon (or the `--server`) is needed and not reachable; 4 (`status`, `plan`) the daemon
//! answers but something is broken: a target is down or cannot be planned, or the ledger does
//! not answer (for monitoring checks).

mod args;
mod client;
mod fallback;
mod output;
mod remote;
mod token;

use anyhow::{anyhow, Context as _, Result};
use args::{Cli, Command};
use clap::Parser;
use netban_config::Config;
use netban_core::{BanDuration, Prefix};
use netban_proto::{BanArgs, Body, Request, UnbanArgs, MAX_PREFIXES_PER_REQUEST};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

/// An error for which the exit status says "the daemon is needed and not reachable".
#[derive(Debug)]
struct DaemonDown(String);
impl std::fmt::Display for DaemonDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DaemonDown {}

/// `status` or `plan` found something broken (already printed): exit status 4.
#[derive(Debug)]
struct Unhealthy(String);
impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Unhealthy {}

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
        Err(e)
            if e.is::<DaemonDown>()
                || matches!(
                    e.downcast_ref::<remote::RemoteError>(),
                    Some(remote::RemoteError::Unreachable { .. })
                ) =>
        {
            eprintln!("netban: error: {e}");
            ExitCode::from(3)
        }
        Err(e) if e.is::<Unhealthy>() => {
            eprintln!("netban: {e}");
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("netban: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The configuration: the named file, or the default one if it exists, or built-in defaults.
/// Only what the client needs is read: never the `[[targets]]` tables nor their secrets.
fn load_config(path: &Option<PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load_for_client(p)?),
        None => {
            let default = PathBuf::from(netban_config::DEFAULT_CONFIG);
            if default.exists() {
                Ok(Config::load_for_client(&default)?)
            } else {
                Ok(Config::default())
            }
        }
    }
}

/// Parses every input address; prints each bad one and refuses the whole command if any.
pub(crate) fn parse_addresses(mut inputs: Vec<String>, stdin: bool) -> Result<Vec<Prefix>> {
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
    if let (Some(server), false) = (&cli.server, matches!(cli.command, Command::Token { .. })) {
        let remote =
            remote::Remote::open(server, cli.token_file.as_deref(), cli.ca_file.as_deref())?;
        return remote::run(&remote, cli.command);
    }
    let config = load_config(&cli.config)?;
    if let Command::Token { store, action } = cli.command {
        let store = store.unwrap_or_else(|| {
            config.api.as_ref().map_or_else(
                || PathBuf::from(netban_config::api::DEFAULT_TOKENS),
                |a| a.tokens.clone(),
            )
        });
        return token::run(&store, action);
    }
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
            // A batch the protocol allows at a time; what the daemon did not answer is
            // recorded by this client (`fallback_ban`).
            let parts = args
                .prefixes
                .chunks(MAX_PREFIXES_PER_REQUEST)
                .map(|chunk| BanArgs {
                    prefixes: chunk.to_vec(),
                    ..args.clone()
                });
            let results = in_parts(connect(), parts, Request::Ban, |part, sent, why| {
                // A ban the daemon got but did not answer may be committed: record it again
                // (the ledger keeps one row per address and source) but without escalation,
                // so a committed ban is never lengthened twice.
                let part = BanArgs {
                    restored: part.restored || sent,
                    ..part
                };
                fallback_ban(&config, &part, why)
            })?;
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
            // At least one request, even with no prefixes (unbanning every address of a source).
            let chunks: Vec<&[Prefix]> = if args.prefixes.is_empty() {
                vec![&[]]
            } else {
                args.prefixes.chunks(MAX_PREFIXES_PER_REQUEST).collect()
            };
            let parts = chunks.into_iter().map(|chunk| UnbanArgs {
                prefixes: chunk.to_vec(),
                ..args.clone()
            });
            let results = in_parts(connect(), parts, Request::Unban, |part, _, why| {
                fallback_unban(&config, &part, why)
            })?;
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
                Body::Status(report) => show_status(&report, json),
                other => Err(anyhow!("unexpected answer from the daemon: {other:?}")),
            }
        }
        Command::Plan { target, json } => {
            let mut conn = connect().map_err(daemon_down)?;
            match conn.call(&Request::Plan { target })? {
                Body::Plan { targets } => show_plan(&targets, json),
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
        Command::Serve { .. } | Command::CheckConfig | Command::Token { .. } => {
            unreachable!("handled above")
        }
    }
}

/// Prints `netban status`; exit status 4 when a target is down or the ledger is in trouble.
pub(crate) fn show_status(report: &netban_proto::StatusReport, json: bool) -> Result<()> {
    output::status(report, json)?;
    let mut broken: Vec<String> = report
        .targets
        .iter()
        .filter(|t| t.health == netban_proto::Health::Down)
        .map(|t| format!("target {} is down", t.name))
        .collect();
    if report.ledger_health.unreachable_since.is_some() {
        broken.push("the ledger does not answer".into());
    }
    if report.ledger_health.damaged.is_some() {
        broken.push("the ledger file is damaged".into());
    }
    broken.extend(
        report
            .sources
            .iter()
            .filter(|s| s.down_since.is_some())
            .map(|s| format!("source {} does not answer", s.name)),
    );
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Unhealthy(broken.join("; ")).into())
    }
}

/// Prints `netban plan`; exit status 4 when a target cannot be planned.
pub(crate) fn show_plan(targets: &[netban_proto::TargetPlan], json: bool) -> Result<()> {
    output::plan(targets, json)?;
    let failed: Vec<&str> = targets
        .iter()
        .filter(|t| t.error.is_some())
        .map(|t| t.target.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Unhealthy(format!("cannot plan {}", failed.join(", "))).into())
    }
}

/// Sends each part (a batch the protocol allows) to the daemon in turn. A part the daemon
/// does not answer, and every part after it, goes to `fallback`, told whether the daemon may
/// have received it (`sent`) and why there was no answer. A refusal ends it with an error.
fn in_parts<P: Clone>(
    mut daemon: Result<client::Connection, client::ConnectError>,
    parts: impl IntoIterator<Item = P>,
    request: impl Fn(P) -> Request,
    fallback: impl Fn(P, bool, &dyn std::fmt::Display) -> Result<Vec<netban_proto::ItemResult>>,
) -> Result<Vec<netban_proto::ItemResult>> {
    let mut results = Vec::new();
    for part in parts {
        let conn = match &mut daemon {
            Ok(conn) => conn,
            Err(down) => {
                results.extend(fallback(part, false, down)?);
                continue;
            }
        };
        match conn.call_within(&request(part.clone()), client::BAN_ANSWER_TIMEOUT) {
            Ok(Body::Banned { results: r } | Body::Unbanned { results: r }) => results.extend(r),
            Ok(other) => return Err(anyhow!("unexpected answer from the daemon: {other:?}")),
            Err(client::CallError::Refused(message)) => return Err(anyhow!(message)),
            Err(no_answer) => {
                results.extend(fallback(part, true, &no_answer)?);
                daemon = Err(client::ConnectError::from(no_answer));
            }
        }
    }
    Ok(results)
}

/// Records bans itself when the daemon gave no answer (`why`): in the SQLite ledger, or in
/// this host's spool when the ledger is the fleet's PostgreSQL (the daemon forwards it).
fn fallback_ban(
    config: &Config,
    args: &BanArgs,
    why: &dyn std::fmt::Display,
) -> Result<Vec<netban_proto::ItemResult>> {
    let results = fallback::ban(config, args)
        .with_context(|| format!("the daemon is not reachable ({why}) and"))?;
    if results.iter().any(|r| r.spooled) {
        eprintln!(
            "netban: the daemon is not reachable ({why}); recorded in the spool {}, forwarded \
             to {} when `netban serve` runs",
            config.daemon.spool.display(),
            config.daemon.ledger
        );
    } else if results.iter().any(|r| r.changed) {
        eprintln!(
            "netban: the daemon is not reachable ({why}); recorded in the ledger {}, enforced \
             when `netban serve` starts",
            config.daemon.ledger
        );
    }
    Ok(results)
}

/// Records unbans itself when the daemon gave no answer (`why`), like [`fallback_ban`].
fn fallback_unban(
    config: &Config,
    args: &UnbanArgs,
    why: &dyn std::fmt::Display,
) -> Result<Vec<netban_proto::ItemResult>> {
    let results = fallback::unban(config, args)
        .with_context(|| format!("the daemon is not reachable ({why}) and"))?;
    let place = if config.daemon.ledger.is_shared() {
        format!("the spool {}", config.daemon.spool.display())
    } else {
        format!("the ledger {}", config.daemon.ledger)
    };
    eprintln!("netban: the daemon is not reachable ({why}); recorded in {place}");
    Ok(results)
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
