//! Finding this instance's subnet from the instance metadata service (IMDSv2): a session
//! token (PUT /latest/api/token), then the primary interface's MAC, then that interface's
//! subnet id. The SDK's IMDS client does the token handling.

use crate::TargetError;
use aws_config::imds;
use std::time::Duration;

/// The subnet of this instance's primary network interface.
pub async fn this_instance_subnet(endpoint: &str) -> Result<String, TargetError> {
    let unreachable = |what: &str, e: &dyn std::fmt::Display| {
        TargetError::unreachable(format!(
            "instance metadata at {endpoint}: {what}: {e}; set network_acl_id or subnet_id \
             when netban does not run on the instance itself"
        ))
    };
    let client = imds::Client::builder()
        .endpoint(endpoint)
        .map_err(|e| TargetError::config(format!("imds_endpoint {endpoint:?}: {e}")))?
        .max_attempts(2)
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(2))
        .build();
    let mac = client
        .get("/latest/meta-data/mac")
        .await
        .map_err(|e| unreachable("reading the MAC", &e))?;
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
        return Err(TargetError::device(format!(
            "instance metadata gave {mac:?} as the MAC address"
        )));
    }
    let subnet = client
        .get(format!(
            "/latest/meta-data/network/interfaces/macs/{mac}/subnet-id"
        ))
        .await
        .map_err(|e| unreachable("reading the subnet id", &e))?;
    Ok(subnet.as_ref().trim().to_string())
}
