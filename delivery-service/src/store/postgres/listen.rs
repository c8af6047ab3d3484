//! Live delivery across replicas. Several DS replicas may share one database;
//! each pushes what it accepts to its own live subscribers through its
//! [`Hub`], and learns about the entries the others append from PostgreSQL's
//! LISTEN/NOTIFY.
//!
//! Triggers (`migrations/V2__notify.sql`) announce every `group_log` and
//! `inbox` row on [`CHANNEL`] by its id, never its content, at commit and in
//! commit order (per group and per inbox, sequence order). Each announcement
//! names the replica that wrote the row: every pooled connection of a
//! [`PostgresStore`] carries its [`Replica`] id, so a replica skips its own
//! writes, which it already published in order under the group's lock.
//!
//! The same channel carries what must end live streams on every replica: a
//! revoked session (`s:<user>:<device>:<token hash in hex>:<replica>`), a
//! deprovisioned client (`r:<user>:<device>:<replica>`) and a re-keyed one
//! (`k:<user>:<device>:<replica>`), sent by
//! [`announce`] outside any write transaction. They are applied to the hub
//! as they arrive, never queued behind entries or dropped; one that was
//! missed is caught when subscribers re-read, since they re-check their
//! session then.
//!
//! [`run`] holds one dedicated connection (LISTEN belongs to a session, so not
//! a pooled one), reads the announced rows that some local subscriber follows
//! through the pool, and publishes them to the hub. The hub stays an
//! accelerator: whenever announcements may have been missed (before the first
//! LISTEN, after the connection dropped, or when this task fell behind),
//! every subscriber is marked lagged and re-reads its streams from the store.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Config, Connection, NoTls, Socket};
use tokio_util::sync::CancellationToken;

use super::{PostgresStore, delivery, groups};
use crate::domain::{ClientId, GroupId};
use crate::hub::{Ending, Hub};
use crate::store::{StoreError, StoreResult};

/// The channel the triggers notify.
const CHANNEL: &str = "confide_entries";
/// The session setting naming the replica that wrote a row; the triggers read it.
const ORIGIN_SETTING: &str = "confide.replica";
/// Announcements waiting for their rows to be read. When full, further ones
/// are dropped and every subscriber is marked lagged instead: the connection
/// is always drained, so a slow replica never fills PostgreSQL's
/// notification queue (which would make every replica's commits fail).
const QUEUE_DEPTH: usize = 4096;
/// Announcements handled together; consecutive entries of one stream cost one read.
const BATCH: usize = 256;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// TCP keepalive of the listening connection: a connection that died without
/// a word loses announcements silently, so notice it within a minute or so
/// rather than the system default of hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// One replica among those sharing a database: the id its writes are
/// announced with, and the settings for its listening connection.
#[derive(Clone)]
pub(super) struct Replica {
    id: String,
    listen_config: Config,
}

impl Replica {
    /// A new replica id, set on every connection made with `config`. It is a
    /// startup option rather than a `SET` after connecting, so it costs no
    /// round trip and survives `RESET ALL` when a pooled connection is cleaned.
    pub(super) fn tag(config: &mut Config) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let option = format!("-c {ORIGIN_SETTING}={id}");
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {option}"),
            _ => option,
        };
        config.options(options);
        let mut listen_config = config.clone();
        listen_config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE);
        Self { id, listen_config }
    }
}

/// A row a trigger announced.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Appended {
    Group { group_id: GroupId, seq: u64 },
    Inbox { client: ClientId, seq: u64 },
}

/// What an announcement says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Notice {
    Appended(Appended),
    Ended(Ending),
}

/// `user:device` as a client id.
fn parse_client(key: &str) -> Option<ClientId> {
    let (user, device) = key.split_once(':')?;
    ClientId::new(user, device).ok()
}

