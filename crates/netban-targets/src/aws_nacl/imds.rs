//! Finding this instance's subnet from the instance metadata service (IMDSv2): a session
//! token (PUT /latest/api/token), then the primary interface's MAC, then that interface's
//! subnet id. The SDK's IMDS client does the token handling.

use crate::TargetError;
use aws_config::imds;
use aws_config::imds::client::error::ImdsError;
use std::time::Duration;

/// Why this instance's subnet could not be found.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("imds_endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: crate::Cause,
    },
    #[error(
        "instance metadata at {endpoint}: {what}: {source}; set network_acl_id or subnet_id \
         when netban does not run on the instance itself"
    )]
    Unreachable {
        endpoint: String,
        what: &'static str,
        /// Boxed: the SDK's error is large and this path is cold.
        #[source]
        source: Box<ImdsError>,
    },
    #[error("instance metadata gave {0:?} as the MAC address")]
    NotAMac(String),
}

impl From<MetadataError> for TargetError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Endpoint { .. } => TargetError::config(e),
            MetadataError::Unreachable { .. } => TargetError::unreachable(e),
            MetadataError::NotAMac(_) => TargetError::device(e),
        }
    }
}

/// The subnet of this instance's primary network interface.
pub async fn this_instance_subnet(endpoint: &str) -> Result<String, MetadataError> {
    let unreachable = |what: &'static str| {
        move |source: ImdsError| MetadataError::Unreachable {
            endpoint: endpoint.to_string(),
            what,
            source: Box::new(source),
        }
    };
    let client = imds::Client::builder()
        .endpoint(endpoint)
        .map_err(|source| MetadataError::Endpoint {
            endpoint: endpoint.to_string(),
            source,
        })?
        .max_attempts(2)
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(2))
        .build();
    let mac = client
        .get("/latest/meta-data/mac")
        .await
        .map_err(unreachable("reading the MAC"))?;
    let mac = mac.as_ref().trim();
    // The MAC goes into the next path: accept only its documented shape.
    if mac.len() != 17
        || !mac.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                b.is_ascii_hexdigit()
            }
        })
    {
        return Err(MetadataError::NotAMac(mac.to_string()));
    }
    let subnet = client
        .get(format!(
            "/latest/meta-data/network/interfaces/macs/{mac}/subnet-id"
        ))
        .await
        .map_err(unreachable("reading the subnet id"))?;
    Ok(subnet.as_ref().trim().to_string())
}
