//! Registering many clients with the client library over a few shared
//! HTTP/2 connections, a batch at a time.

use confide_client::{Api, Client, ClientId, StateLocation};
use tokio::task::JoinSet;

use crate::error::{ClientContext, ClientFailed};

/// Registrations in flight at once.
const REGISTER_PARALLELISM: usize = 32;

/// Registers each client (its id and where its state lives) with `token`,
/// client `i` over `apis[i % apis.len()]`; returns them in the order given.
pub async fn register_all(
    apis: &[Api],
    clients: Vec<(ClientId, StateLocation)>,
    token: &str,
) -> Result<Vec<Client>, ClientFailed> {
    let mut registered = Vec::with_capacity(clients.len());
    let mut clients = clients.into_iter().peekable();
    while clients.peek().is_some() {
        let mut batch = JoinSet::new();
        for (offset, (id, state)) in clients.by_ref().take(REGISTER_PARALLELISM).enumerate() {
            let index = registered.len() + offset;
            let api = apis[index % apis.len()].clone();
            let token = token.to_owned();
            batch.spawn(async move {
                let what = format!("registering {id}");
                let client = Client::register(api, id, &state, &token)
                    .await
                    .context(what);
                (index, client)
            });
        }
        let mut done = Vec::with_capacity(batch.len());
        while let Some(joined) = batch.join_next().await {
            let (index, client) = joined.expect("a registration task panicked");
            done.push((index, client?));
        }
        done.sort_by_key(|(index, _)| *index);
        registered.extend(done.into_iter().map(|(_, client)| client));
    }
    Ok(registered)
}
