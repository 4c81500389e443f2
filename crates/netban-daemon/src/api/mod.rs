//! The HTTP API (`[api]`, off by default): the socket's requests as JSON over HTTPS (or plain
//! HTTP on loopback), for detectors that are not on a netban host, and `/metrics` for
//! Prometheus.
//!
//! - `auth.rs`: bearer tokens from the token store (`netban token add`), their roles and
//!   limits, a rate per token. A request without a valid token is answered 401 before its
//!   body is read; nothing of it reaches the ledger.
//! - `routes.rs`: the routes under `/v1` (see `docs/api/openapi.json`), each a translation
//!   into a `netban_proto::Request` answered by [`crate::requests::handle`], the same code the
//!   socket calls: the same admission path, limits and refusals.
//! - `metrics.rs`: `/metrics` in the Prometheus text format, read from the engine and the
//!   workers' status at scrape time.
//! - `tls.rs`: the TLS listener (rustls).
//! - `feeds.rs`: the feed targets' lists (`/feeds/…`), with their own credentials.
//! - `console/`: the web console under `/ui/` (server-rendered views behind the same tokens,
//!   live updates by server-sent events; see `docs/api/console.md`).
//!
//! The answers are the socket protocol's types in JSON, so a client (the web console, a
//! script) sees the same shapes as `netban --json`.

pub(crate) mod auth;
mod console;
pub mod feeds;
pub mod metrics;
mod routes;
mod tls;

use crate::server::Context;
use netban_config::api::ApiSection;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use metrics::Refusals;
use routes::router;
pub(crate) use routes::ApiState;

/// The address of the client of a connection (`ConnectInfo<ClientAddress>`), whichever
/// listener accepted it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for ClientAddress
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> ClientAddress {
        ClientAddress(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for ClientAddress
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> ClientAddress {
        ClientAddress(*stream.remote_addr())
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("[api] {0}")]
    Config(#[from] netban_config::ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Tokens(#[from] netban_config::tokens::TokenError),
}

/// Binds the API's listeners (and the metrics listener when it has its own) and serves them
/// until `shutdown`. Returns the tasks and the API's bound address.
pub async fn start(
    section: &ApiSection,
    context: Arc<Context>,
    shutdown: watch::Receiver<bool>,
) -> Result<(Vec<JoinHandle<()>>, SocketAddr), StartError> {
    section.check()?;
    let tls = match (&section.tls_cert, &section.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let gate = auth::Gate::open(&section.tokens, section.rate_per_second)?;
    let state = Arc::new(ApiState { context, gate });
    let app = router(state.clone(), section.metrics_on_api())
        .merge(console::router(state.clone(), shutdown.clone()))
        .merge(feeds::router(&state.context.feeds))
        .into_make_service_with_connect_info::<ClientAddress>();
    let bind = |address: SocketAddr| async move {
        TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind { address, source })
    };
    let listener = bind(section.listen).await?;
    let address = listener.local_addr().map_err(|source| StartError::Bind {
        address: section.listen,
        source,
    })?;
    let mut tasks = Vec::new();
    let stop = |mut shutdown: watch::Receiver<bool>| async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tasks.push(match tls {
        Some(acceptor) => {
            let listener = tls::TlsListener::start(listener, acceptor, shutdown.clone());
            let serving = axum::serve(listener, app).with_graceful_shutdown(stop(shutdown.clone()));
            tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the HTTP API stopped");
                }
            })
        }
        None => {
            let serving = axum::serve(listener, app).with_graceful_shutdown(stop(shutdown.clone()));
            tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the HTTP API stopped");
                }
            })
        }
    });
    if let Some(metrics) = section.metrics {
        let listener = bind(metrics).await?;
        let app = routes::metrics_router(state);
        let serving = axum::serve(listener, app).with_graceful_shutdown(stop(shutdown));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        }));
    }
    tracing::info!(%address, tls = section.tls_cert.is_some(), "HTTP API listening");
    Ok((tasks, address))
}
