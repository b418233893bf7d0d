//! PAST objects: immutable content-addressed blobs and owner-signed named objects.
//!
//! Two kinds of object share one key space (the Pastry id space, 128 bits):
//! - **Content-addressed** ([`PastObject::immutable`]): the key is the first 128 bits of
//!   SHA-256 of the content ([`content_key`]). Anyone can check that an object matches its
//!   key, so no signature is needed and the object can never change.
//! - **Owned** ([`PastObject::signed`]): the key is chosen by the caller (usually
//!   [`named_key`] of the owner's public key, a name and a salt, as PAST's fileId) and the
//!   object carries a [`Certificate`] signed with the owner's ed25519 key binding the key,
//!   the owner's public key, a version number and the SHA-256 of the content. Only the owner
//!   can replace it, and only with a higher version.
//!
//! This module never does IO; every node verifies every object it stores, caches or hands
//! to a client with [`PastObject::verify`].

use core::fmt;

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use pastry_core::NodeId;
use sha2::{Digest, Sha256};

/// Domain separator of the bytes an owner signs.
const CERT_DOMAIN: &[u8] = b"pastry-past/cert/v1";
/// Domain separator of [`named_key`].
const NAME_DOMAIN: &[u8] = b"pastry-past/name/v1";

/// SHA-256 of `content`.
pub fn content_hash(content: &[u8]) -> [u8; 32] {
    Sha256::digest(content).into()
}

/// The key of a content-addressed object: the first 128 bits of SHA-256 of its content.
pub fn content_key(content: &[u8]) -> NodeId {
    key_from_hash(&content_hash(content))
}

/// The key of an owned object named `name` by `owner`, with `salt` (PAST's fileId: a hash
/// of the name, the owner's public key and a salt). A client whose insert fails for lack of
/// space retries with the next salt ("file diversion"), which lands the object in another
/// part of the ring.
pub fn named_key(owner: &VerifyingKey, name: &[u8], salt: u32) -> NodeId {
    let mut h = Sha256::new();
    h.update(NAME_DOMAIN);
    h.update(owner.as_bytes());
    h.update((name.len() as u64).to_be_bytes());
    h.update(name);
    h.update(salt.to_be_bytes());
    key_from_hash(&h.finalize().into())
}

fn key_from_hash(h: &[u8; 32]) -> NodeId {
    let mut k = [0u8; 16];
    k.copy_from_slice(&h[..16]);
    NodeId::from_bytes(k)
}

/// An owner's signed statement that `content_hash` is version `version` of key `key`.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The object's key.
    pub key: NodeId,
    /// The owner's ed25519 public key.
    pub owner: [u8; 32],
    /// The version; a replacement must carry a higher one.
    pub version: u64,
    /// SHA-256 of the content.
    pub content_hash: [u8; 32],
    /// The owner's signature over the fields above.
    pub signature: [u8; 64],
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("key", &self.key)
            .field("owner", &hex4(&self.owner))
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn hex4(b: &[u8]) -> String {
    b.iter().take(4).map(|x| format!("{x:02x}")).collect()
}

impl Certificate {
    /// The bytes the owner signs.
    fn signed_bytes(key: NodeId, owner: &[u8; 32], version: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut v = Vec::with_capacity(CERT_DOMAIN.len() + 16 + 32 + 8 + 32);
        v.extend_from_slice(CERT_DOMAIN);
        v.extend_from_slice(&key.to_bytes());
        v.extend_from_slice(owner);
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(hash);
        v
    }

    /// Signs a certificate for `content` under `key`, version `version`.
    pub fn sign(owner: &SigningKey, key: NodeId, version: u64, content: &[u8]) -> Certificate {
        let pk = owner.verifying_key().to_bytes();
        let hash = content_hash(content);
        let sig = owner.sign(&Certificate::signed_bytes(key, &pk, version, &hash));
        Certificate {
            key,
            owner: pk,
            version,
            content_hash: hash,
            signature: sig.to_bytes(),
        }
    }

    /// Checks the signature.
    ///
    /// # Errors
    /// [`ObjectError::BadSignature`] when the public key is invalid or the signature does
    /// not verify.
    pub fn verify_signature(&self) -> Result<(), ObjectError> {
        let pk = VerifyingKey::from_bytes(&self.owner).map_err(|_| ObjectError::BadSignature)?;
        let sig = Signature::from_bytes(&self.signature);
        let msg =
            Certificate::signed_bytes(self.key, &self.owner, self.version, &self.content_hash);
        pk.verify(&msg, &sig).map_err(|_| ObjectError::BadSignature)
    }
}

/// Why an object was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectError {
    /// The content is over the configured size limit.
    TooLarge {
        /// The content's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The content's hash does not match the key (content-addressed) or the certificate.
    HashMismatch,
    /// The certificate's signature does not verify.
    BadSignature,
    /// The object's key is not the one it was stored or asked for under.
    WrongKey,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::TooLarge { size, max } => {
                write!(f, "object of {size} bytes exceeds the limit of {max}")
            }
            ObjectError::HashMismatch => f.write_str("content hash does not match"),
            ObjectError::BadSignature => f.write_str("owner certificate signature is invalid"),
            ObjectError::WrongKey => f.write_str("object does not belong to this key"),
        }
    }
}

impl std::error::Error for ObjectError {}

/// An object as PAST stores it: the content and, for owned objects, its certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct PastObject {
    content: Bytes,
    cert: Option<Certificate>,
}

