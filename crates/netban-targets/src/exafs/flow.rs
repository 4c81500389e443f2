//! ExaFS flowspec rules on the wire (`rule = "flowspec"`): the match every rule of the target
//! carries besides the banned source, the JSON netban sends to `POST /api/v3/rules/ipv4` or
//! `/ipv6` (rendered only from a [`Prefix`] and the checked match), the JSON ExaFS lists, and
//! whether a listed rule is one of this target's kind.
//!
//! As ExaFS 1.4.1 handles them (checked against it): a rule needs its source *or* destination
//! inside the organisation's ranges; `protocol` (IPv4) and `next_header` (IPv6) are required,
//! `"all"` meaning any; destination ports are one string, `;`-separated; a POST with the same
//! match, action and state *active* answers with the existing rule and sets its expiry, but a
//! withdrawn rule is never reused (a new rule, with a new id, is created beside it); IPv6 rule
//! ids are listed as strings ("1"), IPv4 ones as numbers. ExaFS turns each rule into one
//! exabgp line, e.g. `announce flow route { match { source 203.0.113.7/32; destination-port
//! [=22]; protocol =tcp; } then { discard; } }`.

use super::rule::{held_expiry, RuleState};
use netban_core::plan::Held;
use netban_core::{Family, Prefix, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};

/// The longest `dest_port` text ExaFS stores (its form's limit).
const MAX_PORTS_TEXT: usize = 255;

/// A protocol a flowspec rule can match, by ExaFS's names (`protocol` setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowProtocol {
    Tcp,
    Udp,
    Icmp,
    Gre,
}

impl FlowProtocol {
    /// ExaFS's name, the same for IPv4 `protocol` and IPv6 `next_header` (ExaFS sends ICMPv6,
    /// next header 58, for "icmp" in an IPv6 rule).
    pub fn exafs_name(self) -> &'static str {
        match self {
            FlowProtocol::Tcp => "tcp",
            FlowProtocol::Udp => "udp",
            FlowProtocol::Icmp => "icmp",
            FlowProtocol::Gre => "gre",
        }
    }
}

/// What every flowspec rule of one target matches besides the banned source: optionally a
/// protocol, and destination ports of that protocol. The action is resolved separately (its
/// id must be looked up in ExaFS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowMatch {
    protocol: Option<FlowProtocol>,
    /// Sorted, without duplicates.
    ports: Vec<u16>,
}

/// ExaFS's word for "any protocol".
const ANY_PROTOCOL: &str = "all";

impl FlowMatch {
    /// The match for `protocol` and `ports`, or what to fix: ports need TCP or UDP, and must
    /// fit ExaFS's field.
    pub fn new(protocol: Option<FlowProtocol>, ports: &[u16]) -> Result<FlowMatch, String> {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        if !ports.is_empty() && !matches!(protocol, Some(FlowProtocol::Tcp | FlowProtocol::Udp)) {
            return Err(format!(
                "exafs ports {ports:?} need protocol = \"tcp\" or \"udp\" (ports of other \
                 protocols, or of any protocol, are not what a jail bans)"
            ));
        }
        let rule_match = FlowMatch { protocol, ports };
        if rule_match
            .ports_text()
            .is_some_and(|t| t.len() > MAX_PORTS_TEXT)
        {
            return Err(format!(
                "exafs ports: too many ({}); ExaFS stores at most {MAX_PORTS_TEXT} characters \
                 of them",
                rule_match.ports.len()
            ));
        }
        Ok(rule_match)
    }

    pub fn protocol(&self) -> Option<FlowProtocol> {
        self.protocol
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The `protocol` / `next_header` value ExaFS takes and lists.
    fn protocol_text(&self) -> &'static str {
        self.protocol.map_or(ANY_PROTOCOL, FlowProtocol::exafs_name)
    }

    /// The `dest_port` value: "22;2222", or `None` for any port.
    fn ports_text(&self) -> Option<String> {
        (!self.ports.is_empty()).then(|| {
            self.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(";")
        })
    }
}

/// The body of `POST /api/v3/rules/ipv4` (with `protocol`) or `/ipv6` (with `next_header`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRequest<'a> {
    pub source: String,
    pub source_mask: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_header: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<String>,
    pub action: u32,
    /// Epoch seconds (ExaFS then also answers with epoch seconds).
    pub expires: i64,
    pub comment: &'a str,
}

