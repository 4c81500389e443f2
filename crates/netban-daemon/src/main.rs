//! `netban-daemon` (run as `netban serve`): loads the ledger, starts one worker per target,
//! and serves the local socket until SIGTERM or SIGINT.
//!
//! Start-up: configuration → targets built (no device contacted yet) → ledger opened → active
//! bans loaded into the engine → ledger thread → socket bound → workers started (each prepares
//! its device, observes it and repairs the difference: after a restart with nothing changed,
//! nothing is pushed). Shutdown: stop accepting, let each worker finish the batch in flight,
//! close device sessions, stop the ledger thread. Bans stay on the devices: they are the
//! ledger's, not the daemon's, and the next start finds them in place.

mod access;
mod api;
mod args;
mod clock;
mod crowdsec;
mod engine;
mod fault;
mod feed_wake;
mod housekeeping;
mod instruments;
mod leadership;
mod ledger_worker;
mod reconciler;
mod requests;
mod server;
mod systemd;
mod targets;

use anyhow::{bail, Context as _, Result};
use args::Args;
use clap::Parser;
use engine::{Engine, TargetId};
use housekeeping::Housekeeping;
use leadership::{Leadership, LeaseKeeper, SharedTarget};
use netban_config::{Config, LedgerLocation};
use netban_core::Prefix;
use netban_ledger::postgres::lease::PostgresLeases;
use netban_ledger::spool::Spool;
use netban_ledger::{FeedCursor, Ledger};
use netban_proto::TargetScope;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETBAN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    exit_on_panic();
    if let Err(e) = run(args) {
        eprintln!("netban: error: {e:#}");
        std::process::exit(1);
    }
}

/// A panic anywhere — a target worker, the ledger thread, the engine with its lock held — ends
/// the process at once (SIGABRT, status 134), logged, rather than leaving a daemon that answers
/// on its socket while no longer recording, expiring or enforcing. The supervisor (systemd's
/// `Restart=always` in the shipped unit) starts it again; clients that got no answer record
/// their bans themselves, and the restarted daemon loads every ban from the ledger.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!("netban-daemon panicked ({info}); exiting so that it is restarted");
        std::process::abort();
    }));
}

fn run(args: Args) -> Result<()> {
    let config = Config::load(&args.config)?;
    let built =
        targets::build(&config.targets).with_context(|| format!("in {}", args.config.display()))?;
    config.check_inline_secrets(targets::inline_secrets(&built))?;
    let feeds =
        targets::feed_boards(&built).with_context(|| format!("in {}", args.config.display()))?;
    if let (Some(feed), None) = (feeds.first(), &config.api) {
        anyhow::bail!(
            "target {} is a feed, served on the HTTP API's listener: add an [api] section \
             (listen, and tls_cert/tls_key unless it listens on loopback); see docs/targets/feed.md",
            feed.name()
        );
    }
    let (management, unresolved) = targets::management_protections(&built);
    for problem in &unresolved {
        tracing::warn!("{problem}");
    }
    let found = housekeeping::infrastructure(&management);
    let (policy, _) = config.policy(&found)?;
    if args.check_config {
        println!(
            "{}: ok ({} target{}: {}; allowlist {} entries, protected {} networks)",
            args.config.display(),
            built.len(),
            if built.len() == 1 { "" } else { "s" },
            built
                .iter()
                .map(|b| format!("{} ({})", b.spec.info.name, b.spec.info.kind))
                .collect::<Vec<_>>()
                .join(", "),
            policy.allowlist.len(),
            policy.protected.len(),
        );
        print!(
            "{}",
            housekeeping::describe_protection(&config, &policy, &found, &unresolved)
        );
        return Ok(());
    }
    if built.is_empty() {
        tracing::warn!("no [[targets]] configured: bans are recorded but enforced nowhere");
    }
    let started_at = clock::now();
    let loaded = load(&config, built, feeds, policy, started_at)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, loaded, management, started_at))
}

/// What start-up reads before any task runs: the ledger, its feed position, and the engine
/// loaded from it. Blocking (the ledger clients are), so it runs before the async runtime.
struct Loaded {
    ledger: Box<dyn Ledger>,
    ledger_description: String,
    cursor: FeedCursor,
    engine: Engine,
    drivers: Vec<Box<dyn netban_targets::Target>>,
    scopes: Vec<TargetScope>,
    /// Banned prefixes the policy covers, to lift at once.
    lifted: Vec<Prefix>,
    /// The feed targets' boards, for the HTTP API.
    feeds: Vec<netban_targets::feed::Board>,
}

