//! ExaFS RTBH rules on the wire: the JSON netban sends (rendered only from a [`Prefix`]), the
//! JSON ExaFS answers, and the expiry arithmetic between netban's bans and ExaFS's rules (the
//! same for flowspec rules, [`super::flow`]), with the rule states both kinds share.
//!
//! Expiry, as ExaFS 1.4.1 handles it: it rounds `expires` to the *nearest* 10 minutes of its
//! local clock, stores a rule whose expiry is at or before now as "withdrawed" (never
//! announced), has no "permanent", and never withdraws a rule by itself (only its
//! `withdraw_expired` job does). So netban sends the first 10-minute mark at least
//! [`MARGIN_SECS`] after the ban ends (ExaFS's rounding then never lands before the ban's
//! end, whatever the server's UTC offset), sends permanent bans as now + [`PERMANENT_SECS`],
//! and reads expiries beyond [`PERMANENT_READ_BACK_SECS`] back as permanent. netban deletes
//! the rule itself when the ban ends; the expiry stored in ExaFS is only a safety net.

use netban_core::plan::Held;
use netban_core::{Expiry, Family, Prefix, Timestamp};
use serde::{Deserialize, Serialize};

/// ExaFS's expiry granularity.
pub const ROUNDING_SECS: i64 = 600;
/// Added before rounding up: ExaFS rounds to the nearest mark of *its* local clock, which
/// can move a value by up to 5 minutes when its UTC offset is not a multiple of 10 minutes.
pub const MARGIN_SECS: i64 = 300;
/// Permanent bans are sent as rules expiring this far ahead (ten years)…
pub const PERMANENT_SECS: i64 = 10 * 365 * 86_400;
/// …and a rule expiring further ahead than this (five years) reads back as permanent. A
/// permanent rule older than five years reads back as timed and is refreshed for ten more.
pub const PERMANENT_READ_BACK_SECS: i64 = 5 * 365 * 86_400;

/// The `expires` value (epoch seconds) to send for a ban ending at `expiry`.
pub fn expires_to_send(expiry: Expiry, now: Timestamp) -> i64 {
    let end = match expiry {
        // A ban that has just ended is still sent as a short live rule: netban deletes it as
        // soon as it sees the ban is over, and a past expiry would store a withdrawn rule.
        Expiry::At(t) => t.0.max(now.0),
        Expiry::Never => now.0.saturating_add(PERMANENT_SECS),
    };
    ceil_to(end.saturating_add(MARGIN_SECS), ROUNDING_SECS)
}

fn ceil_to(value: i64, step: i64) -> i64 {
    let rem = value.rem_euclid(step);
    if rem == 0 {
        value
    } else {
        value.saturating_add(step - rem)
    }
}

/// The body of `POST /api/v3/rules/rtbh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_mask: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_mask: Option<u8>,
    pub community: u32,
    /// Epoch seconds (ExaFS then also answers with epoch seconds).
    pub expires: i64,
    pub comment: &'a str,
}

impl<'a> RuleRequest<'a> {
    /// The rule for `prefix`: the address and mask come only from the parsed prefix.
    pub fn new(prefix: Prefix, community: u32, expires: i64, comment: &'a str) -> Self {
        let addr = Some(prefix.addr().to_string());
        let mask = Some(prefix.len());
        let (ipv4, ipv4_mask, ipv6, ipv6_mask) = match prefix.family() {
            Family::V4 => (addr, mask, None, None),
            Family::V6 => (None, None, addr, mask),
        };
        RuleRequest {
            ipv4,
            ipv4_mask,
            ipv6,
            ipv6_mask,
            community,
            expires,
            comment,
        }
    }
}

/// The state ExaFS gives a rule (`rstate`, by its description).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleState {
    /// Announced.
    Active,
    /// Stored but not announced (expiry passed, or created with a past expiry).
    Withdrawn,
    /// Kept off the network because it matches an ExaFS whitelist.
    Whitelisted,
    /// Anything else ExaFS may report ("deleted rule", or a state of a later version).
    Other(String),
}

impl RuleState {
    pub(super) fn from_description(text: &str) -> RuleState {
        match text {
            "active rule" => RuleState::Active,
            "withdrawed rule" | "withdrawn rule" => RuleState::Withdrawn,
            "whitelisted rule" => RuleState::Whitelisted,
            other => RuleState::Other(other.to_string()),
        }
    }
}

/// One RTBH rule as ExaFS lists it (with `time_format=timestamp`).
#[derive(Clone, Debug, Deserialize)]
pub struct RuleRecord {
    pub id: i64,
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub ipv4_mask: Option<u8>,
    #[serde(default)]
    pub ipv6: Option<String>,
    #[serde(default)]
    pub ipv6_mask: Option<u8>,
    /// The community's *name* (ExaFS lists names, while requests carry ids).
    pub community: String,
    pub expires: i64,
    pub rstate: String,
}

