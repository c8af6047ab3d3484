//! The gRPC connection, carrying the session token on every call: TLS for
//! `https://` endpoints (server verified against the web PKI roots and any
//! configured CA, optionally with a client certificate), plaintext only to a
//! loopback `http://` endpoint unless the caller explicitly allows it.

use confide_proto::v1::{
    self, auth_service_client::AuthServiceClient, delivery_service_client::DeliveryServiceClient,
    device_service_client::DeviceServiceClient, group_service_client::GroupServiceClient,
    key_package_service_client::KeyPackageServiceClient,
};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{IntoRequest, Request};

use crate::error::{ClientError, ClientResult};
use crate::retry::RetryRateLimited;

/// Largest message the client accepts from the DS.
const MAX_DECODE: usize = 64 * 1024 * 1024;

/// The channel under every RPC: it waits out rate limits.
pub type Transport = RetryRateLimited;

/// How to reach a DS over TLS. PEM bytes.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// A CA to trust besides the web PKI roots (a private deployment's CA).
    pub ca_certificate: Option<Vec<u8>>,
    /// A client certificate and key, for a DS that requires them.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Allow `http://` to a host that is not loopback. Traffic is then
    /// readable and alterable on the network (MLS still protects content).
    pub allow_plaintext: bool,
}

#[derive(Clone)]
pub struct Api {
    channel: Transport,
    token: Option<AsciiMetadataValue>,
}

impl Api {
    /// Connects with default TLS options: `https://` verified against the
    /// web PKI roots, `http://` to loopback only.
    pub async fn connect(endpoint: &str) -> ClientResult<Self> {
        Self::connect_with(endpoint, &TlsOptions::default()).await
    }

    pub async fn connect_with(endpoint: &str, tls: &TlsOptions) -> ClientResult<Self> {
        Ok(Self::from_channel(
            endpoint_of(endpoint, tls)?.connect().await?,
        ))
    }

    /// Like [`Api::connect_with`], connecting at the first call instead of
    /// now: for a client that starts while the DS cannot be reached (and
    /// shows what its state file holds until it can).
    pub fn connect_lazily_with(endpoint: &str, tls: &TlsOptions) -> ClientResult<Self> {
        Ok(Self::from_channel(
            endpoint_of(endpoint, tls)?.connect_lazy(),
        ))
    }

    /// Shares an existing HTTP/2 connection (many clients, one connection).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel: RetryRateLimited::new(channel),
            token: None,
        }
    }

    /// The same session over another connection (e.g. one with other
    /// HTTP/2 settings).
    pub fn on_channel(&self, channel: Channel) -> Self {
        Self {
            channel: RetryRateLimited::new(channel),
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

    pub fn auth(&self) -> AuthServiceClient<Transport> {
        AuthServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    pub fn key_packages(&self) -> KeyPackageServiceClient<Transport> {
        KeyPackageServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    pub fn groups(&self) -> GroupServiceClient<Transport> {
        GroupServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    pub fn devices(&self) -> DeviceServiceClient<Transport> {
        DeviceServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE)
    }

    pub fn delivery(&self) -> DeliveryServiceClient<Transport> {
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

/// `localhost` or a loopback address (brackets of an IPv6 literal allowed).
/// The endpoint `endpoint` names, with TLS for `https://`; plaintext only
/// to loopback unless allowed.
fn endpoint_of(endpoint: &str, tls: &TlsOptions) -> ClientResult<Endpoint> {
    let bad =
        |e: &dyn std::fmt::Display| ClientError::Invalid(format!("bad endpoint {endpoint}: {e}"));
    let mut builder = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| bad(&e))?
        .tcp_nodelay(true);
    let uri = builder.uri().clone();
    match uri.scheme_str() {
        Some("https") => {
            let mut config = ClientTlsConfig::new().with_webpki_roots();
            if let Some(ca) = &tls.ca_certificate {
                config = config.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.client_identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            builder = builder.tls_config(config)?;
        }
        Some("http") => {
            let loopback = uri.host().is_some_and(is_loopback);
            if !loopback && !tls.allow_plaintext {
                return Err(ClientError::Invalid(format!(
                    "refusing plaintext to {endpoint}: use https://, or allow plaintext explicitly"
                )));
            }
        }
        _ => return Err(bad(&"the scheme must be https:// or http://")),
    }
    Ok(builder)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plaintext_to_a_remote_host_is_refused_unless_allowed() {
        let refused = Api::connect("http://chat.example.org:7420").await;
        assert!(
            matches!(&refused, Err(ClientError::Invalid(m)) if m.contains("refusing plaintext")),
            "{:?}",
            refused.err()
        );
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[tokio::test]
    async fn an_endpoint_without_a_known_scheme_is_refused() {
        let refused = Api::connect("ftp://127.0.0.1:7420").await;
        assert!(matches!(refused, Err(ClientError::Invalid(_))));
    }
}
