//! Real MLS members for the run: registered with the client library, put
//! into groups with real commits, and each sender's messages encrypted before
//! anything is timed.

use bytes::Bytes;
use rand::RngCore;
use tokio::task::JoinSet;

use super::IngressError;
use confide_client::{Api, Client, ClientId, GroupId, StateLocation};

/// Registrations in flight at once.
const REGISTER_PARALLELISM: usize = 32;
/// Users added per commit while a large group is built.
const ADD_BATCH: usize = 100;

fn client_error(what: impl Into<String>) -> impl FnOnce(confide_client::ClientError) -> IngressError {
    let what = what.into();
    move |source| IngressError::Client { what, source }
}

/// Registers each client (device `d0` of each user named) over the shared
/// connections, in memory; in the order given.
pub async fn register(apis: &[Api], users: &[String]) -> Result<Vec<Client>, IngressError> {
    let mut clients = Vec::with_capacity(users.len());
    for chunk in users.chunks(REGISTER_PARALLELISM) {
        let mut batch = JoinSet::new();
        for (offset, user) in chunk.iter().enumerate() {
            let index = clients.len() + offset;
            let api = apis[index % apis.len()].clone();
            let id = ClientId::new(user.clone(), "d0")
                .map_err(|e| IngressError::Invalid(format!("client name {user}: {e}")))?;
            batch.spawn(async move {
                let what = format!("registering {id}");
                let client = Client::register(api, id, &StateLocation::Memory, "")
                    .await
                    .map_err(client_error(what));
                (index, client)
            });
        }
        let mut registered = Vec::with_capacity(chunk.len());
        while let Some(joined) = batch.join_next().await {
            let (index, client) = joined.expect("a registration task panicked");
            registered.push((index, client?));
        }
        registered.sort_by_key(|(index, _)| *index);
        clients.extend(registered.into_iter().map(|(_, client)| client));
    }
    Ok(clients)
}

/// `creator` creates a group and adds `others` (user names) in batches of
/// [`ADD_BATCH`]. The others never need to be online: the DS keeps their
/// Welcomes, and a message's cost does not depend on who reads it.
pub async fn build_group(creator: &mut Client, others: &[String]) -> Result<GroupId, IngressError> {
    let group_id = creator
        .create_group()
        .await
        .map_err(client_error("creating a group"))?;
    for batch in others.chunks(ADD_BATCH) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        creator
            .add_users(&group_id, &batch)
            .await
            .map_err(client_error("adding members"))?;
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
                        return Err(IngressError::Client {
                            what: "encrypting a message".into(),
                            source,
                        });
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
