//! What members compare out of band to know the delivery service has not
//! slipped anyone in or split them apart: a key's fingerprint, a group's
//! safety code for its current epoch, and the safety number of two users'
//! identity keys.

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
    digits(&[block(0), block(1)].concat())
}

/// The safety number two users compare to know each holds the other's real
/// identity key (and so that every device either sees is certified by the
/// user it names): 12 groups of 5 digits, the same on both sides.
///
/// The two (user, identity key) pairs are sorted by user (then key), so
/// the number does not depend on who computes it. Each of two SHA-256
/// blocks (counter 0 and 1) covers the label, the counter and, for each
/// pair in order, the user's length (u64, big-endian) and UTF-8 bytes and
/// the key's length (u64, big-endian) and bytes; digits as for
/// [`safety_code`].
pub fn contact_safety_number(
    user_a: &str,
    identity_key_a: &[u8],
    user_b: &str,
    identity_key_b: &[u8],
) -> String {
    let mut pairs = [
        (user_a.as_bytes(), identity_key_a),
        (user_b.as_bytes(), identity_key_b),
    ];
    pairs.sort();
    let block = |counter: u8| {
        let mut hash = Sha256::new()
            .chain_update(b"confide contact safety number v1")
            .chain_update([counter]);
        for (user, key) in pairs {
            hash.update((user.len() as u64).to_be_bytes());
            hash.update(user);
            hash.update((key.len() as u64).to_be_bytes());
            hash.update(key);
        }
        hash.finalize()
    };
    digits(&[block(0), block(1)].concat())
}

/// 64 bytes read as twelve 5-byte big-endian numbers, each modulo 100,000.
fn digits(bytes: &[u8]) -> String {
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

    /// The test vector another implementation must reproduce (computed with
    /// Python's hashlib from the definition above).
    #[test]
    fn a_contact_safety_number_is_the_same_from_either_side_and_changes_with_a_key() {
        let alice: Vec<u8> = (0..32).collect();
        let bob: Vec<u8> = (32..64).collect();
        let number = contact_safety_number("alice", &alice, "bob", &bob);
        assert_eq!(
            number,
            "12677 48690 01726 73025 51171 42211 11398 00445 41356 40936 88459 02905"
        );
        assert_eq!(contact_safety_number("bob", &bob, "alice", &alice), number);
        assert_ne!(
            contact_safety_number("alice", &alice, "bob", &[9u8; 32]),
            number
        );
    }
}
