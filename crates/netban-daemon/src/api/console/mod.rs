//! The web console under `/ui/`: targets, active bans with search, an address's history, and
//! for admin tokens a ban form and unban buttons. Server-rendered HTML (maud, which escapes
//! every value it is given: addresses, sources, reasons and device errors are untrusted text),
//! one small stylesheet and one small script, no build step. See `docs/api/console.md`.
//!
//! How it is put together:
//! - The page itself (`/ui/`, `/ui/bans`, `/ui/targets`, `/ui/history`) is the same static
//!   shell for every path: a login form, the navigation and an empty `<main>`. It holds no
//!   data, so it needs no token.
//! - `console.js` keeps the token the operator logged in with in `sessionStorage` (this tab
//!   only, gone when it closes) and fetches the view the address names from `/ui/view/…`
//!   with it as a bearer header, like any API client. The views are HTML fragments rendered
//!   here, behind the API's own `authenticate` (same tokens, roles, rates, revocation and
//!   expiry).
//! - **CSRF**: there is no cookie and no ambient credential; the browser never sends the
//!   token by itself, so another site cannot make a logged-in browser act. Bans and unbans go
//!   through the JSON API (`POST /v1/bans`, `DELETE /v1/bans/…`) with the same bearer header,
//!   and the API checks the role there, whatever the page showed.
//! - **Live updates**: `/ui/events` is a server-sent event stream (read by `fetch`, which can
//!   send the bearer header where `EventSource` cannot). It pushes an event when the engine's
//!   ban table takes ledger events or a target's published status changes (watch channels,
//!   not a poll of the ledger); the page then re-fetches its view and swaps in the parts
//!   marked `data-live`, leaving a half-typed form alone.
//! - Every answer carries a strict Content-Security-Policy (scripts and styles from this
//!   origin only, no inline script, no framing), so even markup that slipped through escaping
//!   could not run.

mod events;
mod views;

use super::routes::{authenticate, ApiState};
use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio::sync::watch;

/// What the console's handlers share.
struct Console {
    api: Arc<ApiState>,
    live: events::Live,
}

/// The console's routes, to merge into the API's router. `shutdown` ends the event streams
/// (an open stream would otherwise hold up the server's graceful shutdown).
pub fn router(api: Arc<ApiState>, shutdown: watch::Receiver<bool>) -> Router {
    let console = Arc::new(Console {
        live: events::Live::start(&api.context, shutdown),
        api: api.clone(),
    });
    let behind_token = Router::new()
        .route("/ui/view/bans", get(views::bans))
        .route("/ui/view/targets", get(views::targets))
        .route("/ui/view/history", get(views::history))
        .route("/ui/events", get(events::stream))
        .route_layer(middleware::from_fn_with_state(api, authenticate));
    let mut open = Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/console.css", get(stylesheet))
        .route("/ui/console.js", get(script));
    for page in ["/ui/", "/ui/bans", "/ui/targets", "/ui/history"] {
        open = open.route(page, get(shell));
    }
    open.merge(behind_token)
        .layer(middleware::map_response(secure_headers))
        .with_state(console)
}

const STYLESHEET: &str = include_str!("console.css");
const SCRIPT: &str = include_str!("console.js");

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page: the same for every path, without data (the script fetches the view).
async fn shell() -> Html<String> {
    Html(
        maud::html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "netban" }
                    link rel="stylesheet" href="/ui/console.css";
                    script src="/ui/console.js" defer {}
                }
                body {
                    header {
                        nav {
                            strong { "netban" }
                            a href="/ui/bans" { "Bans" }
                            a href="/ui/targets" { "Targets" }
                            a href="/ui/history" { "History" }
                            span #live { }
                            button #logout type="button" hidden { "Log out" }
                        }
                    }
                    form #login hidden {
                        label {
                            "API token "
                            input type="password" name="token" autocomplete="off" required
                                placeholder="nbt_…";
                        }
                        button { "Log in" }
                        p.hint {
                            "A token from " code { "netban token add NAME --role read" }
                            " (or admin, to ban and unban here). It is kept in this tab only."
                        }
                    }
                    p #notice role="status" {}
                    main #view {}
                    noscript {
                        "The console needs JavaScript: it sends your token with each request \
                         rather than keeping it in a cookie."
                    }
                }
            }
        }
        .into_string(),
    )
}

/// Headers on every console answer: what may run and load, no framing, no sniffing, and
/// nothing cached that holds data.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
