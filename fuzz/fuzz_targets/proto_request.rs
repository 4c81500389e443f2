//! The local socket protocol as the daemon reads it: one JSON request per line. Every line
//! either is refused or decodes to a request that encodes and decodes back to itself (and
//! the same for the responses the client reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netban_proto::{decode, encode, Request, Response};

fuzz_target!(|data: &[u8]| {
    for line in data.split_inclusive(|&b| b == b'\n') {
        if let Ok(request) = decode::<Request>(line) {
            let again = decode::<Request>(&encode(&request)).expect("an encoded request decodes");
            assert_eq!(again, request);
        }
        if let Ok(response) = decode::<Response>(line) {
            let again =
                decode::<Response>(&encode(&response)).expect("an encoded response decodes");
            assert_eq!(again, response);
        }
    }
});
