//! Bytes stored per message: a group of a given size, a batch of messages
//! sent to it, and how much `group_log` grew.

use std::time::Duration;

use bytes::Bytes;
use confide_client::Api;
use tonic::transport::Channel;

use super::callers::{Sending, ds_callers, mean_len, split, token_of};
use super::database::RunDatabase;
use super::load::{self, Window};
use super::{IngressError, Options, StorageFigures, check, setup};

/// Callers sending a storage batch.
const STORAGE_CALLERS: usize = 8;

/// A group of `size` members (the creator sends; the others are registered
/// and added but never come online), `storage_messages` messages sent to it,
/// and how much `group_log` grew.
pub async fn measure_storage(
    options: &Options,
    database: &RunDatabase,
    channels: &[Channel],
    apis: &[Api],
    size: usize,
) -> Result<StorageFigures, IngressError> {
    let users: Vec<String> = (0..size).map(|i| format!("g{size}m{i}")).collect();
    let mut members = setup::register(apis, &users).await?;
    let mut sender = members.swap_remove(0);
    drop(members);
    let group_id = setup::build_group(&mut sender, &users[1..]).await?;
    let token = token_of(&sender)?;
    let (_, messages) = setup::encrypt_all(
        vec![setup::Encryption {
            sender,
            group_id: group_id.clone(),
            count: options.storage_messages,
        }],
        options.message_size,
    )
    .await?
    .pop()
    .expect("one sender");
    let wire = mean_len(messages.iter());
    let callers = STORAGE_CALLERS.min(messages.len());
    let sendings = split(messages, callers)
        .into_iter()
        .map(|messages| Sending {
            group_id: Bytes::from(group_id.clone()),
            token: token.clone(),
            messages,
        })
        .collect();
    let before = database.log_size().await?;
    let sent = load::run(
        ds_callers(channels, sendings),
        Window {
            warm_up: Duration::ZERO,
            duration: None,
        },
    )
    .await;
    let grown = database.log_growth(before, &[&group_id]).await?;
    let acknowledged = sent.acknowledged.into_iter().flatten().collect();
    let check = check(database, &[(group_id.clone(), acknowledged)]).await?;
    let rows = database.row_sizes(&group_id).await?;
    Ok(StorageFigures::new(
        size,
        wire,
        grown,
        rows,
        check,
        sent.figures.errors,
    ))
}
