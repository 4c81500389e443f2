//! Why a feed cannot be configured. A feed has no device to fail: once its settings are
//! right, publishing cannot fail.

use crate::TargetError;
use netban_config::secret::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(
        "path {0:?}: use /feeds/ followed by letters, digits, '-', '_', '.' and '/' \
         (at most 128 characters, not ending in .md5: that name serves the list's MD5)"
    )]
    Path(String),
    #[error("families is empty: serve \"v4\", \"v6\" or both")]
    NoFamily,
    #[error(
        "capacity is for a feed of one family (families = [\"v4\"] or [\"v6\"]); for both, \
         set capacity_v4 and capacity_v6 so that their sum fits the consumer"
    )]
    CapacityOfTwoFamilies,
    #[error("capacity = 0 would serve nothing; remove the target or raise it")]
    ZeroCapacity,
    #[error("username and password_file (or password_env) go together; set both or neither")]
    HalfBasic,
    #[error("username: HTTP basic user names may not be empty or hold ':'")]
    Username,
    #[error(
        "no credentials: set username + password_file (HTTP basic) and/or token_file (bearer), \
         or anonymous = true to serve the list to anyone who reaches the API listener"
    )]
    NoCredentials,
    #[error(
        "anonymous = true with credentials set: choose one (remove anonymous, or the credentials)"
    )]
    AnonymousWithCredentials,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl From<FeedError> for TargetError {
    fn from(error: FeedError) -> TargetError {
        TargetError::config(error)
    }
}
