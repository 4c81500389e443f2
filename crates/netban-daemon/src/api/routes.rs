//! The API's routes: each turns an HTTP request into a `netban_proto::Request`, checks the
//! token's role and limits, and calls [`crate::requests::handle`] — the socket's own code.
//!
//! Status codes: 200 answered; 401 no valid token; 403 the token may not do this (role,
//! source or prefix length); 404 no such target; 413 body too large; 415 not JSON; 422 the
//! input is refused (a bad address, a batch too large, or every prefix refused by policy —
//! with the reason); 429 over the token's rate; 502 a target failed to sync; 503 the ledger
//! could not record it (or the daemon is stopping). A refused address is never a 500.

use super::auth::{Gate, Rejected};
use super::metrics::{self, Refusals};
use crate::access::Role;
use crate::requests::{self, Refusal};
use crate::server::Context;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request as HttpRequest, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Extension, Json, Router};
use netban_config::tokens::{StoredToken, TokenRole};
use netban_core::{BanDuration, OriginHost, Prefix, Reason, Source};
use netban_proto::{BanArgs, Body, Request, UnbanArgs};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The largest request body (the socket's longest line).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// What the handlers share.
pub struct ApiState {
    pub context: Arc<Context>,
    pub(crate) gate: Gate,
}

type Route = (&'static str, &'static str, MethodRouter<Arc<ApiState>>);

/// Every route behind a token, as `docs/api/openapi.json` names it (method, path). The
/// router is built from this table, so the document's test covers the router itself.
fn v1_routes() -> Vec<Route> {
    vec![
        ("post", "/v1/bans", post(ban)),
        ("get", "/v1/bans", get(list)),
        ("get", "/v1/bans/{prefix}", get(show)),
        ("delete", "/v1/bans/{prefix}", delete(unban)),
        ("get", "/v1/targets", get(targets)),
        ("post", "/v1/targets/{name}/sync", post(sync)),
        ("get", "/v1/plan", get(plan)),
        ("get", "/v1/status", get(status)),
    ]
}

/// `/metrics`, without a token.
const METRICS: (&str, &str) = ("get", "/metrics");

/// The API router; `/metrics` on it too when `with_metrics`.
pub fn router(state: Arc<ApiState>, with_metrics: bool) -> Router {
    let mut v1 = Router::new();
    for (_, path, method) in v1_routes() {
        // The prefix may be written with its slash (`/v1/bans/203.0.113.0/24`) or encoded.
        v1 = v1.route(&path.replace("{prefix}", "{*prefix}"), method);
    }
    let mut app = v1.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    if with_metrics {
        app = app.route(METRICS.1, get(scrape));
    }
    app.fallback(|| async {
        problem(
            StatusCode::NOT_FOUND,
            "no such route; see docs/api/openapi.json",
        )
    })
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .with_state(state.clone())
    // CrowdSec's decision routes, authenticated by X-Api-Key (bouncer tokens).
    .merge(crate::crowdsec::server::router(state))
}

/// `/metrics` alone, for a listener of its own.
pub fn metrics_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

/// An error answer: `{"error": "…"}`.
#[derive(Serialize)]
struct Problem {
    error: String,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(Problem {
            error: message.into(),
        }),
    )
        .into_response()
}

/// A refusal before the request reaches `requests::handle`, counted by kind.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let too_large = self.status == StatusCode::PAYLOAD_TOO_LARGE;
        let mut answer = problem(self.status, self.message);
        if too_large {
            // The rest of the body is never read: the connection cannot carry another
            // request, and the client must not reuse it.
            answer
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        answer
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = match &refusal {
            Refusal::TooMany(_) | Refusal::AllOfSourceMisused => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::NoSuchTarget { .. } => StatusCode::NOT_FOUND,
            Refusal::SyncFailed(_) => StatusCode::BAD_GATEWAY,
            Refusal::Ledger(_) | Refusal::Reload(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, refusal.to_string())
    }
}

/// Lets a request with a valid token in (as an `Extension<StoredToken>`), before its body
/// is read. (The web console's views and event stream sit behind it too.)
pub(super) async fn authenticate(
    State(state): State<Arc<ApiState>>,
    mut request: HttpRequest,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    match state.gate.admit(header) {
        Ok(token) => {
            request.extensions_mut().insert(token);
            next.run(request).await
        }
        Err(Rejected::Unauthenticated(why)) => {
            state.context.refusals.count(Refusals::UNAUTHENTICATED);
            let mut answer = problem(StatusCode::UNAUTHORIZED, why);
            answer
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            answer
        }
        Err(Rejected::RateLimited) => {
            state.context.refusals.count(Refusals::RATE);
            let mut answer = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "over this token's rate ([api] rate_per_second); retry later",
            );
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            answer
        }
        Err(Rejected::StoreUnreadable) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the token store cannot be read; see the daemon's log",
        ),
    }
}

