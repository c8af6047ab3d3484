//! Sending application messages through the outbox in the state file. A
//! message is kept there, with its idempotency key and its exact MLS bytes,
//! before it is first sent, and forgotten once the DS answered it (or refused
//! it for good). A send without a verdict (see [`crate::error::in_doubt`])
//! leaves it there; the next send, sync or live stream of this client sends
//! it again with the same key and bytes, so the DS stores it once (it answers
//! a retry with the original seq), even from a restarted process.

use confide_core::content::{Body, Content};
use confide_proto::v1;
use rand::RngCore;

use super::commit::{Change, removal_of_self_pending};
use super::history::new_content;
use super::{Client, MAX_COMMIT_ATTEMPTS, to_bytes};
use crate::error::{ClientError, ClientResult, in_doubt, mls, wrong_epoch};
use crate::store::Outgoing;

impl Client {
    /// Encrypts and sends an application message (as MIMI content: text if
    /// `payload` is UTF-8, bytes otherwise, with the time it was sent);
    /// returns its sequence number. If an earlier send of the same text to
    /// the same group is still unanswered, this is taken as its retry: that
    /// message goes again, with its id and bytes, and its original seq is
    /// returned.
    pub async fn send(&mut self, group_id: &[u8], payload: &[u8]) -> ClientResult<u64> {
        self.send_body(group_id, Body::from_payload(payload)).await
    }

    /// [`Client::send`] of any kind of content.
    pub(super) async fn send_body(&mut self, group_id: &[u8], body: Body) -> ClientResult<u64> {
        let unanswered = self
            .db
            .unanswered_outgoing(group_id)?
            .into_iter()
            .find(|outgoing| stored_body(&outgoing.body) == body);
        let message_id = match unanswered {
            Some(unanswered) => unanswered.message_id,
            None => {
                let mut message_id = vec![0u8; 16];
                rand::rng().fill_bytes(&mut message_id);
                message_id
            }
        };
        self.send_body_with_id(group_id, &message_id, body).await
    }

    /// Like [`Client::send`] with a caller-chosen idempotency key. Sending the
    /// same id and text again, unanswered or among the last answered
    /// messages, resends the bytes kept in the outbox and returns the
    /// original sequence number.
    pub async fn send_with_id(
        &mut self,
        group_id: &[u8],
        message_id: &[u8],
        payload: &[u8],
    ) -> ClientResult<u64> {
        self.send_body_with_id(group_id, message_id, Body::from_payload(payload))
            .await
    }

    async fn send_body_with_id(
        &mut self,
        group_id: &[u8],
        message_id: &[u8],
        body: Body,
    ) -> ClientResult<u64> {
        // Not in the epoch before a commit the group may have taken.
        self.settle_commit_in_doubt(group_id).await?;
        let place = match self.db.outgoing_by_id(group_id, message_id)? {
            Some(answered) if answered.answered && stored_body(&answered.body) == body => {
                // A retry of a message the DS answered: the same bytes again
                // get its original answer.
                let request = self.api.request(v1::SendMessageRequest {
                    group_id: group_id.to_vec().into(),
                    message_id: message_id.to_vec().into(),
                    message: answered.message.into(),
                });
                return Ok(self
                    .api
                    .groups()
                    .send_message(request)
                    .await?
                    .into_inner()
                    .seq);
            }
            Some(unanswered) if stored_body(&unanswered.body) == body => unanswered.id,
            Some(_) => {
                return Err(ClientError::Invalid(
                    "that message id is taken by another message".into(),
                ));
            }
            None => {
                self.commit_proposals_before_sending(group_id).await?;
                let content = new_content(body);
                let message = self.encrypt_message(group_id, &content)?;
                let epoch = self.epoch(group_id)?;
                self.db
                    .push_outgoing(group_id, message_id, &message, epoch, &content)?
            }
        };
        self.flush_outbox_through(Some(place))
            .await?
            .ok_or(ClientError::UnknownGroup)
    }

