//! NETCONF framing (RFC 6242) of what a server sends. The first byte picks the framing
//! (end-of-message or chunked) and the size of the pieces the rest arrives in. Properties:
//! the messages (and whether the stream is refused) do not depend on how the bytes were cut,
//! and every message framed again decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netban_targets::netconf::fuzzing::{encode, Decoder, Framing};

/// Takes every complete message out; true if the decoder refused the stream.
fn drain(decoder: &mut Decoder, out: &mut Vec<Vec<u8>>) -> bool {
    loop {
        match decoder.next_message() {
            Ok(Some(message)) => out.push(message),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let framing = if control & 1 == 0 {
        Framing::EndOfMessage
    } else {
        Framing::Chunked
    };
    let piece = usize::from(control >> 1).max(1);

    let mut whole = Decoder::new();
    whole.set_framing(framing);
    whole.push(stream);
    let mut whole_messages = Vec::new();
    let whole_refused = drain(&mut whole, &mut whole_messages);

    let mut pieces = Decoder::new();
    pieces.set_framing(framing);
    let mut piece_messages = Vec::new();
    let mut pieces_refused = false;
    for chunk in stream.chunks(piece) {
        pieces.push(chunk);
        if drain(&mut pieces, &mut piece_messages) {
            pieces_refused = true;
            break;
        }
    }
    assert_eq!(whole_messages, piece_messages);
    assert_eq!(whole_refused, pieces_refused);

    for message in &whole_messages {
        let Ok(text) = std::str::from_utf8(message) else {
            continue;
        };
        let mut again = Decoder::new();
        again.set_framing(framing);
        again.push(&encode(framing, text));
        let mut out = Vec::new();
        assert!(!drain(&mut again, &mut out), "a framed message is refused");
        assert_eq!(out, vec![message.clone()]);
    }
});