fn role(token: &StoredToken) -> Role {
    match token.role {
        TokenRole::Read => Role::Read,
        TokenRole::Ban => Role::Ban,
        TokenRole::Admin => Role::Admin,
        // Never reaches a route here: the gate refuses bouncer tokens as bearer tokens.
        TokenRole::Bouncer => Role::Read,
    }
}

/// What history records as the origin of the token's bans and unbans: `api.<token name>`
/// (an origin host may hold no ':'; token names are letters, digits, '_' and '-').
fn origin(token: &StoredToken) -> OriginHost {
    OriginHost::new(&format!("api.{}", token.name)).expect("token names are valid host names")
}

/// Checks `request` against the token (role, sources, prefix lengths) and answers it.
async fn answer(state: &ApiState, token: &StoredToken, request: Request) -> Result<Body, ApiError> {
    let forbidden = |message: String| {
        state.context.refusals.count(Refusals::FORBIDDEN);
        ApiError::new(StatusCode::FORBIDDEN, message)
    };
    role(token)
        .permits(&request, || format!("token {:?}", token.name))
        .map_err(|denied| forbidden(denied.to_string()))?;
    let (source, prefixes) = match &request {
        Request::Ban(args) => (Some(&args.source), args.prefixes.as_slice()),
        Request::Unban(args) => (args.source.as_ref(), &[][..]),
        _ => (None, &[][..]),
    };
    if let Some(source) = source {
        if !token.allows_source(source) {
            return Err(forbidden(format!(
                "token {:?} may not ban or unban as source {source}",
                token.name
            )));
        }
    }
    if let Some(prefix) = prefixes.iter().find(|p| !token.allows_prefix(p)) {
        return Err(forbidden(format!(
            "token {:?} may not ban a /{} ({prefix})",
            token.name,
            prefix.len()
        )));
    }
    let answered =
        requests::handle(request, role(token), Some(origin(token)), &state.context).await;
    answered.map_err(|refusal| {
        state.context.refusals.count(Refusals::INPUT);
        ApiError::from(refusal)
    })
}

/// A JSON body, or the reason it is not one (415 not JSON, 413 too large, 422 refused).
fn body<T>(state: &ApiState, payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(body)| body).map_err(|rejection| {
        state.context.refusals.count(Refusals::INPUT);
        let status = match rejection {
            JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ref other => other.status(),
        };
        ApiError::new(status, rejection.body_text())
    })
}

fn parse_prefix(state: &ApiState, text: &str) -> Result<Prefix, ApiError> {
    Prefix::parse(text.trim_start_matches('/')).map_err(|e| {
        state.context.refusals.count(Refusals::INPUT);
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{text:?}: {e}"))
    })
}

/// `POST /v1/bans`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    prefixes: Vec<Prefix>,
    source: Source,
    /// `{"seconds": N}` or `"permanent"`.
    duration: BanDuration,
    #[serde(default)]
    reason: Option<Reason>,
    #[serde(default)]
    failures: Option<u32>,
    /// fail2ban restoring its bans at start (`netban --server … ban --restored 1`): never
    /// escalates.
    #[serde(default)]
    restored: bool,
}

async fn ban(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
    payload: Result<Json<BanBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(&state, payload)?;
    let request = Request::Ban(BanArgs {
        prefixes: b.prefixes,
        source: b.source,
        duration: b.duration,
        reason: b.reason,
        failures: b.failures,
        origin_host: None,
        restored: b.restored,
    });
    let Body::Banned { results } = answer(&state, &token, request).await? else {
        unreachable!("a ban is answered with results")
    };
    // Every prefix refused (allowlist, protected, breadth…): 422 with each reason.
    let status = if !results.is_empty() && results.iter().all(|r| r.error.is_some()) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Results { results })).into_response())
}

