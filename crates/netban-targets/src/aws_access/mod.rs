//! Access to AWS for the AWS targets (`aws_nacl`, `aws_waf`): where the API is (region,
//! endpoint override), who netban is (credentials) and what an SDK error means to the
//! reconciler.
//!
//! Everything goes through the official SDK (`aws-config`, `aws-sdk-ec2`, `aws-sdk-wafv2`) with
//! its one HTTP/TLS stack. Credentials come from the SDK's default chain (environment, shared
//! profile files, web identity, ECS, the instance role through IMDSv2) unless the target names
//! a `credentials_file`, which is then the only source (useful for a file only netban reads,
//! and for tests against an emulator).
//!
//! Not for: anything specific to one API (rule numbers, IP sets); the targets own that.

mod error;

pub(crate) use error::{classify, ApiError};

use crate::TargetError;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use std::time::Duration;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one API call may take, retries included, before the target is called unreachable.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per call. The SDK's standard retry backs off on throttling (RequestLimitExceeded,
/// ThrottlingException) and on 5xx; what still fails after that is reported to the reconciler,
/// which backs off further.
const MAX_ATTEMPTS: u32 = 3;

/// The keys every AWS target shares (each target's config repeats them, because serde's
/// `deny_unknown_fields` does not work through `flatten`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsAccess {
    /// AWS region (`eu-west-1`); default: the SDK's chain (AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// An endpoint URL to use instead of AWS's own (a VPC endpoint, or an emulator in tests).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared config/credentials files.
    pub profile: Option<String>,
    /// A shared-credentials file (INI, `aws_access_key_id`/`aws_secret_access_key`) used as
    /// the only credentials source instead of the default chain.
    pub credentials_file: Option<String>,
}

impl AwsAccess {
    /// Checks the values that reach the SDK.
    pub fn validate(&self, target: &str) -> Result<(), TargetError> {
        let bad = |msg: String| Err(TargetError::config(format!("{target}: {msg}")));
        if let Some(region) = &self.region {
            let ok = !region.is_empty()
                && region.len() <= 32
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return bad(format!(
                    "region {region:?} is not an AWS region name (like \"eu-west-1\")"
                ));
            }
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return bad(format!(
                    "endpoint_url {url:?}: give an http:// or https:// URL, or leave it out to \
                     use AWS's own endpoint"
                ));
            }
        }
        if let Some(profile) = &self.profile {
            if profile.is_empty() || profile.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return bad(format!("profile {profile:?} is not a profile name"));
            }
        }
        if let Some(file) = &self.credentials_file {
            if file.is_empty() || file.contains('\0') {
                return bad("credentials_file is empty: give a path or leave it out".into());
            }
        }
        Ok(())
    }

    /// Loads the SDK configuration. Reads files and environment but contacts no AWS API.
    pub async fn load(&self) -> Result<SdkConfig, TargetError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(file) = &self.credentials_file {
            let files = EnvConfigFiles::builder()
                .with_file(EnvConfigFileKind::Credentials, file)
                .build();
            let mut provider = ProfileFileCredentialsProvider::builder().profile_files(files);
            if let Some(profile) = &self.profile {
                provider = provider.profile_name(profile);
            }
            loader = loader.credentials_provider(provider.build());
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(TargetError::config(
                "no AWS region: set `region` in the target, or AWS_REGION, or a region in the \
                 AWS profile",
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_reach_the_sdk_are_checked() {
        let ok = AwsAccess {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            profile: Some("netban".into()),
            credentials_file: Some("/etc/netban/aws".into()),
        };
        assert!(ok.validate("t").is_ok());
        for bad in [
            AwsAccess {
                region: Some("EU West".into()),
                ..ok.clone()
            },
            AwsAccess {
                endpoint_url: Some("127.0.0.1:5000".into()),
                ..ok.clone()
            },
            AwsAccess {
                endpoint_url: Some("http://a b".into()),
                ..ok.clone()
            },
            AwsAccess {
                profile: Some(String::new()),
                ..ok.clone()
            },
            AwsAccess {
                credentials_file: Some(String::new()),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate("t"), Err(TargetError::Config(_))),
                "{bad:?}"
            );
        }
    }
}