/// What an announcement says and the replica that sent it (empty if the
/// writer was not a DS replica); `None` if it is not one of ours.
fn parse(payload: &str) -> Option<(Notice, &str)> {
    let (kind, rest) = payload.split_once(':')?;
    let (rest, origin) = rest.rsplit_once(':')?;
    let notice = match kind {
        "s" => {
            let (client, session) = rest.rsplit_once(':')?;
            Notice::Ended(Ending::SessionRevoked {
                client: parse_client(client)?,
                session: hex::decode(session).ok()?.try_into().ok()?,
            })
        }
        "r" => Notice::Ended(Ending::ClientRemoved {
            client: parse_client(rest)?,
        }),
        "k" => Notice::Ended(Ending::ClientRekeyed {
            client: parse_client(rest)?,
        }),
        _ => {
            let (key, seq) = rest.rsplit_once(':')?;
            if !seq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let seq = seq.parse().ok().filter(|&seq| seq >= 1)?;
            Notice::Appended(match kind {
                "g" => Appended::Group {
                    group_id: GroupId::new(hex::decode(key).ok()?).ok()?,
                    seq,
                },
                "i" => Appended::Inbox {
                    client: parse_client(key)?,
                    seq,
                },
                _ => return None,
            })
        }
    };
    Some((notice, origin))
}

/// Tells the other replicas to end the live streams `ending` names (this
/// one skips its own announcement: it ended them already).
pub async fn announce(store: &PostgresStore, ending: &Ending) -> StoreResult<()> {
    let payload = match ending {
        Ending::SessionRevoked { client, session } => format!(
            "s:{}:{}:{}:{}",
            client.user(),
            client.device(),
            hex::encode(session),
            store.replica.id
        ),
        Ending::ClientRemoved { client } => format!(
            "r:{}:{}:{}",
            client.user(),
            client.device(),
            store.replica.id
        ),
        Ending::ClientRekeyed { client } => format!(
            "k:{}:{}:{}",
            client.user(),
            client.device(),
            store.replica.id
        ),
    };
    store
        .pool
        .get()
        .await?
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await?;
    Ok(())
}

/// Relays the entries other replicas append, and the streams they end, to `hub` until `shutdown`,
/// reconnecting with backoff whenever the listening connection fails.
pub async fn run(store: PostgresStore, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return,
            ended = relay(&store, hub.clone(), &mut backoff) => ended,
        };
        match ended {
            Ok(()) => tracing::warn!(
                retry_in = ?backoff,
                "PostgreSQL closed the connection listening for other replicas' entries"
            ),
            Err(error) => tracing::warn!(
                %error,
                retry_in = ?backoff,
                "the connection listening for other replicas' entries failed"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listening session: connects, listens, then publishes what other
/// replicas append until the connection ends. Resets `backoff` once listening.
async fn relay(store: &PostgresStore, hub: Arc<Hub>, backoff: &mut Duration) -> StoreResult<()> {
    let (client, connection) = store.replica.listen_config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::channel(QUEUE_DEPTH);
    let overflowed = Arc::new(AtomicBool::new(false));
    // Ends when `client` is dropped (the connection closes) or fails.
    let forwarder = tokio::spawn(forward(
        connection,
        tx,
        hub.clone(),
        store.replica.id.clone(),
        overflowed.clone(),
    ));
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    *backoff = MIN_BACKOFF;
    // Whatever was committed while nobody here listened is in the store.
    hub.mark_all_lagged();

    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Checked after a receive that follows any drop (a drop means the
        // queue was full), so the re-read comes after the dropped commits.
        if overflowed.swap(false, Ordering::AcqRel) {
            tracing::warn!("fell behind other replicas' entries; subscribers re-read the store");
            hub.mark_all_lagged();
        }
        if let Err(error) = publish(store, &hub, batch.drain(..)).await {
            tracing::warn!(%error, "could not read other replicas' entries; subscribers re-read the store");
            hub.mark_all_lagged();
        }
    }
    match forwarder.await {
        Ok(ended) => ended.map_err(StoreError::from),
        Err(panicked) => Err(StoreError::Backend(Box::new(panicked))),
    }
}

/// Drives the listening connection and queues the announcements of other
/// replicas' writes; when the queue is full, drops them and sets `overflowed`.
/// Ended streams are ended on `hub` at once.
async fn forward(
    mut connection: Connection<Socket, NoTlsStream>,
    tx: mpsc::Sender<Appended>,
    hub: Arc<Hub>,
    own: String,
    overflowed: Arc<AtomicBool>,
) -> Result<(), tokio_postgres::Error> {
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        let AsyncMessage::Notification(notification) = message? else {
            continue;
        };
        match parse(notification.payload()) {
            Some((_, origin)) if origin == own => {}
            Some((Notice::Ended(ending), _)) => hub.end(&ending),
            Some((Notice::Appended(appended), _)) => match tx.try_send(appended) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => overflowed.store(true, Ordering::Release),
                Err(TrySendError::Closed(_)) => break,
            },
            None => tracing::warn!(
                channel = notification.channel(),
                "ignoring a notification that names no entry"
            ),
        }
    }
    Ok(())
}