#[derive(Serialize)]
struct Results {
    results: Vec<netban_proto::ItemResult>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnbanQuery {
    /// Lift only this source's ban (absent: every source's, which needs an admin token).
    source: Option<String>,
}

/// `DELETE /v1/bans/{prefix}?source=…`.
async fn unban(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
    Path(prefix): Path<String>,
    Query(query): Query<UnbanQuery>,
) -> Result<Response, ApiError> {
    let prefix = parse_prefix(&state, &prefix)?;
    let source = query
        .source
        .map(|s| {
            Source::new(&s).map_err(|e| {
                state.context.refusals.count(Refusals::INPUT);
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            })
        })
        .transpose()?;
    let request = Request::Unban(UnbanArgs {
        prefixes: vec![prefix],
        source,
        origin_host: None,
        all_of_source: false,
    });
    let Body::Unbanned { results } = answer(&state, &token, request).await? else {
        unreachable!("an unban is answered with results")
    };
    Ok(Json(Results { results }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only bans overlapping this prefix.
    prefix: Option<String>,
}

/// `GET /v1/bans[?prefix=…]`.
async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let prefix = query.prefix.map(|p| parse_prefix(&state, &p)).transpose()?;
    let Body::List { bans } = answer(&state, &token, Request::List { prefix }).await? else {
        unreachable!()
    };
    Ok(Json(serde_json::json!({ "bans": bans })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowQuery {
    /// How many history events (newest first; default 100).
    history: Option<usize>,
}

/// `GET /v1/bans/{prefix}`: the effective ban (if any), its sources, and the history of the
/// prefix and those around it.
async fn show(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
    Path(prefix): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, ApiError> {
    let prefix = parse_prefix(&state, &prefix)?;
    let Body::List { bans } = answer(
        &state,
        &token,
        Request::List {
            prefix: Some(prefix),
        },
    )
    .await?
    else {
        unreachable!()
    };
    let ban = bans.into_iter().find(|b| b.prefix == prefix);
    let limit = query.history.unwrap_or(100);
    let Body::History { events } =
        answer(&state, &token, Request::History { prefix, limit }).await?
    else {
        unreachable!()
    };
    Ok(Json(serde_json::json!({
        "prefix": prefix,
        "banned": ban.is_some(),
        "expiry": ban.as_ref().map(|b| b.expiry),
        "sources": ban.map(|b| b.sources).unwrap_or_default(),
        "history": events,
    }))
    .into_response())
}

/// `GET /v1/targets`.
async fn targets(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
) -> Result<Response, ApiError> {
    let Body::Status(report) = answer(&state, &token, Request::Status).await? else {
        unreachable!()
    };
    Ok(Json(serde_json::json!({ "targets": report.targets })).into_response())
}

/// `GET /v1/status`: what `netban status` shows.
async fn status(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
) -> Result<Response, ApiError> {
    let Body::Status(report) = answer(&state, &token, Request::Status).await? else {
        unreachable!()
    };
    Ok(Json(report).into_response())
}

/// `POST /v1/targets/{name}/sync`.
async fn sync(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let Body::Synced { targets } =
        answer(&state, &token, Request::Sync { target: Some(name) }).await?
    else {
        unreachable!()
    };
    Ok(Json(serde_json::json!({ "synced": targets })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    target: Option<String>,
}

/// `GET /v1/plan[?target=…]`.
async fn plan(
    State(state): State<Arc<ApiState>>,
    Extension(token): Extension<StoredToken>,
    Query(query): Query<PlanQuery>,
) -> Result<Response, ApiError> {
    let Body::Plan { targets } = answer(
        &state,
        &token,
        Request::Plan {
            target: query.target,
        },
    )
    .await?
    else {
        unreachable!()
    };
    Ok(Json(serde_json::json!({ "targets": targets })).into_response())
}

/// `GET /metrics`.
async fn scrape(State(state): State<Arc<ApiState>>) -> Response {
    let context = state.context.clone();
    // Counting bans by source is linear in the bans: off the runtime's threads.
    match tokio::task::spawn_blocking(move || metrics::render(&context)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::{v1_routes, METRICS};
    use std::collections::BTreeSet;

    /// `docs/api/openapi.json` and the router name the same routes (the e2e test calls each
    /// of them on a running daemon).
    #[test]
    fn the_openapi_document_names_every_route_and_no_other() {
        let text = include_str!("../../../../docs/api/openapi.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let methods = ["get", "post", "put", "patch", "delete", "head", "options"];
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| methods.contains(&k.as_str()))
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = v1_routes()
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .chain([METRICS])
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, routed);
    }
}
