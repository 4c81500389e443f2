//! Answering one pull: credentials first, then the conditional request (RFC 9110 §13).
//!
//! This is the whole of a feed's HTTP behaviour, without an HTTP library: the daemon's API
//! turns a request into a [`Pull`] and the [`Answer`] back into a response.
//!
//! - No valid credentials: 401 with a challenge per configured scheme, nothing else (not even
//!   whether the list exists yet).
//! - Nothing published yet (the daemon just started and has not reconciled): 503 with
//!   `Retry-After`; consumers keep the list they have.
//! - `If-None-Match` naming the current ETag (or `*`): 304. When `If-None-Match` is present,
//!   `If-Modified-Since` is ignored, as RFC 9110 says; otherwise `If-Modified-Since` at or
//!   after `Last-Modified`: 304.
//! - Else the list, with `ETag`, `Last-Modified` and `Cache-Control: no-cache` (caches must
//!   revalidate). A HEAD gets the same headers without the body.
//!
//! What each consumer holds is recorded from the answer: the version of a 200 to a GET or of
//! a 304; a HEAD only counts as seen.

use super::board::Board;
use super::render::Published;
use base64::Engine;
use bytes::Bytes;
use std::net::IpAddr;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// What is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// The list.
    List,
    /// The list's MD5 (`<path>.md5`).
    Md5,
}

/// One request, as the feed needs it.
#[derive(Clone, Copy, Debug)]
pub struct Pull<'a> {
    pub resource: Resource,
    pub head: bool,
    pub authorization: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub peer: IpAddr,
}

/// The answer: a status, headers and maybe a body. A HEAD is answered like a GET: the HTTP
/// layer sends the headers (with the body's length) and drops the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// `None` for 304 and 401.
    pub body: Option<Bytes>,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Board {
    /// Answers `pull`, recording the consumer when it is let in.
    pub fn answer(&self, pull: &Pull<'_>) -> Answer {
        let Some(identity) = self.identify(pull.authorization) else {
            return self.unauthorized();
        };
        let Some(current) = self.current() else {
            self.record(pull.peer, &identity, pull.user_agent, None);
            return Answer {
                status: 503,
                headers: vec![("retry-after", "10".into()), ("content-type", TEXT.into())],
                body: Some(Bytes::from_static(b"# not published yet\n")),
            };
        };
        if pull.resource == Resource::Md5 {
            self.record(pull.peer, &identity, pull.user_agent, None);
            return Answer {
                status: 200,
                headers: vec![
                    ("content-type", TEXT.into()),
                    ("cache-control", "no-cache".into()),
                ],
                body: Some(Bytes::from(current.md5.clone())),
            };
        }
        let validators = vec![
            ("etag", current.etag.clone()),
            (
                "last-modified",
                httpdate::fmt_http_date(current.last_modified),
            ),
            ("cache-control", "no-cache".into()),
        ];
        if not_modified(&current, pull) {
            self.record(pull.peer, &identity, pull.user_agent, Some(&current));
            return Answer {
                status: 304,
                headers: validators,
                body: None,
            };
        }
        let mut headers = validators;
        headers.push(("content-type", TEXT.into()));
        let given = (!pull.head).then_some(&*current);
        self.record(pull.peer, &identity, pull.user_agent, given);
        Answer {
            status: 200,
            headers,
            body: Some(current.body.clone()),
        }
    }

    /// Who presents `authorization`, if these credentials may pull: the basic user,
    /// `token`, or `anonymous` on a feed without credentials.
    fn identify(&self, authorization: Option<&str>) -> Option<String> {
        let credentials = self.credentials();
        if credentials.anonymous {
            return Some("anonymous".into());
        }
        let (scheme, value) = authorization?.trim().split_once(' ')?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = credentials.token.as_ref()?;
            return bool::from(value.as_bytes().ct_eq(token.expose().as_bytes()))
                .then(|| "token".to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = credentials.basic.as_ref()?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()?;
            let expected = format!("{user}:{}", password.expose());
            return bool::from(decoded.ct_eq(expected.as_bytes())).then(|| user.clone());
        }
        None
    }

    fn unauthorized(&self) -> Answer {
        let credentials = self.credentials();
        let mut headers = vec![("content-type", TEXT.to_string())];
        if credentials.basic.is_some() {
            headers.push((
                "www-authenticate",
                "Basic realm=\"netban feed\", charset=\"UTF-8\"".into(),
            ));
        }
        if credentials.token.is_some() {
            headers.push(("www-authenticate", "Bearer realm=\"netban feed\"".into()));
        }
        Answer {
            status: 401,
            headers,
            body: None,
        }
    }
}

