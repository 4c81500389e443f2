//! What the daemon does for one request, whichever front end it came through: the local
//! socket (`server.rs`) and the HTTP API (`api/`) both decode into a `netban_proto::Request`,
//! check the caller's role, and call [`handle`]. Same admission path, same limits, same
//! refusals, worded the same.

use crate::access::Role;
use crate::ledger_worker::{Job, LedgerRequestError};
use crate::reconciler::WorkerHandle;
use crate::server::Context;
use netban_core::OriginHost;
use netban_proto::{
    Body, HistoryEvent, Request, StatusReport, TargetPlan, MAX_PREFIXES_PER_REQUEST,
    PROTOCOL_VERSION,
};

/// Why a request was answered with an error rather than a body.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A batch larger than the protocol allows is refused whole.
    #[error("{0} prefixes in one request; at most {MAX_PREFIXES_PER_REQUEST}")]
    TooMany(usize),
    #[error("unbanning all of a source needs a source and no addresses")]
    AllOfSourceMisused,
    #[error("no target named {name:?}; configured: {configured}")]
    NoSuchTarget { name: String, configured: String },
    #[error(transparent)]
    Ledger(#[from] LedgerRequestError),
    #[error("sync failed on {0}")]
    SyncFailed(String),
    #[error(transparent)]
    Reload(#[from] crate::housekeeping::ReloadError),
}

fn too_many(prefixes: usize) -> Result<(), Refusal> {
    if prefixes > MAX_PREFIXES_PER_REQUEST {
        Err(Refusal::TooMany(prefixes))
    } else {
        Ok(())
    }
}

/// Answers `request` (already permitted to `role`). `origin`, when given, is what history
/// records as the origin host whatever the request says (the API names its token there);
/// otherwise only an administrator speaks for another host.
pub async fn handle(
    request: Request,
    role: Role,
    origin: Option<OriginHost>,
    context: &Context,
) -> Result<Body, Refusal> {
    match request {
        Request::Ping => Ok(Body::Pong {
            version: PROTOCOL_VERSION,
        }),
        Request::Ban(mut args) => {
            too_many(args.prefixes.len())?;
            if origin.is_some() || role < Role::Admin {
                // Only an administrator speaks for another host; history names this one.
                args.origin_host = origin;
            }
            let policy = context.engine.policy();
            let results = context
                .ledger
                .ask(|reply| Job::Ban {
                    args,
                    policy,
                    reply,
                })
                .await?;
            let refused = results.iter().filter(|r| r.error.is_some()).count();
            context
                .refusals
                .add(crate::api::Refusals::POLICY, refused as u64);
            Ok(Body::Banned { results })
        }
        Request::Unban(mut args) => {
            too_many(args.prefixes.len())?;
            if origin.is_some() || role < Role::Admin {
                args.origin_host = origin;
            }
            if args.all_of_source && (args.source.is_none() || !args.prefixes.is_empty()) {
                return Err(Refusal::AllOfSourceMisused);
            }
            let results = context
                .ledger
                .ask(|reply| Job::Unban { args, reply })
                .await?;
            Ok(Body::Unbanned { results })
        }
        Request::List { prefix } => Ok(Body::List {
            bans: context.engine.list(prefix),
        }),
        Request::Status => Ok(Body::Status(StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ledger: context.ledger_description.clone(),
            started_at: context.started_at,
            active_bans: context.engine.active_bans(),
            targets: context
                .workers
                .iter()
                .map(|worker| crate::api::feeds::with_consumers(worker.status(), &context.feeds))
                .collect(),
            ledger_health: context.ledger_health.borrow().clone(),
            sources: context.crowdsec.statuses(),
        })),
        Request::Plan { target } => {
            let workers = select_workers(&context.workers, target.as_deref())?;
            let mut plans = Vec::new();
            for worker in workers {
                let empty = TargetPlan {
                    target: worker.name.clone(),
                    add: vec![],
                    remove: vec![],
                    refresh: vec![],
                    error: None,
                };
                plans.push(match worker.plan().await {
                    Ok(plan) => TargetPlan {
                        add: plan.add.iter().map(|d| d.prefix).collect(),
                        remove: plan.remove.iter().map(|h| h.prefix).collect(),
                        refresh: plan.refresh.iter().map(|(_, d)| d.prefix).collect(),
                        ..empty
                    },
                    Err(e) => TargetPlan {
                        error: Some(e.to_string()),
                        ..empty
                    },
                });
            }
            Ok(Body::Plan { targets: plans })
        }
        Request::Sync { target } => {
            let workers = select_workers(&context.workers, target.as_deref())?;
            let mut synced = Vec::new();
            let mut failures = Vec::new();
            for worker in workers {
                match worker.sync().await {
                    Ok(()) => synced.push(worker.name.clone()),
                    Err(e) => failures.push(format!("{}: {e}", worker.name)),
                }
            }
            if failures.is_empty() {
                Ok(Body::Synced { targets: synced })
            } else {
                Err(Refusal::SyncFailed(failures.join("; ")))
            }
        }
        Request::History { prefix, limit } => {
            let limit = limit.clamp(1, 10_000);
            let events = context
                .ledger
                .ask(|reply| Job::History {
                    prefix,
                    limit,
                    reply,
                })
                .await?;
            Ok(Body::History {
                events: events.into_iter().map(HistoryEvent::from).collect(),
            })
        }
        Request::Reload => {
            let reloaded = context.reloader.reload().await?;
            Ok(Body::Reloaded {
                allowlist_entries: reloaded.allowlist_entries,
                lifted: reloaded.lifted,
            })
        }
    }
}

fn select_workers<'a>(
    workers: &'a [WorkerHandle],
    name: Option<&str>,
) -> Result<Vec<&'a WorkerHandle>, Refusal> {
    match name {
        None => Ok(workers.iter().collect()),
        Some(n) => match workers.iter().find(|w| w.name == n) {
            Some(w) => Ok(vec![w]),
            None => Err(Refusal::NoSuchTarget {
                name: n.to_string(),
                configured: workers
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
}
