//! netban as a CrowdSec decision server: the two routes CrowdSec bouncers call on a Local
//! API, served on netban's API listener from the engine's effective bans, so an existing
//! bouncer (nftables, iptables, Cloudflare, HAProxy…) enforces netban's bans.
//!
//! - `GET /v1/decisions/stream[?startup=true][&scopes=ip,range]`: what changed for this key
//!   since its last poll (`new`, `deleted`), or everything with `startup=true`. One effective
//!   ban per prefix is one decision (the union of its sources).
//! - `GET /v1/decisions?ip=…` (or `range=…`): the bans covering it, or `null`.
//! - `HEAD` of both: 200 and no body (the key is checked; the stream's cursor does not move).
//!
//! Authentication: `X-Api-Key` = a token of the store with role `bouncer`
//! (`netban token add NAME --role bouncer`); anything else is answered 403
//! `{"message":"access forbidden"}`, as the LAPI does.
//!
//! # What each key holds (its cursor)
//! The server keeps, per key, the decisions it last sent (value → expiry and id) — what that
//! bouncer holds — and answers a poll with the difference to what should be held now: a
//! bouncer polling again after any time (a network cut, its restart without `startup`, netban's
//! restart) gets exactly what changed. This state is recorded in the ledger's target entries
//! (`crowdsec-bouncer:<host>/<key name>`), so it survives netban's restart.
//!
//! # Rules for Debian's crowdsec-firewall-bouncer 0.0.25 (measured, docs/targets/crowdsec-server.md)
//! - It enforces no ranges: unless a bouncer asks `scopes` with `range` in it, a banned range
//!   is served as its addresses, up to [`EXPAND_MAX`] addresses per range (a /24, a /120);
//!   a wider range is not served to it (counted in the log).
//! - It never asks `startup=true` again, and skips a `new` for an address it holds: a changed
//!   expiry is sent as `deleted` and `new` in one answer.
//! - Its elements time out with the duration sent (the time left, rounded down); an ended
//!   decision is still sent as `deleted` (it skips a value its set no longer has, measured),
//!   so a bouncer whose element outlived netban's ban converges as well.
//! - It makes a zero or negative duration a permanent ban, and drops a chunk for one bad
//!   value: durations are whole seconds, at least `1s` (a permanent ban is `315360000s`, ten
//!   years); ids are integers; all seven fields are always present; only parsed addresses
//!   and prefixes are sent.

use super::wire::{go_duration_secs, Decision, Stream};
use crate::api::auth::Rejected;
use crate::api::ApiState;
use crate::ledger_worker::Job;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use netban_core::ban::MAX_BAN_SECS;
use netban_core::plan::Held;
use netban_core::policy::Policy;
use netban_core::{Expiry, Prefix, Timestamp};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The most addresses one banned range is served as to a bouncer that takes no ranges.
pub const EXPAND_MAX: u128 = 256;

/// The decision server's state, beside the API's.
struct DecisionServer {
    api: Arc<ApiState>,
    /// Names the ledger's record of each key's decisions (`crowdsec-bouncer:<host>/`).
    record_prefix: String,
    keys: Mutex<HashMap<String, Arc<tokio::sync::Mutex<KeyState>>>>,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

/// The engine's effective bans at one generation and policy.
struct Snapshot {
    generation: u64,
    policy: Arc<Policy>,
    bans: Vec<(Prefix, Expiry)>,
}

/// One decision as a key holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Served {
    expiry: Expiry,
    id: i64,
}

/// What one bouncer key holds, as far as netban knows.
#[derive(Default)]
struct KeyState {
    /// Read from the ledger (at the key's first poll since start).
    loaded: bool,
    held: BTreeMap<Prefix, Served>,
    /// The last answer was computed at this generation, policy and scopes, and stays true
    /// until `valid_until` (the first expiry it holds).
    computed: Option<(u64, usize, Scopes, Option<Timestamp>)>,
}

/// The routes, with their own state.
pub fn router(api: Arc<ApiState>) -> Router {
    let host = api.context.crowdsec.host.clone();
    let server = Arc::new(DecisionServer {
        api,
        record_prefix: format!("crowdsec-bouncer:{host}/"),
        keys: Mutex::new(HashMap::new()),
        snapshot: Mutex::new(None),
    });
    Router::new()
        .route("/v1/decisions/stream", get(stream))
        .route("/v1/decisions", get(decisions))
        .with_state(server)
}