fn load(
    config: &Config,
    built: Vec<targets::Built>,
    feeds: Vec<netban_targets::feed::Board>,
    policy: netban_core::policy::Policy,
    started_at: netban_core::Timestamp,
) -> Result<Loaded> {
    let location = &config.daemon.ledger;
    let password_file = config.daemon.ledger_password_file.as_deref();
    let mut ledger = netban_ledger::open(&location.spec(), password_file)
        .with_context(|| format!("opening {location}"))?;
    let ledger_description = ledger.describe();
    // The feed's position before the state is read: nothing written meanwhile is missed.
    let cursor = ledger.feed_start()?;

    // The engine, loaded from the ledger; capacity-limited targets placed before any worker
    // runs, so a restart moves nothing.
    let mut drivers = Vec::new();
    let mut specs = Vec::new();
    let mut scopes = Vec::new();
    for built in built {
        drivers.push(built.driver);
        specs.push(built.spec);
        scopes.push(built.scope);
    }
    let engine = Engine::new(policy, specs);
    let mut loading = Vec::with_capacity(4096);
    ledger.for_each_active(started_at, &mut |ban| {
        loading.push(ban);
        if loading.len() == loading.capacity() {
            engine.load(loading.drain(..));
        }
    })?;
    let active = engine.load(loading);
    engine.place_all();
    let lifted = engine.covered_by_policy();
    tracing::info!(bans = active, ledger = %ledger_description, "ledger loaded");
    Ok(Loaded {
        ledger,
        ledger_description,
        cursor,
        engine,
        drivers,
        scopes,
        lifted,
        feeds,
    })
}

