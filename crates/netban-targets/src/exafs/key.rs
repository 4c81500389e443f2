//! The ExaFS API key: read from a file only its owner can read, or from the environment.
//!
//! The key is read again at every authentication, so replacing the file (or restarting with a
//! new environment) rotates it without touching netban.toml. It is never logged.

use crate::TargetError;
use std::fmt;
use std::path::PathBuf;

/// Where the key is read from.
#[derive(Clone, Debug)]
pub enum ApiKeySource {
    File(PathBuf),
    Env(String),
}

/// The key itself. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// Why the key could not be read; each says what the operator should do. A configuration
/// error for the reconciler.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "cannot read the ExaFS API key file {path}: {source}; create it with the key and \
         `chmod 600`"
    )]
    NoFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the ExaFS API key file {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read the key file (the rule every secret file follows).
    #[error(transparent)]
    OthersMayRead(netban_config::secret::SecretError),
    #[error(
        "environment variable {name} (api_key_env) is not set for the netban daemon; set it \
         to the ExaFS API key"
    )]
    NoVariable {
        name: String,
        #[source]
        source: std::env::VarError,
    },
    #[error("the ExaFS API key in {origin} is empty")]
    Empty { origin: String },
    #[error(
        "the ExaFS API key in {origin} contains spaces or non-ASCII characters; it must be the \
         key exactly as ExaFS shows it"
    )]
    NotAKey { origin: String },
}

impl From<KeyError> for TargetError {
    fn from(e: KeyError) -> Self {
        TargetError::config(e)
    }
}

impl ApiKeySource {
    /// Reads the key, refusing a key file that group or others may read, an empty key, and a
    /// key with characters an HTTP header cannot carry.
    pub fn read(&self) -> Result<ApiKey, KeyError> {
        let (text, origin) = match self {
            ApiKeySource::File(path) => {
                let shown = path.display().to_string();
                let meta = std::fs::metadata(path).map_err(|source| KeyError::NoFile {
                    path: shown.clone(),
                    source,
                })?;
                netban_config::secret::check_private("ExaFS API key", path, &meta)
                    .map_err(KeyError::OthersMayRead)?;
                let text =
                    std::fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
                        path: shown.clone(),
                        source,
                    })?;
                (text, format!("file {shown}"))
            }
            ApiKeySource::Env(name) => {
                let text = std::env::var(name).map_err(|source| KeyError::NoVariable {
                    name: name.clone(),
                    source,
                })?;
                (text, format!("environment variable {name}"))
            }
        };
        let key = text.trim();
        if key.is_empty() {
            return Err(KeyError::Empty { origin });
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::NotAKey { origin });
        }
        Ok(ApiKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_file(mode: u32, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exafs.key");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_private_file_is_read_and_trimmed() {
        let (_dir, path) = key_file(0o600, "  abc123\n");
        let key = ApiKeySource::File(path).read().unwrap();
        assert_eq!(key.as_str(), "abc123");
        assert_eq!(format!("{key:?}"), "ApiKey(…)");
    }

    #[test]
    fn a_file_others_may_read_is_refused() {
        for mode in [0o644, 0o640, 0o604] {
            let (_dir, path) = key_file(mode, "abc123");
            let err = ApiKeySource::File(path).read().unwrap_err();
            assert!(
                matches!(&err, KeyError::OthersMayRead { .. })
                    && err.to_string().contains("chmod 600"),
                "{mode:o}: {err}"
            );
        }
    }

    #[test]
    fn empty_missing_and_odd_keys_are_refused() {
        let (_dir, path) = key_file(0o600, " \n");
        assert!(ApiKeySource::File(path).read().is_err());
        let (_dir, path) = key_file(0o600, "ab cd");
        assert!(ApiKeySource::File(path).read().is_err());
        let err = ApiKeySource::File("/nonexistent/netban/exafs.key".into())
            .read()
            .unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let err = ApiKeySource::Env("NETBAN_TEST_SURELY_UNSET_VARIABLE".into())
            .read()
            .unwrap_err();
        assert!(err.to_string().contains("is not set"), "{err}");
    }
}
