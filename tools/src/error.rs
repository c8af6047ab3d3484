//! The tools' one error-context type: a client library call that failed,
//! named by what the tool was doing, so a run that cannot go on says where
//! it stopped ("registering u3/d0: …").

use confide_client::ClientError;

/// A client library call that failed, and what the tool was doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ClientFailed {
    pub what: String,
    #[source]
    pub source: ClientError,
}

/// `client.create_group().await.context("creating a group")?`.
pub trait ClientContext<T> {
    fn context(self, what: impl Into<String>) -> Result<T, ClientFailed>;
}

impl<T> ClientContext<T> for Result<T, ClientError> {
    fn context(self, what: impl Into<String>) -> Result<T, ClientFailed> {
        self.map_err(|source| ClientFailed {
            what: what.into(),
            source,
        })
    }
}
