//! Device certificates and revocations: how a user vouches for each of its
//! devices, so that nobody, the delivery service included, can add a device
//! under a user's name.
//!
//! Each user has an Ed25519 identity key, made by its first device. Every
//! device carries a [`DeviceCertificate`]: the identity key's signature over
//! the device's client id and MLS signature key. It travels in every leaf
//! node the device signs (key packages, the creator's leaf, updates, external
//! commits) as the [`DEVICE_CERTIFICATE_EXTENSION`] leaf-node extension, so
//! any member can check any leaf from the ratchet tree alone
//! ([`certified_client`]). A [`Revocation`], signed by the same identity key,
//! withdraws a device for good.
//!
//! Both signed payloads have test vectors: another implementation must
//! produce the same bytes.

use openmls::prelude::*;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use openmls_traits::types::SignatureScheme;

use crate::ids::ClientId;
use crate::profile::{InvalidCredential, client_of};

/// The leaf-node extension carrying a [`DeviceCertificate`], from the range
/// RFC 9420 §17.3 reserves for private use.
pub const DEVICE_CERTIFICATE_EXTENSION: u16 = 0xF0C1;

/// An Ed25519 public key is 32 bytes, a signature 64.
pub const IDENTITY_KEY_LEN: usize = 32;
const SIGNATURE_LEN: usize = 64;

/// A certificate is the identity key followed by its signature.
pub const CERTIFICATE_LEN: usize = IDENTITY_KEY_LEN + SIGNATURE_LEN;

const CERTIFICATE_LABEL: &[u8] = b"confide.v1 device certificate";
const REVOCATION_LABEL: &[u8] = b"confide.v1 device revocation";

/// Why a certificate or revocation is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("the leaf carries no device certificate")]
    Missing,
    #[error("a device certificate is {CERTIFICATE_LEN} bytes, not {0}")]
    BadLength(usize),
    #[error("a revocation is {0} bytes, too short")]
    BadRevocation(usize),
    #[error("the certificate's signature does not verify for this device and key")]
    BadSignature,
    #[error("the leaf names no client: {0}")]
    Credential(#[from] InvalidCredential),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The bytes an identity key signs to certify a device, or to revoke one:
/// the label, then the user, the device (each a u16 big-endian length and
/// its UTF-8 bytes) and the device's MLS signature key (u16 length, bytes).
fn signing_payload(label: &[u8], client: &ClientId, signature_key: &[u8]) -> Vec<u8> {
    let mut payload = label.to_vec();
    for part in [
        client.user().as_bytes(),
        client.device().as_bytes(),
        signature_key,
    ] {
        // Names are short by their rules; keys are 32 bytes.
        payload.extend_from_slice(&(part.len() as u16).to_be_bytes());
        payload.extend_from_slice(part);
    }
    payload
}

/// What a user's identity key signs to certify `client` with `signature_key`.
pub fn certificate_signing_payload(client: &ClientId, signature_key: &[u8]) -> Vec<u8> {
    signing_payload(CERTIFICATE_LABEL, client, signature_key)
}

/// What a user's identity key signs to revoke `client` with `signature_key`.
pub fn revocation_signing_payload(client: &ClientId, signature_key: &[u8]) -> Vec<u8> {
    signing_payload(REVOCATION_LABEL, client, signature_key)
}

fn verify(identity_key: &[u8], payload: &[u8], signature: &[u8]) -> Result<(), CertificateError> {
    RustCrypto::default()
        .verify_signature(SignatureScheme::ED25519, payload, identity_key, signature)
        .map_err(|_| CertificateError::BadSignature)
}

fn sign(identity: &impl Signer, payload: &[u8]) -> Result<Vec<u8>, CertificateError> {
    identity
        .sign(payload)
        .map_err(|e| CertificateError::Signing(format!("{e:?}")))
}

/// A user's identity key vouching for one device and its signature key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCertificate {
    identity_key: Vec<u8>,
    signature: Vec<u8>,
}

