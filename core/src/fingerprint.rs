//! What members compare out of band to know the delivery service has not
//! slipped anyone in or split them apart: a key's fingerprint, and a group's
//! safety code for its current epoch.

use sha2::{Digest, Sha256};

/// A signature key's fingerprint: the first 16 bytes of SHA-256 over a label
/// and the key, as eight groups of four hex digits.
pub fn fingerprint(signature_key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"confide key fingerprint v1")
        .chain_update(signature_key)
        .finalize();
    digest[..16]
        .chunks_exact(2)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A safety code for a group's epoch: 12 groups of 5 digits derived from the
/// epoch authenticator (RFC 9420 §8.7). Members in the same epoch of the same
/// group have the same code; a member the delivery service forked onto
/// another history, or a group it altered, has a different one. It changes
/// with every epoch.
///
/// Each of two SHA-256 blocks (counter 0 and 1) covers the label, the
/// counter, the group id's length (u64, big-endian) and bytes, the epoch
/// (u64, big-endian) and the authenticator; their 64 bytes, read as twelve
/// 5-byte big-endian numbers, give the groups, each modulo 100,000.
pub fn safety_code(group_id: &[u8], epoch: u64, epoch_authenticator: &[u8]) -> String {
    let block = |counter: u8| {
        Sha256::new()
            .chain_update(b"confide safety code v1")
            .chain_update([counter])
            .chain_update((group_id.len() as u64).to_be_bytes())
            .chain_update(group_id)
            .chain_update(epoch.to_be_bytes())
            .chain_update(epoch_authenticator)
            .finalize()
    };
    let bytes: Vec<u8> = [block(0), block(1)].concat();
    bytes
        .chunks_exact(5)
        .take(12)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector another implementation must reproduce.
    #[test]
    fn a_fingerprint_is_eight_groups_of_four_hex_digits_of_the_keys_labelled_hash() {
        let key: Vec<u8> = (0..32).collect();
        assert_eq!(fingerprint(&key), "5115 1f66 8be4 0db9 8075 4b1c 13ac 8bbb");
        assert_ne!(fingerprint(b"key a"), fingerprint(b"key b"));
    }

    /// The test vector another implementation must reproduce.
    #[test]
    fn a_safety_code_is_twelve_groups_of_five_digits_that_change_with_the_epoch() {
        let authenticator: Vec<u8> = (0..32).collect();
        assert_eq!(
            safety_code(b"group", 7, &authenticator),
            "61272 80805 61989 98702 64080 74760 96236 13358 02084 19714 18943 14328"
        );
        assert_ne!(
            safety_code(b"group", 7, &authenticator),
            safety_code(b"group", 8, &authenticator)
        );
    }
}
