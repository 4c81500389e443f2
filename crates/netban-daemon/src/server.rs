//! The local socket: one JSON request per line, one JSON response per line
//! (see `netban-proto`). Each connection is its own task; bans go to the ledger thread and are
//! answered once they are durable.

use crate::engine::Engine;
use crate::housekeeping::PolicyReloader;
use crate::ledger_worker::{Job, LedgerHandle};
use crate::reconciler::WorkerHandle;
use netban_proto::{
    Body, HistoryEvent, Request, Response, StatusReport, TargetPlan, PROTOCOL_VERSION,
};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// Everything a connection needs to answer requests.
pub struct Context {
    pub engine: Engine,
    pub ledger: LedgerHandle,
    pub workers: Vec<WorkerHandle>,
    pub reloader: PolicyReloader,
    pub started_at: netban_core::Timestamp,
    pub ledger_description: String,
    /// Published by the ledger thread.
    pub ledger_health: watch::Receiver<netban_proto::LedgerHealth>,
}

/// Accepts connections on `listener` until `shutdown` turns true.
pub async fn run(
    listener: UnixListener,
    context: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let context = context.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, context).await {
                            tracing::debug!(error = %e, "client connection ended with an error");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            }
        }
    }
}

async fn serve_connection(stream: UnixStream, context: Arc<Context>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let response = match netban_proto::decode::<Request>(&line) {
            Ok(request) => handle(request, &context).await,
            Err(e) => Response::Error {
                message: format!("malformed request: {e}"),
            },
        };
        write.write_all(&netban_proto::encode(&response)).await?;
    }
}

fn ok(body: Body) -> Response {
    Response::Ok { body }
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

async fn handle(request: Request, context: &Context) -> Response {
    match request {
        Request::Ping => ok(Body::Pong {
            version: PROTOCOL_VERSION,
        }),
        Request::Ban(args) => {
            let policy = context.engine.policy();
            let answer = context
                .ledger
                .ask(|reply| Job::Ban {
                    args,
                    policy,
                    reply,
                })
                .await;
            match answer {
                Ok(results) => ok(Body::Banned { results }),
                Err(e) => error(e.to_string()),
            }
        }
        Request::Unban(args) => {
            if args.all_of_source && (args.source.is_none() || !args.prefixes.is_empty()) {
                return error("unbanning all of a source needs a source and no addresses");
            }
            match context.ledger.ask(|reply| Job::Unban { args, reply }).await {
                Ok(results) => ok(Body::Unbanned { results }),
                Err(e) => error(e.to_string()),
            }
        }
        Request::List { prefix } => ok(Body::List {
            bans: context.engine.list(prefix),
        }),
        Request::Status => ok(Body::Status(StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ledger: context.ledger_description.clone(),
            started_at: context.started_at,
            active_bans: context.engine.active_bans(),
            targets: context.workers.iter().map(WorkerHandle::status).collect(),
            ledger_health: context.ledger_health.borrow().clone(),
        })),
        Request::Plan { target } => {
            let workers = match select_workers(&context.workers, target.as_deref()) {
                Ok(w) => w,
                Err(e) => return error(e),
            };
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
            ok(Body::Plan { targets: plans })
        }
        Request::Sync { target } => {
            let workers = match select_workers(&context.workers, target.as_deref()) {
                Ok(w) => w,
                Err(e) => return error(e),
            };
            let mut synced = Vec::new();
            let mut failures = Vec::new();
            for worker in workers {
                match worker.sync().await {
                    Ok(()) => synced.push(worker.name.clone()),
                    Err(e) => failures.push(format!("{}: {e}", worker.name)),
                }
            }
            if failures.is_empty() {
                ok(Body::Synced { targets: synced })
            } else {
                error(format!("sync failed on {}", failures.join("; ")))
            }
        }
        Request::History { prefix, limit } => {
            let limit = limit.clamp(1, 10_000);
            let answer = context
                .ledger
                .ask(|reply| Job::History {
                    prefix,
                    limit,
                    reply,
                })
                .await;
            match answer {
                Ok(events) => ok(Body::History {
                    events: events
                        .into_iter()
                        .map(|e| HistoryEvent {
                            at: e.at,
                            kind: e.kind,
                            prefix: e.prefix,
                            source: e.source,
                            expiry: e.expiry,
                            reason: e.reason,
                            origin_host: e.origin_host,
                            escalation_step: e.escalation_step,
                        })
                        .collect(),
                }),
                Err(e) => error(e.to_string()),
            }
        }
        Request::Reload => match context.reloader.reload().await {
            Ok(reloaded) => ok(Body::Reloaded {
                allowlist_entries: reloaded.allowlist_entries,
                lifted: reloaded.lifted,
            }),
            Err(e) => error(e.to_string()),
        },
    }
}

fn select_workers<'a>(
    workers: &'a [WorkerHandle],
    name: Option<&str>,
) -> Result<Vec<&'a WorkerHandle>, String> {
    match name {
        None => Ok(workers.iter().collect()),
        Some(n) => match workers.iter().find(|w| w.name == n) {
            Some(w) => Ok(vec![w]),
            None => Err(format!(
                "no target named {n:?}; configured: {}",
                workers
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
    }
}
