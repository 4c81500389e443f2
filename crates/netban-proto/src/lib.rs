//! The local socket protocol between `netban` (the client) and `netban serve` (the daemon).
//!
//! One JSON object per line in each direction over a Unix stream socket: the client writes a
//! [`Request`], the daemon answers with one [`Response`], and the client may send further
//! requests on the same connection. Prefixes travel already parsed: the client refuses bad
//! input before it connects, and the daemon parses again on receipt (serde runs the same strict
//! parser), so nothing unparsed ever reaches a target.
//!
//! The daemon only acknowledges a ban after the ledger has it on disk.

use netban_core::{
    BanDuration, BanRequest, EventKind, Expiry, OriginHost, Prefix, Reason, Source, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped when a request or response changes shape incompatibly.
pub const PROTOCOL_VERSION: u32 = 2;

/// The default socket path of the daemon.
pub const DEFAULT_SOCKET: &str = "/run/netban/netban.sock";

/// The most prefixes one ban or unban request may carry (a client splits longer lists). The
/// daemon refuses a larger request whole and reads no request line longer than 8 MiB.
pub const MAX_PREFIXES_PER_REQUEST: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Ping,
    Ban(BanArgs),
    Unban(UnbanArgs),
    List {
        prefix: Option<Prefix>,
    },
    Status,
    Plan {
        target: Option<String>,
    },
    Sync {
        target: Option<String>,
    },
    History {
        prefix: Prefix,
        limit: usize,
    },
    /// Re-read the allowlist files now (the daemon also notices changes by itself).
    Reload,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BanArgs {
    pub prefixes: Vec<Prefix>,
    pub source: Source,
    /// How long: `{"seconds": N}` or `"permanent"` on the wire.
    pub duration: BanDuration,
    pub reason: Option<Reason>,
    pub failures: Option<u32>,
    pub origin_host: Option<OriginHost>,
    /// fail2ban's `<restored>`: re-asserting a ban after its restart. Never escalates.
    #[serde(default)]
    pub restored: bool,
}

impl BanArgs {
    /// The domain request for one of the prefixes; `default_origin` names the reporting host
    /// when the request does not.
    pub fn request(&self, prefix: Prefix, default_origin: Option<&OriginHost>) -> BanRequest {
        BanRequest {
            prefix,
            source: self.source.clone(),
            duration: self.duration,
            reason: self.reason.clone(),
            failures: self.failures,
            origin_host: self.origin_host.clone().or_else(|| default_origin.cloned()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnbanArgs {
    pub prefixes: Vec<Prefix>,
    /// `None`: lift the ban of every source.
    pub source: Option<Source>,
    pub origin_host: Option<OriginHost>,
    /// With `source`: lift every ban of that source (`prefixes` must be empty). What
    /// fail2ban's actionflush uses when bans should not outlive fail2ban.
    #[serde(default)]
    pub all_of_source: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Response {
    Ok { body: Body },
    Error { message: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Body {
    Pong {
        version: u32,
    },
    /// One result per requested prefix, in request order.
    Banned {
        results: Vec<ItemResult>,
    },
    Unbanned {
        results: Vec<ItemResult>,
    },
    List {
        bans: Vec<ListedBan>,
    },
    Status(StatusReport),
    Plan {
        targets: Vec<TargetPlan>,
    },
    Synced {
        targets: Vec<String>,
    },
    History {
        events: Vec<HistoryEvent>,
    },
    Reloaded {
        allowlist_entries: usize,
        lifted: Vec<Prefix>,
    },
}

/// The result of one prefix in a ban or unban request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub prefix: Prefix,
    /// `None` on success; otherwise why nothing was recorded for this prefix.
    pub error: Option<String>,
    /// For bans: the (prefix, source) expiry now recorded.
    pub expiry: Option<Expiry>,
    /// For bans: how many earlier bans escalated this one.
    pub escalation_step: u32,
    /// For unbans: whether the prefix is still banned by other sources afterwards.
    pub still_banned: bool,
    /// Whether the ledger changed (false: a ban that was already held as asked, an unban of
    /// something not banned — both succeed, so fail2ban's retries and restores are idempotent).
    #[serde(default)]
    pub changed: bool,
    /// Recorded in this host's spool because the shared ledger is unreachable: durable here,
    /// enforced on this host's own targets, forwarded to the fleet when the ledger returns.
    #[serde(default)]
    pub spooled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedBan {
    pub prefix: Prefix,
    /// Effective expiry (latest of all sources).
    pub expiry: Expiry,
    pub sources: Vec<SourceBan>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceBan {
    pub source: Source,
    pub expiry: Expiry,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub ledger: String,
    pub started_at: Timestamp,
    pub active_bans: usize,
    pub targets: Vec<TargetStatus>,
    /// Whether the ledger answers, and what waits for it.
    #[serde(default)]
    pub ledger_health: LedgerHealth,
    /// The detectors the daemon polls (`[[sources]]`: CrowdSec LAPIs).
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
}

/// How a polled source (a CrowdSec LAPI) is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    /// `crowdsec`.
    pub kind: String,
    /// Where it is polled (no credentials in it).
    pub url: String,
    /// Since when it has not answered; `None` while it answers. Nothing is lifted meanwhile.
    pub down_since: Option<Timestamp>,
    pub last_error: Option<String>,
    /// The last answered poll.
    pub last_poll: Option<Timestamp>,
    /// Seconds until the next attempt while it is down (doubling, at most 60).
    pub retry_in_secs: Option<u64>,
    /// Its active decisions netban follows (after the filters).
    pub decisions: usize,
    /// Bans and unbans recorded from it since the daemon started.
    pub bans: u64,
    pub unbans: u64,
    /// Decisions policy refused (allowlist, protected, too broad) or netban cannot read.
    pub refused: u64,
    pub last_refusal: Option<String>,
}

/// How the ledger is doing, from this daemon's side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerHealth {
    /// Since when the (shared) ledger has not answered; `None` while it answers.
    pub unreachable_since: Option<Timestamp>,
    /// Why it did not answer last time.
    pub last_error: Option<String>,
    /// Writes acknowledged while it was unreachable, kept in the local spool until it
    /// takes them.
    pub spooled: usize,
    /// Unreadable rows moved to the ledger's quarantine since the daemon started.
    #[serde(default)]
    pub quarantined: u64,
    /// The last of them and why, for the operator.
    #[serde(default)]
    pub last_quarantined: Option<String>,
    /// What the integrity check at start found wrong with the ledger file (SQLite's
    /// `quick_check`); `None` when it is sound or not checked.
    #[serde(default)]
    pub damaged: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: String,
    pub kind: String,
    pub health: Health,
    pub desired: usize,
    pub held: usize,
    /// Bans this target should hold but cannot (capacity), sent to its fallback.
    pub overflow: usize,
    /// Covering prefixes this target holds in place of several bans (aggregation).
    #[serde(default)]
    pub aggregates: usize,
    pub pending: usize,
    pub last_sync: Option<Timestamp>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// Whether each host enforces this target itself or one host drives it for the fleet.
    #[serde(default)]
    pub scope: TargetScope,
    /// The host that drives this target (this one for a per-host target); `None` while
    /// nobody can tell (the database is unreachable).
    #[serde(default)]
    pub driver: Option<String>,
    /// Since when `driver` drives it.
    #[serde(default)]
    pub driving_since: Option<Timestamp>,
    /// A feed's consumers: who pulled it, when, and which version each holds (the most
    /// recent first). Empty for every other kind of target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<FeedConsumer>,
}

/// One consumer of a feed (a firewall that pulls the list), as the feed last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedConsumer {
    /// Its address, as the API listener saw it.
    pub address: String,
    /// Who it authenticated as: the HTTP basic user, `token`, or `anonymous`.
    pub identity: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Its last request (a GET or a HEAD).
    pub last_seen: Timestamp,
    /// The entity tag of the version it was last given or confirmed (304), if any.
    #[serde(default)]
    pub etag: Option<String>,
    /// The entries of that version.
    #[serde(default)]
    pub entries: usize,
    /// When it got or confirmed that version.
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// Whether that version is the one published now.
    #[serde(default)]
    pub current: bool,
}

/// Who enforces a target: every host itself, or one host for the whole fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetScope {
    /// Every host drives its own instance (its own nftables): all of them enforce.
    #[default]
    Host,
    /// One device shared by the fleet (an edge router, an AWS NACL, ExaFS): exactly one
    /// daemon drives it at a time, through a lease in the shared ledger.
    Fleet,
}

impl TargetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetScope::Host => "host",
            TargetScope::Fleet => "fleet",
        }
    }
}

/// How a target is doing, as `netban status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not yet synced since the daemon started.
    Starting,
    /// The last sync and every item since succeeded.
    Ok,
    /// Reachable, but some items failed (retried) or were rejected by the device.
    Degraded,
    /// The last attempt failed as a whole; retried with backoff.
    Down,
    /// A shared target another host drives (or, with the database unreachable, that this
    /// host may not drive): this daemon leaves the device alone.
    Standby,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Down => "down",
            Health::Standby => "standby",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetPlan {
    pub target: String,
    pub add: Vec<Prefix>,
    pub remove: Vec<Prefix>,
    pub refresh: Vec<Prefix>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub at: Timestamp,
    pub kind: EventKind,
    pub prefix: Prefix,
    pub source: Option<Source>,
    pub expiry: Option<Expiry>,
    pub reason: Option<Reason>,
    pub origin_host: Option<OriginHost>,
    pub escalation_step: u32,
}

/// Encodes one message as a line (JSON plus `\n`).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("protocol types always serialize");
    line.push(b'\n');
    line
}

/// Decodes one line (with or without its `\n`).
pub fn decode<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(line))
}

