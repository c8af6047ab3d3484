//! What an application message carries inside its MLS ciphertext: the MIMI
//! content format (draft-ietf-mimi-content, its CDDL `mimiContent`), so the
//! type of a message, its sending time and its text travel encrypted, and the
//! delivery service sees none of them.
//!
//! A message is the CBOR array
//!
//! ```text
//! [ salt: bstr .size 16,          ; random per message
//!   replaces: null,               ; (edits: not yet)
//!   topicId: h'',                 ; (threads: not yet)
//!   expires: null,                ; (disappearing messages: not yet)
//!   inReplyTo: null / bstr,       ; room for replies
//!   mimiExtensions: { "confide.sent": uint },   ; the sender's clock, ms since 1970
//!   nestedPart: [ disposition, language: "", cardinality: 1 (single),
//!                 contentType: tstr, content: bstr ] ]
//! ```
//!
//! with these parts ([`Body`]):
//!
//! | body | disposition | contentType | content |
//! |---|---|---|---|
//! | [`Body::Text`] | render (1) | `text/plain;charset=utf-8` | the UTF-8 text |
//! | [`Body::Bytes`] | render (1) | `application/octet-stream` | the bytes |
//! | [`Body::GroupProfile`] | profile (3) | [`GROUP_PROFILE_TYPE`] | CBOR map `{"name": tstr, ? "topic": tstr}` |
//!
//! A group's name and topic are a `GroupProfile` message that any member
//! sends: the latest one in the group's order names the group. A part of
//! another type or disposition decodes as [`Body::Other`] (reactions,
//! attachments: a later version), so an older client shows that it got
//! something it cannot show rather than failing. [`Content::to_bytes`] is
//! deterministic: the test vector below pins its bytes.

use ciborium::Value;

/// The content type of a group's name and topic.
pub const GROUP_PROFILE_TYPE: &str = "application/vnd.confide.group-profile+cbor";
const TEXT_TYPE: &str = "text/plain;charset=utf-8";
const BYTES_TYPE: &str = "application/octet-stream";
/// The extension holding the sender's clock when it sent the message.
const SENT_EXTENSION: &str = "confide.sent";
const DISPOSITION_RENDER: u64 = 1;
const DISPOSITION_PROFILE: u64 = 3;
const CARDINALITY_SINGLE: u64 = 1;
/// CBOR nesting deeper than this is refused (a message nests 3 deep).
const RECURSION_LIMIT: usize = 16;
/// The longest group name and topic, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_TOPIC_BYTES: usize = 1024;

/// One application message's content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Content {
    /// Random per message, so two equal messages never have equal bytes.
    pub salt: [u8; 16],
    /// When the sender sent it, by the sender's clock (ms since 1970):
    /// another member's claim, to show, never to order by.
    pub sent_at_ms: Option<u64>,
    /// The message this one answers (MIMI MessageId), if any.
    pub in_reply_to: Option<Vec<u8>>,
    pub body: Body,
}

/// What a message is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Body {
    Text(String),
    Bytes(Vec<u8>),
    GroupProfile(GroupProfile),
    /// A part this version does not know how to show.
    Other {
        disposition: u64,
        content_type: String,
        content: Vec<u8>,
    },
}

impl Body {
    /// Text if `payload` is UTF-8, bytes otherwise.
    pub fn from_payload(payload: &[u8]) -> Self {
        match std::str::from_utf8(payload) {
            Ok(text) => Body::Text(text.to_owned()),
            Err(_) => Body::Bytes(payload.to_vec()),
        }
    }
}

/// A group's name and topic, as a member set them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupProfile {
    pub name: String,
    pub topic: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    #[error("not MIMI content: {0}")]
    Malformed(String),
    #[error("a group name is 1 to {MAX_NAME_BYTES} bytes and a topic at most {MAX_TOPIC_BYTES}")]
    ProfileTooLong,
}

fn malformed(what: impl Into<String>) -> ContentError {
    ContentError::Malformed(what.into())
}

impl GroupProfile {
    /// A profile within the limits every client accepts; a name is not
    /// empty.
    pub fn new(name: &str, topic: Option<&str>) -> Result<Self, ContentError> {
        let profile = Self {
            name: name.to_owned(),
            topic: topic.map(str::to_owned),
        };
        profile.check()?;
        Ok(profile)
    }

    fn check(&self) -> Result<(), ContentError> {
        let name_ok = !self.name.trim().is_empty() && self.name.len() <= MAX_NAME_BYTES;
        let topic_ok = self
            .topic
            .as_ref()
            .is_none_or(|t| t.len() <= MAX_TOPIC_BYTES);
        match name_ok && topic_ok {
            true => Ok(()),
            false => Err(ContentError::ProfileTooLong),
        }
    }

    fn to_cbor(&self) -> Vec<u8> {
        let mut map = vec![(Value::from("name"), Value::from(self.name.as_str()))];
        if let Some(topic) = &self.topic {
            map.push((Value::from("topic"), Value::from(topic.as_str())));
        }
        encode(&Value::Map(map))
    }

