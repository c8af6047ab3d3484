//! Linking a new device to its user: the code a person carries from the new
//! device to an existing one, what is derived from it, and the two sealed
//! messages the delivery service carries between them.
//!
//! The new device shows a [`LinkCode`] (12 characters from a 32-character
//! alphabet, 60 bits). From the code both devices derive ([`LinkKeys`]) the
//! 16-byte link id the DS files the exchange under and the AES-128-GCM key
//! that seals the new device's [`LinkOffer`] (its name, MLS signature key and
//! a one-time HPKE key). The DS never sees the code.
//!
//! Before certifying, the existing device shows the short authentication
//! string ([`LinkKeys::sas`], 6 digits over the code and the offer it
//! opened) and the person compares it with the one the new device shows over
//! the offer it sent: a DS that guessed the code and swapped the offer for its
//! own is caught there. The [`LinkAnswer`] (the user's identity key and the
//! new device's certificate) is sealed by HPKE to the offer's one-time key,
//! not under the code: a code brute-forced later opens nothing that matters.
//!
//! Every derivation has a test vector, checked in Python: another
//! implementation must produce the same bytes.

use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::types::{
    AeadType, HashType, HpkeAeadType, HpkeCiphertext, HpkeConfig, HpkeKdfType, HpkeKemType,
    HpkeKeyPair,
};

use crate::ids::ClientId;

/// The code's alphabet: A-Z and 2-9 without I and O, which read like 1 and 0
/// (themselves left out).
pub const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Characters in a code: 12 of 32 symbols are 60 bits.
pub const CODE_LEN: usize = 12;
/// Bytes of the link id the DS sees.
pub const LINK_ID_LEN: usize = 16;
/// The URI scheme and path of a code in one line: `confide://link/<user>/<CODE>`.
pub const URI_PREFIX: &str = "confide://link/";

/// The version byte that starts every sealed message and every plaintext;
/// a later version may append fields (the answer: a history archive key).
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 16;

const SALT: &[u8] = b"confide.v1 link";
const LINK_ID_INFO: &[u8] = b"confide.v1 link id";
const KEY_INFO: &[u8] = b"confide.v1 link key";
const SAS_INFO: &[u8] = b"confide.v1 link sas";
const OFFER_AAD: &[u8] = b"confide.v1 link offer";
const ANSWER_INFO: &[u8] = b"confide.v1 link answer";

/// X25519, HKDF-SHA256, AES-128-GCM: the HPKE of the MLS ciphersuite.
const HPKE: HpkeConfig = HpkeConfig(
    HpkeKemType::DhKem25519,
    HpkeKdfType::HkdfSha256,
    HpkeAeadType::AesGcm128,
);

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error(
        "a linking code is {CODE_LEN} characters of A-Z and 2-9 (without I and O), like ABCD-EFGH-JKLM"
    )]
    BadCode,
    #[error("a linking URI is {URI_PREFIX}<user>/<CODE>")]
    BadUri,
    /// The sealed offer does not open under this code's key: the code is
    /// wrong (or the offer was altered).
    #[error("the offer does not open with this code: is the code right?")]
    WrongCode,
    #[error("the answer does not open: it was not sealed to this device's offer")]
    BadAnswer,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported {0} version {1}")]
    Version(&'static str, u8),
    #[error("crypto: {0}")]
    Crypto(String),
}

fn crypto(error: impl std::fmt::Debug) -> LinkError {
    LinkError::Crypto(format!("{error:?}"))
}

/// The code the new device shows, in its canonical form: 12 characters of
/// [`CODE_ALPHABET`], no separators.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkCode(String);

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // It opens the offer: kept out of logs.
        f.write_str("LinkCode(..)")
    }
}

impl LinkCode {
    /// A fresh random code.
    pub fn generate() -> Result<Self, LinkError> {
        let random: [u8; CODE_LEN] = RustCrypto::default().random_array().map_err(crypto)?;
        Ok(Self::from_random(random))
    }