/// Reads the announced entries that some local subscriber follows and
/// publishes them, in sequence order per stream.
async fn publish(
    store: &PostgresStore,
    hub: &Hub,
    batch: impl Iterator<Item = Appended>,
) -> StoreResult<()> {
    let mut group_seqs: HashMap<GroupId, Vec<u64>> = HashMap::new();
    let mut inbox_seqs: HashMap<ClientId, Vec<u64>> = HashMap::new();
    for appended in batch {
        match appended {
            Appended::Group { group_id, seq } if hub.follows_group(&group_id) => {
                group_seqs.entry(group_id).or_default().push(seq);
            }
            Appended::Inbox { client, seq } if hub.follows_inbox(&client) => {
                inbox_seqs.entry(client).or_default().push(seq);
            }
            _ => {}
        }
    }
    if group_seqs.is_empty() && inbox_seqs.is_empty() {
        return Ok(());
    }
    let conn = store.pool.get().await?;
    for (group_id, seqs) in group_seqs {
        for run in runs(seqs) {
            let (after, until, limit) = bounds(&run);
            for entry in groups::read_log(&conn, &group_id, after, Some(until), limit).await? {
                hub.publish_group(&entry);
            }
        }
    }
    for (client, seqs) in inbox_seqs {
        for run in runs(seqs) {
            let (after, _, limit) = bounds(&run);
            for entry in delivery::read_inbox(&conn, &client, after, limit).await? {
                hub.publish_inbox(&client, &entry);
            }
        }
    }
    Ok(())
}

/// Sequence numbers as ascending runs of consecutive ones, duplicates dropped.
fn runs(mut seqs: Vec<u64>) -> Vec<RangeInclusive<u64>> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut runs: Vec<RangeInclusive<u64>> = Vec::new();
    for seq in seqs {
        match runs.last_mut() {
            Some(run) if *run.end() + 1 == seq => *run = *run.start()..=seq,
            _ => runs.push(seq..=seq),
        }
    }
    runs
}

