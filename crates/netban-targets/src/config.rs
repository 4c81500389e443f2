//! Target configuration: a closed, tagged set of driver configs, and the one place where each
//! driver is registered.
//!
//! Each `[[targets]]` table in netban.toml has the common keys (read by the daemon: `name`,
//! `sources`, `fallback`, `fallback_only`, `capacity_v4`, `capacity_v6`) and a `type` that
//! selects one variant of [`TargetKind`]; the variant's own keys are checked strictly
//! (`deny_unknown_fields` on each config type).
//!
//! A driver is registered by one line in the [`drivers!`] table at the bottom of this file:
//! its kind (the `type` value, written nowhere else), its config type, its driver type (built
//! with `Driver::new(name, config)`), its operator page under `docs/targets/` and the cargo
//! feature that compiles it. The enum, `build`, `kind`, `docs` and the `KIND` constant each
//! driver puts in its [`TargetInfo`](crate::TargetInfo) are generated from that line.
//! docs/dev/adding-a-driver.md is the whole checklist.

use crate::{Target, TargetError};
use serde::Deserialize;

/// Generates [`TargetKind`], its `build`/`kind`/`docs`, [`DRIVERS`], and `KIND`/`DOCS`
/// constants on each config type, from one line per driver.
macro_rules! drivers {
    ($(
        $(#[$gate:meta])*
        $variant:ident {
            kind: $kind:literal,
            config: $config:path,
            driver: $driver:path,
            docs: $docs:literal,
            shared: $shared:literal $(,)?
        }
    ),+ $(,)?) => {
        /// Which driver a `[[targets]]` table configures (its `type` key), with that driver's
        /// own configuration.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(tag = "type")]
        pub enum TargetKind {
            $(
                $(#[$gate])*
                #[serde(rename = $kind)]
                $variant($config),
            )+
        }

        impl TargetKind {
            /// Builds the driver. Cheap: no device is contacted until `prepare`.
            pub fn build(&self, name: &str) -> Result<Box<dyn Target>, TargetError> {
                match self {
                    $(
                        $(#[$gate])*
                        TargetKind::$variant(config) => {
                            Ok(Box::new(<$driver>::new(name, config.clone())?))
                        }
                    )+
                }
            }

            /// The driver kind, as written in `type = "…"`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(
                        $(#[$gate])*
                        TargetKind::$variant(_) => $kind,
                    )+
                }
            }

            /// Whether this kind of device is usually one device a fleet of hosts shares (a
            /// router, a cloud ACL, a route server) rather than each host's own (its firewall):
            /// the default of a target's `scope`.
            pub fn shared_by_default(&self) -> bool {
                match self {
                    $(
                        $(#[$gate])*
                        TargetKind::$variant(_) => $shared,
                    )+
                }
            }

            /// The driver's operator page, relative to the repository root.
            pub fn docs(&self) -> &'static str {
                match self {
                    $(
                        $(#[$gate])*
                        TargetKind::$variant(_) => concat!("docs/targets/", $docs),
                    )+
                }
            }
        }

        $(
            $(#[$gate])*
            impl $config {
                /// This driver's kind, as written in `type = "…"` and shown by `netban status`.
                pub const KIND: &'static str = $kind;
                /// This driver's operator page, relative to the repository root.
                pub const DOCS: &'static str = concat!("docs/targets/", $docs);
            }
        )+

        /// Every driver compiled in: (kind, operator page).
        pub const DRIVERS: &[(&str, &str)] = &[
            $(
                $(#[$gate])*
                ($kind, concat!("docs/targets/", $docs)),
            )+
        ];
    };
}

// The registration table: one entry per driver, gated by its cargo feature.
drivers! {
    Nftables {
        kind: "nftables",
        config: crate::nftables::NftablesConfig,
        driver: crate::nftables::Nftables,
        docs: "nftables.md",
        shared: false,
    },
    Feed {
        kind: "feed",
        config: crate::feed::FeedConfig,
        driver: crate::feed::Feed,
        docs: "feed.md",
        shared: false,
    },
    #[cfg(feature = "exafs")]
    Exafs {
        kind: "exafs",
        config: crate::exafs::ExafsConfig,
        driver: crate::exafs::Exafs,
        docs: "exafs.md",
        shared: true,
    },
    #[cfg(feature = "bgp")]
    Bgp {
        kind: "bgp",
        config: crate::bgp::BgpConfig,
        driver: crate::bgp::Bgp,
        docs: "bgp.md",
        shared: true,
    },
    #[cfg(feature = "cisco-ios")]
    CiscoIos {
        kind: "cisco_ios",
        config: crate::cisco_ios::CiscoIosConfig,
        driver: crate::cisco_ios::CiscoIos,
        docs: "cisco_ios.md",
        shared: true,
    },
    #[cfg(feature = "netconf")]
    Netconf {
        kind: "netconf",
        config: crate::netconf::NetconfConfig,
        driver: crate::netconf::Netconf,
        docs: "netconf.md",
        shared: true,
    },
    #[cfg(feature = "aws")]
    AwsNacl {
        kind: "aws_nacl",
        config: crate::aws_nacl::AwsNaclConfig,
        driver: crate::aws_nacl::AwsNacl,
        docs: "aws.md",
        shared: true,
    },
    #[cfg(feature = "aws")]
    AwsWaf {
        kind: "aws_waf",
        config: crate::aws_waf::AwsWafConfig,
        driver: crate::aws_waf::AwsWaf,
        docs: "aws.md",
        shared: true,
    },
}

/// Where a target reaches its device: an address (or a DNS name) that must never be banned,
/// or netban would cut itself off the device that enforces its bans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementAddress {
    /// The setting it comes from (`host`, `url`, `peers`).
    pub setting: &'static str,
    /// An IP address, or a DNS name the daemon resolves.
    pub host: String,
}

impl TargetKind {
    /// The device addresses this target talks to (none for a local firewall or a cloud API).
    pub fn management_addresses(&self) -> Vec<ManagementAddress> {
        #[cfg_attr(
            not(any(feature = "cisco-ios", feature = "netconf")),
            allow(unused_variables)
        )]
        let one = |setting, host: &str| {
            vec![ManagementAddress {
                setting,
                host: host.to_string(),
            }]
        };
        match self {
            #[cfg(feature = "cisco-ios")]
            TargetKind::CiscoIos(c) => one("host", &c.host),
            #[cfg(feature = "netconf")]
            TargetKind::Netconf(c) => one("host", &c.host),
            #[cfg(feature = "exafs")]
            TargetKind::Exafs(c) => reqwest::Url::parse(&c.url)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
                .map_or_else(Vec::new, |host| one("url", &host)),
            #[cfg(feature = "bgp")]
            TargetKind::Bgp(c) => c
                .peers
                .iter()
                .map(|p| ManagementAddress {
                    setting: "peers",
                    host: p.address.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The secrets this table holds inline (by key), for the daemon's check that netban.toml
    /// is not readable by every user.
    pub fn inline_secrets(&self) -> Vec<&'static str> {
        match self {
            #[cfg(feature = "cisco-ios")]
            TargetKind::CiscoIos(c) => c.inline_secrets(),
            #[cfg(feature = "netconf")]
            TargetKind::Netconf(c) => c.inline_secrets(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    #[test]
    fn every_registered_driver_has_its_operator_page() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for (kind, docs) in DRIVERS {
            assert!(root.join(docs).is_file(), "{kind}: {docs} is missing");
        }
    }

    #[test]
    fn kinds_are_unique() {
        let kinds: BTreeSet<&str> = DRIVERS.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds.len(), DRIVERS.len());
    }

    #[test]
    fn the_type_key_selects_the_driver_and_the_driver_reports_the_same_kind() {
        let config: TargetKind = serde_json::from_value(serde_json::json!({
            "type": "nftables",
            "table": "netban_kind_test",
        }))
        .unwrap();
        assert_eq!(config.kind(), "nftables");
        assert_eq!(config.docs(), "docs/targets/nftables.md");
        let driver = config.build("edge").unwrap();
        assert_eq!(driver.info().kind, config.kind());
    }

    #[test]
    fn management_addresses_and_inline_secrets_per_driver() {
        let kind = |json: serde_json::Value| serde_json::from_value::<TargetKind>(json).unwrap();
        let exafs = kind(serde_json::json!({
            "type": "exafs", "url": "https://[2001:db8::7]:8443/", "api_key_env": "K",
            "community": 1,
        }));
        assert_eq!(
            exafs.management_addresses(),
            [ManagementAddress {
                setting: "url",
                host: "2001:db8::7".into()
            }]
        );
        let bgp = kind(serde_json::json!({
            "type": "bgp", "local_as": 65000, "router_id": "198.51.100.9",
            "peers": [
                { "address": "198.51.100.1", "remote_as": 65001 },
                { "address": "2001:db8::1", "remote_as": 65001 },
            ],
        }));
        let hosts: Vec<String> = bgp
            .management_addresses()
            .into_iter()
            .map(|m| m.host)
            .collect();
        assert_eq!(hosts, ["198.51.100.1", "2001:db8::1"]);
        let ios = kind(serde_json::json!({
            "type": "cisco_ios", "host": "edge.example.net", "username": "u",
            "password": "hs-inline", "host_key_fingerprint": "SHA256:xxxxxxxx",
        }));
        assert_eq!(
            ios.management_addresses(),
            [ManagementAddress {
                setting: "host",
                host: "edge.example.net".into()
            }]
        );
        assert_eq!(ios.inline_secrets(), ["password"]);
        assert!(!format!("{ios:?}").contains("hs-inline"));
        let nft = kind(serde_json::json!({ "type": "nftables", "table": "t" }));
        assert!(nft.management_addresses().is_empty() && nft.inline_secrets().is_empty());
    }

    #[test]
    fn an_unknown_type_lists_the_known_ones() {
        let error = serde_json::from_value::<TargetKind>(serde_json::json!({ "type": "ipfw" }))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown variant `ipfw`"), "{error}");
        assert!(error.contains("`nftables`"), "{error}");
    }
}
