//! The list as served: one entry a line, and the fingerprints consumers compare.
//!
//! Every consumer netban documents (PAN-OS EDL, FortiGate threat feeds, Cisco FMC Security
//! Intelligence, pfSense/OPNsense URL tables) reads one IPv4/IPv6 address or `address/len`
//! per line; FortiOS and FMC document whole-line `#` comments, PAN-OS only comments after an
//! entry (so the header is optional, off by default). So the body is
//! LF-terminated lines of entries, in netban's order (IPv4 before IPv6, by address), with an
//! optional `#` header that names the feed and its entry count — nothing that changes
//! without the entries changing, so the ETag of an unchanged list survives a restart.

use super::config::HostForm;
use bytes::Bytes;
use netban_core::Prefix;
use sha2::Digest;
use std::fmt::Write;
use std::time::SystemTime;

/// One version of the list, immutable once published.
#[derive(Debug)]
pub struct Published {
    /// Counts publications since the daemon started (1 is the first).
    pub version: u64,
    pub body: Bytes,
    /// A strong entity tag: `"` + 32 hex digits of the body's SHA-256 + `"`.
    pub etag: String,
    /// The body's MD5 in hex (Cisco FMC's "MD5 URL").
    pub md5: String,
    /// When this content was first published (whole seconds: what HTTP dates carry).
    pub last_modified: SystemTime,
    pub entries: Vec<Prefix>,
}

/// Renders `entries` (in the order given) as the feed's body.
pub fn body(name: &str, entries: &[Prefix], hosts: HostForm, comments: bool) -> String {
    let mut text = String::with_capacity(entries.len() * 20 + 64);
    if comments {
        let _ = writeln!(text, "# netban feed {name}");
        let _ = writeln!(text, "# {} entries", entries.len());
    }
    for prefix in entries {
        let _ = match hosts {
            HostForm::Address if prefix.is_host() => writeln!(text, "{}", prefix.addr()),
            _ => writeln!(text, "{prefix}"),
        };
    }
    text
}

/// The body's entity tag.
pub fn etag(body: &[u8]) -> String {
    let digest = sha2::Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    tag
}

/// The body's MD5, in hex.
pub fn md5(body: &[u8]) -> String {
    let digest = md5::Md5::digest(body);
    digest.iter().fold(String::with_capacity(32), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

impl Published {
    pub fn new(
        version: u64,
        body: String,
        entries: Vec<Prefix>,
        last_modified: SystemTime,
    ) -> Published {
        let body = Bytes::from(body);
        Published {
            version,
            etag: etag(&body),
            md5: md5(&body),
            body,
            last_modified: whole_seconds(last_modified),
            entries,
        }
    }
}

/// `time` without its fraction of a second.
pub fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(texts: &[&str]) -> Vec<Prefix> {
        texts.iter().map(|t| Prefix::parse(t).unwrap()).collect()
    }

    #[test]
    fn hosts_are_bare_addresses_or_prefixes_and_comments_optional() {
        let entries = prefixes(&[
            "203.0.113.7",
            "198.51.100.0/24",
            "2001:db8::1",
            "2001:db8:1::/48",
        ]);
        assert_eq!(
            body("edl", &entries, HostForm::Address, false),
            "203.0.113.7\n198.51.100.0/24\n2001:db8::1\n2001:db8:1::/48\n"
        );
        assert_eq!(
            body("edl", &entries, HostForm::Prefix, true),
            "# netban feed edl\n# 4 entries\n203.0.113.7/32\n198.51.100.0/24\n2001:db8::1/128\n2001:db8:1::/48\n"
        );
        assert_eq!(body("edl", &[], HostForm::Address, false), "");
    }

    #[test]
    fn fingerprints_follow_the_content_only() {
        let a = etag(b"203.0.113.7\n");
        assert_eq!(a, etag(b"203.0.113.7\n"));
        assert_ne!(a, etag(b"203.0.113.8\n"));
        assert_eq!(a.len(), 34);
        assert!(a.starts_with('"') && a.ends_with('"'));
        // RFC 1321's test vector.
        assert_eq!(md5(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
