//! The callers each load run drives: echo calls with a random payload, and
//! `SendMessageRequest`s carrying messages encrypted before the clock
//! started, each with its own idempotency key and its sender's token.

use bytes::Bytes;
use confide_client::Client;
use confide_proto::bench::v1::EchoMessage;
use confide_proto::bench::v1::echo_service_client::EchoServiceClient;
use confide_proto::v1;
use confide_proto::v1::group_service_client::GroupServiceClient;
use rand::RngCore;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::load::{self, CallFuture};
use super::{IngressError, Options};

pub fn echo_callers(channels: &[Channel], options: &Options) -> Vec<impl load::Caller> {
    (0..options.concurrency)
        .map(|index| {
            let client = EchoServiceClient::new(channels[index % channels.len()].clone());
            let mut payload = vec![0u8; options.message_size];
            rand::rng().fill_bytes(&mut payload);
            let payload = Bytes::from(payload);
            move || -> Option<CallFuture> {
                let mut client = client.clone();
                let request = EchoMessage {
                    payload: payload.clone(),
                };
                Some(Box::pin(
                    async move { client.echo(request).await.map(|_| None) },
                ))
            }
        })
        .collect()
}

/// What one caller sends to the DS: pre-encrypted messages for one group,
/// as its sender.
pub struct Sending {
    pub group_id: Bytes,
    pub token: AsciiMetadataValue,
    pub messages: Vec<Bytes>,
}

pub fn ds_callers(channels: &[Channel], sendings: Vec<Sending>) -> Vec<impl load::Caller> {
    sendings
        .into_iter()
        .enumerate()
        .map(|(index, sending)| {
            let client = GroupServiceClient::new(channels[index % channels.len()].clone());
            let Sending {
                group_id,
                token,
                messages,
            } = sending;
            let mut messages = messages.into_iter();
            move || -> Option<CallFuture> {
                let message = messages.next()?;
                let mut message_id = [0u8; 16];
                rand::rng().fill_bytes(&mut message_id);
                let mut request = tonic::Request::new(v1::SendMessageRequest {
                    group_id: group_id.clone(),
                    message_id: Bytes::copy_from_slice(&message_id),
                    message,
                });
                request
                    .metadata_mut()
                    .insert(confide_proto::AUTHORIZATION_HEADER, token.clone());
                let mut client = client.clone();
                Some(Box::pin(async move {
                    let response = client.send_message(request).await?;
                    Ok(Some(response.into_inner().seq))
                }))
            }
        })
        .collect()
}

/// The session token the client's calls carry.
pub fn token_of(client: &Client) -> Result<AsciiMetadataValue, IngressError> {
    client
        .api()
        .request(())
        .metadata()
        .get(confide_proto::AUTHORIZATION_HEADER)
        .cloned()
        .ok_or_else(|| IngressError::Invalid(format!("{} has no session", client.id())))
}

/// Splits `messages` into `parts` nearly equal runs.
pub fn split(messages: Vec<Bytes>, parts: usize) -> Vec<Vec<Bytes>> {
    let mut out: Vec<Vec<Bytes>> = (0..parts).map(|_| Vec::new()).collect();
    let per = messages.len().div_ceil(parts.max(1)).max(1);
    for (index, message) in messages.into_iter().enumerate() {
        out[index / per].push(message);
    }
    out
}

/// The mean length of `messages`; 0 for none.
pub fn mean_len<'a>(messages: impl Iterator<Item = &'a Bytes>) -> f64 {
    let (count, bytes) = messages.fold((0u64, 0u64), |(count, bytes), message| {
        (count + 1, bytes + message.len() as u64)
    });
    if count == 0 {
        0.0
    } else {
        bytes as f64 / count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_among_callers_in_order() {
        let messages: Vec<Bytes> = (0u8..7).map(|i| Bytes::from(vec![i])).collect();
        let parts = split(messages, 3);
        let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(lens, [3, 3, 1]);
        assert_eq!(parts[2][0], Bytes::from(vec![6]));
    }
}