/// Whether the consumer's validators say it has the current version.
fn not_modified(current: &Published, pull: &Pull<'_>) -> bool {
    if let Some(tags) = pull.if_none_match {
        // Weak comparison (RFC 9110 §13.1.2): W/"x" matches "x".
        return tags
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == current.etag);
    }
    pull.if_modified_since
        .and_then(|date| httpdate::parse_http_date(date).ok())
        .is_some_and(|since: SystemTime| current.last_modified <= since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::config::{Credentials, HostForm, Settings};
    use netban_config::secret::Secret;
    use netban_core::{Family, Prefix};
    use std::net::Ipv4Addr;

    fn board(credentials: Credentials) -> Board {
        let board = Board::new(
            "edl",
            Settings {
                path: "/feeds/edl".into(),
                families: vec![Family::V4],
                capacity: None,
                hosts: HostForm::Address,
                comments: false,
                credentials,
            },
        );
        board.publish(vec![Prefix::parse("203.0.113.7").unwrap()]);
        board
    }

    fn ask<'a>(authorization: Option<&'a str>) -> Pull<'a> {
        Pull {
            resource: Resource::List,
            head: false,
            authorization,
            if_none_match: None,
            if_modified_since: None,
            user_agent: Some("PAN-OS"),
            peer: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
        }
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn credentials_are_checked_per_scheme_and_refusals_serve_nothing() {
        let board = board(Credentials {
            basic: Some(("edl".into(), Secret::from("pw"))),
            token: Some(Secret::from("tok")),
            anonymous: false,
        });
        for refused in [
            None,
            Some("Bearer wrong".to_string()),
            Some("Bearer".to_string()),
            Some(basic("edl:wrong")),
            Some(basic("other:pw")),
            Some("Basic !!!".to_string()),
            Some("Digest x".to_string()),
        ] {
            let answer = board.answer(&ask(refused.as_deref()));
            assert_eq!(answer.status, 401, "{refused:?}");
            assert!(answer.body.is_none());
            let challenges: Vec<&str> = answer
                .headers
                .iter()
                .filter(|(n, _)| *n == "www-authenticate")
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(challenges.len(), 2, "{challenges:?}");
        }
        assert!(
            board.consumers().is_empty(),
            "refused pulls are not consumers"
        );
        assert_eq!(board.answer(&ask(Some("Bearer tok"))).status, 200);
        assert_eq!(board.answer(&ask(Some(&basic("edl:pw")))).status, 200);
        let identities: Vec<String> = board.consumers().into_iter().map(|c| c.identity).collect();
        assert_eq!(identities.len(), 2);
        assert!(
            identities.contains(&"edl".to_string()) && identities.contains(&"token".to_string())
        );
    }

    #[test]
    fn conditional_requests_follow_rfc_9110() {
        let board = board(Credentials {
            anonymous: true,
            ..Credentials::default()
        });
        let current = board.current().unwrap();
        let date = httpdate::fmt_http_date(current.last_modified);
        let earlier =
            httpdate::fmt_http_date(current.last_modified - std::time::Duration::from_secs(1));
        let with = |inm: Option<&str>, ims: Option<&str>| {
            let mut pull = ask(None);
            pull.if_none_match = inm;
            pull.if_modified_since = ims;
            board.answer(&pull).status
        };
        let etag = current.etag.as_str();
        assert_eq!(with(Some(etag), None), 304);
        assert_eq!(with(Some("*"), None), 304);
        assert_eq!(with(Some("\"old\""), None), 200);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(with(Some("\"old\""), Some(date.as_str())), 200);
        assert_eq!(with(None, Some(date.as_str())), 304);
        assert_eq!(with(None, Some(earlier.as_str())), 200);
        assert_eq!(with(None, Some("yesterday")), 200);
        let weak = format!("\"x\", W/{}", current.etag);
        let mut pull = ask(None);
        pull.if_none_match = Some(&weak);
        let answer = board.answer(&pull);
        assert_eq!(answer.status, 304);
        assert!(answer.body.is_none());
        assert!(answer
            .headers
            .iter()
            .any(|(n, v)| *n == "etag" && *v == current.etag));

        let mut md5 = ask(None);
        md5.resource = Resource::Md5;
        let answer = board.answer(&md5);
        assert_eq!(answer.body.unwrap(), current.md5.as_bytes());
    }
}
