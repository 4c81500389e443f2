//! The console's views: HTML fragments the page puts in its `<main>`. Every value shown is
//! rendered through maud, which escapes it; values put in a link's query are also
//! percent-encoded ([`query`]). Parts marked `data-live` (with an `id`) are what the page
//! swaps in on a live update.

use super::Console;
use crate::access::Role;
use crate::requests;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use netban_config::tokens::{StoredToken, TokenRole};
use netban_core::{Expiry, Prefix, Timestamp};
use netban_proto::{Body, HistoryEvent, ListedBan, Request, TargetStatus};
use serde::Deserialize;
use std::sync::Arc;

/// The most bans one view lists (a search narrows the rest).
const MAX_ROWS: usize = 500;

/// The most history events one view lists.
const MAX_EVENTS: usize = 200;

fn is_admin(token: &StoredToken) -> bool {
    token.role == TokenRole::Admin
}

fn fragment(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// `2026-12-02 05:14:03Z`, and how far from now.
fn when(at: Timestamp, now: Timestamp) -> Markup {
    let relative = if at >= now {
        format!("in {}", span(now.secs_until(at)))
    } else {
        format!("{} ago", span(at.secs_until(now)))
    };
    html! { time datetime=(at.0) title=(relative) { (at.utc()) } " " small { "(" (relative) ")" } }
}

fn until(expiry: Expiry, now: Timestamp) -> Markup {
    match expiry {
        Expiry::Never => html! { "permanent" },
        Expiry::At(at) => when(at, now),
    }
}

/// `3d 4h`, `12m 5s`: the two largest units.
fn span(secs: u64) -> String {
    let units = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (name, size) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

/// A message in place of a view.
fn problem(status: StatusCode, message: &str) -> Response {
    (status, fragment(html! { p.error { (message) } })).into_response()
}

// ---- targets ------------------------------------------------------------------------------

/// `GET /ui/view/targets`.
pub(super) async fn targets(State(console): State<Arc<Console>>) -> Response {
    let now = crate::clock::now();
    let statuses: Vec<TargetStatus> = console
        .api
        .context
        .workers
        .iter()
        .map(|w| w.status())
        .collect();
    fragment(html! {
        section #targets data-live {
            h1 { "Targets" }
            @if statuses.is_empty() {
                p { "No target is configured." }
            } @else {
                table.stack {
                    thead { tr {
                        th { "Target" } th { "Kind" } th { "Health" } th { "Desired" }
                        th { "Held" } th { "Pending" } th { "Overflow" } th { "Last sync" }
                        th { "Last error" }
                    } }
                    tbody {
                        @for t in &statuses {
                            tr data-target=(t.name) {
                                td data-label="Target" { strong { (t.name) } }
                                td data-label="Kind" {
                                    (t.kind) " " small { "(" (t.scope.as_str()) ")" }
                                }
                                td data-label="Health" {
                                    span class={ "health " (t.health.as_str()) } { (t.health.as_str()) }
                                    @if t.consecutive_failures > 0 {
                                        " " small { "(" (t.consecutive_failures) " failures)" }
                                    }
                                }
                                td data-label="Desired" { (t.desired) }
                                td data-label="Held" { (t.held) }
                                td data-label="Pending" { (t.pending) }
                                td data-label="Overflow" { (t.overflow) }
                                td data-label="Last sync" {
                                    @if let Some(at) = t.last_sync { (when(at, now)) } @else { "never" }
                                }
                                td.error data-label="Last error" {
                                    @if let Some(e) = &t.last_error { (e) } @else { "—" }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

// ---- bans ---------------------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct BansQuery {
    /// An address or prefix: the bans overlapping it.
    #[serde(default)]
    q: String,
}

/// `GET /ui/view/bans[?q=…]`.
pub(super) async fn bans(
    State(console): State<Arc<Console>>,
    Extension(token): Extension<StoredToken>,
    Query(query): Query<BansQuery>,
) -> Response {
    let search = query.q.trim();
    let filter = if search.is_empty() {
        None
    } else {
        match Prefix::parse(search) {
            Ok(prefix) => Some(prefix),
            Err(e) => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{search:?}: {e}"),
                )
            }
        }
    };
    let bans = console.api.context.engine.list(filter);
    let admin = is_admin(&token);
    fragment(html! {
        @if admin { (ban_form()) }
        form.search method="get" action="/ui/bans" role="search" {
            label { "Address or prefix "
                input type="search" name="q" value=(search) placeholder="203.0.113.0/24";
            }
            button { "Search" }
        }
        (ban_table(&bans, filter, admin, crate::clock::now()))
    })
}

fn ban_form() -> Markup {
    html! {
        form #ban-form.ban {
            h2 { "Ban" }
            label { "Address or prefix " input name="address" required placeholder="203.0.113.7"; }
            label { "Source " input name="source" value="manual" required; }
            label { "Seconds " input name="seconds" type="number" min="1" value="3600"; }
            label.check { input name="permanent" type="checkbox"; " permanent" }
            label { "Reason " input name="reason" placeholder="optional"; }
            button { "Ban" }
        }
    }
}

fn ban_table(bans: &[ListedBan], filter: Option<Prefix>, admin: bool, now: Timestamp) -> Markup {
    html! {
        div #bans data-live {
            p.count {
                (bans.len()) " active ban" @if bans.len() != 1 { "s" }
                @if let Some(prefix) = filter { " overlapping " code { (prefix) } }
                @if bans.len() > MAX_ROWS { "; the first " (MAX_ROWS) " shown, search to narrow" }
            }
            @if !bans.is_empty() {
                table.stack {
                    thead { tr {
                        th { "Address" } th { "Until" } th { "Sources" }
                        @if admin { th { "Unban" } }
                    } }
                    tbody {
                        @for ban in bans.iter().take(MAX_ROWS) {
                            tr data-prefix=(ban.prefix) {
                                td data-label="Address" {
                                    a href={ "/ui/history?address=" (netban_proto::percent_encode(&ban.prefix.to_string())) } {
                                        (ban.prefix)
                                    }
                                }
                                td data-label="Until" { (until(ban.expiry, now)) }
                                td data-label="Sources" {
                                    ul.sources {
                                        @for s in &ban.sources {
                                            li {
                                                strong { (s.source) } " until " (until(s.expiry, now))
                                                @if admin {
                                                    " "
                                                    button.unban type="button" data-prefix=(ban.prefix)
                                                        data-source=(s.source) { "Unban " (s.source) }
                                                }
                                            }
                                        }
                                    }
                                }
                                @if admin {
                                    td data-label="Unban" {
                                        button.unban.all type="button" data-prefix=(ban.prefix) {
                                            "Unban all"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---- history ------------------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    #[serde(default)]
    address: String,
}

/// `GET /ui/view/history[?address=…]`: the address's ban now, and its events (and those of
/// the prefixes around it), newest first.
pub(super) async fn history(
    State(console): State<Arc<Console>>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let address = query.address.trim();
    let form = html! {
        form.search method="get" action="/ui/history" role="search" {
            label { "Address or prefix "
                input type="search" name="address" value=(address) required placeholder="203.0.113.7";
            }
            button { "Show" }
        }
    };
    if address.is_empty() {
        return fragment(html! { h1 { "History" } (form) });
    }
    let prefix = match Prefix::parse(address) {
        Ok(prefix) => prefix,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                fragment(
                    html! { h1 { "History" } (form) p.error { (format!("{address:?}: {e}")) } },
                ),
            )
                .into_response()
        }
    };
    let context = &console.api.context;
    let request = Request::History {
        prefix,
        limit: MAX_EVENTS,
    };
    let events = match requests::handle(request, Role::Read, None, context).await {
        Ok(Body::History { events }) => events,
        Ok(_) => unreachable!("history is answered with events"),
        Err(refusal) => {
            return problem(StatusCode::SERVICE_UNAVAILABLE, &refusal.to_string());
        }
    };
    let now = crate::clock::now();
    let current = context
        .engine
        .list(Some(prefix))
        .into_iter()
        .find(|b| b.prefix == prefix);
    fragment(html! {
        h1 { "History" }
        (form)
        div #history data-live {
            h2 { (prefix) }
            @if let Some(ban) = &current {
                p.banned {
                    "Banned until " (until(ban.expiry, now)) " by "
                    @for (i, s) in ban.sources.iter().enumerate() {
                        @if i > 0 { ", " } strong { (s.source) }
                    }
                    "."
                }
            } @else {
                p { "Not banned now." }
            }
            (history_table(&events, now))
        }
    })
}

fn history_table(events: &[HistoryEvent], now: Timestamp) -> Markup {
    html! {
        @if events.is_empty() {
            p { "No event recorded for it or the prefixes around it." }
        } @else {
            table.stack {
                thead { tr {
                    th { "When" } th { "Event" } th { "Prefix" } th { "Source" } th { "Until" }
                    th { "Reason" } th { "Origin" }
                } }
                tbody {
                    @for e in events {
                        tr {
                            td data-label="When" { (when(e.at, now)) }
                            td data-label="Event" {
                                (e.kind.as_str())
                                @if e.escalation_step > 0 { " " small { "(step " (e.escalation_step) ")" } }
                            }
                            td data-label="Prefix" { (e.prefix) }
                            td data-label="Source" {
                                @if let Some(s) = &e.source { (s) } @else { "every source" }
                            }
                            td data-label="Until" {
                                @if let Some(expiry) = e.expiry { (until(expiry, now)) } @else { "—" }
                            }
                            td data-label="Reason" {
                                @if let Some(r) = &e.reason { (r) } @else { "—" }
                            }
                            td data-label="Origin" {
                                @if let Some(o) = &e.origin_host { (o) } @else { "—" }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_escaped_and_query_values_encoded() {
        let hostile = "<script>alert(1)</script>\"' onmouseover=x";
        let markup = html! { td.error data-x=(hostile) { (hostile) } }.into_string();
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(!markup.contains("\"'"), "{markup}");
        assert!(markup.contains("&lt;script&gt;"), "{markup}");
        assert_eq!(
            netban_proto::percent_encode("2001:db8::/64"),
            "2001%3Adb8%3A%3A%2F64"
        );
        assert_eq!(netban_proto::percent_encode("a&b=<c>"), "a%26b%3D%3Cc%3E");
    }

    #[test]
    fn spans_show_the_two_largest_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(61), "1m 1s");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(90_061), "1d 1h");
    }
}
