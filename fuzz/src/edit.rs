//! Fuzz input for one field of client bytes: either raw bytes, or a list of
//! edits to a valid template (a real commit, GroupInfo, key package, …).
//!
//! Random bytes rarely get past TLS decoding, and a fuzzer starting from an
//! empty corpus never finds a validly signed MLS message on its own. Edits to
//! a real message reach the checks behind the parser (signatures, tree
//! hashes, the DS's own rules) from the first run, with no corpus on disk.
//! The empty input decodes to "the first template, unedited".

use arbitrary::Arbitrary;

#[derive(Arbitrary, Debug)]
pub enum Field {
    /// The template with these edits applied in order (none: the template).
    Template(Vec<Edit>),
    /// These bytes instead of the template.
    Raw(Vec<u8>),
}

/// One change to a byte string. Positions wrap around its length, so every
/// edit applies to any template.
#[derive(Arbitrary, Debug)]
pub enum Edit {
    FlipBit {
        at: u16,
        bit: u8,
    },
    Overwrite {
        at: u16,
        bytes: Vec<u8>,
    },
    Insert {
        at: u16,
        bytes: Vec<u8>,
    },
    Remove {
        at: u16,
        len: u16,
    },
    Truncate {
        at: u16,
    },
    /// A big-endian length prefix or varint-sized field made larger or
    /// smaller, the edit most likely to confuse a TLS decoder.
    AddToByte {
        at: u16,
        delta: i8,
    },
}

impl Field {
    pub fn build(&self, template: &[u8]) -> Vec<u8> {
        match self {
            Field::Raw(bytes) => bytes.clone(),
            Field::Template(edits) => {
                let mut bytes = template.to_vec();
                for edit in edits {
                    edit.apply(&mut bytes);
                }
                bytes
            }
        }
    }
}

impl Edit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        // A position in 0..=len; `inside` one in 0..len, if there is a byte.
        let at = |at: u16, len: usize| usize::from(at) % (len + 1);
        let inside = |at: u16, len: usize| (len > 0).then(|| usize::from(at) % len);
        match self {
            Edit::FlipBit { at: pos, bit } => {
                if let Some(i) = inside(*pos, bytes.len()) {
                    bytes[i] ^= 1 << (bit % 8);
                }
            }
            Edit::AddToByte { at: pos, delta } => {
                if let Some(i) = inside(*pos, bytes.len()) {
                    bytes[i] = bytes[i].wrapping_add_signed(*delta);
                }
            }
            Edit::Overwrite {
                at: pos,
                bytes: new,
            } => {
                let start = at(*pos, bytes.len());
                let end = (start + new.len()).min(bytes.len());
                bytes.splice(start..end, new.iter().copied());
            }
            Edit::Insert {
                at: pos,
                bytes: new,
            } => {
                let start = at(*pos, bytes.len());
                bytes.splice(start..start, new.iter().copied());
            }
            Edit::Remove { at: pos, len } => {
                let start = at(*pos, bytes.len());
                let end = (start + usize::from(*len)).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Truncate { at: pos } => {
                let len = at(*pos, bytes.len());
                bytes.truncate(len);
            }
        }
    }
}

/// Picks one of `items` by a fuzzed index.
pub fn pick<T>(items: &[T], index: u8) -> &T {
    &items[usize::from(index) % items.len()]
}