impl fmt::Debug for PastObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PastObject")
            .field("key", &self.key())
            .field("len", &self.content.len())
            .field("cert", &self.cert)
            .finish()
    }
}

impl PastObject {
    /// A content-addressed object; its key is [`content_key`] of `content`.
    pub fn immutable(content: impl Into<Bytes>) -> PastObject {
        PastObject {
            content: content.into(),
            cert: None,
        }
    }

    /// An owned object under `key`, version `version`, signed by `owner`.
    pub fn signed(
        owner: &SigningKey,
        key: NodeId,
        version: u64,
        content: impl Into<Bytes>,
    ) -> PastObject {
        let content = content.into();
        let cert = Certificate::sign(owner, key, version, &content);
        PastObject {
            content,
            cert: Some(cert),
        }
    }

    /// Builds an object from parts, unchecked (the decoder's constructor; call
    /// [`PastObject::verify`]).
    pub fn from_parts(content: Bytes, cert: Option<Certificate>) -> PastObject {
        PastObject { content, cert }
    }

    /// The object's key: the certificate's, or the content's hash.
    pub fn key(&self) -> NodeId {
        match &self.cert {
            Some(c) => c.key,
            None => content_key(&self.content),
        }
    }

    /// The content.
    pub fn content(&self) -> &Bytes {
        &self.content
    }

    /// The owner certificate, for owned objects.
    pub fn certificate(&self) -> Option<&Certificate> {
        self.cert.as_ref()
    }

    /// The version: the certificate's, 0 for content-addressed objects.
    pub fn version(&self) -> u64 {
        self.cert.as_ref().map_or(0, |c| c.version)
    }

    /// The owner's public key, for owned objects.
    pub fn owner(&self) -> Option<[u8; 32]> {
        self.cert.as_ref().map(|c| c.owner)
    }

    /// SHA-256 of the content.
    pub fn hash(&self) -> [u8; 32] {
        match &self.cert {
            Some(c) => c.content_hash,
            None => content_hash(&self.content),
        }
    }

    /// Checks size, content hash and signature.
    ///
    /// # Errors
    /// The first [`ObjectError`] found.
    pub fn verify(&self, max_bytes: usize) -> Result<(), ObjectError> {
        if self.content.len() > max_bytes {
            return Err(ObjectError::TooLarge {
                size: self.content.len(),
                max: max_bytes,
            });
        }
        if let Some(c) = &self.cert {
            if content_hash(&self.content) != c.content_hash {
                return Err(ObjectError::HashMismatch);
            }
            c.verify_signature()?;
        }
        Ok(())
    }

    /// [`PastObject::verify`] and that the object belongs under `key`.
    ///
    /// # Errors
    /// [`ObjectError::WrongKey`] or the first error of `verify`.
    pub fn verify_for(&self, key: NodeId, max_bytes: usize) -> Result<(), ObjectError> {
        self.verify(max_bytes)?;
        if self.key() != key {
            return Err(match self.cert {
                None => ObjectError::HashMismatch,
                Some(_) => ObjectError::WrongKey,
            });
        }
        Ok(())
    }

    /// Bytes the object takes on the wire and in a store.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + self.content.len() + if self.cert.is_some() { CERT_LEN } else { 0 }
    }
}

/// Wire length of a certificate.
pub(crate) const CERT_LEN: usize = 16 + 32 + 8 + 32 + 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn content_addressed_objects_verify_against_their_key() {
        let o = PastObject::immutable(&b"hello"[..]);
        assert_eq!(o.key(), content_key(b"hello"));
        assert!(o.verify_for(content_key(b"hello"), 100).is_ok());
        assert_eq!(
            o.verify_for(content_key(b"other"), 100),
            Err(ObjectError::HashMismatch)
        );
        assert_eq!(o.verify(3), Err(ObjectError::TooLarge { size: 5, max: 3 }));
        assert_eq!(o.version(), 0);
    }

    #[test]
    fn signed_objects_detect_tampering_and_forgery() {
        let sk = owner(1);
        let key = named_key(&sk.verifying_key(), b"doc", 0);
        let o = PastObject::signed(&sk, key, 3, &b"v3"[..]);
        assert!(o.verify_for(key, 100).is_ok());
        assert_eq!(o.version(), 3);
        // Content swapped under the same certificate.
        let swapped = PastObject::from_parts(Bytes::from_static(b"evil"), o.cert.clone());
        assert_eq!(swapped.verify(100), Err(ObjectError::HashMismatch));
        // A version bumped without re-signing.
        let mut c = o.cert.clone().unwrap();
        c.version = 4;
        let bumped = PastObject::from_parts(o.content.clone(), Some(c));
        assert_eq!(bumped.verify(100), Err(ObjectError::BadSignature));
        // An attacker claiming the owner's key with its own signature.
        let mut forged = Certificate::sign(&owner(2), key, 9, b"x");
        forged.owner = sk.verifying_key().to_bytes();
        let f = PastObject::from_parts(Bytes::from_static(b"x"), Some(forged));
        assert_eq!(f.verify(100), Err(ObjectError::BadSignature));
    }

    #[test]
    fn named_keys_depend_on_owner_name_and_salt() {
        let a = owner(1).verifying_key();
        let b = owner(2).verifying_key();
        let k = named_key(&a, b"n", 0);
        assert_eq!(k, named_key(&a, b"n", 0));
        assert_ne!(k, named_key(&a, b"n", 1));
        assert_ne!(k, named_key(&b, b"n", 0));
        assert_ne!(k, named_key(&a, b"m", 0));
    }
}