impl RuleRecord {
    pub fn state(&self) -> RuleState {
        RuleState::from_description(&self.rstate)
    }

    /// The rule's prefix, parsed as strictly as any user input.
    pub fn prefix(&self) -> Result<Prefix, String> {
        let (addr, mask, max) = match (&self.ipv4, &self.ipv6) {
            (Some(a), None) if !a.is_empty() => (a, self.ipv4_mask, 32),
            (None, Some(a)) if !a.is_empty() => (a, self.ipv6_mask, 128),
            _ => return Err(format!("rule {} has no single address", self.id)),
        };
        let ip: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("rule {}: {addr:?} is not an address", self.id))?;
        let len = mask.unwrap_or(max);
        Prefix::parse(&format!("{ip}/{len}")).map_err(|e| format!("rule {}: {e}", self.id))
    }

    /// The rule as netban sees it held, at `now`: the handle is the rule id. A rule that is
    /// not announced for lack of time (withdrawn) holds nothing any more, so it reads back
    /// as expired (`min(expires, now)`), and the planner refreshes it if the ban goes on.
    /// A whitelisted rule reads back with its expiry: ExaFS keeps it off the network on
    /// purpose, and re-sending it would not change that (reported, not fought).
    pub fn held(&self, now: Timestamp) -> Result<Held, String> {
        Ok(Held {
            prefix: self.prefix()?,
            expiry: Some(held_expiry(&self.state(), self.expires, now)),
            handle: Some(self.id.to_string()),
        })
    }
}

/// The expiry a rule of either kind holds at `now`, as netban reads it back: a rule expiring
/// beyond [`PERMANENT_READ_BACK_SECS`] is permanent; a rule not announced for lack of time
/// (withdrawn, or a state netban does not know) holds nothing any more and reads back as
/// expired (`min(expires, now)`).
pub(super) fn held_expiry(state: &RuleState, expires: i64, now: Timestamp) -> Expiry {
    match state {
        RuleState::Active | RuleState::Whitelisted => {
            if expires >= now.0.saturating_add(PERMANENT_READ_BACK_SECS) {
                Expiry::Never
            } else {
                Expiry::At(Timestamp(expires))
            }
        }
        RuleState::Withdrawn | RuleState::Other(_) => Expiry::At(Timestamp(expires.min(now.0))),
    }
}

/// The answer to a successful `POST /api/v3/rules/rtbh` (an RTBH [`RuleRecord`]) or
/// `/rules/ipv4|ipv6` (a [`super::flow::FlowRecord`]).
#[derive(Debug, Deserialize)]
pub struct CreateAnswer<R = RuleRecord> {
    pub rule: R,
}

