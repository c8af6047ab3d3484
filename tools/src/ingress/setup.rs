//! Real MLS members for the run: registered with the client library, put
//! into groups with real commits, and each sender's messages encrypted before
//! anything is timed.

use bytes::Bytes;
use confide_client::{Api, Client, ClientId, GroupId, StateLocation};
use rand::RngCore;
use tokio::task::JoinSet;

use super::callers::{Sending, mean_len, split, token_of};
use super::{IngressError, Options};
use crate::error::{ClientContext, ClientFailed};
use crate::register::register_all;

/// Users added per commit while a large group is built.
const ADD_BATCH: usize = 100;

/// Registers each client (device `d0` of each user named) over the shared
/// connections, in memory; in the order given.
pub async fn register(apis: &[Api], users: &[String]) -> Result<Vec<Client>, IngressError> {
    let clients = users
        .iter()
        .map(|user| {
            ClientId::new(user.clone(), "d0")
                .map(|id| (id, StateLocation::Memory))
                .map_err(|e| IngressError::Invalid(format!("client name {user}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(register_all(apis, clients, "").await?)
}

/// `creator` creates a group and adds `others` (user names) in batches of
/// [`ADD_BATCH`]. The others never need to be online: the DS keeps their
/// Welcomes, and a message's cost does not depend on who reads it.
pub async fn build_group(creator: &mut Client, others: &[String]) -> Result<GroupId, IngressError> {
    let group_id = creator.create_group().await.context("creating a group")?;
    for batch in others.chunks(ADD_BATCH) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        creator
            .add_users(&group_id, &batch)
            .await
            .context("adding members")?;
    }
    Ok(group_id)
}

/// Work for one sender: encrypt `count` messages of `size` random bytes for
/// its group.
pub struct Encryption {
    pub sender: Client,
    pub group_id: GroupId,
    pub count: usize,
}

/// Runs every [`Encryption`] on the blocking pool, several at once, and
/// returns each sender with its messages (MLS PrivateMessages, ready for
/// `SendMessageRequest.message`), in the order given.
pub async fn encrypt_all(
    work: Vec<Encryption>,
    size: usize,
) -> Result<Vec<(Client, Vec<Bytes>)>, IngressError> {
    let mut tasks = JoinSet::new();
    let total = work.len();
    for (index, job) in work.into_iter().enumerate() {
        tasks.spawn_blocking(move || {
            let Encryption {
                mut sender,
                group_id,
                count,
            } = job;
            let mut body = vec![0u8; size];
            let mut messages = Vec::with_capacity(count);
            for _ in 0..count {
                rand::rng().fill_bytes(&mut body);
                match sender.encrypt_message(&group_id, &body) {
                    Ok(message) => messages.push(Bytes::from(message)),
                    Err(source) => {
                        let what = "encrypting a message".into();
                        return Err(IngressError::from(ClientFailed { what, source }));
                    }
                }
            }
            Ok((index, sender, messages))
        });
    }
    let mut done: Vec<Option<(Client, Vec<Bytes>)>> = (0..total).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, sender, messages) = joined.expect("an encryption task panicked")?;
        done[index] = Some((sender, messages));
    }
    Ok(done
        .into_iter()
        .map(|d| d.expect("every job ran"))
        .collect())
}

/// The timed run's callers, ready to send.
pub struct Prepared {
    /// Caller `i` sends to `group_ids[i % groups]`.
    pub sendings: Vec<Sending>,
    pub group_ids: Vec<GroupId>,
    pub wire_bytes_per_message: f64,
}

/// Registers a sender and a peer per group, builds the groups and has each
/// sender encrypt `per_caller` messages for every caller of its group.
pub async fn prepare_senders(
    options: &Options,
    apis: &[Api],
    per_caller: usize,
) -> Result<Prepared, IngressError> {
    let users: Vec<String> = (0..options.groups)
        .flat_map(|g| [format!("sender{g}"), format!("peer{g}")])
        .collect();
    let mut clients = register(apis, &users).await?.into_iter();
    let callers_of = |group: usize| -> Vec<usize> {
        (group..options.concurrency)
            .step_by(options.groups)
            .collect()
    };
    let mut work = Vec::with_capacity(options.groups);
    let mut group_ids = Vec::with_capacity(options.groups);
    for group in 0..options.groups {
        let mut sender = clients.next().expect("two clients per group");
        let _peer = clients.next().expect("two clients per group");
        let group_id = build_group(&mut sender, &users[2 * group + 1..2 * group + 2]).await?;
        group_ids.push(group_id.clone());
        work.push(Encryption {
            sender,
            group_id,
            count: per_caller * callers_of(group).len(),
        });
    }
    let encrypted = encrypt_all(work, options.message_size).await?;
    let wire_bytes_per_message = mean_len(encrypted.iter().flat_map(|(_, messages)| messages));
    let mut sendings: Vec<Option<Sending>> = (0..options.concurrency).map(|_| None).collect();
    for (group, (sender, messages)) in encrypted.into_iter().enumerate() {
        let token = token_of(&sender)?;
        let callers = callers_of(group);
        for (caller, messages) in callers.iter().zip(split(messages, callers.len())) {
            sendings[*caller] = Some(Sending {
                group_id: Bytes::from(group_ids[group].clone()),
                token: token.clone(),
                messages,
            });
        }
    }
    Ok(Prepared {
        sendings: sendings
            .into_iter()
            .map(|s| s.expect("every caller has a group"))
            .collect(),
        group_ids,
        wire_bytes_per_message,
    })
}
