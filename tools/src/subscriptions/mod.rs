//! `confide-subscriptions`: how many live `Subscribe` streams one DS holds,
//! and what each costs it in memory.
//!
//! A run registers `clients` clients through the real RPCs, opens one live
//! stream per client over a few shared HTTP/2 connections, reading the DS's
//! memory at checkpoints on the way, keeps every stream open, and then checks
//! they are live: a sample of the clients (spread over every connection) is
//! one MLS group, one of them sends a message, and every other sample member's
//! stream must deliver it. Every stream must still be open at the end.
//!
//! Most clients register with raw RPCs (a key pair, RegisterClient, a signed
//! challenge), which is all a subscriber needs; the sample members are full
//! [`Client`]s, since they have to be added to a group.

pub mod ds_process;
pub mod report;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confide_proto::v1;
use futures::StreamExt;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use confide_client::{Api, Client, ClientError, ClientId, GroupId, StateLocation, UserIdentity};

use crate::error::{ClientContext, ClientFailed};
pub use ds_process::{DsProcess, Memory};
pub use report::{Outcome, Point};

/// Users added to the sample group per commit.
const ADD_BATCH: usize = 100;
/// Longest a Subscribe call may take to start its stream.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Plaintext of the message the sample must receive.
const PROBE_MESSAGE: &[u8] = b"confide-subscriptions: are you there?";

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Clients registered, each with one live stream.
    pub clients: usize,
    /// HTTP/2 connections the streams are spread over (round robin).
    pub connections: usize,
    /// Clients in the group whose message checks liveness (at least 2).
    pub sample: usize,
    /// Open subscriptions at which the DS's memory is read, besides all.
    pub checkpoints: Vec<usize>,
    /// Registrations and Subscribe calls in flight at once.
    pub parallelism: usize,
    /// Wait after each batch of subscriptions before reading memory, so
    /// the DS has finished setting them up.
    pub settle: Duration,
    /// Longest wait for the sample's message to arrive everywhere.
    pub delivery_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clients: 50_000,
            connections: 250,
            sample: 100,
            checkpoints: vec![10_000, 25_000],
            parallelism: 128,
            settle: Duration::from_secs(2),
            delivery_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionsError {
    #[error(transparent)]
    Client(#[from] ClientFailed),
    #[error("{0}")]
    Invalid(String),
}

/// Reads the DS's memory; `None` when it cannot (a DS in this process, or
/// not on Linux).
pub trait Probe {
    fn memory(&self) -> Option<Memory>;
}

/// For a DS whose memory is not measured (the tests' in-process DS).
pub struct NoProbe;

impl Probe for NoProbe {
    fn memory(&self) -> Option<Memory> {
        None
    }
}

/// Shared by every stream holder.
#[derive(Default)]
struct Streams {
    ended: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Streams {
    fn end(&self, why: String) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(why);
    }
}

/// Client `i` is `u<i>/d0` and uses connection `i % connections`. The sample
/// is spread evenly over the indices, one per block of `clients / sample`,
/// offset within its block so that it lands on as many connections as it can.
fn sample_indices(clients: usize, sample: usize, connections: usize) -> Vec<usize> {
    let stride = clients / sample;
    let spread = stride.min(connections).max(1);
    (0..sample).map(|k| k * stride + k % spread).collect()
}

fn client_id(index: usize) -> ClientId {
    ClientId::new(format!("u{index}"), "d0").expect("a valid client name")
}

/// Registers through the raw RPCs and returns the authenticated connection.
async fn register_raw(api: Api, id: &ClientId) -> Result<Api, ClientError> {
    let signer = SignatureKeyPair::new(confide_core::profile::CIPHERSUITE.signature_algorithm())
        .map_err(|e| ClientError::Mls(format!("a key pair: {e:?}")))?;
    // Each virtual client is the first device of a user of its own.
    let certificate = UserIdentity::generate()?.certify(id, signer.public())?;
    api.auth()
        .register_client(v1::RegisterClientRequest {
            client: Some(id.into()),
            signature_public_key: signer.to_public_vec().into(),
            registration_token: String::new(),
            device_certificate: certificate.to_bytes().into(),
        })
        .await?;
    let challenge = api
        .auth()
        .create_challenge(v1::CreateChallengeRequest {
            client: Some(id.into()),
        })
        .await?
        .into_inner()
        .challenge;
    let signature = signer
        .sign(&confide_proto::challenge_signing_payload(&challenge))
        .map_err(|e| ClientError::Mls(format!("signing the challenge: {e:?}")))?;
    let session = api
        .auth()
        .authenticate(v1::AuthenticateRequest {
            client: Some(id.into()),
            challenge,
            signature: signature.into(),
        })
        .await?
        .into_inner();
    let mut api = api;
    api.set_token(&session.session_token)?;
    Ok(api)
}

/// Keeps one stream open until `stop`, reporting the sample group's
/// application messages on `received` and counting a stream that ends.
async fn hold(
    index: usize,
    mut stream: tonic::Streaming<v1::Envelope>,
    group: Arc<GroupId>,
    received: mpsc::UnboundedSender<usize>,
    streams: Arc<Streams>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            message = stream.message() => message,
        };
        match message {
            Ok(Some(v1::Envelope {
                entry: Some(v1::envelope::Entry::Group(entry)),
            })) if entry.kind == v1::EntryKind::Application as i32
                && entry.group_id.as_ref() == group.as_slice() =>
            {
                let _ = received.send(index);
            }
            Ok(Some(_)) => {}
            Ok(None) => return streams.end(format!("the stream of u{index} ended")),
            Err(status) => return streams.end(format!("the stream of u{index} failed: {status}")),
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), SubscriptionsError> {
        let clients = self.clients;
        if self.sample < 2 || self.sample > clients {
            return Err(SubscriptionsError::Invalid(format!(
                "the sample must have 2 to {clients} clients, not {}",
                self.sample
            )));
        }
        if self.connections == 0 || self.parallelism == 0 {
            return Err(SubscriptionsError::Invalid(
                "connections and parallelism must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The numbers of open streams at which memory is read: the checkpoints
    /// within the run, and every client.
    fn marks(&self) -> Vec<usize> {
        let mut marks: Vec<usize> = self
            .checkpoints
            .iter()
            .copied()
            .filter(|&c| c > 0 && c < self.clients)
            .collect();
        marks.push(self.clients);
        marks.sort_unstable();
        marks.dedup();
        marks
    }
}

/// Runs against the DS at `endpoint` (which must allow `clients` ×3
/// unauthenticated calls from one address), reading its memory with `probe`.
pub async fn run(
    endpoint: &str,
    options: &Options,
    probe: &dyn Probe,
) -> Result<Outcome, SubscriptionsError> {
    options.validate()?;
    let mut connections = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        connections.push(
            Api::connect(endpoint)
                .await
                .context(format!("connecting to {endpoint}"))?,
        );
    }
    let memory_idle = probe.memory();

    let started = Instant::now();
    let sample = sample_indices(options.clients, options.sample, options.connections);
    let (mut full, apis) = register(&connections, &sample, options).await?;
    let register_secs = started.elapsed().as_secs_f64();
    let (creator_index, creator) = &mut full[0];
    let group = build_sample_group(creator, &sample).await?;
    let memory_before = probe.memory();

    let started = Instant::now();
    let (received, mut arrivals) = mpsc::unbounded_channel();
    let mut holders = Holders {
        tasks: tokio::task::JoinSet::new(),
        streams: Arc::new(Streams::default()),
        stop: CancellationToken::new(),
        received,
        group: Arc::new(group),
    };
    let mut subscribed = holders.subscribe_all(&apis, options, probe).await;
    let subscribe_secs = started.elapsed().as_secs_f64();
    let memory_with = subscribed.curve.last().and_then(|p| p.memory);

    let others: HashSet<usize> = sample
        .iter()
        .copied()
        .filter(|&i| i != *creator_index)
        .collect();
    let sample_expected = others.len() as u64;
    let liveness = (&*holders.group, others, &mut arrivals);
    let (missed, delivery_ms) =
        check_liveness(creator, liveness, options, &mut subscribed.first_failure).await?;

    let memory_end = probe.memory();
    let streams = &holders.streams;
    let ended = streams.ended.load(Ordering::Relaxed);
    let first_error = streams
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .or(subscribed.first_failure);
    let open = holders.tasks.len() as u64 - ended;
    holders.stop.cancel();
    while holders.tasks.join_next().await.is_some() {}

    Ok(Outcome {
        clients: options.clients as u64,
        connections: options.connections as u64,
        register_secs,
        subscribe_secs,
        memory_idle,
        memory_before,
        memory_with,
        memory_end,
        curve: subscribed.curve,
        streams_open: open,
        streams_ended: ended,
        subscribe_failures: subscribed.failures,
        first_error,
        sample_expected,
        sample_received: sample_expected - missed,
        delivery_ms,
    })
}

/// Registers the sample as full clients, everyone else with raw RPCs;
/// returns the sample's clients (by index, in order) and every client's
/// authenticated connection.
async fn register(
    connections: &[Api],
    sample: &[usize],
    options: &Options,
) -> Result<(Vec<(usize, Client)>, Vec<Api>), SubscriptionsError> {
    let in_sample: HashSet<usize> = sample.iter().copied().collect();
    let parallelism = options.parallelism;
    let mut full = register_each(
        sample.iter().copied(),
        connections,
        parallelism,
        |api, id| async move { Client::register(api, id, &StateLocation::Memory, "").await },
    )
    .await?;
    full.sort_by_key(|(index, _)| *index);
    let mut apis: Vec<Option<Api>> = vec![None; options.clients];
    for (index, client) in &full {
        apis[*index] = Some(client.api().clone());
    }
    let others = (0..options.clients).filter(|i| !in_sample.contains(i));
    let raw = register_each(others, connections, parallelism, |api, id| async move {
        register_raw(api, &id).await
    })
    .await?;
    for (index, api) in raw {
        apis[index] = Some(api);
    }
    let apis = apis
        .into_iter()
        .map(|api| api.expect("every client registered"));
    Ok((full, apis.collect()))
}

/// Registers client `index` (over connection `index % connections`) with
/// `register` for each index, `parallelism` at once; the first failure
/// fails the run.
async fn register_each<T, F>(
    indices: impl Iterator<Item = usize>,
    connections: &[Api],
    parallelism: usize,
    register: impl Fn(Api, ClientId) -> F,
) -> Result<Vec<(usize, T)>, ClientFailed>
where
    F: Future<Output = Result<T, ClientError>>,
{
    futures::stream::iter(indices)
        .map(|index| {
            let api = connections[index % connections.len()].clone();
            let id = client_id(index);
            let registered = register(api, id.clone());
            async move {
                registered
                    .await
                    .map(|registered| (index, registered))
                    .context(format!("registering {id}"))
            }
        })
        .buffer_unordered(parallelism)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The sample group: its first member adds the others.
async fn build_sample_group(
    creator: &mut Client,
    sample: &[usize],
) -> Result<GroupId, SubscriptionsError> {
    let group = creator
        .create_group()
        .await
        .context("creating the sample group")?;
    let users: Vec<String> = sample[1..].iter().map(|i| format!("u{i}")).collect();
    for batch in users.chunks(ADD_BATCH) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        creator
            .add_users(&group, &batch)
            .await
            .context("adding the sample to its group")?;
    }
    Ok(group)
}

/// The live streams, each held by a task of its own until `stop`.
struct Holders {
    tasks: tokio::task::JoinSet<()>,
    streams: Arc<Streams>,
    stop: CancellationToken,
    /// Where a holder reports its client's index when the sample group's
    /// message arrives.
    received: mpsc::UnboundedSender<usize>,
    group: Arc<GroupId>,
}

/// What subscribing everyone found.
struct Subscribed {
    curve: Vec<Point>,
    failures: u64,
    first_failure: Option<String>,
}

impl Holders {
    /// Subscribes every client, a batch per checkpoint, reading memory after
    /// each batch has settled.
    async fn subscribe_all(
        &mut self,
        apis: &[Api],
        options: &Options,
        probe: &dyn Probe,
    ) -> Subscribed {
        let marks = options.marks();
        let mut subscribed = Subscribed {
            curve: Vec::with_capacity(marks.len()),
            failures: 0,
            first_failure: None,
        };
        let mut from = 0;
        for mark in marks {
            for (index, opened) in open_streams(&apis[from..mark], from, options).await {
                match opened {
                    Ok(stream) => {
                        self.tasks.spawn(hold(
                            index,
                            stream,
                            self.group.clone(),
                            self.received.clone(),
                            self.streams.clone(),
                            self.stop.clone(),
                        ));
                    }
                    Err(status) => {
                        subscribed.failures += 1;
                        let why = format!("subscribing u{index}: {status}");
                        subscribed.first_failure.get_or_insert(why);
                    }
                }
            }
            from = mark;
            tokio::time::sleep(options.settle).await;
            subscribed.curve.push(Point {
                subscriptions: mark as u64 - subscribed.failures,
                memory: probe.memory(),
            });
        }
        subscribed
    }
}

/// Opens a live stream for each of `apis` (client `first` onwards), at
/// most `parallelism` calls at once.
async fn open_streams(
    apis: &[Api],
    first: usize,
    options: &Options,
) -> Vec<(usize, Result<tonic::Streaming<v1::Envelope>, tonic::Status>)> {
    futures::stream::iter(apis.iter().cloned().enumerate())
        .map(|(offset, api)| async move {
            let request = api.request(v1::SubscribeRequest {});
            // A stream that cannot start (say, queued behind the DS's
            // per-connection stream limit) counts as refused instead of
            // stalling the run. Only the start is timed: a gRPC deadline
            // would end the stream too.
            let opened = tokio::time::timeout(SUBSCRIBE_TIMEOUT, api.delivery().subscribe(request))
                .await
                .unwrap_or_else(|_| {
                    Err(tonic::Status::deadline_exceeded(format!(
                        "the stream did not start within {SUBSCRIBE_TIMEOUT:?}"
                    )))
                });
            (first + offset, opened.map(tonic::Response::into_inner))
        })
        .buffer_unordered(options.parallelism)
        .collect()
        .await
}

/// Liveness: the creator sends the sample message, which must reach every
/// other sample member's stream (`waiting`) before the delivery timeout.
/// Returns how many never got it, and how long the last one waited.
async fn check_liveness(
    creator: &mut Client,
    (group, mut waiting, arrivals): (
        &GroupId,
        HashSet<usize>,
        &mut mpsc::UnboundedReceiver<usize>,
    ),
    options: &Options,
    first_failure: &mut Option<String>,
) -> Result<(u64, Option<f64>), SubscriptionsError> {
    let sent = Instant::now();
    let deadline = tokio::time::Instant::now() + options.delivery_timeout;
    // The send shares a connection with streams; if they took every slot
    // the DS allows per connection, it waits for one that never frees.
    let delivered =
        match tokio::time::timeout_at(deadline, creator.send(group, PROBE_MESSAGE)).await {
            Ok(sent) => {
                sent.context("sending the sample message")?;
                true
            }
            Err(_) => {
                first_failure.get_or_insert(format!(
                    "the sample message was not sent within {:?}",
                    options.delivery_timeout
                ));
                false
            }
        };
    while delivered && !waiting.is_empty() {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(index)) => {
                waiting.remove(&index);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let delivery_ms =
        (delivered && waiting.is_empty()).then(|| sent.elapsed().as_secs_f64() * 1000.0);
    Ok((waiting.len() as u64, delivery_ms))
}

#[cfg(test)]
mod tests {
    use super::sample_indices;

    #[test]
    fn the_sample_spreads_over_the_clients_and_the_connections() {
        assert_eq!(sample_indices(1000, 4, 250), vec![0, 251, 502, 753]);
        assert_eq!(sample_indices(5, 5, 2), vec![0, 1, 2, 3, 4]);
        // 50,000 clients on 250 connections: a stride of 500 alone would put
        // the whole sample on connection 0.
        let sample = sample_indices(50_000, 100, 250);
        let connections: std::collections::HashSet<usize> =
            sample.iter().map(|i| i % 250).collect();
        assert_eq!(connections.len(), 100);
        assert!(sample.iter().all(|&i| i < 50_000));
    }
}
