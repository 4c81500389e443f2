//! What a NETCONF server sends inside the framing: `<hello>`, `<rpc-reply>` (with errors,
//! warnings and `<data>`), and the ban entries read from the data of an SSR tenant. Nothing
//! may panic; every entry read as a prefix is one netban's own parser accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netban_core::Prefix;
use netban_targets::netconf::fuzzing::{parse_document, Area, Hello, Reply};

fuzz_target!(|data: &[u8]| {
    let _ = parse_document(data);
    if let Ok(hello) = Hello::parse(data) {
        let _ = hello.has("urn:ietf:params:netconf:base:1.1");
    }
    let Ok(Some(reply)) = Reply::parse(data) else {
        return;
    };
    for error in reply.errors.iter().chain(&reply.warnings) {
        let _ = error.to_string();
        let _ = error.session_id();
    }
    let Some(data) = &reply.data else {
        return;
    };
    let area = Area::Ssr {
        tenant: "blacklist-fail2ban".into(),
        neighborhood: "internet".into(),
    };
    for prefix in area.entries(data).into_iter().flatten() {
        assert_eq!(Prefix::parse(&prefix.to_string()), Ok(prefix));
    }
});
