//! Registering many clients with the client library over a few shared
//! HTTP/2 connections, a batch at a time.

use std::collections::HashMap;

use confide_client::{Api, Client, ClientId, StateLocation, UserIdentity};
use tokio::task::JoinSet;

use crate::error::{ClientContext, ClientFailed};

/// Registrations in flight at once.
const REGISTER_PARALLELISM: usize = 32;

/// Registers each client (its id and where its state lives) with `token`,
/// client `i` over `apis[i % apis.len()]`; returns them in the order given.
/// The devices of one user share the user's identity key, made here, as if
/// the first had linked the others.
pub async fn register_all(
    apis: &[Api],
    clients: Vec<(ClientId, StateLocation)>,
    token: &str,
) -> Result<Vec<Client>, ClientFailed> {
    let mut identities: HashMap<String, Vec<u8>> = HashMap::new();
    for (id, _) in &clients {
        if !identities.contains_key(id.user()) {
            let secret = UserIdentity::generate()
                .and_then(|identity| identity.to_secret_bytes())
                .context(format!("making {}'s identity key", id.user()))?;
            identities.insert(id.user().to_string(), secret);
        }
    }
    let mut registered = Vec::with_capacity(clients.len());
    let mut clients = clients.into_iter().peekable();
    while clients.peek().is_some() {
        let mut batch = JoinSet::new();
        for (offset, (id, state)) in clients.by_ref().take(REGISTER_PARALLELISM).enumerate() {
            let index = registered.len() + offset;
            let api = apis[index % apis.len()].clone();
            let token = token.to_owned();
            let identity = identities[id.user()].clone();
            batch.spawn(async move {
                let what = format!("registering {id}");
                let client = match UserIdentity::from_secret_bytes(&identity) {
                    Ok(identity) => Client::register_with(api, id, &state, &token, identity).await,
                    Err(error) => Err(error),
                }
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
