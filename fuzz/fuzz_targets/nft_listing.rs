//! `nft -j list table inet netban` as netban reads it back. Nothing may panic; every element
//! covers an ordered span, yields only prefixes netban's parser accepts, and the handle
//! netban records for it reads back to the same element.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netban_core::Prefix;
use netban_targets::nftables::fuzzing::{parse_listing, Key, Location};

fuzz_target!(|data: &[u8]| {
    let Ok(listing) = parse_listing(data, "netban") else {
        return;
    };
    for element in &listing.elements {
        let location = element.location;
        if let Key::Net(..) = location.key {
            let (lo, hi) = location.key.span();
            assert!(lo <= hi);
        }
        let _ = location.key.to_string();
        let prefixes = location.key.prefixes();
        for prefix in &prefixes {
            assert_eq!(
                Prefix::parse(&prefix.to_string()),
                Ok(*prefix),
                "element {} of {}",
                location.key,
                location.set.as_str()
            );
        }
        // nft keeps each set to its type; an element of the other family cannot occur.
        let family_matches = match location.key {
            Key::Net(a, _) | Key::Range(a, _) => {
                a.is_ipv4() == (location.set.family() == netban_core::Family::V4)
            }
        };
        if let (Some(prefix), true) = (prefixes.first(), family_matches) {
            let handle = location.handle();
            assert_eq!(
                Location::from_held(prefix, handle.as_deref()),
                Ok(location),
                "handle {handle:?}"
            );
        }
    }
});
