//! Where private keys live: the `KeyManager` seam (SPIRE's KeyManager plugin type).
//!
//! Two implementations: [`MemoryKeyManager`] (keys vanish with the process; what workload keys
//! and tests use) and [`DiskKeyManager`] (PKCS#8 PEM files, mode 0600, in a 0700 directory). A
//! hardware-backed one (PKCS#11, TPM; AIMS CR-6) slots in behind the same trait.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::keys::{KeyError, KeyType, PrivateKey};

/// A store of named private keys.
pub trait KeyManager: Send + Sync {
    /// Generates a new key under `id`, replacing any key of that name.
    fn generate(&self, id: &str, key_type: KeyType) -> Result<Arc<PrivateKey>, KeyError>;
    /// The key named `id`, if present.
    fn get(&self, id: &str) -> Result<Option<Arc<PrivateKey>>, KeyError>;
    /// Removes the key named `id`; removing a missing key is not an error.
    fn delete(&self, id: &str) -> Result<(), KeyError>;
}

fn validate_id(id: &str) -> Result<(), KeyError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(KeyError::Store(format!("invalid key id {id:?}")))
    }
}

/// Keys held in process memory only.
#[derive(Default)]
pub struct MemoryKeyManager {
    keys: RwLock<HashMap<String, Arc<PrivateKey>>>,
}

impl MemoryKeyManager {
    /// An empty key manager.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyManager for MemoryKeyManager {
    fn generate(&self, id: &str, key_type: KeyType) -> Result<Arc<PrivateKey>, KeyError> {
        validate_id(id)?;
        let key = Arc::new(PrivateKey::generate(key_type)?);
        self.keys
            .write()
            .map_err(|_| KeyError::Store("lock poisoned".into()))?
            .insert(id.to_owned(), key.clone());
        Ok(key)
    }

    fn get(&self, id: &str) -> Result<Option<Arc<PrivateKey>>, KeyError> {
        Ok(self
            .keys
            .read()
            .map_err(|_| KeyError::Store("lock poisoned".into()))?
            .get(id)
            .cloned())
    }

    fn delete(&self, id: &str) -> Result<(), KeyError> {
        self.keys
            .write()
            .map_err(|_| KeyError::Store("lock poisoned".into()))?
            .remove(id);
        Ok(())
    }
}

/// Keys persisted as PKCS#8 PEM files (`<dir>/<id>.key.pem`, mode 0600; the directory is 0700).
/// Loaded keys are cached in memory so signing never touches the disk.
pub struct DiskKeyManager {
    dir: PathBuf,
    cache: MemoryKeyManager,
}

impl DiskKeyManager {
    /// Opens (creating if needed) a key directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, KeyError> {
        let dir = dir.as_ref().to_path_buf();
        aims_core::files::private_dir(&dir).map_err(|e| io_err(&dir, &e))?;
        Ok(Self {
            dir,
            cache: MemoryKeyManager::new(),
        })
    }

    /// The file that holds (or will hold) the key `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key.pem"))
    }

    /// Writes `key` under `id` atomically, mode 0600.
    fn persist(&self, id: &str, key: &PrivateKey) -> Result<(), KeyError> {
        let path = self.path(id);
        aims_core::files::write_atomic(&path, key.to_pkcs8_pem().as_bytes(), 0o600)
            .map_err(|e| io_err(&path, &e))
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> KeyError {
    KeyError::Store(format!("{}: {e}", path.display()))
}

impl KeyManager for DiskKeyManager {
    fn generate(&self, id: &str, key_type: KeyType) -> Result<Arc<PrivateKey>, KeyError> {
        validate_id(id)?;
        let key = PrivateKey::generate(key_type)?;
        self.persist(id, &key)?;
        let key = Arc::new(key);
        self.cache
            .keys
            .write()
            .map_err(|_| KeyError::Store("lock poisoned".into()))?
            .insert(id.to_owned(), key.clone());
        Ok(key)
    }

    fn get(&self, id: &str) -> Result<Option<Arc<PrivateKey>>, KeyError> {
        validate_id(id)?;
        if let Some(key) = self.cache.get(id)? {
            return Ok(Some(key));
        }
        let path = self.path(id);
        let pem = match fs::read_to_string(&path) {
            Ok(pem) => zeroize::Zeroizing::new(pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, &e)),
        };
        let mode = fs::metadata(&path)
            .map_err(|e| io_err(&path, &e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Store(format!(
                "{}: key file is readable by group or others (mode {:o}); expected 0600",
                path.display(),
                mode & 0o777
            )));
        }
        let key = Arc::new(PrivateKey::from_pem(&pem)?);
        self.cache
            .keys
            .write()
            .map_err(|_| KeyError::Store("lock poisoned".into()))?
            .insert(id.to_owned(), key.clone());
        Ok(Some(key))
    }

    fn delete(&self, id: &str) -> Result<(), KeyError> {
        validate_id(id)?;
        self.cache.delete(id)?;
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.path(id), &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_keys_are_0600_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let km = DiskKeyManager::open(dir.path().join("keys")).unwrap();
        let key = km.generate("x509-ca-1", KeyType::EcP256).unwrap();
        let path = dir.path().join("keys/x509-ca-1.key.pem");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(dir.path().join("keys"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let reopened = DiskKeyManager::open(dir.path().join("keys")).unwrap();
        let again = reopened.get("x509-ca-1").unwrap().unwrap();
        assert_eq!(again.public_key(), key.public_key());
        reopened.delete("x509-ca-1").unwrap();
        assert!(reopened.get("x509-ca-1").unwrap().is_none());
        assert!(!path.exists());
    }

    #[test]
    fn refuses_a_world_readable_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let km = DiskKeyManager::open(dir.path()).unwrap();
        km.generate("k", KeyType::Ed25519).unwrap();
        let path = dir.path().join("k.key.pem");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let fresh = DiskKeyManager::open(dir.path()).unwrap();
        let err = fresh.get("k").unwrap_err().to_string();
        assert!(err.contains("expected 0600"), "{err}");
    }

    #[test]
    fn rejects_path_traversal_ids() {
        let km = MemoryKeyManager::new();
        for id in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(km.generate(id, KeyType::EcP256).is_err(), "{id:?}");
        }
    }
}