    /// The code for 12 random bytes: each byte's low 5 bits pick a symbol
    /// (256 is a multiple of 32, so every symbol is equally likely).
    pub fn from_random(random: [u8; CODE_LEN]) -> Self {
        Self(
            random
                .iter()
                .map(|b| char::from(CODE_ALPHABET[usize::from(b & 31)]))
                .collect(),
        )
    }

    /// Reads a code as a person types it: any case, with or without dashes
    /// and spaces.
    pub fn parse(text: &str) -> Result<Self, LinkError> {
        let code: String = text
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if code.len() != CODE_LEN || !code.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
            return Err(LinkError::BadCode);
        }
        Ok(Self(code))
    }

    /// The canonical 12 characters, which the keys are derived from.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As shown to a person: `ABCD-EFGH-JKLM`.
    pub fn display(&self) -> String {
        let c = &self.0;
        format!("{}-{}-{}", &c[..4], &c[4..8], &c[8..])
    }

    /// The link id, the offer key and the SAS key, derived from the code.
    pub fn keys(&self) -> Result<LinkKeys, LinkError> {
        let crypto_ = RustCrypto::default();
        let prk = crypto_
            .hkdf_extract(HashType::Sha2_256, SALT, self.0.as_bytes())
            .map_err(crypto)?;
        let expand = |info: &[u8], len: usize| {
            crypto_
                .hkdf_expand(HashType::Sha2_256, prk.as_slice(), info, len)
                .map(|okm| okm.as_slice().to_vec())
                .map_err(crypto)
        };
        Ok(LinkKeys {
            link_id: expand(LINK_ID_INFO, LINK_ID_LEN)?,
            key: expand(KEY_INFO, KEY_LEN)?,
            prk: prk.as_slice().to_vec(),
        })
    }
}

/// `confide://link/<user>/<CODE>`: the code in one line, with the user it
/// links to.
pub fn uri(user: &str, code: &LinkCode) -> String {
    format!("{URI_PREFIX}{user}/{}", code.display())
}

/// A code typed as such or as a URI; the URI's user, if it was one.
pub fn parse_code_or_uri(text: &str) -> Result<(Option<String>, LinkCode), LinkError> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix(URI_PREFIX) else {
        return Ok((None, LinkCode::parse(text)?));
    };
    let (user, code) = rest.split_once('/').ok_or(LinkError::BadUri)?;
    if !crate::ids::valid_user(user) {
        return Err(LinkError::BadUri);
    }
    Ok((Some(user.to_string()), LinkCode::parse(code)?))
}

/// What both devices derive from the code.
pub struct LinkKeys {
    /// HKDF-Expand(prk, "confide.v1 link id", 16): the DS's name for the exchange.
    pub link_id: Vec<u8>,
    /// HKDF-Expand(prk, "confide.v1 link key", 16): seals the offer.
    key: Vec<u8>,
    /// HKDF-Extract(salt "confide.v1 link", code): the SAS is expanded from it.
    prk: Vec<u8>,
}

impl LinkKeys {
    /// The short authentication string both devices show: the first 8
    /// bytes of HKDF-Expand(prk, "confide.v1 link sas" || offer bytes, 8)
    /// as a big-endian number modulo 10^6, in 6 digits.
    pub fn sas(&self, offer: &LinkOffer) -> Result<String, LinkError> {
        let info = [SAS_INFO, &offer.to_bytes()].concat();
        let okm = RustCrypto::default()
            .hkdf_expand(HashType::Sha2_256, &self.prk, &info, 8)
            .map_err(crypto)?;
        let bytes: [u8; 8] = okm.as_slice().try_into().map_err(crypto)?;
        Ok(format!("{:06}", u64::from_be_bytes(bytes) % 1_000_000))
    }

    fn offer_aad(&self) -> Vec<u8> {
        [OFFER_AAD, &self.link_id].concat()
    }

