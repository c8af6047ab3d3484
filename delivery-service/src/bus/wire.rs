//! What a bus message says, as text: the sending replica's id on the first
//! line, then one notice per line, ids only (never content):
//!
//! ```text
//! <replica id>
//! g:<group id in hex>:<seq>          an entry appended to a group's log
//! i:<user>:<device>:<seq>            an entry pushed to a client's inbox
//! s:<user>:<device>:<token hash hex> a session was revoked
//! r:<user>:<device>                  a client was deprovisioned
//! k:<user>:<device>                  a client registered a new signature key
//! l                                  the sender may have lost notices: re-read
//! ```
//!
//! User and device names are `[A-Za-z0-9._-]`, so `:` separates safely.

use super::{Appended, Notice};
use crate::domain::{ClientId, GroupId};
use crate::hub::Ending;

/// One message carrying `notices`, sent by `replica`.
pub(super) fn encode<'a>(replica: &str, notices: impl IntoIterator<Item = &'a Notice>) -> String {
    let mut text = String::from(replica);
    for notice in notices {
        text.push('\n');
        text.push_str(&line(notice));
    }
    text
}

fn line(notice: &Notice) -> String {
    match notice {
        Notice::Appended(Appended::Group { group_id, seq }) => {
            format!("g:{}:{seq}", hex::encode(group_id.as_slice()))
        }
        Notice::Appended(Appended::Inbox { client, seq }) => {
            format!("i:{}:{}:{seq}", client.user(), client.device())
        }
        Notice::Ended(Ending::SessionRevoked { client, session }) => format!(
            "s:{}:{}:{}",
            client.user(),
            client.device(),
            hex::encode(session)
        ),
        Notice::Ended(Ending::ClientRemoved { client }) => {
            format!("r:{}:{}", client.user(), client.device())
        }
        Notice::Ended(Ending::ClientRekeyed { client }) => {
            format!("k:{}:{}", client.user(), client.device())
        }
        Notice::Lagged => "l".to_owned(),
    }
}

/// The replica that sent a message and its lines, each parsed (`None`: not a
/// notice of ours); `None` if the message is not text.
pub(super) fn decode(payload: &[u8]) -> Option<(&str, impl Iterator<Item = Option<Notice>>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut lines = text.split('\n');
    let origin = lines.next()?;
    Some((origin, lines.map(parse)))
}

/// `user:device` as a client id.
fn parse_client(key: &str) -> Option<ClientId> {
    let (user, device) = key.split_once(':')?;
    ClientId::new(user, device).ok()
}

/// A sequence number: decimal digits only, at least 1.
fn parse_seq(seq: &str) -> Option<u64> {
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok().filter(|&seq| seq >= 1)
}

fn parse(line: &str) -> Option<Notice> {
    if line == "l" {
        return Some(Notice::Lagged);
    }
    let (kind, rest) = line.split_once(':')?;
    Some(match kind {
        "g" => {
            let (group, seq) = rest.rsplit_once(':')?;
            Notice::Appended(Appended::Group {
                group_id: GroupId::new(hex::decode(group).ok()?).ok()?,
                seq: parse_seq(seq)?,
            })
        }
        "i" => {
            let (client, seq) = rest.rsplit_once(':')?;
            Notice::Appended(Appended::Inbox {
                client: parse_client(client)?,
                seq: parse_seq(seq)?,
            })
        }
        "s" => {
            let (client, session) = rest.rsplit_once(':')?;
            Notice::Ended(Ending::SessionRevoked {
                client: parse_client(client)?,
                session: hex::decode(session).ok()?.try_into().ok()?,
            })
        }
        "r" => Notice::Ended(Ending::ClientRemoved {
            client: parse_client(rest)?,
        }),
        "k" => Notice::Ended(Ending::ClientRekeyed {
            client: parse_client(rest)?,
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(payload: &str) -> (String, Vec<Option<Notice>>) {
        let (origin, notices) = decode(payload.as_bytes()).expect("a text message");
        (origin.to_owned(), notices.collect())
    }

    #[test]
    fn every_notice_reads_back_as_it_was_sent() {
        let alice = ClientId::new("alice.b_c-d", "phone-2").unwrap();
        let notices = [
            Notice::Appended(Appended::Group {
                group_id: GroupId::new(*b"\x00\xffg").unwrap(),
                seq: 12,
            }),
            Notice::Appended(Appended::Inbox {
                client: alice.clone(),
                seq: 7,
            }),
            Notice::Ended(Ending::SessionRevoked {
                client: alice.clone(),
                session: [0xab; 32],
            }),
            Notice::Ended(Ending::ClientRemoved {
                client: alice.clone(),
            }),
            Notice::Ended(Ending::ClientRekeyed { client: alice }),
            Notice::Lagged,
        ];
        let payload = encode("3f2c9a1e-0000-4000-8000-000000000000", &notices);
        assert!(payload.contains("\ng:00ff67:12\ni:alice.b_c-d:phone-2:7\n"));
        let (origin, read) = decoded(&payload);
        assert_eq!(origin, "3f2c9a1e-0000-4000-8000-000000000000");
        assert_eq!(read, notices.map(Some));
    }

    #[test]
    fn lines_that_name_no_notice_are_refused_alone() {
        for line in [
            "",
            "g",
            "g:00ff67",
            "x:00ff67:12",
            "g:0ff67:12",
            "g::12",
            "g:00ff67:0",
            "g:00ff67:-1",
            "g:00ff67:+1",
            "g:00ff67:",
            "g:00ff67:99999999999999999999",
            "i:alice:1",
            "i:alice:ph one:1",
            "i::phone:1",
            "i:a:b:c:1",
            "s:alice:phone:abcd",
            "s:alice:phone",
            "r:alice",
            "lagged",
        ] {
            let (_, read) = decoded(&format!("r1\n{line}\ng:00ff67:3"));
            assert_eq!(read.len(), 2, "{line:?}");
            assert_eq!(read[0], None, "{line:?}");
            assert!(read[1].is_some(), "{line:?}");
        }
        assert!(decode(b"r1\n\xff").is_none());
    }
}
