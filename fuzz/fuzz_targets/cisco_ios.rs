//! What an IOS router prints. The first byte picks what the rest is read as:
//! - even: a CLI transcript (first prompt, then pipelined command output), fed in pieces
//!   whose size the byte also gives, cut into segments, and each segment's output read as
//!   `show` output of netban's lists, as the driver does;
//! - odd: `show` output of an ACL or object group directly.
//!
//! Properties: feeding the transcript in pieces or whole gives the same segments; a finished
//! transcript has one segment per answered command; every ban entry read from a listing,
//! rendered again as the router prints it, reads back as the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netban_targets::cisco_ios::fuzzing::{
    ace_v4, ace_v6, learn_hostname, member, parse_listing, ListKind, Transcript,
};
use netban_targets::cisco_ios::Action;

const NAME: &str = "NETBAN";
const KINDS: [ListKind; 3] = [ListKind::Ipv4Acl, ListKind::Ipv6Acl, ListKind::ObjectGroup];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if control & 1 == 0 {
        transcript(&text, usize::from(control >> 1).max(1));
    } else {
        for kind in KINDS {
            for action in [Action::Deny, Action::Permit] {
                listing(&text, kind, action);
            }
        }
    }
});

fn transcript(text: &str, piece: usize) {
    // The session learns the hostname from the first prompt, then reads every answer.
    let hostname = match text.find('\n') {
        Some(end) => learn_hostname(&text[..end]),
        None => learn_hostname(text),
    };
    let hostname = hostname.unwrap_or_else(|| "R1".into());
    assert!(!hostname.is_empty());

    let mut whole = Transcript::new(&hostname);
    whole.push(text);
    let mut pieces = Transcript::new(&hostname);
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + piece).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        pieces.push(&text[start..end]);
        start = end;
    }
    let answered = whole.completed();
    assert_eq!(pieces.completed(), answered);
    let segments = whole
        .finish(answered)
        .expect("every answered command has a segment");
    assert_eq!(segments.len(), answered);
    assert_eq!(pieces.finish(answered), Some(segments.clone()));
    for segment in &segments {
        if let Some(error) = segment.error() {
            let _ = (error.message(), error.is_syntax());
        }
        let output = segment.output("show ip access-lists NETBAN");
        for kind in KINDS {
            listing(&output, kind, Action::Deny);
        }
    }
}

fn listing(output: &str, kind: ListKind, action: Action) {
    let Ok(Some(listing)) = parse_listing(output, kind, NAME, action) else {
        return;
    };
    let _ = (listing.tails(), listing.max_seq_below(u32::MAX));
    for other in listing.others() {
        assert!(!other.is_empty());
    }
    for (prefix, seq) in listing.bans() {
        if prefix.len() == 0 {
            // netban renders a /0 as `any` (never a ban: the core refuses it).
            continue;
        }
        let seq = seq.unwrap_or(10);
        let (header, line) = match kind {
            ListKind::Ipv4Acl => ("Extended IP access list", ace_v4(seq, action, &prefix)),
            ListKind::Ipv6Acl => ("IPv6 access list", ace_v6(seq, action, &prefix)),
            ListKind::ObjectGroup => ("Network object group", member(&prefix)),
        };
        let shown = format!("{header} {NAME}\n    {line}\n");
        let again = parse_listing(&shown, kind, NAME, action)
            .expect("netban's own entry is readable")
            .expect("the list is there");
        let read: Vec<_> = again.bans().collect();
        let want_seq = (kind != ListKind::ObjectGroup).then_some(seq);
        assert_eq!(read, vec![(prefix, want_seq)], "{shown:?}");
    }
}