impl<'a> FlowRequest<'a> {
    /// The rule matching `prefix` as source and `rule_match`, then `action`. The address and
    /// mask come only from the parsed prefix.
    pub fn new(
        prefix: Prefix,
        rule_match: &FlowMatch,
        action: u32,
        expires: i64,
        comment: &'a str,
    ) -> Self {
        let protocol = Some(rule_match.protocol_text());
        let (protocol, next_header) = match prefix.family() {
            Family::V4 => (protocol, None),
            Family::V6 => (None, protocol),
        };
        FlowRequest {
            source: prefix.addr().to_string(),
            source_mask: prefix.len(),
            protocol,
            next_header,
            dest_port: rule_match.ports_text(),
            action,
            expires,
            comment,
        }
    }
}

/// One flowspec rule as ExaFS lists it (with `time_format=timestamp`), IPv4 or IPv6.
#[derive(Clone, Debug, Deserialize)]
pub struct FlowRecord {
    #[serde(deserialize_with = "number_or_text")]
    pub id: i64,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub source_mask: Option<u8>,
    #[serde(default)]
    pub source_port: Option<String>,
    #[serde(default)]
    pub dest: Option<String>,
    #[serde(default)]
    pub dest_port: Option<String>,
    /// IPv4 rules.
    #[serde(default)]
    pub protocol: Option<String>,
    /// IPv6 rules.
    #[serde(default)]
    pub next_header: Option<String>,
    #[serde(default)]
    pub flags: Option<String>,
    #[serde(default)]
    pub packet_len: Option<String>,
    #[serde(default)]
    pub fragment: Option<String>,
    /// The action's *name* (ExaFS lists names, while requests carry ids).
    pub action: String,
    pub expires: i64,
    pub rstate: String,
}

/// ExaFS lists IPv4 rule ids as numbers and IPv6 rule ids as text.
fn number_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Text(String),
    }
    match Id::deserialize(deserializer)? {
        Id::Number(n) => Ok(n),
        Id::Text(t) => t
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("rule id {t:?} is not a number"))),
    }
}

fn is_empty(field: &Option<String>) -> bool {
    field.as_deref().is_none_or(str::is_empty)
}

impl FlowRecord {
    pub fn state(&self) -> RuleState {
        RuleState::from_description(&self.rstate)
    }