    fn from_cbor(bytes: &[u8]) -> Result<Self, ContentError> {
        let Value::Map(entries) = decode(bytes)? else {
            return Err(malformed("a group profile is a map"));
        };
        let text = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v.as_text().map(str::to_owned))
        };
        let name = text("name")
            .flatten()
            .ok_or_else(|| malformed("a group profile has a text name"))?;
        let topic = match text("topic") {
            None => None,
            Some(Some(topic)) => Some(topic),
            Some(None) => return Err(malformed("a group profile's topic is text")),
        };
        let profile = Self { name, topic };
        profile.check()?;
        Ok(profile)
    }
}

fn encode(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(value, &mut bytes).expect("writing CBOR to memory");
    bytes
}

fn decode(bytes: &[u8]) -> Result<Value, ContentError> {
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, RECURSION_LIMIT)
        .map_err(|e| malformed(e.to_string()))?;
    match reader.is_empty() {
        true => Ok(value),
        false => Err(malformed("bytes after the content")),
    }
}

impl Content {
    /// A new message with a fresh salt.
    pub fn new(body: Body, sent_at_ms: u64) -> Self {
        let mut salt = [0u8; 16];
        rand_salt(&mut salt);
        Self {
            salt,
            sent_at_ms: Some(sent_at_ms),
            in_reply_to: None,
            body,
        }
    }

    /// A text message, or bytes that are not UTF-8 as `application/octet-stream`.
    pub fn from_payload(payload: &[u8], sent_at_ms: u64) -> Self {
        Self::new(Body::from_payload(payload), sent_at_ms)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let (disposition, content_type, content) = match &self.body {
            Body::Text(text) => (DISPOSITION_RENDER, TEXT_TYPE, text.as_bytes().to_vec()),
            Body::Bytes(bytes) => (DISPOSITION_RENDER, BYTES_TYPE, bytes.clone()),
            Body::GroupProfile(profile) => {
                (DISPOSITION_PROFILE, GROUP_PROFILE_TYPE, profile.to_cbor())
            }
            Body::Other {
                disposition,
                content_type,
                content,
            } => (*disposition, content_type.as_str(), content.clone()),
        };
        let extensions = match self.sent_at_ms {
            Some(at) => vec![(Value::from(SENT_EXTENSION), Value::from(at))],
            None => Vec::new(),
        };
        let optional_bytes = |bytes: &Option<Vec<u8>>| match bytes {
            Some(bytes) => Value::Bytes(bytes.clone()),
            None => Value::Null,
        };
        encode(&Value::Array(vec![
            Value::Bytes(self.salt.to_vec()),
            Value::Null,
            Value::Bytes(Vec::new()),
            Value::Null,
            optional_bytes(&self.in_reply_to),
            Value::Map(extensions),
            Value::Array(vec![
                Value::from(disposition),
                Value::from(""),
                Value::from(CARDINALITY_SINGLE),
                Value::from(content_type),
                Value::Bytes(content),
            ]),
        ]))
    }

    /// Reads a message another member sent; anything that is not MIMI
    /// content with one part is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ContentError> {
        let Value::Array(fields) = decode(bytes)? else {
            return Err(malformed("the content is an array"));
        };
        let [
            salt,
            _replaces,
            _topic,
            _expires,
            in_reply_to,
            extensions,
            part,
        ] = <[Value; 7]>::try_from(fields).map_err(|_| malformed("the content has 7 fields"))?;
        let salt: [u8; 16] = salt
            .into_bytes()
            .ok()
            .and_then(|salt| salt.try_into().ok())
            .ok_or_else(|| malformed("the salt is 16 bytes"))?;
        let in_reply_to = match in_reply_to {
            Value::Null => None,
            Value::Bytes(id) => Some(id),
            _ => return Err(malformed("inReplyTo is a message id or null")),
        };
        let Value::Map(extensions) = extensions else {
            return Err(malformed("the extensions are a map"));
        };
        let sent_at_ms = extensions
            .iter()
            .find(|(key, _)| key.as_text() == Some(SENT_EXTENSION))
            .and_then(|(_, value)| value.as_integer())
            .and_then(|at| u64::try_from(at).ok());
        let Value::Array(part) = part else {
            return Err(malformed("the part is an array"));
        };
        let [disposition, _language, cardinality, content_type, content] =
            <[Value; 5]>::try_from(part)
                .map_err(|_| malformed("the part is a single part with 5 fields"))?;
        let number = |value: &Value| value.as_integer().and_then(|n| u64::try_from(n).ok());
        if number(&cardinality) != Some(CARDINALITY_SINGLE) {
            return Err(malformed("the part is a single part"));
        }
        let disposition = number(&disposition).ok_or_else(|| malformed("the disposition"))?;
        let content_type = content_type
            .into_text()
            .map_err(|_| malformed("the content type is text"))?;
        let content = content
            .into_bytes()
            .map_err(|_| malformed("the content is bytes"))?;
        let body = body_of(disposition, content_type, content)?;
        Ok(Self {
            salt,
            sent_at_ms,
            in_reply_to,
            body,
        })
    }
}

