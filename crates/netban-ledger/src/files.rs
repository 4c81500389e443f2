//! The ledger's and the spool's files are readable by their owner only (they name every
//! banned address and who banned it): directories this crate creates are 0750, database files
//! 0600 from their creation, and an existing file that is more open is tightened (SQLite gives
//! its `-wal` and `-shm` files the mode of the database file).

use crate::LedgerError;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of directories created for a ledger or spool.
pub const DIR_MODE: u32 = 0o750;
/// Mode of a ledger's or spool's files.
pub const FILE_MODE: u32 = 0o600;

/// Makes `path` (a SQLite database file) exist with [`FILE_MODE`], creating missing parent
/// directories with [`DIR_MODE`]; tightens it and its `-wal`/`-shm` files if they are more open.
pub fn create_private(path: &Path) -> Result<(), LedgerError> {
    let error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LedgerError::Files { path, error }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(error(dir))?;
        }
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(error(path))?;
    for file in [
        path.to_path_buf(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, Permissions::from_mode(FILE_MODE))
                    .map_err(error(&file))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn new_files_and_directories_are_private_and_open_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("a/b/ledger.db");
        create_private(&ledger).unwrap();
        assert_eq!(mode(&ledger) & 0o077, 0);
        assert_eq!(mode(&dir.path().join("a/b")) & 0o027, 0);
        std::fs::set_permissions(&ledger, Permissions::from_mode(0o644)).unwrap();
        let wal = with_suffix(&ledger, "-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, Permissions::from_mode(0o666)).unwrap();
        create_private(&ledger).unwrap();
        assert_eq!(mode(&ledger), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
