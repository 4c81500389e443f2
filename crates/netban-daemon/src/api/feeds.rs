//! Feed targets on the API listener: `GET`/`HEAD` of each feed's path, and of `<path>.md5`
//! (its MD5, for Cisco FMC). Outside `/v1` and its bearer tokens: a feed has credentials of
//! its own, checked by the driver (`netban_targets::feed`, `pull.rs`), which also decides
//! every status and header; this module only translates HTTP to a `Pull` and back.

use crate::api::ClientAddress;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use netban_proto::{FeedConsumer, TargetStatus};
use netban_targets::feed::{Board, Pull, Resource};

/// The routes of every feed.
pub fn router(boards: &[Board]) -> Router {
    let mut router = Router::new();
    for board in boards {
        for (path, resource) in [
            (board.path().to_string(), Resource::List),
            (format!("{}.md5", board.path()), Resource::Md5),
        ] {
            let board = board.clone();
            router = router.route(
                &path,
                get(
                    move |ConnectInfo(peer): ConnectInfo<ClientAddress>,
                          method: Method,
                          headers: HeaderMap| {
                        let board = board.clone();
                        async move { pull(&board, resource, peer, &method, &headers) }
                    },
                ),
            );
        }
    }
    router
}

fn pull(
    board: &Board,
    resource: Resource,
    peer: ClientAddress,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let answer = board.answer(&Pull {
        resource,
        head: method == Method::HEAD,
        authorization: text(header::AUTHORIZATION),
        if_none_match: text(header::IF_NONE_MATCH),
        if_modified_since: text(header::IF_MODIFIED_SINCE),
        user_agent: text(header::USER_AGENT),
        peer: peer.0.ip().to_canonical(),
    });
    let mut response = match answer.body {
        Some(body) => Body::from(body).into_response(),
        None => Body::empty().into_response(),
    };
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::try_from(value) {
            response
                .headers_mut()
                .append(HeaderName::from_static(name), value);
        }
    }
    response
}

/// `status` with its consumers, if it is a feed's.
pub fn with_consumers(mut status: TargetStatus, boards: &[Board]) -> TargetStatus {
    let Some(board) = boards.iter().find(|b| b.name() == status.name) else {
        return status;
    };
    let current = board.current().map(|p| p.etag.clone());
    status.consumers = board
        .consumers()
        .into_iter()
        .map(|c| FeedConsumer {
            address: c.address.to_string(),
            identity: c.identity,
            user_agent: c.user_agent,
            last_seen: c.last_seen,
            current: c.holds.as_ref().map(|h| &h.etag) == current.as_ref() && c.holds.is_some(),
            etag: c.holds.as_ref().map(|h| h.etag.clone()),
            entries: c.holds.as_ref().map_or(0, |h| h.entries),
            since: c.holds.map(|h| h.at),
        })
        .collect();
    status
}