fn body_of(disposition: u64, content_type: String, content: Vec<u8>) -> Result<Body, ContentError> {
    let essence = content_type.to_ascii_lowercase().replace(' ', "");
    Ok(match (disposition, essence.as_str()) {
        (DISPOSITION_RENDER, "text/plain" | TEXT_TYPE) => match String::from_utf8(content) {
            Ok(text) => Body::Text(text),
            Err(_) => return Err(malformed("a text part is UTF-8")),
        },
        (DISPOSITION_RENDER, BYTES_TYPE) => Body::Bytes(content),
        (DISPOSITION_PROFILE, GROUP_PROFILE_TYPE) => {
            Body::GroupProfile(GroupProfile::from_cbor(&content)?)
        }
        _ => Body::Other {
            disposition,
            content_type,
            content,
        },
    })
}

fn rand_salt(salt: &mut [u8; 16]) {
    use openmls_traits::random::OpenMlsRand;
    let bytes: [u8; 16] = openmls_rust_crypto::RustCrypto::default()
        .random_array()
        .expect("the system's random source");
    *salt = bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(body: Body) -> Content {
        Content {
            salt: [7; 16],
            sent_at_ms: Some(1_764_000_000_000),
            in_reply_to: None,
            body,
        }
    }

    /// Another implementation must produce these bytes for this message.
    #[test]
    fn a_text_message_encodes_to_the_test_vector() {
        let bytes = fixed(Body::Text("hi".into())).to_bytes();
        let expected = [
            "87",                                                   // array(7)
            "5007070707070707070707070707070707",                   // salt: bytes(16)
            "f6",                                                   // replaces: null
            "40",                                                   // topicId: h''
            "f6",                                                   // expires: null
            "f6",                                                   // inReplyTo: null
            "a1",                                                   // extensions: map(1)
            "6c636f6e666964652e73656e74",                           //   "confide.sent"
            "1b0000019ab697e800",                                   //   1764000000000
            "85",                                                   // nestedPart: array(5)
            "01",                                                   //   disposition: render
            "60",                                                   //   language: ""
            "01",                                                   //   cardinality: single
            "7818746578742f706c61696e3b636861727365743d7574662d38", // "text/plain;charset=utf-8"
            "426869",                                               //   content: h'6869' ("hi")
        ]
        .concat();
        assert_eq!(hex::encode(&bytes), expected);
    }

    #[test]
    fn every_body_reads_back_as_it_was_written() {
        for body in [
            Body::Text("héllo\n\u{1b}[2J".into()),
            Body::Bytes(vec![0xff, 0, 1]),
            Body::GroupProfile(GroupProfile::new("Ops", Some("on call")).unwrap()),
            Body::GroupProfile(GroupProfile::new("Ops", None).unwrap()),
            Body::Other {
                disposition: 2,
                content_type: "text/plain;charset=utf-8".into(),
                content: b"+1".to_vec(),
            },
        ] {
            let content = Content {
                in_reply_to: Some(vec![9; 32]),
                ..fixed(body)
            };
            assert_eq!(Content::from_bytes(&content.to_bytes()), Ok(content));
        }
    }

    #[test]
    fn a_fresh_message_gets_a_fresh_salt() {
        let a = Content::from_payload(b"same", 1);
        let b = Content::from_payload(b"same", 1);
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.body, Body::Text("same".into()));
        assert_eq!(
            Content::from_payload(&[0xff], 1).body,
            Body::Bytes(vec![0xff])
        );
    }

    #[test]
    fn what_is_not_mimi_content_is_refused_with_a_reason() {
        let good = fixed(Body::Text("hi".into())).to_bytes();
        for bad in [
            b"plain text from another client".to_vec(),
            Vec::new(),
            good[..good.len() - 1].to_vec(),
            [good.as_slice(), &[0]].concat(),
            // 200 nested arrays.
            [vec![0x81; 200], vec![0x00]].concat(),
        ] {
            assert!(
                matches!(Content::from_bytes(&bad), Err(ContentError::Malformed(_))),
                "{}",
                hex::encode(&bad)
            );
        }
    }

    #[test]
    fn a_group_profile_outside_the_limits_is_refused() {
        assert_eq!(
            GroupProfile::new(" ", None),
            Err(ContentError::ProfileTooLong)
        );
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            GroupProfile::new(&long, None),
            Err(ContentError::ProfileTooLong)
        );
        let mut content = fixed(Body::GroupProfile(GroupProfile {
            name: long,
            topic: None,
        }));
        content.in_reply_to = None;
        assert!(Content::from_bytes(&content.to_bytes()).is_err());
    }
}
