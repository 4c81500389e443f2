//! Secrets (device passwords, enable secrets, key passphrases, API keys, the ledger's
//! password): one type that never prints itself, and one way to read them from a file only
//! their owner may read, or from the daemon's environment.
//!
//! Every driver that takes a secret offers three keys for it, of which at most one is set:
//! `KEY` (inline in netban.toml, which then must not be readable by every user),
//! `KEY_file` (a file whose first line is the secret; refused if group or others may read it)
//! and `KEY_env` (the name of an environment variable of the daemon). [`resolve`] turns them
//! into the secret, [`read_file`] and [`check_private`] are the file rules, shared by every
//! driver, the ExaFS API key and the PostgreSQL ledger's `ledger_password_file`.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret. `Debug` shows `Secret(<redacted>)`; there is no `Display`, so `format!("{s}")`
/// does not compile (and can neither leak it nor, sent to a device, send a placeholder).
/// Only [`Secret::expose`] gives the text, to be called where it is sent and nowhere else.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret's text, for the one call that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.to_string())
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

/// Why a secret could not be had; each names the setting and the file or variable, never the
/// secret, and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "cannot read the {what} file {path}: {source}; create it holding only the secret, \
         owned by the user netban runs as, and `chmod 600` it"
    )]
    Unreadable {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the {what} file {path} has mode {mode:04o}: group or others may read it; run \
         `chmod 600 {path}`"
    )]
    OthersMayRead {
        what: String,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "environment variable {name} (the {what}) is not set for the netban daemon; set it, \
         or use a file instead"
    )]
    NoVariable {
        what: String,
        name: String,
        #[source]
        source: std::env::VarError,
    },
    #[error("the {what} in {origin} is empty")]
    Empty { what: String, origin: String },
    #[error("set only one of `{what}`, `{what}_file` and `{what}_env`")]
    SeveralSources { what: String },
    #[error(
        "{path} holds {keys} inline and has mode {mode:04o}, so every user of this machine can \
         read it: move the secrets to `…_file` settings (files of mode 0600) or `…_env` \
         variables, or run `chmod o-r {path}`"
    )]
    InlineInReadableConfig {
        path: PathBuf,
        mode: u32,
        keys: String,
    },
}

/// Refuses a secret file group or others may read (any of the mode's 0o077 bits set).
#[cfg(unix)]
pub fn check_private(what: &str, path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::OthersMayRead {
            what: what.to_string(),
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_private(_: &str, _: &Path, _: &std::fs::Metadata) -> Result<(), SecretError> {
    Ok(())
}

/// Reads the secret `what` from the first line of `path` (its line end not included), after
/// [`check_private`]. An empty first line is refused.
pub fn read_file(what: &str, path: &Path) -> Result<Secret, SecretError> {
    let unreadable = |source| SecretError::Unreadable {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    check_private(what, path, &meta)?;
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(SecretError::Empty {
            what: what.to_string(),
            origin: format!("file {}", path.display()),
        });
    }
    Ok(Secret(line.to_string()))
}

/// Reads the secret `what` from the environment variable `name`.
pub fn read_env(what: &str, name: &str) -> Result<Secret, SecretError> {
    let text = std::env::var(name).map_err(|source| SecretError::NoVariable {
        what: what.to_string(),
        name: name.to_string(),
        source,
    })?;
    if text.is_empty() {
        return Err(SecretError::Empty {
            what: what.to_string(),
            origin: format!("environment variable {name}"),
        });
    }
    Ok(Secret(text))
}

/// The secret `what` from whichever of its three settings is given (inline, `_file`, `_env`);
/// `None` if none is; an error if several are, or the file or variable cannot be used.
pub fn resolve(
    what: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, SecretError> {
    let given =
        usize::from(inline.is_some()) + usize::from(file.is_some()) + usize::from(env.is_some());
    if given > 1 {
        return Err(SecretError::SeveralSources {
            what: what.to_string(),
        });
    }
    if let Some(secret) = inline {
        return Ok(Some(secret.clone()));
    }
    if let Some(path) = file {
        return read_file(what, path).map(Some);
    }
    if let Some(name) = env {
        return read_env(what, name).map(Some);
    }
    Ok(None)
}

/// Refuses a configuration file that holds secrets inline (`keys`, named as in the file) while
/// every user may read it (the "others" read bit of `mode`).
pub fn check_inline(path: &Path, mode: u32, keys: &[String]) -> Result<(), SecretError> {
    if keys.is_empty() || mode & 0o004 == 0 {
        return Ok(());
    }
    Err(SecretError::InlineInReadableConfig {
        path: path.to_path_buf(),
        mode: mode & 0o7777,
        keys: keys.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(mode: u32, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
        let parsed: Option<Secret> = serde_json::from_str("\"hunter2\"").unwrap();
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }

    #[test]
    fn a_private_file_gives_its_first_line() {
        for mode in [0o600, 0o400] {
            let (_dir, path) = file(mode, "pass word \n2nd line\n");
            assert_eq!(read_file("password", &path).unwrap().expose(), "pass word ");
        }
        let (_dir, path) = file(0o600, "\nlater\n");
        assert!(matches!(
            read_file("password", &path),
            Err(SecretError::Empty { .. })
        ));
    }

    #[test]
    fn a_file_group_or_others_may_read_is_refused_with_its_name_and_mode() {
        for mode in [0o640, 0o604, 0o644, 0o660, 0o610] {
            let (_dir, path) = file(mode, "hunter2\n");
            let err = read_file("enable_secret", &path).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, SecretError::OthersMayRead { .. }), "{mode:o}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(
                text.contains("enable_secret") && !text.contains("hunter2"),
                "{text}"
            );
        }
        let err = read_file("password", Path::new("/nonexistent/netban/pw")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/netban/pw"), "{err}");
    }

    #[test]
    fn one_source_only_and_the_environment() {
        let inline = Secret::new("x");
        let err = resolve("password", Some(&inline), None, Some("V")).unwrap_err();
        assert!(err.to_string().contains("`password_file`"), "{err}");
        assert_eq!(resolve("password", None, None, None).unwrap(), None);
        assert_eq!(
            resolve("password", Some(&inline), None, None).unwrap(),
            Some(inline)
        );
        let err = resolve("password", None, None, Some("NETBAN_TEST_SURELY_UNSET")).unwrap_err();
        assert!(
            err.to_string().contains("NETBAN_TEST_SURELY_UNSET"),
            "{err}"
        );
        std::env::set_var("NETBAN_TEST_SECRET_VAR", "s3cret");
        assert_eq!(
            resolve("password", None, None, Some("NETBAN_TEST_SECRET_VAR"))
                .unwrap()
                .unwrap()
                .expose(),
            "s3cret"
        );
    }

    #[test]
    fn inline_secrets_only_in_a_file_others_cannot_read() {
        let keys = vec!["targets[0].password".to_string()];
        let path = Path::new("/etc/netban/netban.toml");
        assert!(check_inline(path, 0o600, &keys).is_ok());
        assert!(check_inline(path, 0o640, &keys).is_ok());
        assert!(check_inline(path, 0o644, &[]).is_ok());
        let err = check_inline(path, 0o644, &keys).unwrap_err().to_string();
        assert!(
            err.contains("/etc/netban/netban.toml")
                && err.contains("0644")
                && err.contains("targets[0].password"),
            "{err}"
        );
    }
}
