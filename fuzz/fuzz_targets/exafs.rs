//! What ExaFS answers. The first byte picks what the rest is read as:
//! - 0: an HTTP answer body (error details, validation errors, a created rule of either
//!   kind, the community or action list, the rule lists), read as the client reads each;
//! - 1: the token string of `GET /api/v3/auth`;
//! - 2: a JWT payload (wrapped into a token here, as ExaFS would sign it).
//!
//! Nothing may panic; every rule read as held is a prefix netban's parser accepts.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use netban_core::{Prefix, Timestamp};
use netban_targets::exafs::fuzzing::{
    detail_of, validation_reason, CreateAnswer, FlowRecord, RuleRecord, Token,
};
use netban_targets::exafs::{FlowMatch, FlowProtocol};

/// Clock readings the answers are judged at: the epoch, December 2026, the far ends.
const NOWS: [i64; 4] = [0, 1_796_000_000, i64::MIN, i64::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => body(rest),
        1 => token(String::from_utf8_lossy(rest).into_owned()),
        _ => token(format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(rest)
        )),
    }
});

fn token(value: String) {
    let token = Token::new(value);
    for now in NOWS {
        let _ = token.usable_at(now);
    }
}

fn body(bytes: &[u8]) {
    let _ = detail_of(bytes);
    let _ = validation_reason(bytes);
    let _ = serde_json::from_slice::<Vec<(u32, String)>>(bytes);
    if let Ok(created) = serde_json::from_slice::<CreateAnswer>(bytes) {
        rule(&created.rule);
    }
    if let Ok(record) = serde_json::from_slice::<RuleRecord>(bytes) {
        rule(&record);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    if let Some(serde_json::Value::Array(list)) = value.get("rtbh_any_rw") {
        for item in list {
            if let Ok(record) = serde_json::from_value::<RuleRecord>(item.clone()) {
                rule(&record);
            }
        }
    }
    if let Ok(created) = serde_json::from_value::<CreateAnswer<FlowRecord>>(value.clone()) {
        flow(&created.rule);
    }
    if let Ok(record) = serde_json::from_value::<FlowRecord>(value.clone()) {
        flow(&record);
    }
    for key in ["flowspec_ipv4_rw", "flowspec_ipv6_rw"] {
        if let Some(serde_json::Value::Array(list)) = value.get(key) {
            for item in list {
                if let Ok(record) = serde_json::from_value::<FlowRecord>(item.clone()) {
                    flow(&record);
                }
            }
        }
    }
}

fn flow(record: &FlowRecord) {
    let _ = record.state();
    if let Ok(prefix) = record.prefix() {
        assert_eq!(Prefix::parse(&prefix.to_string()), Ok(prefix));
    }
    let ssh = FlowMatch::new(Some(FlowProtocol::Tcp), &[22]).expect("a valid match");
    for rule_match in [FlowMatch::default(), ssh] {
        let _ = record.has_match(&rule_match, "Discard");
    }
    for now in NOWS {
        if let Ok(held) = record.held(Timestamp(now)) {
            assert_eq!(held.handle, Some(record.id.to_string()));
        }
    }
}

fn rule(record: &RuleRecord) {
    let _ = record.state();
    if let Ok(prefix) = record.prefix() {
        assert_eq!(Prefix::parse(&prefix.to_string()), Ok(prefix));
    }
    for now in NOWS {
        if let Ok(held) = record.held(Timestamp(now)) {
            assert_eq!(held.handle, Some(record.id.to_string()));
        }
    }
}
