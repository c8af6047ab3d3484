//! The plaintext of a simulated message: a header naming the group, the
//! sender and the sender's message number, then filler derived from them, so
//! a verifier can tell a message decrypted to exactly what was sent.

/// `confide-sim` magic, group, sender, number.
const MAGIC: &[u8; 4] = b"cfs1";
/// The smallest body: the header alone.
pub const MIN_BODY: usize = MAGIC.len() + 4 + 4 + 8;

/// What a message says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub group: u32,
    pub sender: u32,
    pub number: u64,
}

fn filler(header: &Header, index: usize) -> u8 {
    let mixed = header
        .number
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(header.sender) << 32 | u64::from(header.group))
        .wrapping_add(index as u64);
    (mixed ^ (mixed >> 29)) as u8
}

/// A body of `size` bytes (at least [`MIN_BODY`]).
pub fn encode(header: &Header, size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size.max(MIN_BODY));
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&header.group.to_be_bytes());
    body.extend_from_slice(&header.sender.to_be_bytes());
    body.extend_from_slice(&header.number.to_be_bytes());
    let start = body.len();
    body.extend((start..size).map(|index| filler(header, index)));
    body
}

/// The header of a body that is exactly what [`encode`] made of it and
/// `size` bytes long; `None` for anything else.
pub fn decode(body: &[u8], size: usize) -> Option<Header> {
    if body.len() != size.max(MIN_BODY) || !body.starts_with(MAGIC) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| body.get(range);
    let header = Header {
        group: u32::from_be_bytes(field(4..8)?.try_into().ok()?),
        sender: u32::from_be_bytes(field(8..12)?.try_into().ok()?),
        number: u64::from_be_bytes(field(12..20)?.try_into().ok()?),
    };
    body[MIN_BODY..]
        .iter()
        .enumerate()
        .all(|(offset, byte)| *byte == filler(&header, MIN_BODY + offset))
        .then_some(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_decodes_to_its_header_and_any_change_is_caught() {
        let header = Header {
            group: 7,
            sender: 42,
            number: 1234,
        };
        let body = encode(&header, 246);
        assert_eq!(body.len(), 246);
        assert_eq!(decode(&body, 246), Some(header));
        for index in [0, 5, 13, 100, 245] {
            let mut changed = body.clone();
            changed[index] ^= 1;
            assert_ne!(decode(&changed, 246), Some(header), "byte {index}");
        }
        assert_eq!(decode(&body[..245], 246), None);
    }
}