/// The LAPI's refusal, word for word.
fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({"message": "access forbidden"})),
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "message": message })),
    )
        .into_response()
}

/// Why a key was refused.
#[derive(Clone, Copy, Debug)]
enum KeyRefused {
    Forbidden,
    RateLimited,
    StoreUnreadable,
}

impl IntoResponse for KeyRefused {
    fn into_response(self) -> Response {
        match self {
            KeyRefused::Forbidden => forbidden(),
            KeyRefused::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({"message": "over this key's rate; retry later"})),
            )
                .into_response(),
            KeyRefused::StoreUnreadable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"message": "the token store cannot be read"})),
            )
                .into_response(),
        }
    }
}

/// The key's token name, or why it is refused.
fn admit(server: &DecisionServer, headers: &HeaderMap) -> Result<String, KeyRefused> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    match server.api.gate.admit_api_key(key) {
        Ok(token) => Ok(token.name),
        Err(Rejected::RateLimited) => Err(KeyRefused::RateLimited),
        Err(Rejected::StoreUnreadable) => Err(KeyRefused::StoreUnreadable),
        Err(Rejected::Unauthenticated(why)) => {
            tracing::debug!(why, "decision server: key refused");
            server
                .api
                .context
                .refusals
                .count(crate::api::Refusals::UNAUTHENTICATED);
            Err(KeyRefused::Forbidden)
        }
    }
}

/// Which scopes a bouncer asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scopes {
    ip: bool,
    /// Serve ranges as `Range` (only when asked by name); otherwise as their addresses.
    range: bool,
}

impl Scopes {
    fn parse(text: Option<&str>) -> Scopes {
        match text {
            None => Scopes {
                ip: true,
                range: false,
            },
            Some(text) => {
                let asked: Vec<String> = text
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect();
                Scopes {
                    ip: asked.iter().any(|s| s == "ip"),
                    range: asked.iter().any(|s| s == "range"),
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    startup: Option<String>,
    scopes: Option<String>,
}

async fn stream(
    State(server): State<Arc<DecisionServer>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let name = match admit(&server, &headers) {
        Ok(name) => name,
        Err(refused) => return refused.into_response(),
    };
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let startup = query
        .startup
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("true"));
    let scopes = Scopes::parse(query.scopes.as_deref());
    let key = server
        .keys
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.clone())
        .or_default()
        .clone();
    // One poll of a key at a time: the second waits and gets what the first did not send.
    let mut state = key.lock().await;
    let record = format!("{}{name}", server.record_prefix);
    if !state.loaded {
        match server
            .api
            .context
            .ledger
            .ask(|reply| Job::TargetEntries {
                target: record.clone(),
                reply,
            })
            .await
        {
            Ok(entries) => {
                state.held = entries
                    .into_iter()
                    .filter_map(|h| {
                        let id = h.handle.as_deref()?.parse().ok()?;
                        Some((
                            h.prefix,
                            Served {
                                expiry: h.expiry?,
                                id,
                            },
                        ))
                    })
                    .collect();
                state.loaded = true;
            }
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({ "message": e.to_string() })),
                )
                    .into_response()
            }
        }
    }
    let now = crate::clock::now();
    let snapshot = server.snapshot();
    let fingerprint = (
        snapshot.generation,
        Arc::as_ptr(&snapshot.policy) as usize,
        scopes,
    );
    if !startup {
        if let Some((generation, policy, asked, valid_until)) = state.computed {
            let still = (generation, policy, asked) == fingerprint
                && valid_until.is_none_or(|t| now.0 < t.0);
            if still {
                return Json(Stream::default()).into_response();
            }
        }
    }
    let (desired, wide) = desired(&snapshot, scopes, now);
    if wide > 0 {
        tracing::debug!(key = %name, ranges = wide, "ranges wider than {EXPAND_MAX} addresses not served to a key that takes no ranges");
    }
    let diff = diff(&state.held, &desired, startup, now);
    for prefix in &diff.removed {
        state.held.remove(prefix);
    }
    for (prefix, served) in &diff.added {
        state.held.insert(*prefix, *served);
    }
    let valid_until = state
        .held
        .values()
        .filter_map(|s| match s.expiry {
            Expiry::At(t) => Some(t),
            Expiry::Never => None,
        })
        .min();
    state.computed = Some((fingerprint.0, fingerprint.1, fingerprint.2, valid_until));
    let Diff {
        answer,
        added,
        removed,
    } = diff;
    if !added.is_empty() || !removed.is_empty() {
        // Recorded in order with this key's later polls (the ledger thread's queue); a
        // failure is logged, and the next start serves what it then cannot account for.
        let added = added
            .into_iter()
            .map(|(prefix, served)| Held {
                prefix,
                expiry: Some(served.expiry),
                handle: Some(served.id.to_string()),
            })
            .collect();
        let (reply, answered) = tokio::sync::oneshot::channel();
        server.api.context.ledger.send(Job::RecordTargetEntries {
            target: record,
            added,
            removed,
            reply,
        });
        tokio::spawn(async move {
            if let Ok(Err(e)) = answered.await {
                tracing::warn!(error = %e, "the decisions served to a bouncer could not be recorded");
            }
        });
    }
    drop(state);
    Json(answer).into_response()
}