impl DeviceCertificate {
    /// Certifies `client` with `signature_key` by the user's identity key.
    pub fn issue(
        identity: &impl Signer,
        identity_key: &[u8],
        client: &ClientId,
        signature_key: &[u8],
    ) -> Result<Self, CertificateError> {
        let signature = sign(
            identity,
            &certificate_signing_payload(client, signature_key),
        )?;
        let certificate = Self {
            identity_key: identity_key.to_vec(),
            signature,
        };
        // Refuses an identity key that is not the signer's.
        certificate.verify(client, signature_key)?;
        Ok(certificate)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertificateError> {
        if bytes.len() != CERTIFICATE_LEN {
            return Err(CertificateError::BadLength(bytes.len()));
        }
        let (identity_key, signature) = bytes.split_at(IDENTITY_KEY_LEN);
        Ok(Self {
            identity_key: identity_key.to_vec(),
            signature: signature.to_vec(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        [self.identity_key.as_slice(), &self.signature].concat()
    }

    /// The identity key of the user that certified the device.
    pub fn identity_key(&self) -> &[u8] {
        &self.identity_key
    }

    /// Checks the certificate vouches for `client` with `signature_key`.
    /// Whether its identity key is the right one for the user is the
    /// verifier's to decide: the delivery service holds one per user, a
    /// client pins one at first contact.
    pub fn verify(&self, client: &ClientId, signature_key: &[u8]) -> Result<(), CertificateError> {
        verify(
            &self.identity_key,
            &certificate_signing_payload(client, signature_key),
            &self.signature,
        )
    }

    /// The leaf-node extensions that carry this certificate.
    pub fn leaf_extensions(&self) -> Extensions<LeafNode> {
        Extensions::single(Extension::Unknown(
            DEVICE_CERTIFICATE_EXTENSION,
            UnknownExtension(self.to_bytes()),
        ))
        .expect("an unknown extension is valid in a leaf node")
    }

    /// The certificate a leaf node's extensions carry, unchecked.
    pub fn of_leaf(extensions: &Extensions<LeafNode>) -> Result<Self, CertificateError> {
        let extension = extensions
            .unknown(DEVICE_CERTIFICATE_EXTENSION)
            .ok_or(CertificateError::Missing)?;
        Self::from_bytes(&extension.0)
    }
}

/// The capabilities of every Confide leaf: the certificate extension (which
/// a leaf may carry only if it lists it), and for a last-resort key package
/// the `last_resort` extension too.
pub fn leaf_capabilities(last_resort: bool) -> Capabilities {
    let mut extensions = vec![ExtensionType::Unknown(DEVICE_CERTIFICATE_EXTENSION)];
    if last_resort {
        extensions.push(ExtensionType::LastResort);
    }
    Capabilities::new(None, None, Some(&extensions), None, None)
}

/// The client a leaf names and the certificate that vouches for it, if the
/// leaf carries one that verifies over its credential and signature key.
pub fn certified_client(
    leaf: &LeafNode,
) -> Result<(ClientId, DeviceCertificate), CertificateError> {
    let client = client_of(leaf.credential())?;
    let certificate = DeviceCertificate::of_leaf(leaf.extensions())?;
    certificate.verify(&client, leaf.signature_key().as_slice())?;
    Ok((client, certificate))
}

/// A user's identity key withdrawing one device (and that signature key)
/// for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub client: ClientId,
    pub signature_key: Vec<u8>,
    signature: Vec<u8>,
}

impl Revocation {
    pub fn issue(
        identity: &impl Signer,
        client: &ClientId,
        signature_key: &[u8],
    ) -> Result<Self, CertificateError> {
        let signature = sign(identity, &revocation_signing_payload(client, signature_key))?;
        Ok(Self {
            client: client.clone(),
            signature_key: signature_key.to_vec(),
            signature,
        })
    }

    /// A revocation as it travels: the signature key (u16 length, bytes)
    /// and the 64-byte signature; the client travels beside it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = (self.signature_key.len() as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature_key);
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    pub fn from_bytes(client: ClientId, bytes: &[u8]) -> Result<Self, CertificateError> {
        let bad = || CertificateError::BadRevocation(bytes.len());
        let (len, rest) = bytes.split_first_chunk::<2>().ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() != len + SIGNATURE_LEN {
            return Err(bad());
        }
        let (signature_key, signature) = rest.split_at(len);
        Ok(Self {
            client,
            signature_key: signature_key.to_vec(),
            signature: signature.to_vec(),
        })
    }

    /// Checks the revocation is signed by `identity_key`.
    pub fn verify(&self, identity_key: &[u8]) -> Result<(), CertificateError> {
        verify(
            identity_key,
            &revocation_signing_payload(&self.client, &self.signature_key),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use openmls_basic_credential::SignatureKeyPair;

    use super::*;
    use crate::profile::CIPHERSUITE;

    fn alice_phone() -> ClientId {
        ClientId::new("alice", "phone").unwrap()
    }

    /// The test vector another implementation must reproduce: the payload
    /// bytes, and Ed25519 (deterministic) over them with the identity key
    /// whose seed is 32 bytes of 0x01. Checked with Python's `cryptography`.
    #[test]
    fn a_certificate_signs_the_labelled_user_device_and_key() {
        let payload = certificate_signing_payload(&alice_phone(), &[7u8; 32]);
        let mut expected = b"confide.v1 device certificate".to_vec();
        expected.extend_from_slice(b"\x00\x05alice\x00\x05phone\x00\x20");
        expected.extend_from_slice(&[7u8; 32]);
        assert_eq!(payload, expected);
        let identity_key =
            hex::decode("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
                .unwrap();
        let signature = hex::decode(
            "56a0d0f60350b825d3da3889cc5a141aba4b16af3450387dc5ce50ec59a30cd1\
             89e7ff910fa7c1ce745aa05c9b4bd78f9d81ecd8057147bf0cf75e42f713200f",
        )
        .unwrap();
        let certificate =
            DeviceCertificate::from_bytes(&[identity_key.clone(), signature].concat()).unwrap();
        assert_eq!(certificate.verify(&alice_phone(), &[7u8; 32]), Ok(()));
        let revocation = revocation_signing_payload(&alice_phone(), &[7u8; 32]);
        assert!(revocation.starts_with(b"confide.v1 device revocation\x00\x05alice"));
        let signature = hex::decode(
            "34143125d133339e8bf0fe892d0d6a50f64d77a1189d470a38a153e0a569024b\
             42ddc8fcb26144c022c243e35dc476fa5b7181c6c635c3d3457dbbaafad9cb05",
        )
        .unwrap();
        let mut bytes = vec![0, 32];
        bytes.extend_from_slice(&[7u8; 32]);
        bytes.extend_from_slice(&signature);
        let revocation = Revocation::from_bytes(alice_phone(), &bytes).unwrap();
        assert_eq!(revocation.verify(&identity_key), Ok(()));
    }

    fn identity() -> SignatureKeyPair {
        SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap()
    }

    #[test]
    fn a_certificate_verifies_only_for_the_device_and_key_it_names() {
        let identity = identity();
        let key = [7u8; 32];
        let certificate =
            DeviceCertificate::issue(&identity, identity.public(), &alice_phone(), &key).unwrap();
        let decoded = DeviceCertificate::from_bytes(&certificate.to_bytes()).unwrap();
        assert_eq!(decoded, certificate);
        assert_eq!(decoded.verify(&alice_phone(), &key), Ok(()));
        let evil = ClientId::new("alice", "evil").unwrap();
        assert_eq!(
            decoded.verify(&evil, &key),
            Err(CertificateError::BadSignature)
        );
        assert_eq!(
            decoded.verify(&alice_phone(), &[8u8; 32]),
            Err(CertificateError::BadSignature)
        );
        assert_eq!(
            DeviceCertificate::from_bytes(&[0u8; 95]),
            Err(CertificateError::BadLength(95))
        );
    }

    #[test]
    fn a_certificate_cannot_name_an_identity_key_other_than_its_signers() {
        let (identity, other) = (identity(), identity());
        assert_eq!(
            DeviceCertificate::issue(&identity, other.public(), &alice_phone(), &[7u8; 32]),
            Err(CertificateError::BadSignature)
        );
    }

    #[test]
    fn a_revocation_verifies_only_under_the_identity_key_that_signed_it() {
        let (identity, other) = (identity(), identity());
        let revocation = Revocation::issue(&identity, &alice_phone(), &[7u8; 32]).unwrap();
        let decoded = Revocation::from_bytes(alice_phone(), &revocation.to_bytes()).unwrap();
        assert_eq!(decoded, revocation);
        assert_eq!(decoded.verify(identity.public()), Ok(()));
        assert_eq!(
            decoded.verify(other.public()),
            Err(CertificateError::BadSignature)
        );
        let bob = ClientId::new("bob", "phone").unwrap();
        let moved = Revocation::from_bytes(bob, &revocation.to_bytes()).unwrap();
        assert_eq!(
            moved.verify(identity.public()),
            Err(CertificateError::BadSignature)
        );
    }
}
