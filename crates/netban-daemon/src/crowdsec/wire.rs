//! CrowdSec's decision JSON, as the Local API 1.4.6 sends it and as Debian's
//! crowdsec-firewall-bouncer 0.0.25 reads it (see docs/sources/crowdsec.md for the facts
//! measured on both).
//!
//! - A stream answer is `{"new": [...] | null, "deleted": [...] | null}`.
//! - A decision has seven fields: `id` (integer), `origin`, `type`, `scope` (`Ip`, `Range`),
//!   `value`, `duration` (a Go duration of the time left, negative in `deleted`), `scenario`.
//! - Go durations: `59m55.944244181s`, `-168.623073ms`, `11.7s`, `1h30m0.5s`, `0s`.

use serde::{Deserialize, Serialize};

/// One decision. Reading, only `value` is required (the LAPI always sends all seven fields;
/// the others default so that one odd decision costs only itself).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub origin: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub scope: String,
    pub value: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub scenario: String,
}

/// `/v1/decisions/stream`'s answer. Empty lists are `null` on the wire (the LAPI's way; the
/// bouncer takes `null` and `[]` alike).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub new: Vec<Decision>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub deleted: Vec<Decision>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Decision>, D::Error> {
    Ok(Option::<Vec<Decision>>::deserialize(d)?.unwrap_or_default())
}

/// Why a Go duration was not read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Go duration (like \"3h59m58.2s\" or \"-9.32s\")")]
pub struct BadDuration(pub String);

/// Reads a Go `time.Duration` string into signed seconds.
pub fn parse_go_duration(text: &str) -> Result<f64, BadDuration> {
    let bad = || BadDuration(text.to_string());
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Ok(if negative { -total } else { total })
}

/// A positive whole number of seconds as a Go duration (`"3600s"`): what netban's decision
/// server sends. Never zero: the bouncer makes a zero or negative duration a permanent ban.
pub fn go_duration_secs(secs: u64) -> String {
    format!("{}s", secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_the_lapi_prints_them() {
        let cases = [
            ("59m55.944244181s", 3595.944244181),
            ("-168.623073ms", -0.168623073),
            ("11.7s", 11.7),
            ("-9.32s", -9.32),
            ("1h30m0.5s", 5400.5),
            ("0s", 0.0),
            ("0", 0.0),
            ("87600h", 315_360_000.0),
            ("1.5µs", 1.5e-6),
            ("3ns", 3e-9),
        ];
        for (text, secs) in cases {
            let got = parse_go_duration(text).unwrap();
            assert!((got - secs).abs() < 1e-9, "{text}: {got}");
        }
        for bad in ["", "3600", "PT1H", "1d", "h", "1h-3m", "--1s", "1..2s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(go_duration_secs(0), "1s");
        assert_eq!(go_duration_secs(3600), "3600s");
    }

    #[test]
    fn a_stream_with_null_lists_reads_as_empty() {
        let text = r#"{"deleted":null,"new":[{"duration":"59m55.944244181s","id":2,"origin":"cscli","scenario":"csr-range","scope":"Range","type":"ban","value":"198.51.100.0/24"}]}"#;
        let stream: Stream = serde_json::from_str(text).unwrap();
        assert!(stream.deleted.is_empty());
        assert_eq!(stream.new[0].value, "198.51.100.0/24");
        assert_eq!(stream.new[0].kind, "ban");
        let empty: Stream = serde_json::from_str("{}").unwrap();
        assert!(empty.new.is_empty() && empty.deleted.is_empty());
    }
}