#[derive(Deserialize)]
struct DecisionsQuery {
    ip: Option<String>,
    range: Option<String>,
    scope: Option<String>,
    value: Option<String>,
}

/// `GET /v1/decisions?ip=…|range=…|scope=ip&value=…`: the bans covering it (not expanded).
async fn decisions(
    State(server): State<Arc<DecisionServer>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<DecisionsQuery>,
) -> Response {
    if let Err(refused) = admit(&server, &headers) {
        return refused.into_response();
    }
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let asked = query
        .ip
        .or(query.range)
        .or(query.value.filter(|_| query.scope.is_some()));
    let Some(asked) = asked else {
        return bad_request("give ip=ADDRESS or range=CIDR".into());
    };
    let prefix = match Prefix::parse(&asked) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("{asked:?}: {e}")),
    };
    let now = crate::clock::now();
    let snapshot = server.snapshot();
    let found: Vec<Decision> = snapshot
        .bans
        .iter()
        .filter(|(p, e)| p.contains(&prefix) && !e.is_past(now) && !snapshot.policy.protects(p))
        .map(|(p, e)| {
            decision(
                p,
                &Served {
                    expiry: *e,
                    id: decision_id(p, *e),
                },
                now,
            )
        })
        .collect();
    if found.is_empty() {
        Json(serde_json::Value::Null).into_response()
    } else {
        Json(found).into_response()
    }
}

impl DecisionServer {
    /// The engine's bans, copied again only when a ledger event or a new policy changed them.
    fn snapshot(&self) -> Arc<Snapshot> {
        let engine = &self.api.context.engine;
        let generation = engine.generation();
        let policy = engine.policy();
        let mut cached = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cached.as_ref() {
            if s.generation == generation && Arc::ptr_eq(&s.policy, &policy) {
                return s.clone();
            }
        }
        let fresh = Arc::new(Snapshot {
            generation,
            policy,
            bans: engine.effective_bans(),
        });
        *cached = Some(fresh.clone());
        fresh
    }
}

/// One poll's answer to a key, and the change to what it holds.
#[derive(Debug, Default)]
struct Diff {
    answer: Stream,
    /// Values it no longer holds after this answer.
    removed: Vec<Prefix>,
    /// Values it holds after this answer, new or changed (after `removed` is applied).
    added: Vec<(Prefix, Served)>,
}

/// What a key holding `held` is sent at `now` so that it holds `desired`.
///
/// - A delta: `deleted` for every value gone, changed or ended (its expiry passed), `new` for
///   every value new or changed — both in one answer, since the bouncer applies deletes first
///   and skips a `new` for a value it holds.
/// - A start-up set (the bouncer starts empty): everything as `new`, `deleted` only for
///   values not wanted any more.
///
/// An ended value is sent as `deleted` although the bouncer's own element has normally timed
/// out already (it was sent the time left, rounded down): a bouncer whose timeouts differ
/// (another version, a clock apart, netban's expiry shortened) then converges too.
/// crowdsec-firewall-bouncer 0.0.25 skips a `deleted` value its set no longer has (measured:
/// docs/targets/crowdsec-server.md).
fn diff(
    held: &BTreeMap<Prefix, Served>,
    desired: &BTreeMap<Prefix, Expiry>,
    startup: bool,
    now: Timestamp,
) -> Diff {
    let mut diff = Diff::default();
    for (prefix, served) in held {
        let want = desired.get(prefix);
        let changed = served.expiry.is_past(now) || want != Some(&served.expiry);
        if startup || changed {
            if !startup || want.is_none() {
                diff.answer.deleted.push(decision(prefix, served, now));
            }
            diff.removed.push(*prefix);
        }
    }
    for (prefix, expiry) in desired {
        let same = held
            .get(prefix)
            .is_some_and(|h| h.expiry == *expiry && !h.expiry.is_past(now));
        if startup || !same {
            let served = Served {
                expiry: *expiry,
                id: decision_id(prefix, *expiry),
            };
            diff.answer.new.push(decision(prefix, &served, now));
            diff.added.push((*prefix, served));
        }
    }
    diff
}

