//! What an AWS SDK error means for netban: unreachable, refused credentials or permission,
//! throttled, or an answer from the service (with its error code).

use crate::{OnDevice, TargetError};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Error codes saying the credentials themselves are wrong (unknown key, wrong secret,
/// expired session): no permission would help.
const BAD_CREDENTIALS: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];

/// Error codes saying the credentials lack a permission.
const DENIED: &[&str] = &[
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
    "WAFAccessDeniedException",
    "OptInRequired",
];

/// Error codes of throttling (retried by the SDK first, then by the reconciler).
const THROTTLED: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
];

/// One failed AWS call, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("{0}")]
    Unreachable(String),
    /// AWS did not accept the credentials.
    #[error(
        "AWS did not accept netban's credentials ({code}: {message}); check the credentials \
         netban uses (environment, profile, credentials_file or instance role)"
    )]
    BadCredentials { code: String, message: String },
    /// The credentials lack `permission`.
    #[error("AWS refused {permission} ({code}: {message}); allow {permission} for netban's IAM identity")]
    Denied {
        permission: &'static str,
        code: String,
        message: String,
    },
    /// Still throttled after the SDK's own retries.
    #[error("throttled by AWS ({code}): {message}")]
    Throttled { code: String, message: String },
    /// Any other answer from the service.
    #[error("{code}: {message}")]
    Service { code: String, message: String },
}

impl ApiError {
    /// The service's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// As the error of a whole observe or apply. `target` names the target in messages.
    pub fn into_target_error(self, target: &str) -> TargetError {
        match self {
            ApiError::Unreachable(_) | ApiError::Throttled { .. } => {
                TargetError::unreachable(OnDevice::new(target, self))
            }
            ApiError::BadCredentials { .. } | ApiError::Denied { .. } => {
                TargetError::config(OnDevice::new(target, self))
            }
            ApiError::Service { .. } => TargetError::device(OnDevice::new(target, self)),
        }
    }

    /// True if the whole batch should stop: nothing else will work either.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ApiError::Unreachable(_) | ApiError::BadCredentials { .. } | ApiError::Denied { .. }
        )
    }
}

/// Classifies the error of one call that needs `permission` (like `ec2:DescribeNetworkAcls`).
pub(crate) fn classify<E, R>(permission: &'static str, err: &SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {}
        SdkError::TimeoutError(_) => return ApiError::Unreachable(format!("timed out: {text}")),
        _ if text.contains("credentials") => {
            return ApiError::BadCredentials {
                code: "NoCredentials".into(),
                message: text,
            }
        }
        _ => return ApiError::Unreachable(text),
    }
    // An answer the SDK could not parse (moto answers JSON-protocol services' auth errors in
    // XML) has no code; the known codes are still in the body.
    let code = err
        .code()
        .map(str::to_string)
        .or_else(|| {
            [BAD_CREDENTIALS, DENIED, THROTTLED]
                .concat()
                .into_iter()
                .find(|c| text.contains(&format!("<Code>{c}</Code>")))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let message = err.message().unwrap_or(&text).to_string();
    let code_is = |list: &[&str]| list.contains(&code.as_str());
    if code_is(BAD_CREDENTIALS) {
        ApiError::BadCredentials { code, message }
    } else if code_is(DENIED) {
        ApiError::Denied {
            permission,
            code,
            message,
        }
    } else if code_is(THROTTLED) {
        ApiError::Throttled { code, message }
    } else if code.is_empty() {
        // No error code: moto answers some refusals with a bare HTTP 500.
        ApiError::Service {
            code: "Unknown".into(),
            message: text,
        }
    } else {
        ApiError::Service { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_errors_name_what_to_do() {
        let denied = ApiError::Denied {
            permission: "ec2:CreateNetworkAclEntry",
            code: "UnauthorizedOperation".into(),
            message: "no".into(),
        };
        assert!(denied.is_fatal());
        let TargetError::Config(m) = denied.into_target_error("nacl") else {
            panic!("a permission problem is a configuration error");
        };
        assert!(
            m.to_string().contains("allow ec2:CreateNetworkAclEntry"),
            "{m}"
        );
        assert!(m
            .downcast_ref::<OnDevice>()
            .is_some_and(|e| e.source.is::<ApiError>()));
        let creds = ApiError::BadCredentials {
            code: "SignatureDoesNotMatch".into(),
            message: "x".into(),
        };
        assert!(matches!(
            creds.into_target_error("t"),
            TargetError::Config(m) if m.to_string().contains("check the credentials")
        ));
        let throttled = ApiError::Throttled {
            code: "RequestLimitExceeded".into(),
            message: "slow down".into(),
        };
        assert!(!throttled.is_fatal());
        assert!(matches!(
            throttled.into_target_error("t"),
            TargetError::Unreachable(_)
        ));
        let other = ApiError::Service {
            code: "InvalidParameterValue".into(),
            message: "bad".into(),
        };
        assert_eq!(other.code(), Some("InvalidParameterValue"));
        assert!(matches!(
            other.into_target_error("t"),
            TargetError::Device(_)
        ));
    }
}