    /// The rule's source prefix, parsed as strictly as any user input.
    pub fn prefix(&self) -> Result<Prefix, String> {
        let Some(addr) = self.source.as_deref().filter(|a| !a.is_empty()) else {
            return Err(format!("flowspec rule {} has no source", self.id));
        };
        let ip: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("flowspec rule {}: {addr:?} is not an address", self.id))?;
        let len = self
            .source_mask
            .unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
        Prefix::parse(&format!("{ip}/{len}")).map_err(|e| format!("flowspec rule {}: {e}", self.id))
    }

    /// Whether the rule matches exactly a source, `rule_match` and nothing else, with the
    /// action named `action`: the rules this target creates look so, and only those count.
    pub fn has_match(&self, rule_match: &FlowMatch, action: &str) -> bool {
        let protocol = self.protocol.as_ref().or(self.next_header.as_ref());
        let protocol_ok = match protocol.map(String::as_str) {
            None | Some("") => rule_match.protocol.is_none(),
            Some(p) => p == rule_match.protocol_text(),
        };
        self.action == action
            && protocol_ok
            && self.listed_ports().as_deref() == Some(rule_match.ports.as_slice())
            && [
                &self.dest,
                &self.source_port,
                &self.flags,
                &self.packet_len,
                &self.fragment,
            ]
            .into_iter()
            .all(is_empty)
    }

    /// The destination ports as plain numbers, sorted; `None` if any is a range or operator
    /// (not a rule of netban's).
    fn listed_ports(&self) -> Option<Vec<u16>> {
        let text = self.dest_port.as_deref().unwrap_or("");
        let mut ports = Vec::new();
        for part in text.split(';').filter(|p| !p.is_empty()) {
            ports.push(part.trim().parse::<u16>().ok()?);
        }
        ports.sort_unstable();
        ports.dedup();
        Some(ports)
    }

    /// The rule as netban sees it held, at `now`: the handle is the rule id (see
    /// [`held_expiry`] for the expiry).
    pub fn held(&self, now: Timestamp) -> Result<Held, String> {
        Ok(Held {
            prefix: self.prefix()?,
            expiry: Some(held_expiry(&self.state(), self.expires, now)),
            handle: Some(self.id.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netban_core::Expiry;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    fn ssh() -> FlowMatch {
        FlowMatch::new(Some(FlowProtocol::Tcp), &[2222, 22, 22]).unwrap()
    }

    #[test]
    fn matches_are_checked() {
        assert_eq!(ssh().ports(), [22, 2222]);
        assert!(FlowMatch::new(None, &[]).is_ok());
        assert!(FlowMatch::new(Some(FlowProtocol::Icmp), &[]).is_ok());
        for protocol in [None, Some(FlowProtocol::Icmp), Some(FlowProtocol::Gre)] {
            let err = FlowMatch::new(protocol, &[22]).unwrap_err();
            assert!(err.contains("need protocol = \"tcp\" or \"udp\""), "{err}");
        }
        let many: Vec<u16> = (10_000..10_050).collect();
        let err = FlowMatch::new(Some(FlowProtocol::Udp), &many).unwrap_err();
        assert!(err.contains("too many (50)"), "{err}");
    }

    #[test]
    fn requests_are_rendered_from_the_prefix_and_the_match() {
        let any = FlowMatch::default();
        assert_eq!(
            serde_json::to_value(FlowRequest::new(p("203.0.113.7"), &any, 4, 1200, "netban"))
                .unwrap(),
            serde_json::json!({"source": "203.0.113.7", "source_mask": 32, "protocol": "all",
                               "action": 4, "expires": 1200, "comment": "netban"})
        );
        assert_eq!(
            serde_json::to_value(FlowRequest::new(p("2001:db8:0:0::/64"), &ssh(), 4, 600, ""))
                .unwrap(),
            serde_json::json!({"source": "2001:db8::", "source_mask": 64, "next_header": "tcp",
                               "dest_port": "22;2222", "action": 4, "expires": 600,
                               "comment": ""})
        );
    }

    fn record(json: serde_json::Value) -> FlowRecord {
        serde_json::from_value(json).unwrap()
    }

    /// What ExaFS 1.4.1 answered (IPv4: number ids, `protocol`, `fragment`; IPv6: text ids,
    /// `next_header`).
    fn listed_v4() -> serde_json::Value {
        serde_json::json!({"action": "Discard", "comment": "netban", "created": 1796184029,
            "dest": null, "dest_mask": null, "dest_port": "22;2222", "expires": 1796187600,
            "flags": "", "fragment": "", "id": 2, "packet_len": null, "protocol": "tcp",
            "rstate": "active rule", "source": "203.0.113.7", "source_mask": 32,
            "source_port": null, "user": "netban@example.org"})
    }

    #[test]
    fn records_read_back_as_held_and_are_told_apart_by_their_match() {
        let v4 = record(listed_v4());
        assert!(v4.has_match(&ssh(), "Discard"));
        assert!(!v4.has_match(&ssh(), "QoS 1Mbps"));
        assert!(!v4.has_match(&FlowMatch::default(), "Discard"));
        let held = v4.held(Timestamp(1_796_000_000)).unwrap();
        assert_eq!(
            held,
            Held {
                prefix: p("203.0.113.7"),
                expiry: Some(Expiry::At(Timestamp(1_796_187_600))),
                handle: Some("2".into()),
            }
        );
        let v6 = record(serde_json::json!({"action": "Discard", "dest": null,
            "dest_port": null, "expires": 1796187600, "flags": "", "id": "1",
            "next_header": "all", "packet_len": null, "rstate": "withdrawed rule",
            "source": "2001:db8:a::", "source_mask": 48, "source_port": null}));
        assert!(v6.has_match(&FlowMatch::default(), "Discard"));
        assert!(!v6.has_match(&ssh(), "Discard"));
        let held = v6.held(Timestamp(1_796_000_000)).unwrap();
        assert_eq!(held.prefix, p("2001:db8:a::/48"));
        assert_eq!(held.handle.as_deref(), Some("1"));
        // Withdrawn: holds nothing any more, reads back as expired.
        assert_eq!(held.expiry, Some(Expiry::At(Timestamp(1_796_000_000))));

        // Anything more than netban's match is somebody else's rule.
        for (key, value) in [
            ("dest", serde_json::json!("198.51.100.0")),
            ("source_port", serde_json::json!("1024")),
            ("flags", serde_json::json!("SYN")),
            ("packet_len", serde_json::json!("100")),
            ("fragment", serde_json::json!("is")),
            ("dest_port", serde_json::json!(">=22&<=23")),
            ("dest_port", serde_json::json!("22")),
            ("protocol", serde_json::json!("udp")),
        ] {
            let mut json = listed_v4();
            json[key] = value;
            assert!(!record(json).has_match(&ssh(), "Discard"), "{key}");
        }
    }

    #[test]
    fn malformed_records_are_refused() {
        for (key, value) in [
            ("source", serde_json::json!(null)),
            ("source", serde_json::json!("exafs.example.org")),
            ("source_mask", serde_json::json!(24)),
        ] {
            let mut json = listed_v4();
            json[key] = value;
            assert!(record(json).prefix().is_err(), "{key}");
        }
        let mut json = listed_v4();
        json["id"] = serde_json::json!("seven");
        assert!(serde_json::from_value::<FlowRecord>(json).is_err());
    }
}
