//! `xtask`: files generated at packaging time from the binaries' own clap definitions, so that
//! the man pages and the shell completions never drift from `--help`.
//!
//! ```text
//! cargo run -p xtask -- man DIR           netban.1, netban-<command>.1, netban-daemon.8
//! cargo run -p xtask -- completions DIR   netban.bash, _netban (zsh), netban.fish
//! ```
//!
//! The definitions are the binaries' `args.rs` files, compiled into this program as modules
//! (they need only clap and netban-core/netban-config, not the client's or the daemon's
//! code). scripts/package.sh runs both and installs the results (docs/packaging.md).

use anyhow::{bail, Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../../netban-cli/src/args.rs"]
mod netban_args;

#[allow(dead_code)]
#[path = "../../netban-daemon/src/args.rs"]
mod daemon_args;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (task, dir) = match (args.next(), args.next(), args.next()) {
        (Some(task), Some(dir), None) => (task, PathBuf::from(dir)),
        _ => bail!("usage: xtask man DIR | xtask completions DIR"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    match task.as_str() {
        "man" => man_pages(&dir),
        "completions" => completions(&dir),
        other => bail!("unknown task {other:?}: use `man` or `completions`"),
    }
}

/// What the binaries' `--help` cannot say: where the files are, how `netban` exits, and where
/// to read on.
const CLIENT_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
.B 0
Success.
.TP
.B 1
Refused or invalid input (nothing changed for that input), or another error.
.TP
.B 2
Usage error.
.TP
.B 3
The daemon is needed and not reachable.
.TP
.B 4
.RB ( status ", " plan )
The daemon answers but something is broken: a target is down or cannot be planned, or the
ledger does not answer (for monitoring checks).
.SH FILES
.TP
.I /etc/netban/netban.toml
The configuration (socket path; the ledger, used directly when the daemon is down).
.TP
.I /run/netban/netban.sock
The daemon's socket. Root and members of the
.B netban
group (the default
.BR ban_group )
may ban and unban; see the
.B [daemon.access]
section of the configuration.
.TP
.I /etc/fail2ban/action.d/netban.py
fail2ban's in-process action (and
.I netban.conf
, the shell action calling this program).
.SH "SEE ALSO"
.BR netban-daemon (8),
.BR fail2ban-client (1),
.IR /usr/share/doc/netban/
"#;

const DAEMON_EXTRA: &str = r#".SH FILES
.TP
.I /etc/netban/netban.toml
The configuration: ledger, policy, targets.
.TP
.I /var/lib/netban/
The SQLite ledger (when configured there, as by default in the packaged configuration).
.TP
.I /run/netban/netban.sock
The socket clients and fail2ban's action talk to.
.TP
.I /lib/systemd/system/netban.service
The systemd unit running this program.
.SH ENVIRONMENT
.TP
.B NETBAN_LOG
Log filter (tracing's syntax, e.g.
.B info
or
.BR netban_daemon=debug );
default
.BR info .
.SH "SEE ALSO"
.BR netban (1),
.BR systemctl (1),
.IR /usr/share/doc/netban/
"#;

/// netban(1), one page per subcommand (netban-ban(1), …) as git does, and netban-daemon(8).
fn man_pages(dir: &Path) -> Result<()> {
    let mut client = netban_args::Cli::command();
    write_page(dir, client.clone(), "1", CLIENT_EXTRA)?;
    // Built, the subcommands carry the global options (--config, --socket) too.
    client.build();
    for sub in client
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
    {
        // Command names are `&'static str` without clap's `string` feature (which would
        // rebuild clap for the whole workspace); a dozen leaked names in a build tool.
        let name: &'static str = format!("netban-{}", sub.get_name()).leak();
        let page = sub
            .clone()
            .name(name)
            .bin_name(format!("netban {}", sub.get_name()));
        let see_also = ".SH \"SEE ALSO\"\n.BR netban (1)\n";
        write_page(dir, page, "1", see_also)?;
    }
    write_page(dir, daemon_args::Args::command(), "8", DAEMON_EXTRA)
}

/// Renders `command`'s page in `section`, with `extra` (roff) appended, to DIR/NAME.SECTION.
fn write_page(dir: &Path, command: clap::Command, section: &str, extra: &str) -> Result<()> {
    let path = dir.join(format!("{}.{section}", command.get_name()));
    let mut roff = Vec::new();
    clap_mangen::Man::new(command)
        .section(section)
        .manual("netban")
        .source(format!("netban {}", env!("CARGO_PKG_VERSION")))
        .render(&mut roff)
        .with_context(|| format!("rendering {}", path.display()))?;
    roff.extend_from_slice(extra.as_bytes());
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))
}

/// Completions of `netban` for bash, zsh and fish, named as each shell's loader looks for them
/// once installed (docs/packaging.md gives the paths).
fn completions(dir: &Path) -> Result<()> {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut command = netban_args::Cli::command();
        let path = clap_complete::generate_to(shell, &mut command, "netban", dir)
            .with_context(|| format!("writing the {shell} completion into {}", dir.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
