//! BGP messages from a peer. The session reads a 19-byte header, checks it, then decodes the
//! body; the input is tried both as a whole message and as (type byte, body). Properties:
//! nothing panics, and every decoded message that fits encodes and decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netban_targets::bgp::message::{decode, decode_body, decode_header, Message, HEADER_LEN};

fn round_trip(message: &Message) {
    if let Message::Notification(n) = message {
        let _ = n.to_string();
    }
    let Some(bytes) = message.encode_checked() else {
        return;
    };
    let header: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    let (len, _) = decode_header(header).expect("our own header is valid");
    assert_eq!(len, bytes.len());
    assert_eq!(decode(&bytes).as_ref(), Ok(message), "{bytes:02x?}");
}

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(message) => round_trip(&message),
        Err(e) => {
            let _ = (e.to_string(), e.notification().to_string());
        }
    }
    if let Some((&kind, body)) = data.split_first() {
        if let Ok(message) = decode_body(kind, body) {
            round_trip(&message);
        }
    }
});