    /// `1 || nonce (12) || AES-128-GCM(key, nonce, aad = "confide.v1 link
    /// offer" || link id, offer bytes)`, with a random nonce.
    pub fn seal_offer(&self, offer: &LinkOffer) -> Result<Vec<u8>, LinkError> {
        let nonce: [u8; NONCE_LEN] = RustCrypto::default().random_array().map_err(crypto)?;
        self.seal_offer_with_nonce(offer, &nonce)
    }

    fn seal_offer_with_nonce(
        &self,
        offer: &LinkOffer,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Vec<u8>, LinkError> {
        let sealed = RustCrypto::default()
            .aead_encrypt(
                AeadType::Aes128Gcm,
                &self.key,
                &offer.to_bytes(),
                nonce,
                &self.offer_aad(),
            )
            .map_err(crypto)?;
        Ok([&[VERSION][..], nonce, &sealed].concat())
    }

    /// Opens a sealed offer; [`LinkError::WrongCode`] if it does not open
    /// under this code's key.
    pub fn open_offer(&self, sealed: &[u8]) -> Result<LinkOffer, LinkError> {
        let (version, rest) = sealed.split_first().ok_or(LinkError::Malformed("offer"))?;
        if *version != VERSION {
            return Err(LinkError::Version("offer", *version));
        }
        if rest.len() < NONCE_LEN {
            return Err(LinkError::Malformed("offer"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let plain = RustCrypto::default()
            .aead_decrypt(
                AeadType::Aes128Gcm,
                &self.key,
                ciphertext,
                nonce,
                &self.offer_aad(),
            )
            .map_err(|_| LinkError::WrongCode)?;
        LinkOffer::from_bytes(&plain)
    }
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    // Every field is short: names by their rules, keys of 32 bytes, an
    // identity key's serialised form of about a hundred.
    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
    out.extend_from_slice(field);
}

/// Reads u16-length-prefixed fields in order.
struct Reader<'a>(&'a [u8], &'static str);

impl<'a> Reader<'a> {
    fn field(&mut self) -> Result<&'a [u8], LinkError> {
        let bad = LinkError::Malformed(self.1);
        let (len, rest) = self.0.split_first_chunk::<2>().ok_or(bad.clone())?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(bad);
        }
        let (field, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(field)
    }

    fn version(&mut self) -> Result<(), LinkError> {
        let (version, rest) = self.0.split_first().ok_or(LinkError::Malformed(self.1))?;
        if *version != VERSION {
            return Err(LinkError::Version(self.1, *version));
        }
        self.0 = rest;
        Ok(())
    }
}

/// What the new device offers: who it is, the MLS signature key it asks to
/// have certified, and a one-time HPKE key to seal the answer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOffer {
    pub client: ClientId,
    pub signature_key: Vec<u8>,
    pub hpke_key: Vec<u8>,
}

impl LinkOffer {
    /// `1`, then user, device, signature key and HPKE key, each a u16
    /// big-endian length and its bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put(&mut out, self.client.user().as_bytes());
        put(&mut out, self.client.device().as_bytes());
        put(&mut out, &self.signature_key);
        put(&mut out, &self.hpke_key);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LinkError> {
        let mut reader = Reader(bytes, "offer");
        reader.version()?;
        let text = |field: &[u8]| {
            String::from_utf8(field.to_vec()).map_err(|_| LinkError::Malformed("offer"))
        };
        let user = text(reader.field()?)?;
        let device = text(reader.field()?)?;
        let client = ClientId::new(user, device).map_err(|_| LinkError::Malformed("offer"))?;
        Ok(Self {
            client,
            signature_key: reader.field()?.to_vec(),
            hpke_key: reader.field()?.to_vec(),
        })
    }
}

/// The new device's one-time HPKE key pair, kept in memory while it waits
/// for the answer.
pub fn answer_key_pair() -> Result<HpkeKeyPair, LinkError> {
    let crypto_ = RustCrypto::default();
    let ikm = crypto_.random_vec(32).map_err(crypto)?;
    crypto_.derive_hpke_keypair(HPKE, &ikm).map_err(crypto)
}

/// What the approving device hands the new one: the user's identity key
/// (secret, so every device can approve and revoke) and the new device's
/// certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkAnswer {
    pub identity_secret: Vec<u8>,
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for LinkAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkAnswer(..)")
    }
}

