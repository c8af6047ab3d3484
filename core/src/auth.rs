//! Signing in: a client proves it holds its registered signature key by
//! signing a fresh challenge from the delivery service.

/// Length of a challenge the delivery service hands out.
pub const CHALLENGE_LEN: usize = 32;

/// Length of an Ed25519 signature public key, the only kind registered.
pub const SIGNATURE_KEY_LEN: usize = 32;

/// The label that starts every signed challenge, so a signature made for
/// signing in can never be taken for one over an MLS structure.
const CHALLENGE_LABEL: &[u8] = b"confide.v1 auth challenge";

/// The bytes a client signs (Ed25519, with its MLS signature key) to answer
/// an authentication challenge: the label, then the challenge.
pub fn challenge_signing_payload(challenge: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(CHALLENGE_LABEL.len() + challenge.len());
    payload.extend_from_slice(CHALLENGE_LABEL);
    payload.extend_from_slice(challenge);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector another implementation must reproduce.
    #[test]
    fn the_challenge_signing_payload_is_the_label_then_the_challenge() {
        let challenge: Vec<u8> = (0..CHALLENGE_LEN as u8).collect();
        assert_eq!(
            hex::encode(challenge_signing_payload(&challenge)),
            "636f6e666964652e76312061757468206368616c6c656e6765\
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
    }
}