/// Start-up in dependency order, then shutdown in reverse (see the module documentation).
async fn serve(
    config: Config,
    loaded: Loaded,
    management: Vec<netban_core::policy::Protected>,
    started_at: netban_core::Timestamp,
) -> Result<()> {
    let mut signals = StopSignals::install()?;
    let Loaded {
        ledger,
        ledger_description,
        cursor,
        engine,
        drivers,
        scopes,
        lifted,
        feeds,
    } = loaded;
    let location = &config.daemon.ledger;
    let password_file = config.daemon.ledger_password_file.as_deref();

    // The ledger thread: every write, with group commit; feeds the engine.
    let origin = config.daemon.host.clone().or_else(local_hostname);
    let host = origin
        .as_ref()
        .map(|h| h.to_string())
        .unwrap_or_else(|| "localhost".to_string());
    let spool = if location.is_shared() {
        let path = &config.daemon.spool;
        Some(Spool::open(path).with_context(|| format!("opening the spool {}", path.display()))?)
    } else {
        None
    };
    let ledger_instruments = Arc::new(instruments::LedgerInstruments::new(spool.is_some()));
    let (ledger_handle, ledger_health, ledger_thread) = ledger_worker::start(
        ledger,
        cursor,
        engine.clone(),
        origin,
        spool,
        ledger_instruments.clone(),
    )?;

    // Who drives each target: this daemon, or (shared targets with a shared ledger) the
    // holder of the target's lease.
    let fleet = location.is_shared();
    let mut fixed_leadership = Vec::new();
    let mut shared_targets = Vec::new();
    let mut placements = Vec::new();
    for (driver, scope) in drivers.iter().zip(&scopes) {
        let name = driver.info().name.clone();
        let leadership = if fleet && *scope == TargetScope::Fleet {
            let (tx, rx) = watch::channel(Leadership::Standby {
                driver: None,
                since: None,
            });
            shared_targets.push(SharedTarget {
                lease: name.clone(),
                leadership: tx,
            });
            rx
        } else {
            let (tx, rx) = watch::channel(Leadership::Driving {
                since: started_at,
                until: None,
            });
            fixed_leadership.push(tx);
            rx
        };
        let entries_key = if fleet && *scope == TargetScope::Host {
            format!("{host}/{name}")
        } else {
            name
        };
        placements.push(reconciler::Placement {
            scope: *scope,
            leadership,
            entries_key,
            host: host.clone(),
        });
    }
    let lease_keeper = if shared_targets.is_empty() {
        None
    } else {
        let LedgerLocation::Postgres(url) = location else {
            unreachable!("shared targets only with a shared ledger")
        };
        let leases = PostgresLeases::new(url, password_file)?;
        Some(LeaseKeeper::new(leases, host.clone(), shared_targets).start())
    };
    // Other hosts' writes, as soon as they commit (a shared ledger only).
    let feed_wake = match location {
        LedgerLocation::Postgres(url) => Some(feed_wake::start(
            netban_ledger::postgres::notify::FeedListener::new(url, password_file)?,
            ledger_handle.clone(),
        )),
        _ => None,
    };
    // SQLite's integrity check reads every page: in the background, beside the writes.
    if let LedgerLocation::Sqlite(path) = location {
        let (path, ledger) = (path.clone(), ledger_handle.clone());
        std::thread::Builder::new()
            .name("netban-quick-check".into())
            .spawn(move || {
                let problems = match netban_ledger::sqlite::SqliteLedger::quick_check(&path) {
                    Ok(problems) if problems.is_empty() => return,
                    Ok(problems) => problems.join("; "),
                    Err(e) => format!("the integrity check could not run: {e}"),
                };
                ledger.send(ledger_worker::Job::Damaged { problems });
            })?;
    }
    ledger_handle.send(ledger_worker::Job::Expire);
    if !lifted.is_empty() {
        tracing::warn!(count = lifted.len(), "lifting bans the allowlist covers");
        ledger_handle.send(ledger_worker::Job::Lift {
            prefixes: lifted,
            reply: None,
        });
    }

    // One worker per target.
    let listener = bind_socket(&config.daemon.socket)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut workers = Vec::new();
    for (n, (driver, placement)) in drivers.into_iter().zip(placements).enumerate() {
        let (worker, handle) = reconciler::Worker::new(
            driver,
            engine.target(TargetId::nth(n)),
            ledger_handle.clone(),
            config.reconciler.clone(),
            placement,
        );
        workers.push(handle);
        tasks.push(tokio::spawn(worker.run(shutdown_rx.clone())));
    }

    // Expiry, other processes' writes, allowlist files.
    let (housekeeping, reloader) = Housekeeping::new(
        config.clone(),
        management,
        engine.clone(),
        ledger_handle.clone(),
    );
    tasks.push(tokio::spawn(housekeeping.run(shutdown_rx.clone())));

    // CrowdSec Local APIs polled for bans (`[[sources]]`).
    let (crowdsec, source_tasks) = crowdsec::start(
        &config.sources,
        host.clone(),
        &engine,
        &ledger_handle,
        &shutdown_rx,
    )?;
    tasks.extend(source_tasks);

    // The socket.
    let context = Arc::new(server::Context {
        engine,
        ledger: ledger_handle.clone(),
        workers,
        reloader,
        started_at,
        ledger_description,
        ledger_health,
        ledger_instruments,
        access: access::Access::new(&config.daemon.access, own_uid()),
        limits: server::Limits::default(),
        refusals: api::Refusals::default(),
        feeds,
        crowdsec,
    });
    let server = tokio::spawn(server::run(listener, context.clone(), shutdown_rx.clone()));
    // The HTTP API and /metrics, when configured (`[api]`).
    if let Some(section) = &config.api {
        let (api_tasks, _) = api::start(section, context.clone(), shutdown_rx.clone())
            .await
            .context("starting the HTTP API")?;
        tasks.extend(api_tasks);
    }
    tracing::info!(socket = %config.daemon.socket.display(), "netban is serving");
    let notifier = systemd::Notifier::from_env().map(Arc::new);
    let watchdog = notifier.as_ref().map(|notifier| {
        notifier.notify("READY=1");
        systemd::watchdog_interval().map(|interval| {
            tokio::spawn(systemd::watchdog(
                notifier.clone(),
                interval,
                ledger_handle.clone(),
                context.engine.clone(),
            ))
        })
    });

    signals.wait().await;
    tracing::info!("shutting down");
    if let Some(notifier) = &notifier {
        notifier.notify("STOPPING=1");
    }
    if let Some(Some(watchdog)) = watchdog {
        watchdog.abort();
    }
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    for task in tasks {
        let _ = task.await;
    }
    // Workers are done with their devices: hand shared targets over at once.
    if let Some((stop, thread)) = lease_keeper {
        drop(stop);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    drop(fixed_leadership);
    if let Some((stop, thread)) = feed_wake {
        drop(stop);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    let _ = std::fs::remove_file(&config.daemon.socket);
    drop(context);
    drop(ledger_handle);
    let _ = tokio::task::spawn_blocking(move || ledger_thread.join()).await;
    tracing::info!("stopped");
    Ok(())
}

/// The daemon's own uid (an administrator of its socket).
fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// Binds the socket, open to every local user (0666: what each may ask is decided per caller,
/// see `access`), in a directory created 0755. The socket is never more open than that, under
/// any umask: it is bound with the process's umask and then widened.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another netban daemon is serving {}; stop it first",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

fn local_hostname() -> Option<netban_core::OriginHost> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    netban_core::OriginHost::new(name.trim()).ok()
}

/// SIGTERM and SIGINT, caught from before the socket is bound: a client that sees the
/// socket and stops the daemon at once gets a clean shutdown, not the default death.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
