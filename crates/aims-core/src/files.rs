//! Files that hold secrets or state: written atomically, with the mode they must have.
//!
//! Keys are 0600 and the directories that hold them 0700, whatever the umask, and a crash
//! mid-write never leaves a truncated file: contents go to a temporary file in the same
//! directory, are synced, and replace the target by rename.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Writes `contents` to `path` atomically with permissions `mode` (e.g. `0o600` for keys).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    // A temporary file left by an earlier crash keeps its old mode through `open`.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)
}

/// Creates `dir` (and parents) with mode 0700, or tightens an existing one to 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn modes_are_exact_and_replacement_is_whole() {
        let dir = tempfile_dir();
        let sub = dir.join("keys");
        private_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        let key = sub.join("k.pem");
        write_atomic(&key, b"one", 0o600).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        write_atomic(&key, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(&sub).unwrap().count(),
            1,
            "no temporary file left"
        );
        // A world-readable file rewritten as a key becomes 0600.
        let open = sub.join("open");
        fs::write(&open, b"x").unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&open, b"y", 0o600).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o777, 0o600);
        assert!(write_atomic(Path::new("/"), b"", 0o600).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "aims-core-files-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
