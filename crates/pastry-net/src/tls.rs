//! TLS for QUIC: self-signed certificates that carry the node's ed25519 key, and verifiers
//! that accept them only when the key hashes to the node id the peer is supposed to have.
//!
//! There is no certificate authority: a node id *is* the hash of a public key, so a peer
//! proves its id by signing the TLS handshake with that key. Both sides verify the handshake
//! signature with the ring provider's [`verify_tls13_signature`] (which parses the
//! certificate with webpki), then take the ed25519 key out of the same parsed certificate.
//!
//! - Client side: when we dial a node whose id we know (from a `NodeHandle`), the id goes
//!   into the TLS server name as `<32 hex>.pastry` and the verifier rejects any other key.
//!   When we dial a bootstrap address we do not know the id (`any.pastry`): any valid key is
//!   accepted and the id is learned from it.
//! - Server side: a client must present a certificate (mutual TLS); any valid ed25519 key is
//!   accepted, and its id becomes the connection's authenticated id, which the transport
//!   then compares with the `sender` of every message on that connection.
//!
//! Only TLS 1.3 and the ed25519 signature scheme are offered or accepted. This module does
//! no IO.

use std::sync::Arc;

use pastry_core::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{Identity, id_of_public_key};

/// ALPN protocol id of the pastry wire protocol over QUIC.
pub const ALPN: &[u8] = b"pastry/1";
/// Server name used when the peer's id is unknown (bootstrap addresses).
pub const ANY_SERVER_NAME: &str = "any.pastry";

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410); the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The TLS server name that pins `id` (or accepts any id when `None`).
pub fn server_name_for(id: Option<NodeId>) -> String {
    match id {
        Some(id) => format!("{id}.pastry"),
        None => ANY_SERVER_NAME.to_string(),
    }
}

/// The ring crypto provider: the only one this crate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The ed25519 public key in `cert`, parsed as webpki parses it for signature checks.
///
/// # Errors
/// A rustls error when the certificate does not parse or its key is not ed25519.
pub fn ed25519_key_of(cert: &CertificateDer<'_>) -> Result<[u8; 32], rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| rustls::Error::General(format!("bad peer certificate: {e}")))?;
    let spki = parsed.subject_public_key_info();
    let spki: &[u8] = spki.as_ref();
    match spki.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) => key
            .try_into()
            .map_err(|_| rustls::Error::General("bad ed25519 key length".into())),
        None => Err(rustls::Error::General(
            "peer certificate key is not ed25519".into(),
        )),
    }
}

/// The node id certified by `cert`.
///
/// # Errors
/// As [`ed25519_key_of`].
pub fn id_of_certificate(cert: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    ed25519_key_of(cert).map(|k| id_of_public_key(&k))
}

/// The authenticated id of a connection's peer (from its certificate), if it has one.
pub fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    id_of_certificate(certs.first()?).ok()
}

/// Verifies peers for both roles; see the module docs.
#[derive(Debug)]
struct PeerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn new(provider: &CryptoProvider) -> Self {
        PeerVerifier {
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::General(
                "peer signed with a scheme other than ed25519".into(),
            ));
        }
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = id_of_certificate(end_entity)?;
        let ServerName::DnsName(name) = server_name else {
            return Err(rustls::Error::General("unexpected server name".into()));
        };
        let name = name.as_ref();
        if name == ANY_SERVER_NAME {
            return Ok(ServerCertVerified::assertion());
        }
        let expected = name
            .strip_suffix(".pastry")
            .and_then(|hex| NodeId::from_hex(hex).ok())
            .ok_or_else(|| rustls::Error::General(format!("bad server name {name}")))?;
        if expected != id {
            return Err(rustls::Error::General(format!(
                "peer key hashes to id {id}, expected {expected}"
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Any ed25519 key will do: its hash is the id the transport will hold the peer to.
        id_of_certificate(end_entity).map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A self-signed certificate for `identity`'s key, and the key, for rustls.
///
/// # Errors
/// When rcgen cannot build the certificate (it always can for a valid key).
pub fn certificate(
    identity: &Identity,
) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let pkcs8 = PrivatePkcs8KeyDer::from(identity.pkcs8_der());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)?;
    let params = rcgen::CertificateParams::new(vec![server_name_for(Some(identity.id()))])?;
    let cert = params.self_signed(&key_pair)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The rustls client configuration of a node (mutual TLS with its own certificate).
///
/// # Errors
/// When the certificate cannot be built or rustls refuses the configuration.
pub fn client_config(identity: &Identity) -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    let (cert, key) = certificate(identity)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(&provider)))
        .with_client_auth_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The rustls server configuration of a node (client certificates required).
///
/// # Errors
/// When the certificate cannot be built or rustls refuses the configuration.
pub fn server_config(identity: &Identity) -> anyhow::Result<rustls::ServerConfig> {
    let provider = provider();
    let (cert, key) = certificate(identity)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(&provider)))
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_key_that_hashes_to_the_id() {
        let identity = Identity::from_seed([7; 32]);
        let (cert, _) = certificate(&identity).unwrap();
        assert_eq!(ed25519_key_of(&cert).unwrap(), identity.public_key());
        assert_eq!(id_of_certificate(&cert).unwrap(), identity.id());
    }

    #[test]
    fn verifier_pins_the_expected_id() {
        let identity = Identity::from_seed([7; 32]);
        let other = Identity::from_seed([8; 32]);
        let (cert, _) = certificate(&identity).unwrap();
        let v = PeerVerifier::new(&provider());
        let check = |name: String| {
            let name = ServerName::try_from(name).unwrap();
            v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
        };
        assert!(check(server_name_for(Some(identity.id()))).is_ok());
        assert!(check(server_name_for(None)).is_ok());
        let e = check(server_name_for(Some(other.id()))).unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
    }

    #[test]
    fn non_ed25519_and_garbage_certificates_are_rejected() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.pastry".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        assert!(id_of_certificate(cert.der()).is_err());
        assert!(id_of_certificate(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
        assert!(id_of_certificate(&CertificateDer::from(Vec::new())).is_err());
    }
}