/// `value` percent-encoded for a URL's path segment or query value: everything but RFC 3986's
/// unreserved characters (what the HTTP API's clients put in `/v1/bans/{prefix}` or `?q=`).
pub fn percent_encode(value: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_request_round_trips() {
        let req = Request::Ban(BanArgs {
            prefixes: vec![Prefix::parse("203.0.113.7").unwrap()],
            source: Source::new("sshd").unwrap(),
            duration: BanDuration::Seconds(600),
            reason: None,
            failures: Some(3),
            origin_host: None,
            restored: false,
        });
        let line = encode(&req);
        assert_eq!(*line.last().unwrap(), b'\n');
        assert_eq!(decode::<Request>(&line).unwrap(), req);
    }

    #[test]
    fn durations_and_health_are_typed_on_the_wire() {
        let line = br#"{"op":"ban","prefixes":["203.0.113.7"],"source":"sshd","duration":"permanent","reason":null,"failures":null,"origin_host":null}"#;
        let Request::Ban(args) = decode::<Request>(line).unwrap() else {
            panic!("not a ban")
        };
        assert_eq!(args.duration, BanDuration::Permanent);
        // fail2ban's -1 sentinel is the CLI's business, never the protocol's.
        let line = br#"{"op":"ban","prefixes":["203.0.113.7"],"source":"sshd","duration":-1,"reason":null,"failures":null,"origin_host":null}"#;
        assert!(decode::<Request>(line).is_err());
        assert_eq!(
            serde_json::to_string(&Health::Degraded).unwrap(),
            "\"degraded\""
        );
    }

    #[test]
    fn the_daemon_reparses_prefixes_strictly() {
        let line = br#"{"op":"ban","prefixes":["203.0.113.7;reboot"],"source":"sshd","duration":{"seconds":1},"reason":null,"failures":null,"origin_host":null}"#;
        assert!(decode::<Request>(line).is_err());
        let line = br#"{"op":"ban","prefixes":["203.0.113.7"],"source":"ss hd","duration":{"seconds":1},"reason":null,"failures":null,"origin_host":null}"#;
        assert!(decode::<Request>(line).is_err());
    }
}
