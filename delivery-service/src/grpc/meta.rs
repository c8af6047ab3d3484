//! What the domain checks about a request before its body, read from the
//! tonic request: the only place request metadata is looked at.

use tonic::Request;

use crate::auth::{RequestMeta, SessionToken};

/// The size, peer and tokens of `request`, for [`crate::auth`].
pub(super) fn meta<T: prost::Message>(request: &Request<T>) -> RequestMeta<'_> {
    let metadata = request.metadata();
    let session_token = match metadata.get(confide_proto::AUTHORIZATION_HEADER) {
        None => SessionToken::Missing,
        Some(header) => header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map_or(SessionToken::Malformed, SessionToken::Bearer),
    };
    RequestMeta {
        size: request.get_ref().encoded_len(),
        peer: request.remote_addr().map(|peer| peer.ip()),
        session_token,
        admin_token: metadata
            .get(confide_proto::ADMIN_TOKEN_HEADER)
            .map(|token| token.as_bytes()),
    }
}