/// The reason ExaFS gives in a 400 answer (`validation_errors`), as one line; `None` if the
/// body is not such an answer.
pub fn validation_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = value.get("validation_errors")?.as_object()?;
    let mut seen: Vec<String> = Vec::new();
    let mut parts = Vec::new();
    for (field, messages) in errors {
        let texts: Vec<String> = match messages {
            serde_json::Value::Array(list) => list
                .iter()
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                .collect(),
            other => vec![other.to_string()],
        };
        for text in texts {
            // ExaFS repeats "must be in organization range" under both ipv4 and ipv6.
            if !seen.contains(&text) {
                parts.push(format!("{field}: {text}"));
                seen.push(text);
            }
        }
    }
    if parts.is_empty() {
        return value.get("message")?.as_str().map(str::to_string);
    }
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    #[test]
    fn expires_is_a_ten_minute_mark_at_least_five_minutes_after_the_ban() {
        let now = Timestamp(1_700_000_000); // 22:13:20 UTC
        for end in [
            now.0 + 1,
            now.0 + 299,
            now.0 + 300,
            now.0 + 3_600,
            now.0 + 86_399,
        ] {
            let sent = expires_to_send(Expiry::At(Timestamp(end)), now);
            assert_eq!(sent % ROUNDING_SECS, 0, "{end}");
            assert!(sent >= end + MARGIN_SECS, "{end} → {sent}");
            assert!(sent < end + MARGIN_SECS + ROUNDING_SECS, "{end} → {sent}");
            // ExaFS rounding to the nearest mark on a grid shifted by up to 5 minutes
            // never lands before the ban's end.
            for shift in [-299, -1, 0, 1, 299] {
                let local = sent + shift;
                let rounded = ((local + 300) / 600) * 600 - shift;
                assert!(rounded >= end, "{end} shift {shift} → {rounded}");
            }
        }
        // Exactly on a mark already.
        assert_eq!(
            expires_to_send(Expiry::At(Timestamp(1_800)), Timestamp(0)),
            2_400
        );
        assert_eq!(
            expires_to_send(Expiry::At(Timestamp(1_500)), Timestamp(0)),
            1_800
        );
        // A ban that just ended is sent as a short live rule, not a withdrawn one.
        assert_eq!(
            expires_to_send(Expiry::At(Timestamp(now.0 - 50)), now),
            expires_to_send(Expiry::At(now), now)
        );
        // Permanent: ten years ahead.
        let permanent = expires_to_send(Expiry::Never, now);
        assert!(permanent >= now.0 + PERMANENT_SECS && permanent % 600 == 0);
    }

    #[test]
    fn requests_are_rendered_from_the_prefix() {
        let r = RuleRequest::new(p("203.0.113.7"), 1, 1200, "netban");
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"ipv4": "203.0.113.7", "ipv4_mask": 32, "community": 1,
                               "expires": 1200, "comment": "netban"})
        );
        let r = RuleRequest::new(p("2001:db8:0:0::/64"), 3, 600, "");
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"ipv6": "2001:db8::", "ipv6_mask": 64, "community": 3,
                               "expires": 600, "comment": ""})
        );
    }

    fn record(json: serde_json::Value) -> RuleRecord {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn records_read_back_as_held() {
        let now = Timestamp(1_000_000);
        let active = record(serde_json::json!({
            "comment": "netban", "community": "65535:65283", "created": 1, "expires": 1_003_600,
            "id": 7, "ipv4": "203.0.113.7", "ipv4_mask": 32, "ipv6": null, "ipv6_mask": null,
            "rstate": "active rule", "user": "netban@example.org"}));
        assert_eq!(
            active.held(now).unwrap(),
            Held {
                prefix: p("203.0.113.7"),
                expiry: Some(Expiry::At(Timestamp(1_003_600))),
                handle: Some("7".into()),
            }
        );
        let v6 = record(serde_json::json!({
            "community": "x", "expires": now.0 + PERMANENT_SECS, "id": 8, "ipv4": null,
            "ipv4_mask": null, "ipv6": "2001:0db8::0", "ipv6_mask": 48, "rstate": "active rule"}));
        let held = v6.held(now).unwrap();
        assert_eq!(held.prefix, p("2001:db8::/48"));
        assert_eq!(held.expiry, Some(Expiry::Never));

        let withdrawn = record(serde_json::json!({
            "community": "x", "expires": 2_000_000, "id": 9, "ipv4": "203.0.113.8",
            "ipv4_mask": 32, "rstate": "withdrawed rule"}));
        assert_eq!(withdrawn.state(), RuleState::Withdrawn);
        assert_eq!(withdrawn.held(now).unwrap().expiry, Some(Expiry::At(now)));

        let whitelisted = record(serde_json::json!({
            "community": "x", "expires": 2_000_000, "id": 10, "ipv4": "203.0.113.9",
            "ipv4_mask": 32, "rstate": "whitelisted rule"}));
        assert_eq!(whitelisted.state(), RuleState::Whitelisted);
        assert_eq!(
            whitelisted.held(now).unwrap().expiry,
            Some(Expiry::At(Timestamp(2_000_000)))
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        for json in [
            serde_json::json!({"community": "x", "expires": 1, "id": 1, "rstate": "active rule"}),
            serde_json::json!({"community": "x", "expires": 1, "id": 1, "rstate": "active rule",
                               "ipv4": "203.0.113.7", "ipv4_mask": 24}),
            serde_json::json!({"community": "x", "expires": 1, "id": 1, "rstate": "active rule",
                               "ipv4": "exafs.example.org", "ipv4_mask": 32}),
            serde_json::json!({"community": "x", "expires": 1, "id": 1, "rstate": "active rule",
                               "ipv4": "203.0.113.7", "ipv4_mask": 32, "ipv6": "2001:db8::1"}),
        ] {
            assert!(record(json.clone()).prefix().is_err(), "{json}");
        }
    }

    #[test]
    fn validation_errors_become_one_reason() {
        let body = br#"{"message":"error - invalid request data","validation_errors":{"ipv4":["IPv4 or IPv6 address must be in organization range : ['203.0.113.0/24']."],"ipv6":["IPv4 or IPv6 address must be in organization range : ['203.0.113.0/24']."]}}"#;
        assert_eq!(
            validation_reason(body).unwrap(),
            "ipv4: IPv4 or IPv6 address must be in organization range : ['203.0.113.0/24']."
        );
        let body = br#"{"validation_errors":{"community":["Not a valid choice."],"expires":["Not a valid datetime value."]}}"#;
        assert_eq!(
            validation_reason(body).unwrap(),
            "community: Not a valid choice.; expires: Not a valid datetime value."
        );
        assert_eq!(validation_reason(b"<html>Bad Request</html>"), None);
        assert_eq!(validation_reason(br#"{"message":"x"}"#), None);
    }
}