/// What a key asking `scopes` should hold at `now`: value → expiry (the latest where bans
/// overlap), and how many ranges were too wide to serve as addresses.
fn desired(
    snapshot: &Snapshot,
    scopes: Scopes,
    now: Timestamp,
) -> (BTreeMap<Prefix, Expiry>, usize) {
    let mut desired: BTreeMap<Prefix, Expiry> = BTreeMap::new();
    let mut wide = 0;
    let mut put = |prefix: Prefix, expiry: Expiry| {
        let slot = desired.entry(prefix).or_insert(expiry);
        *slot = (*slot).max(expiry);
    };
    for &(prefix, expiry) in &snapshot.bans {
        if expiry.is_past(now) || snapshot.policy.protects(&prefix) {
            continue;
        }
        if prefix.is_host() {
            if scopes.ip {
                put(prefix, expiry);
            }
        } else if scopes.range {
            put(prefix, expiry);
        } else if scopes.ip {
            match addresses(&prefix) {
                Some(list) => list.into_iter().for_each(|a| put(a, expiry)),
                None => wide += 1,
            }
        }
    }
    (desired, wide)
}

/// The addresses of `prefix`, if there are at most [`EXPAND_MAX`].
fn addresses(prefix: &Prefix) -> Option<Vec<Prefix>> {
    let host_bits = u32::from(prefix.family().bits() - prefix.len());
    if host_bits >= 128 || (1u128 << host_bits) > EXPAND_MAX {
        return None;
    }
    let count = 1u128 << host_bits;
    Some(match prefix.addr() {
        IpAddr::V4(a) => {
            let base = u32::from(a);
            (0..count as u32)
                .map(|i| Prefix::host(IpAddr::V4((base + i).into())))
                .collect()
        }
        IpAddr::V6(a) => {
            let base = u128::from(a);
            (0..count)
                .map(|i| Prefix::host(IpAddr::V6((base + i).into())))
                .collect()
        }
    })
}

/// A decision's value: the address alone for a host, the CIDR for a range.
fn value_of(prefix: &Prefix) -> String {
    if prefix.is_host() {
        prefix.addr().to_string()
    } else {
        prefix.to_string()
    }
}

/// A stable id for a decision: the same value and expiry always get the same id, on every
/// start; a changed expiry is a new decision. Positive and below 2^53 (exact in JSON).
fn decision_id(prefix: &Prefix, expiry: Expiry) -> i64 {
    // FNV-1a, written out: std's hashers may change between Rust releases.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{prefix} {}", expiry.to_epoch_or_minus_one());
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((hash & ((1 << 53) - 1)) as i64).max(1)
}