    /// openmls encrypts nothing while proposals wait in the group (a
    /// member's leaving, the DS's removal): they are committed first, by
    /// this device. A device whose own removal waits can send nothing more
    /// there ([`ClientError::RemovalPending`]).
    async fn commit_proposals_before_sending(&mut self, group_id: &[u8]) -> ClientResult<()> {
        let Some(group) = self.groups.get(group_id) else {
            return Err(ClientError::UnknownGroup);
        };
        if group.pending_proposals().next().is_none() {
            return Ok(());
        }
        if removal_of_self_pending(group) {
            return Err(ClientError::RemovalPending);
        }
        match self.commit(group_id, Change::PendingProposals).await {
            Ok(_) | Err(ClientError::NothingToCommit) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Encrypts `body` for the group's current epoch and returns the MLS
    /// PrivateMessage exactly as [`Client::send_with_id`] puts it in a
    /// `SendMessageRequest`, without sending it. Each call advances this
    /// member's sender ratchet, so each result is a distinct message; it stays
    /// sendable until the group is `max_epoch_lag` epochs further on. For a
    /// benchmark that keeps client crypto out of what it times
    /// (`confide-ingress`); messages sent this way are not recorded as the
    /// client's own, so the client would not recognise them in its log.
    pub fn encrypt_message(&mut self, group_id: &[u8], body: &[u8]) -> ClientResult<Vec<u8>> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ClientError::UnknownGroup)?;
        let message = group
            .create_message(&self.provider, &self.signer, body)
            .map_err(mls)?;
        to_bytes(message)
    }

    /// Sends every message still in the outbox, oldest first.
    pub(super) async fn flush_outbox(&mut self) -> ClientResult<()> {
        self.flush_outbox_through(None).await.map(|_| ())
    }

    /// Sends the outbox in order and returns the seq of the message at
    /// `wanted`. Stops at the first message without an answer (it and the
    /// later ones stay); one refused for good is dropped, with its error if
    /// it is the wanted one.
    async fn flush_outbox_through(&mut self, wanted: Option<i64>) -> ClientResult<Option<u64>> {
        let mut after = 0;
        let mut seq = None;
        while let Some(outgoing) = self.db.next_outgoing(after)? {
            after = outgoing.id;
            let place = outgoing.id;
            match self.deliver(outgoing).await {
                Ok(delivered) if Some(place) == wanted => seq = Some(delivered),
                Ok(_) => {}
                Err(error) if error.is_in_doubt() => return Err(error),
                Err(error) if Some(place) == wanted => return Err(error),
                Err(error) => {
                    tracing::warn!(client = %self.id, %error, "an unanswered message was refused when sent again");
                }
            }
        }
        Ok(seq)
    }

    /// Sends one message of the outbox until the DS gives a verdict. Stored
    /// bytes the DS refuses for their epoch (it never stored them: a retry
    /// finds its entry whatever the epoch) are encrypted again, under the
    /// same id, once this client has caught up.
    async fn deliver(&mut self, mut outgoing: Outgoing) -> ClientResult<u64> {
        if let Some(seq) = outgoing.seq {
            // Found in the log already (and applied as our own).
            self.record_own(&outgoing.group_id, seq, &outgoing.body)?;
            self.db.outgoing_answered(outgoing.id, seq)?;
            return Ok(seq);
        }
        let group_id = outgoing.group_id.clone();
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let request = self.api.request(v1::SendMessageRequest {
                group_id: group_id.clone().into(),
                message_id: outgoing.message_id.clone().into(),
                message: outgoing.message.clone().into(),
            });
            match self.api.groups().send_message(request).await {
                Ok(response) => {
                    let seq = response.into_inner().seq;
                    self.db.mark_own(&group_id, seq)?;
                    self.record_own(&group_id, seq, &outgoing.body)?;
                    self.db.outgoing_answered(outgoing.id, seq)?;
                    return Ok(seq);
                }
                Err(status) if wrong_epoch(&status).is_some() => {
                    self.catch_up_group(&group_id).await?;
                    self.settle_commit_in_doubt(&group_id).await?;
                    let message = match self.encrypt_message(&group_id, &outgoing.body) {
                        Ok(message) => message,
                        Err(error) => {
                            // No longer in the group: it cannot be sent.
                            self.db.outgoing_done(outgoing.id)?;
                            return Err(error);
                        }
                    };
                    let epoch = self.epoch(&group_id)?;
                    self.db.reencrypted(outgoing.id, &message, epoch)?;
                    outgoing.message = message;
                }
                Err(status) if in_doubt(&status) => return Err(status.into()),
                Err(status) => {
                    self.db.outgoing_done(outgoing.id)?;
                    return Err(status.into());
                }
            }
        }
        Err(ClientError::TooManyRetries(MAX_COMMIT_ATTEMPTS))
    }
}

/// What a message kept in the outbox says: its MIMI content's body (a
/// state file from before content was MIMI kept the bare payload).
fn stored_body(content: &[u8]) -> Body {
    Content::from_bytes(content)
        .map(|content| content.body)
        .unwrap_or_else(|_| Body::from_payload(content))
}
