//! Helpers for raw gRPC calls: requests with hand-made credentials and
//! assertions on the status a call was refused with.

use confide_proto::v1;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

/// A request whose `authorization` header is `value`, or absent.
pub fn with_authorization<T>(message: T, value: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = value {
        request.metadata_mut().insert(
            confide_proto::AUTHORIZATION_HEADER,
            MetadataValue::try_from(value).expect("an ASCII header value"),
        );
    }
    request
}

/// The `authorization` header value (`Bearer <session token>`) that `api`
/// sends, to present it elsewhere or to alter it.
pub fn authorization_of(api: &confide_client::Api) -> String {
    api.request(())
        .metadata()
        .get(confide_proto::AUTHORIZATION_HEADER)
        .expect("an authenticated connection")
        .to_str()
        .expect("an ASCII header value")
        .to_string()
}

/// Asserts that a call was refused with `code` and a non-empty reason;
/// returns the status.
#[track_caller]
pub fn expect_refused<T: std::fmt::Debug>(
    result: Result<Response<T>, Status>,
    code: Code,
    what: &str,
) -> Status {
    match result {
        Ok(response) => panic!(
            "{what}: expected {code:?}, the DS answered {:?}",
            response.into_inner()
        ),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{what}: wrong status ({})",
                status.message()
            );
            assert!(
                !status.message().trim().is_empty(),
                "{what}: refused with {code:?} but without a reason"
            );
            status
        }
    }
}

/// Selects a group's log.
pub fn group_stream(group: &[u8]) -> Option<v1::StreamSelector> {
    Some(v1::StreamSelector {
        stream: Some(v1::stream_selector::Stream::GroupId(group.to_vec().into())),
    })
}

/// Selects the caller's inbox.
pub fn inbox_stream() -> Option<v1::StreamSelector> {
    Some(v1::StreamSelector {
        stream: Some(v1::stream_selector::Stream::Inbox(v1::Inbox {})),
    })
}

/// Opens the caller's live stream (`Subscribe`) on `api`.
pub async fn subscribe(api: &confide_client::Api) -> tonic::Streaming<v1::Envelope> {
    api.delivery()
        .subscribe(api.request(v1::SubscribeRequest {}))
        .await
        .expect("subscribing")
        .into_inner()
}

/// The next envelope of a live stream, failing the test after [`crate::WAIT`].
pub async fn next_envelope(stream: &mut tonic::Streaming<v1::Envelope>) -> v1::Envelope {
    tokio::time::timeout(crate::WAIT, stream.message())
        .await
        .expect("nothing arrived on the live stream in time")
        .expect("the live stream failed")
        .expect("the live stream ended")
}

/// The next group entry of a live stream, skipping inbox entries.
pub async fn next_group_entry(stream: &mut tonic::Streaming<v1::Envelope>) -> v1::GroupEntry {
    loop {
        if let Some(v1::envelope::Entry::Group(entry)) = next_envelope(stream).await.entry {
            return entry;
        }
    }
}

/// The seqs of `group`'s entries on a live stream, up to the Welcome into
/// `other`: once that Welcome is on the stream, everything of `group`
/// appended before it has been routed too.
pub async fn group_seqs_until_welcome(
    stream: &mut tonic::Streaming<v1::Envelope>,
    group: &[u8],
    other: &[u8],
) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        match next_envelope(stream).await.entry {
            Some(v1::envelope::Entry::Group(entry)) if entry.group_id.as_ref() == group => {
                seen.push(entry.seq)
            }
            Some(v1::envelope::Entry::Inbox(v1::InboxEntry {
                item: Some(v1::inbox_entry::Item::Welcome(welcome)),
                ..
            })) if welcome.group_id.as_ref() == other => return seen,
            _ => {}
        }
    }
}

/// A fresh authentication challenge for `client`.
pub async fn challenge_for(
    auth: &v1::auth_service_client::AuthServiceClient<confide_client::api::Transport>,
    client: Option<v1::ClientId>,
) -> bytes::Bytes {
    auth.clone()
        .create_challenge(v1::CreateChallengeRequest { client })
        .await
        .expect("asking for a challenge")
        .into_inner()
        .challenge
}

/// The next Welcome on a live stream, skipping everything before it.
pub async fn next_welcome(stream: &mut tonic::Streaming<v1::Envelope>) -> v1::WelcomeItem {
    loop {
        if let Some(v1::envelope::Entry::Inbox(v1::InboxEntry {
            item: Some(v1::inbox_entry::Item::Welcome(welcome)),
            ..
        })) = next_envelope(stream).await.entry
        {
            return welcome;
        }
    }
}

/// A connection to `endpoint` (plaintext loopback) WITHOUT the client
/// library's rate-limit retries, to see exactly what the DS answers.
pub async fn raw_channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("a valid endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {endpoint}: {e}"))
}

/// Asserts `status` is a rate-limit refusal of `limit` and returns the delay
/// the DS asked for.
#[track_caller]
pub fn expect_rate_limited(status: &Status, limit: &str) -> std::time::Duration {
    use tonic_types::StatusExt;
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "expected a rate limit: {status:?}"
    );
    let info = status
        .get_details_error_info()
        .expect("a rate limit carries an ErrorInfo");
    assert_eq!(info.reason, confide_proto::REASON_RATE_LIMITED);
    assert_eq!(
        info.metadata
            .get(confide_proto::META_LIMIT)
            .map(String::as_str),
        Some(limit),
        "which limit: {status:?}"
    );
    let delay =
        confide_client::retry::retry_after(status).expect("a rate limit says when to retry");
    assert!(
        delay > std::time::Duration::ZERO,
        "the retry delay is positive"
    );
    delay
}

/// One claim of a key package for every device of `user`, by the client
/// `api` is authenticated as.
pub async fn claim_key_packages(
    api: &confide_client::Api,
    user: &str,
) -> Vec<v1::ClaimedKeyPackage> {
    let request = api.request(v1::ClaimKeyPackagesRequest { user: user.into() });
    api.key_packages()
        .claim_key_packages(request)
        .await
        .unwrap_or_else(|status| panic!("claiming a key package of {user}: {status}"))
        .into_inner()
        .key_packages
}

/// The key package of the first device [`claim_key_packages`] returns.
pub async fn claim_key_package(api: &confide_client::Api, user: &str) -> Vec<u8> {
    claim_key_packages(api, user)
        .await
        .remove(0)
        .key_package
        .to_vec()
}

/// Calls the gRPC method at `path` (`/confide.v1.GroupService/SendMessage`)
/// with `body` as the bytes of its request message, whatever they are, and
/// returns the response message's bytes: for bodies no generated client would
/// send.
pub async fn call_with_body(
    channel: &tonic::transport::Channel,
    path: &'static str,
    body: bytes::Bytes,
) -> Result<bytes::Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(Request::new(body), path, RawBytes)
        .await
        .map(Response::into_inner)
}

/// A codec that passes message bytes through untouched.
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = bytes::Bytes;
    type Error = Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = bytes::Bytes;
    type Error = Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, Status> {
        let remaining = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, remaining)))
    }
}
