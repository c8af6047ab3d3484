//! The gRPC connection, carrying the session token on every call.

use confide_proto::v1::{
    self, auth_service_client::AuthServiceClient, delivery_service_client::DeliveryServiceClient,
    group_service_client::GroupServiceClient, key_package_service_client::KeyPackageServiceClient,
};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{IntoRequest, Request};

use crate::error::{ClientError, ClientResult};

/// Largest message the client accepts from the DS.
const MAX_DECODE: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct Api {
    channel: Channel,
    token: Option<AsciiMetadataValue>,
}

impl Api {
    pub async fn connect(endpoint: &str) -> ClientResult<Self> {
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| ClientError::Invalid(format!("bad endpoint {endpoint}: {e}")))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Self::from_channel(channel))
    }

    /// Shares an existing HTTP/2 connection (many clients, one connection).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            token: None,
        }
    }

    /// The same session over another connection (e.g. one with other
    /// HTTP/2 settings).
    pub fn on_channel(&self, channel: Channel) -> Self {
        Self {
            channel,
            token: self.token.clone(),
        }
    }

    pub fn set_token(&mut self, token: &str) -> ClientResult<()> {
        let value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::Invalid("session token is not ASCII".into()))?;
        self.token = Some(value);
        Ok(())
    }

    /// Wraps a message into a request carrying the session token.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = message.into_request();
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert(confide_proto::AUTHORIZATION_HEADER, token.clone());
        }
        request
    }

    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    pub fn key_packages(&self) -> KeyPackageServiceClient<Channel> {
        KeyPackageServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    pub fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    pub fn delivery(&self) -> DeliveryServiceClient<Channel> {
        DeliveryServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    /// Moves the caller's cursor on a stream forward to `seq`.
    pub async fn ack(&self, stream: v1::StreamSelector, seq: u64) -> ClientResult<()> {
        if seq == 0 {
            return Ok(());
        }
        let request = self.request(v1::AckRequest {
            stream: Some(stream),
            seq,
        });
        self.delivery().ack(request).await?;
        Ok(())
    }

    /// One page of a stream after `after_seq`.
    pub async fn fetch(
        &self,
        stream: v1::StreamSelector,
        after_seq: u64,
        limit: u32,
    ) -> ClientResult<Vec<v1::Envelope>> {
        let request = self.request(v1::FetchRequest {
            stream: Some(stream),
            after_seq,
            limit,
        });
        Ok(self.delivery().fetch(request).await?.into_inner().entries)
    }
}
