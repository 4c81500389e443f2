//! `[api]`: the daemon's HTTP API and Prometheus metrics, off unless the section is present.
//!
//! ```toml
//! [api]
//! listen = "127.0.0.1:8440"           # plain HTTP only on a loopback address
//! tls_cert = "/etc/netban/api.crt"    # both, or neither: PEM certificate chain and key
//! tls_key = "/etc/netban/api.key"
//! tokens = "/etc/netban/tokens.toml"  # written by `netban token add/revoke`
//! rate_per_second = 50                # requests per token (burst: twice as many)
//! metrics = "127.0.0.1:9440"          # its own listener for /metrics (no token); by default
//!                                     # /metrics is on `listen` when that is loopback
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The token store's default place.
pub const DEFAULT_TOKENS: &str = "/etc/netban/tokens.toml";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The token store ([`crate::tokens`]).
    pub tokens: PathBuf,
    /// Requests per second one token may make, sustained; bursts of twice as many.
    pub rate_per_second: u32,
    /// A listener of its own for `/metrics`, answered without a token.
    pub metrics: Option<SocketAddr>,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8440)),
            tls_cert: None,
            tls_key: None,
            tokens: PathBuf::from(DEFAULT_TOKENS),
            rate_per_second: 50,
            metrics: None,
        }
    }
}

impl ApiSection {
    /// Refuses a section that would expose plain HTTP or name half a TLS pair.
    pub fn check(&self) -> Result<(), crate::ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), Some(_)) => Ok(()),
            (None, None) if self.listen.ip().is_loopback() => Ok(()),
            (None, None) => Err(crate::ConfigError::Invalid(format!(
                "[api] listen = \"{}\" is not a loopback address: set tls_cert and tls_key, \
                 or listen on 127.0.0.1 or [::1]",
                self.listen
            ))),
            _ => Err(crate::ConfigError::Invalid(
                "[api] needs both tls_cert and tls_key (or neither, on loopback)".into(),
            )),
        }
    }

    /// Whether `/metrics` is served on the API listener (no separate `metrics` address and
    /// the API itself on loopback).
    pub fn metrics_on_api(&self) -> bool {
        self.metrics.is_none() && self.listen.ip().is_loopback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> ApiSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(section("").check().is_ok());
        assert!(section("listen = \"[::1]:8440\"").check().is_ok());
        let open = section("listen = \"0.0.0.0:8440\"").check().unwrap_err();
        assert!(
            open.to_string().contains("set tls_cert and tls_key"),
            "{open}"
        );
        assert!(
            section("listen = \"0.0.0.0:8440\"\ntls_cert = \"/c\"\ntls_key = \"/k\"")
                .check()
                .is_ok()
        );
        assert!(section("tls_cert = \"/c\"").check().is_err());
    }
}