impl LinkAnswer {
    /// `1`, then the identity secret and the certificate (u16 length,
    /// bytes each). Readers ignore what follows: a later answer may append
    /// optional fields (the key of a history archive) without a new version.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put(&mut out, &self.identity_secret);
        put(&mut out, &self.certificate);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LinkError> {
        let mut reader = Reader(bytes, "answer");
        reader.version()?;
        Ok(Self {
            identity_secret: reader.field()?.to_vec(),
            certificate: reader.field()?.to_vec(),
        })
    }

    /// `1 || u16 length || HPKE enc || ciphertext`: HPKE base mode to the
    /// offer's key, info "confide.v1 link answer", aad the link id.
    pub fn seal(&self, offer: &LinkOffer, link_id: &[u8]) -> Result<Vec<u8>, LinkError> {
        let sealed = RustCrypto::default()
            .hpke_seal(
                HPKE,
                &offer.hpke_key,
                ANSWER_INFO,
                link_id,
                &self.to_bytes(),
            )
            .map_err(crypto)?;
        let mut out = vec![VERSION];
        put(&mut out, sealed.kem_output.as_slice());
        out.extend_from_slice(sealed.ciphertext.as_slice());
        Ok(out)
    }

    pub fn open(sealed: &[u8], private_key: &[u8], link_id: &[u8]) -> Result<Self, LinkError> {
        let mut reader = Reader(sealed, "answer");
        reader.version()?;
        let kem_output = reader.field()?.to_vec();
        let input = HpkeCiphertext {
            kem_output: kem_output.into(),
            ciphertext: reader.0.to_vec().into(),
        };
        let plain = RustCrypto::default()
            .hpke_open(HPKE, &input, private_key, ANSWER_INFO, link_id)
            .map_err(|_| LinkError::BadAnswer)?;
        Self::from_bytes(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> LinkCode {
        LinkCode::from_random(std::array::from_fn(|i| i as u8 * 7))
    }

    fn offer() -> LinkOffer {
        LinkOffer {
            client: ClientId::new("alice", "phone").expect("an id"),
            signature_key: vec![0x11; 32],
            hpke_key: vec![0x22; 32],
        }
    }

    /// Checked with Python (stdlib hmac/hashlib, `cryptography` for
    /// AES-GCM):
    /// ```python
    /// import hmac, hashlib
    /// from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    /// A = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    /// code = bytes(A[(i * 7) & 31] for i in range(12))
    /// prk = hmac.new(b"confide.v1 link", code, hashlib.sha256).digest()
    /// exp = lambda info, n: hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:n]
    /// f = lambda b: len(b).to_bytes(2, "big") + b
    /// offer = b"\x01" + f(b"alice") + f(b"phone") + f(b"\x11" * 32) + f(b"\x22" * 32)
    /// link_id = exp(b"confide.v1 link id", 16); key = exp(b"confide.v1 link key", 16)
    /// sas = int.from_bytes(exp(b"confide.v1 link sas" + offer, 8), "big") % 10**6
    /// sealed = b"\x01" + bytes(12) + AESGCM(key).encrypt(bytes(12), offer, b"confide.v1 link offer" + link_id)
    /// print(code, link_id.hex(), f"{sas:06}", hashlib.sha256(sealed).hexdigest())
    /// ```
    #[test]
    fn the_code_the_link_id_the_sas_and_the_sealed_offer_match_the_test_vectors() {
        let code = code();
        assert_eq!(code.as_str(), "AHQX6DLT29GP");
        assert_eq!(code.display(), "AHQX-6DLT-29GP");
        let keys = code.keys().expect("keys");
        assert_eq!(
            hex::encode(&keys.link_id),
            "77a9e56a3f3c5e6b5d7abb9d78f64924"
        );
        assert_eq!(keys.sas(&offer()).expect("a SAS"), "222566");
        let sealed = keys
            .seal_offer_with_nonce(&offer(), &[0; NONCE_LEN])
            .expect("sealed");
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&sealed)),
            "74d26f423e0dc45c2a41f88759c17ce61c976ffe9c7e0a39834f8e116983aec1"
        );
    }

    #[test]
    fn a_code_is_read_in_any_case_with_or_without_dashes_and_from_its_uri() {
        let code = code();
        assert_eq!(LinkCode::parse("ahqx-6dlt-29gp").expect("a code"), code);
        assert_eq!(LinkCode::parse(" AHQX 6DLT 29GP ").expect("a code"), code);
        let (user, parsed) = parse_code_or_uri(&uri("alice", &code)).expect("a URI");
        assert_eq!((user.as_deref(), parsed), (Some("alice"), code.clone()));
        assert_eq!(
            parse_code_or_uri("AHQX6DLT29GP").expect("a code"),
            (None, code)
        );
        for bad in ["AHQX-6DLT-29G", "AHQX-6DLT-29G0", "OHQX-6DLT-29GP", ""] {
            assert_eq!(LinkCode::parse(bad), Err(LinkError::BadCode), "{bad}");
        }
        assert_eq!(
            parse_code_or_uri("confide://link/AHQX6DLT29GP"),
            Err(LinkError::BadUri)
        );
    }

    #[test]
    fn generated_codes_have_twelve_symbols_and_differ() {
        let a = LinkCode::generate().expect("a code");
        let b = LinkCode::generate().expect("a code");
        assert_eq!(LinkCode::parse(&a.display()).expect("parses"), a);
        assert_ne!(a, b);
    }

    #[test]
    fn an_offer_opens_only_with_its_code() {
        let keys = code().keys().expect("keys");
        let sealed = keys.seal_offer(&offer()).expect("sealed");
        assert_eq!(keys.open_offer(&sealed).expect("opens"), offer());
        let other = LinkCode::parse("BBBB-BBBB-BBBB")
            .expect("a code")
            .keys()
            .expect("keys");
        assert_eq!(other.open_offer(&sealed), Err(LinkError::WrongCode));
        assert_eq!(keys.open_offer(&[]), Err(LinkError::Malformed("offer")));
    }

    #[test]
    fn a_changed_offer_changes_the_sas() {
        let keys = code().keys().expect("keys");
        let mut swapped = offer();
        swapped.signature_key = vec![0x33; 32];
        assert_ne!(
            keys.sas(&offer()).expect("a SAS"),
            keys.sas(&swapped).expect("a SAS")
        );
    }

    #[test]
    fn an_answer_opens_only_with_the_offers_private_key_and_ignores_later_fields() {
        let pair = answer_key_pair().expect("a key pair");
        let offer = LinkOffer {
            hpke_key: pair.public.clone(),
            ..offer()
        };
        let answer = LinkAnswer {
            identity_secret: b"secret".to_vec(),
            certificate: vec![7; 96],
        };
        let sealed = answer.seal(&offer, b"link").expect("sealed");
        let opened = LinkAnswer::open(&sealed, pair.private.as_ref(), b"link").expect("opens");
        assert_eq!(opened, answer);
        let other = answer_key_pair().expect("a key pair");
        assert_eq!(
            LinkAnswer::open(&sealed, other.private.as_ref(), b"link"),
            Err(LinkError::BadAnswer)
        );
        assert_eq!(
            LinkAnswer::open(&sealed, pair.private.as_ref(), b"another link"),
            Err(LinkError::BadAnswer)
        );
        let later = [answer.to_bytes(), vec![0, 3, 1, 2, 3]].concat();
        assert_eq!(LinkAnswer::from_bytes(&later).expect("reads"), answer);
    }
}
