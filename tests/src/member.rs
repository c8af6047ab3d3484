//! [`Member`]: a registered client that remembers what it observed, with the
//! scenario steps tests are written in.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use confide_client::{Client, ClientId, Event};
use tokio::time::Instant;

use crate::WAIT;

/// Pause between two polls of the DS while waiting for something to arrive.
const POLL: Duration = Duration::from_millis(20);

/// An application message as a member decrypted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub seq: u64,
    pub sender: ClientId,
    pub body: Vec<u8>,
}

/// A client and every event it observed, in order; an entry it cannot
/// process (`Event::Undecryptable`) or entries the DS skipped (`Event::Gap`)
/// fail the test, unless the member was made with [`Member::under_attack`].
/// Derefs to [`Client`], so `alice.send(..)`, `alice.self_update(..)` and
/// friends work directly.
pub struct Member {
    client: Client,
    events: Vec<Event>,
    /// Whether the DS is expected to misbehave, so that what the client
    /// reports about it is recorded for the test to check, not a failure.
    under_attack: bool,
}

impl Deref for Member {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Member {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Member {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            events: Vec::new(),
            under_attack: false,
        }
    }

    /// A member talking to a hostile DS: what its client reports about the
    /// DS's misbehaviour is recorded as events for the test to examine.
    pub fn under_attack(client: Client) -> Self {
        Self {
            under_attack: true,
            ..Self::new(client)
        }
    }

    /// Every event observed so far, in the order the client produced them.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Every application message of `group` decrypted so far, in order.
    pub fn messages(&self, group: &[u8]) -> Vec<Received> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Message {
                    group: g,
                    seq,
                    sender,
                    body,
                    ..
                } if g == group => Some(Received {
                    seq: *seq,
                    sender: sender.clone(),
                    body: body.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The bodies of [`Member::messages`], as text.
    pub fn bodies(&self, group: &[u8]) -> Vec<String> {
        self.messages(group)
            .into_iter()
            .map(|m| String::from_utf8(m.body).expect("UTF-8 bodies"))
            .collect()
    }

    /// Pulls everything pending from the DS once (`Client::sync`) and
    /// records it; returns the new events.
    pub async fn catch_up(&mut self) -> Vec<Event> {
        let new = self
            .client
            .sync()
            .await
            .unwrap_or_else(|e| panic!("{} could not sync: {e}", self.client.id()));
        self.record(new.iter().cloned());
        new
    }

    /// Records observed events. From an honest DS, an entry a member could
    /// not process or entries it never got mean it will not get any
    /// further, so that fails the test at once.
    fn record(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            if !self.under_attack
                && matches!(event, Event::Undecryptable { .. } | Event::Gap { .. })
            {
                panic!(
                    "{}: {event}; before it, it observed {:#?}",
                    self.client.id(),
                    self.events
                );
            }
            self.events.push(event);
        }
    }

    /// Polls the DS until `done` holds, failing the test after [`WAIT`].
    pub async fn wait_until(&mut self, what: &str, done: impl Fn(&Member) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.catch_up().await;
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} waited {WAIT:?} for {what}; it observed {:#?}",
                self.client.id(),
                self.events
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Creates a group, adds the users of `others` and waits until each has
    /// joined it; the group's id.
    pub async fn group_with(&mut self, others: &mut [&mut Member]) -> Vec<u8> {
        let group = self
            .client
            .create_group()
            .await
            .expect("creating the group");
        let users: Vec<String> = others
            .iter()
            .map(|other| other.client.id().user().to_string())
            .collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        self.client
            .add_users(&group, &users)
            .await
            .unwrap_or_else(|e| panic!("adding {users:?}: {e}"));
        for other in others {
            other.expect_joined(&group).await;
        }
        group
    }

    /// Waits until this member has joined `group` through a Welcome.
    pub async fn expect_joined(&mut self, group: &[u8]) {
        self.wait_until("joining the group", |m| {
            m.events
                .iter()
                .any(|e| matches!(e, Event::Joined { group: g, .. } if g == group))
        })
        .await;
    }

    /// Waits until this member is in `epoch` of `group`, and not past it.
    pub async fn expect_epoch(&mut self, group: &[u8], epoch: u64) {
        self.wait_until(&format!("epoch {epoch}"), |m| {
            m.client.epoch(group).is_ok_and(|e| e >= epoch)
        })
        .await;
        assert_eq!(
            self.client.epoch(group).ok(),
            Some(epoch),
            "{} moved past epoch {epoch}",
            self.client.id()
        );
    }

    /// Waits until `n` application messages of `group` were decrypted in
    /// all, checks that one more sync brings no further one, and returns them.
    pub async fn expect_messages(&mut self, group: &[u8], n: usize) -> Vec<Received> {
        self.wait_until(&format!("{n} messages"), |m| m.messages(group).len() >= n)
            .await;
        self.catch_up().await;
        let messages = self.messages(group);
        assert_eq!(
            messages.len(),
            n,
            "{} decrypted more than {n} messages: {messages:#?}",
            self.client.id()
        );
        messages
    }

    /// Like [`Member::expect_messages`], from the live stream
    /// (`Client::next_event`) rather than by polling.
    pub async fn expect_live_messages(&mut self, group: &[u8], n: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        while self.messages(group).len() < n {
            let event = tokio::time::timeout_at(deadline, self.client.next_event())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} waited {WAIT:?} for {n} messages on its live stream; it observed {:#?}",
                        self.client.id(),
                        self.events
                    )
                })
                .unwrap_or_else(|e| panic!("{}'s live stream failed: {e}", self.client.id()));
            self.record([event]);
        }
        self.messages(group)
    }
}