fn decision(prefix: &Prefix, served: &Served, now: Timestamp) -> Decision {
    let secs = match served.expiry {
        Expiry::At(t) => now.secs_until(t),
        Expiry::Never => MAX_BAN_SECS,
    };
    Decision {
        id: served.id,
        origin: "netban".into(),
        kind: "ban".into(),
        scope: if prefix.is_host() { "Ip" } else { "Range" }.into(),
        value: value_of(prefix),
        duration: go_duration_secs(secs),
        scenario: "netban".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    fn snapshot(bans: &[(&str, i64)]) -> Snapshot {
        Snapshot {
            generation: 0,
            policy: Arc::new(Policy::default()),
            bans: bans
                .iter()
                .map(|(s, e)| (p(s), Expiry::At(Timestamp(*e))))
                .collect(),
        }
    }

    #[test]
    fn ranges_are_expanded_unless_asked_for_and_capped() {
        let s = snapshot(&[
            ("203.0.113.0/30", 100),
            ("203.0.113.1", 200),
            ("198.51.100.0/23", 100),
            ("2001:db8::/126", 50),
        ]);
        let now = Timestamp(10);
        let (d, wide) = desired(&s, Scopes::parse(None), now);
        assert_eq!(wide, 1, "a /23 is 512 addresses");
        assert_eq!(d.len(), 8);
        assert_eq!(
            d[&p("203.0.113.1")],
            Expiry::At(Timestamp(200)),
            "the later expiry"
        );
        assert_eq!(d[&p("203.0.113.3")], Expiry::At(Timestamp(100)));
        assert!(d.contains_key(&p("2001:db8::3")));
        let (d, wide) = desired(&s, Scopes::parse(Some("ip,range")), now);
        assert_eq!((d.len(), wide), (4, 0));
        let (d, _) = desired(&s, Scopes::parse(Some("range")), now);
        assert_eq!(d.len(), 3);
        let (d, _) = desired(&s, Scopes::parse(None), Timestamp(150));
        assert_eq!(d.len(), 1, "expired bans are not served");
    }

    #[test]
    fn a_delta_deletes_what_ended_changed_or_went_and_a_startup_set_resends_everything() {
        let at = |e: i64| Expiry::At(Timestamp(e));
        let held: BTreeMap<Prefix, Served> = [
            ("203.0.113.1", 50),  // ended (its element timed out, or outlived the ban)
            ("203.0.113.2", 200), // unchanged
            ("203.0.113.3", 200), // extended to 300
            ("203.0.113.4", 200), // unbanned
        ]
        .into_iter()
        .map(|(v, e)| {
            (
                p(v),
                Served {
                    expiry: at(e),
                    id: decision_id(&p(v), at(e)),
                },
            )
        })
        .collect();
        let desired: BTreeMap<Prefix, Expiry> = [
            ("203.0.113.2", 200),
            ("203.0.113.3", 300),
            ("203.0.113.5", 200),
        ]
        .into_iter()
        .map(|(v, e)| (p(v), at(e)))
        .collect();
        let values = |list: &[Decision]| -> Vec<String> {
            let mut v: Vec<String> = list.iter().map(|d| d.value.clone()).collect();
            v.sort();
            v
        };
        let now = Timestamp(100);

        let delta = diff(&held, &desired, false, now);
        assert_eq!(
            values(&delta.answer.deleted),
            ["203.0.113.1", "203.0.113.3", "203.0.113.4"]
        );
        assert_eq!(values(&delta.answer.new), ["203.0.113.3", "203.0.113.5"]);
        assert_eq!(
            delta.removed,
            [p("203.0.113.1"), p("203.0.113.3"), p("203.0.113.4")]
        );
        let added: Vec<Prefix> = delta.added.iter().map(|(v, _)| *v).collect();
        assert_eq!(added, [p("203.0.113.3"), p("203.0.113.5")]);
        let extended = &delta.answer.new[0];
        assert_eq!(extended.duration, "200s");
        assert_ne!(
            extended.id,
            held[&p("203.0.113.3")].id,
            "a changed expiry is a new decision"
        );

        let startup = diff(&held, &desired, true, now);
        assert_eq!(
            values(&startup.answer.deleted),
            ["203.0.113.1", "203.0.113.4"],
            "only what is not wanted any more"
        );
        assert_eq!(
            values(&startup.answer.new),
            ["203.0.113.2", "203.0.113.3", "203.0.113.5"]
        );
        assert_eq!(startup.removed.len(), 4);
        assert_eq!(startup.added.len(), 3);

        let settled = diff(
            &held,
            &held.iter().map(|(v, s)| (*v, s.expiry)).collect(),
            false,
            Timestamp(40),
        );
        assert!(
            settled.answer.new.is_empty() && settled.answer.deleted.is_empty(),
            "nothing to send before anything ends"
        );
    }

    #[test]
    fn decisions_carry_what_the_bouncer_needs() {
        let d = decision(
            &p("203.0.113.7"),
            &Served {
                expiry: Expiry::At(Timestamp(100)),
                id: 5,
            },
            Timestamp(100),
        );
        assert_eq!((d.value.as_str(), d.scope.as_str()), ("203.0.113.7", "Ip"));
        assert_eq!(d.duration, "1s", "never zero");
        let never = decision(
            &p("2001:db8::/64"),
            &Served {
                expiry: Expiry::Never,
                id: 5,
            },
            Timestamp(100),
        );
        assert_eq!(never.duration, "315360000s");
        assert_eq!(never.value, "2001:db8::/64");
        let a = decision_id(&p("203.0.113.7"), Expiry::At(Timestamp(100)));
        assert_eq!(
            a,
            decision_id(&p("203.0.113.7"), Expiry::At(Timestamp(100)))
        );
        assert_ne!(
            a,
            decision_id(&p("203.0.113.7"), Expiry::At(Timestamp(101)))
        );
        assert!(a > 0 && a < (1 << 53));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 7);
    }
}
