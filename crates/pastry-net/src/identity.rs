//! Node identity: an ed25519 key kept in the data directory, and the self-certifying id
//! derived from it (the first 128 bits of SHA-256 of the public key).
//!
//! This module never talks to the network; `tls` turns an [`Identity`] into a certificate and
//! checks peers' keys against their ids with [`id_of_public_key`].

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use pastry_core::NodeId;
use sha2::{Digest, Sha256};

/// File name of the key inside a data directory.
pub const KEY_FILE: &str = "node.key";

/// The PKCS#8 v1 (RFC 8410) prefix of an ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A node's ed25519 key and the id it certifies.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    id: NodeId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity").field("id", &self.id).finish()
    }
}

/// Why an identity could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the key file (or creating the directory) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("{path}: not a pastry node key (expected 64 hexadecimal digits)")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The OS random source failed.
    #[error("no OS randomness: {0}")]
    Random(String),
}

/// The node id certified by an ed25519 public key: SHA-256 of the key, first 16 bytes.
pub fn id_of_public_key(public_key: &[u8; 32]) -> NodeId {
    let digest = Sha256::digest(public_key);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    NodeId::from_bytes(id)
}

impl Identity {
    /// An identity from a 32-byte ed25519 seed (deterministic; for tests and tools).
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(&seed);
        let id = id_of_public_key(key.verifying_key().as_bytes());
        Identity { key, id }
    }

    /// A fresh identity from OS randomness.
    ///
    /// # Errors
    /// [`IdentityError::Random`] when the OS has no randomness to give.
    pub fn generate() -> Result<Identity, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Identity::from_seed(seed))
    }

    /// Loads the key from `dir/node.key`, or creates the directory and a new key (file mode
    /// 0600) when there is none, so a restarted node keeps its id.
    ///
    /// # Errors
    /// [`IdentityError`] when the directory or file cannot be read or written, or the file
    /// does not hold a key.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, source }
        };
        match fs::read_to_string(&path) {
            Ok(text) => {
                let seed = parse_hex32(text.trim())
                    .ok_or_else(|| IdentityError::Malformed { path: path.clone() })?;
                Ok(Identity::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io(dir))?;
                let identity = Identity::generate()?;
                let mut file = create_private(&path).map_err(io(&path))?;
                let hex: String = identity
                    .key
                    .to_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                writeln!(file, "{hex}").map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                Ok(identity)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The private key as PKCS#8 v1 DER (what rustls and rcgen take).
    pub fn pkcs8_der(&self) -> Vec<u8> {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.key.to_bytes());
        der
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_with_private_mode_and_id_is_hash_of_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id(), id_of_public_key(&a.public_key()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = Identity::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(a.id(), other.id());
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let e = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a pastry node key"), "{e}");
    }
}
