//! What netban's nftables table (`inet netban`) holds on a host, read back with `nft -j`:
//! independent of the driver's own parser, for tests and benchmarks to check it with.

use crate::Host;
use std::collections::BTreeSet;

/// netban's sets: single addresses (hash sets) and prefixes (interval sets), per family.
const SETS: [&str; 4] = ["ban4", "ban6", "net4", "net6"];

/// Every address or prefix in netban's sets on `host` (prefixes as `ADDR/LEN`); empty where
/// the table does not exist.
pub fn elements(host: &Host) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for set in SETS {
        for elem in set_elements(host, set) {
            let inner = if elem.get("elem").is_some() {
                &elem["elem"]["val"]
            } else {
                &elem
            };
            if let Some(s) = inner.as_str() {
                all.insert(s.to_string());
            } else if let Some(p) = inner.get("prefix") {
                all.insert(format!("{}/{}", p["addr"].as_str().unwrap_or(""), p["len"]));
            }
        }
    }
    all
}

/// How many elements one of netban's sets holds on `host` (0 where it does not exist).
pub fn count(host: &Host, set: &str) -> usize {
    set_elements(host, set).len()
}

fn set_elements(host: &Host, set: &str) -> Vec<serde_json::Value> {
    let Ok(out) = host.run("nft", ["-j", "list", "set", "inet", "netban", set]) else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j is JSON");
    value["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["elem"].as_array())
        .flatten()
        .cloned()
        .collect()
}
