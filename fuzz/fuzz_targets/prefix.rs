//! `Prefix` parsing, the gate of every address netban renders to a device: any text either
//! is refused or parses to a prefix whose canonical text is short, made only of address
//! characters, and parses back to the same prefix; serde runs the same parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netban_core::prefix::MAX_INPUT_LEN;
use netban_core::Prefix;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Prefix::parse(text);
    let via_serde = serde_json::from_value::<Prefix>(serde_json::Value::String(text.into()));
    match parsed {
        Err(e) => {
            assert!(
                via_serde.is_err(),
                "serde accepted {text:?}, parse said {e}"
            );
            let _ = e.to_string();
        }
        Ok(prefix) => {
            assert_eq!(via_serde.expect("serde accepts what parse accepts"), prefix);
            let canonical = prefix.to_string();
            assert!(canonical.len() <= MAX_INPUT_LEN, "{canonical:?}");
            assert!(
                canonical
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/')),
                "{canonical:?}"
            );
            assert_eq!(
                Prefix::parse(&canonical),
                Ok(prefix),
                "{text:?} -> {canonical:?}"
            );
            assert_eq!(Prefix::from_net(prefix.net()), prefix);
            assert!(prefix.len() <= prefix.family().bits());
            assert!(prefix.contains(&prefix));
        }
    }
});