/// A run as a read: after, up to and including, and how many.
fn bounds(run: &RangeInclusive<u64>) -> (u64, u64, u32) {
    let len = run.end() - run.start() + 1;
    // A run is at most BATCH long.
    (
        run.start() - 1,
        *run.end(),
        u32::try_from(len).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InboxEntry, InboxItem};
    use crate::hub::LiveEvent;
    use crate::store::postgres::testing::fresh_database;
    use crate::store::{ClientRecord, NewDevice, Store};

    fn group(seq: u64) -> Notice {
        Notice::Appended(Appended::Group {
            group_id: GroupId::new(*b"\x00\xffg").unwrap(),
            seq,
        })
    }

    #[test]
    fn parses_what_the_triggers_announce() {
        assert_eq!(
            parse("g:00ff67:12:replica-a"),
            Some((group(12), "replica-a"))
        );
        assert_eq!(parse("g:00FF67:1:"), Some((group(1), "")));
        let alice = ClientId::new("alice.b_c-d", "phone-2").unwrap();
        assert_eq!(
            parse("i:alice.b_c-d:phone-2:7:3f2c9a1e-0000-4000-8000-000000000000"),
            Some((
                Notice::Appended(Appended::Inbox {
                    client: alice.clone(),
                    seq: 7
                }),
                "3f2c9a1e-0000-4000-8000-000000000000"
            ))
        );
        let session = [0xab; 32];
        assert_eq!(
            parse(&format!(
                "s:alice.b_c-d:phone-2:{}:r1",
                hex::encode(session)
            )),
            Some((
                Notice::Ended(Ending::SessionRevoked {
                    client: alice.clone(),
                    session
                }),
                "r1"
            ))
        );
        assert_eq!(
            parse("r:alice.b_c-d:phone-2:r1"),
            Some((
                Notice::Ended(Ending::ClientRemoved {
                    client: alice.clone()
                }),
                "r1"
            ))
        );
        assert_eq!(
            parse("k:alice.b_c-d:phone-2:r1"),
            Some((Notice::Ended(Ending::ClientRekeyed { client: alice }), "r1"))
        );
    }

    #[test]
    fn refuses_what_names_no_entry() {
        for payload in [
            "",
            "g",
            "g:00ff67",
            "g:00ff67:12",
            "x:00ff67:12:r",
            "g:0ff67:12:r",
            "g::12:r",
            "g:00ff67:0:r",
            "g:00ff67:-1:r",
            "g:00ff67:+1:r",
            "g:00ff67:99999999999999999999:r",
            "i:alice:1:r",
            "i:alice:ph one:1:r",
            "i::phone:1:r",
            "i:a:b:c:1:r",
            "s:alice:phone:abcd:r",
            "s:alice:phone:r",
            "r:alice:r",
        ] {
            assert_eq!(parse(payload), None, "{payload:?}");
        }
    }

    #[test]
    fn runs_group_consecutive_sequence_numbers() {
        assert_eq!(runs(vec![]), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(runs(vec![5, 3, 4, 4, 9, 1]), [1..=1, 3..=5, 9..=9]);
        assert_eq!(bounds(&(3..=5)), (2, 5, 3));
        assert_eq!(bounds(&(1..=1)), (0, 1, 1));
    }

    fn key_packages_low(available: u32) -> InboxItem {
        InboxItem::KeyPackagesLow { available }
    }

    /// Two replicas of one fresh database; `client` registered and
    /// subscribed to `ours`, whose relay runs and has marked it lagged once.
    struct Relay {
        ours: PostgresStore,
        theirs: PostgresStore,
        client: ClientId,
        subscription: crate::hub::Subscription,
        shutdown: CancellationToken,
        relay: tokio::task::JoinHandle<()>,
    }

    async fn relay_for(user: &str) -> Relay {
        let (ours, url) = fresh_database().await;
        let theirs = PostgresStore::connect(&url, 2).await.unwrap();
        let client = ClientId::new(user, "phone").unwrap();
        let device = NewDevice {
            client: ClientRecord {
                id: client.clone(),
                signature_key: vec![7; 32],
                certificate: Some(vec![8; 96]),
            },
            identity_key: vec![9; 32],
        };
        ours.register_client(&device).await.unwrap();
        let hub = Hub::new();
        let subscription = hub.subscribe(&client, [0; 32], []);
        let shutdown = CancellationToken::new();
        let relay = tokio::spawn(run(ours.clone(), hub, shutdown.clone()));
        // Marked lagged once listening.
        subscription.signal.lagged().await;
        Relay {
            ours,
            theirs,
            client,
            subscription,
            shutdown,
            relay,
        }
    }

    impl Relay {
        async fn stop(self) {
            self.shutdown.cancel();
            self.relay.await.unwrap();
        }
    }

    #[tokio::test]
    async fn relays_the_entries_of_other_replicas_only() {
        let mut relay = relay_for("alice").await;
        let alice = relay.client.clone();
        relay
            .ours
            .push_inbox(&alice, key_packages_low(1))
            .await
            .unwrap();
        relay
            .theirs
            .push_inbox(&alice, key_packages_low(2))
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), relay.subscription.events.recv())
            .await
            .expect("the other replica's entry arrives");
        match event {
            Some(LiveEvent::Inbox(InboxEntry { seq, item })) => {
                assert_eq!((seq, item), (2, key_packages_low(2)));
            }
            other => panic!("expected the other replica's inbox entry, got {other:?}"),
        }
        relay.stop().await;
    }

    #[tokio::test]
    async fn reconnects_and_has_subscribers_re_read_when_the_connection_drops() {
        let mut relay = relay_for("bob").await;
        let bob = relay.client.clone();
        let terminated: bool = relay
            .theirs
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND query = $1",
                &[&format!("LISTEN {CHANNEL}")],
            )
            .await
            .unwrap()
            .get(0);
        assert!(terminated);
        // Listening again: what was missed meanwhile is for the store to say.
        tokio::time::timeout(Duration::from_secs(10), relay.subscription.signal.lagged())
            .await
            .expect("the subscriber is told to re-read after the reconnect");

        relay
            .theirs
            .push_inbox(&bob, key_packages_low(3))
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), relay.subscription.events.recv())
            .await
            .expect("entries are relayed again");
        assert!(matches!(
            event,
            Some(LiveEvent::Inbox(InboxEntry { seq: 1, .. }))
        ));
        relay.stop().await;
    }
}
