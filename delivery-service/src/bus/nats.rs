//! The bus on NATS (core NATS, no JetStream: the store is the durable part).
//! Every replica publishes its notices on `<subject_prefix>.wake` and
//! subscribes to it; a message it sent itself comes back and is skipped by
//! its replica id.
//!
//! The DS starts and serves whether NATS can be reached or not: the client
//! connects in the background and reconnects for as long as it takes, with
//! back-off (async-nats's: up to 4 s between attempts), logging each
//! disconnection and reconnection. Meanwhile every subscriber re-reads the
//! store every [`OUTAGE_REREAD`], and once more when the connection (with
//! its subscription) is back; a replica whose own connection came back also
//! tells the others to re-read, since what it published while the connection
//! was failing may never have reached them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, Subscriber};
use futures::StreamExt;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

use super::{Appended, BATCH, Bus, Notice, OUTAGE_REREAD, apply, relay, wire};
use crate::config::BusSettings;
use crate::hub::Hub;
use crate::store::postgres::PostgresStore;

/// Announcements received and waiting for their rows to be read. When full,
/// further ones are dropped and every subscriber is marked lagged instead.
const RECEIVE_QUEUE: usize = 4096;
/// Longest one attempt to reach a NATS server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the round trip confirming the subscription may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the client pings the server: a connection that died without a
/// word is noticed within about two of these.
const PING_INTERVAL: Duration = Duration::from_secs(20);

/// The subject every replica of a deployment publishes and subscribes to.
fn subject(settings: &BusSettings) -> String {
    format!("{}.wake", settings.subject_prefix)
}

/// Publishes what this replica announces on `bus` and relays what the
/// others announce to `hub`, reading the entries from `store`, until
/// `shutdown`. Runs once per [`Bus`].
pub(crate) async fn run(
    bus: Arc<Bus>,
    settings: BusSettings,
    store: PostgresStore,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) {
    let Some(queue) = bus.take_queue() else {
        tracing::error!("the bus runs once per replica");
        return;
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let options = ConnectOptions::new()
        .name(format!("confide-ds {}", bus.replica))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(PING_INTERVAL)
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        });
    let client = match options.connect(settings.url.as_str()).await {
        Ok(client) => client,
        Err(error) => {
            // Only a URL it cannot use (checked when the settings load).
            tracing::error!(%error, "the bus cannot use NATS; other replicas' entries arrive only when subscribers re-read");
            return;
        }
    };
    let subject = subject(&settings);
    let subscriber = match client.subscribe(subject.clone()).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(%error, %subject, "the bus cannot subscribe");
            return;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        () = publish(&client, subject, &bus, queue) => {}
        () = receive(&client, subscriber, events, &bus, &store, &hub) => {}
    }
    // What was announced last still goes out, if NATS is there to take it.
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
}

/// Sends what is queued, in order, one bus message per batch; after a drop
/// (the queue was full, or a publish failed) tells the others to re-read.
async fn publish(client: &Client, subject: String, bus: &Bus, mut queue: mpsc::Receiver<Notice>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let payload = wire::encode(&bus.replica, &batch);
        batch.clear();
        if let Err(error) = client.publish(subject.clone(), payload.into()).await {
            tracing::warn!(%error, "could not publish to the bus");
            bus.lost.store(true, Ordering::Release);
        }
        // A drop means the queue was full: this publisher is behind, and the
        // re-read it asks for comes after the dropped commits.
        if bus.lost.swap(false, Ordering::AcqRel) {
            let payload = wire::encode(&bus.replica, &[Notice::Lagged]);
            if let Err(error) = client.publish(subject.clone(), payload.into()).await {
                tracing::warn!(%error, "could not publish to the bus");
            }
        }
    }
}

/// Follows the connection's events and the subscription: endings and
/// re-reads apply at once, appended entries go to the relay.
async fn receive(
    client: &Client,
    mut subscriber: Subscriber,
    mut events: mpsc::UnboundedReceiver<Event>,
    bus: &Bus,
    store: &PostgresStore,
    hub: &Hub,
) {
    let (tx, rx) = mpsc::channel(RECEIVE_QUEUE);
    let overflowed = AtomicBool::new(false);
    let relaying = relay::run(store, hub, rx, &overflowed);
    let following = async {
        let mut connected_before = false;
        let mut connected = false;
        // Whether a failure to reach NATS was logged since the last connect:
        // retries (every few seconds) log at debug level.
        let mut failure_logged = false;
        // The first connect marks subscribers lagged itself; the first
        // re-read for want of it comes one period after the start.
        let mut outage =
            tokio::time::interval_at(tokio::time::Instant::now() + OUTAGE_REREAD, OUTAGE_REREAD);
        outage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return };
                    match event {
                        Event::Connected => {
                            // The server has the subscription once it answered
                            // a ping sent after it: only then re-read.
                            match tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await {
                                Ok(Ok(())) => {}
                                Ok(Err(error)) => tracing::warn!(%error, "the bus connection did not confirm its subscription"),
                                Err(_) => tracing::warn!(timeout = ?FLUSH_TIMEOUT, "the bus connection did not confirm its subscription in time"),
                            }
                            hub.mark_all_lagged();
                            if connected_before {
                                tracing::info!("connected to NATS again; subscribers re-read the store");
                                // What this replica sent meanwhile may be lost.
                                bus.announce(Notice::Lagged);
                            } else {
                                tracing::info!("connected to NATS: other replicas' entries arrive live");
                            }
                            connected = true;
                            connected_before = true;
                            failure_logged = false;
                        }
                        Event::Disconnected => {
                            connected = false;
                            failure_logged = true;
                            tracing::warn!(
                                reread_every = ?OUTAGE_REREAD,
                                "lost NATS: other replicas' entries arrive when subscribers re-read the store"
                            );
                        }
                        Event::SlowConsumer(_) => {
                            tracing::warn!("fell behind the bus; subscribers re-read the store");
                            hub.mark_all_lagged();
                        }
                        Event::ClientError(error) if failure_logged => {
                            tracing::debug!(%error, "NATS still cannot be reached");
                        }
                        Event::ClientError(error) => {
                            failure_logged = true;
                            tracing::warn!(
                                %error,
                                reread_every = ?OUTAGE_REREAD,
                                "NATS cannot be reached; retrying in the background, and other \
                                 replicas' entries arrive when subscribers re-read the store"
                            );
                        }
                        other => tracing::info!(event = %other, "NATS"),
                    }
                }
                message = subscriber.next() => {
                    let Some(message) = message else { return };
                    receive_message(&message.payload, bus, hub, &tx, &overflowed);
                }
                _ = outage.tick(), if !connected => hub.mark_all_lagged(),
            }
        }
    };
    tokio::select! {
        () = relaying => {}
        () = following => {}
    }
}

/// Applies one bus message from another replica: entries are queued for the
/// relay (dropped with `overflowed` set when it is full), the rest applied.
fn receive_message(
    payload: &[u8],
    bus: &Bus,
    hub: &Hub,
    relay: &mpsc::Sender<Appended>,
    overflowed: &AtomicBool,
) {
    let Some((origin, notices)) = wire::decode(payload) else {
        tracing::warn!("ignoring a bus message that is not text");
        return;
    };
    if origin == bus.replica {
        return;
    }
    for notice in notices {
        let Some(notice) = notice else {
            tracing::warn!("ignoring a bus line that names no notice");
            continue;
        };
        apply(
            hub,
            notice,
            &mut |appended| match relay.try_send(appended) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => overflowed.store(true, Ordering::Release),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::testing::on_test_nats;
    use crate::config::{Settings, StoreKind};
    use crate::domain::{ClientId, InboxEntry, InboxItem};
    use crate::hub::{LiveEvent, Subscription};
    use crate::state::{AppState, Ds};
    use crate::store::postgres::testing::fresh_database;
    use crate::store::{ClientRecord, NewDevice, Store};

    const WAIT: Duration = Duration::from_secs(10);

    fn key_packages_low(available: u32) -> InboxItem {
        InboxItem::KeyPackagesLow { available }
    }

    /// A replica on `store` with `settings`, its background tasks (the bus
    /// among them) not started yet.
    fn replica(store: PostgresStore, settings: &Settings) -> AppState {
        let mut settings = settings.clone();
        settings.store = StoreKind::Postgres;
        Ds::new(store.into(), settings, CancellationToken::new()).unwrap()
    }

    async fn register(store: &PostgresStore, user: &str) -> ClientId {
        let client = ClientId::new(user, "phone").unwrap();
        let device = NewDevice {
            client: ClientRecord {
                id: client.clone(),
                signature_key: vec![7; 32],
                certificate: Some(vec![8; 96]),
            },
            identity_key: vec![9; 32],
        };
        store.register_client(&device).await.unwrap();
        client
    }

    async fn next_inbox_seq(subscription: &mut Subscription) -> u64 {
        match tokio::time::timeout(WAIT, subscription.next_event()).await {
            Ok(Some(LiveEvent::Inbox(InboxEntry { seq, .. }))) => seq,
            other => panic!("expected an inbox entry, got {other:?}"),
        }
    }

    async fn push(state: &AppState, client: &ClientId, available: u32) {
        let entry = state
            .store
            .push_inbox(client, key_packages_low(available))
            .await
            .unwrap();
        state.publish_inbox(client, &entry);
    }

    #[tokio::test]
    async fn a_replica_relays_what_another_appends_and_skips_its_own() {
        let (store, url) = fresh_database().await;
        let mut settings = Settings::for_tests();
        on_test_nats(&mut settings).await;
        let alice = register(&store, "alice").await;
        let theirs = replica(PostgresStore::connect(&url, 2).await.unwrap(), &settings);
        let ours = replica(store, &settings);
        let mut subscription = ours.hub.subscribe(&alice, [0; 32], []);
        crate::server::start(&theirs).await;
        crate::server::start(&ours).await;
        // Marked lagged once the subscription to the bus is up.
        tokio::time::timeout(WAIT, subscription.signal.lagged())
            .await
            .expect("subscribers re-read once the bus is up");

        let watcher = async_nats::connect(settings.bus.url.as_str())
            .await
            .unwrap();
        let mut wake = watcher.subscribe(subject(&settings.bus)).await.unwrap();
        watcher.flush().await.unwrap();
        push(&ours, &alice, 1).await;
        assert_eq!(next_inbox_seq(&mut subscription).await, 1);
        // Once NATS routed our own announcement, theirs comes after it on
        // every subscription, ours too.
        let ours_announced = tokio::time::timeout(WAIT, wake.next())
            .await
            .expect("our announcement is on the bus")
            .unwrap();
        let (origin, _) = wire::decode(&ours_announced.payload).unwrap();
        assert_eq!(origin, ours.bus.as_ref().unwrap().replica);
        push(&theirs, &alice, 2).await;
        // Our own announcement was skipped: no second seq 1 before it.
        assert_eq!(next_inbox_seq(&mut subscription).await, 2);
        assert_eq!(ours.bus.as_ref().unwrap().dropped(), 0);
        ours.shutdown.cancel();
        theirs.shutdown.cancel();
    }

    #[tokio::test]
    async fn a_replica_that_dropped_announcements_has_the_others_re_read() {
        let (store, url) = fresh_database().await;
        let mut settings = Settings::for_tests();
        on_test_nats(&mut settings).await;
        let carol = register(&store, "carol").await;
        let theirs = replica(store, &settings);
        let subscription = theirs.hub.subscribe(&carol, [0; 32], []);
        crate::server::start(&theirs).await;
        tokio::time::timeout(WAIT, subscription.signal.lagged())
            .await
            .expect("subscribers re-read once the bus is up");

        let ours = replica(PostgresStore::connect(&url, 2).await.unwrap(), &settings);
        let bus = ours.bus.clone().unwrap();
        // More than the queue holds, before anything publishes.
        let group_id = crate::domain::GroupId::new(*b"nobody follows").unwrap();
        for seq in 1..=(super::super::PUBLISH_QUEUE as u64 + 1) {
            bus.announce(Notice::Appended(Appended::Group {
                group_id: group_id.clone(),
                seq,
            }));
        }
        assert_eq!(bus.dropped(), 1);
        crate::server::start(&ours).await;
        tokio::time::timeout(WAIT, subscription.signal.lagged())
            .await
            .expect("the other replica's subscribers re-read what was dropped");
        ours.shutdown.cancel();
        theirs.shutdown.cancel();
    }

    #[tokio::test]
    async fn while_nats_cannot_be_reached_subscribers_keep_re_reading_and_sends_go_on() {
        let (store, _) = fresh_database().await;
        let mut settings = Settings::for_tests();
        on_test_nats(&mut settings).await;
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        settings.bus.url = format!("nats://127.0.0.1:{port}");
        let bob = register(&store, "bob").await;
        let ds = replica(store, &settings);
        let mut subscription = ds.hub.subscribe(&bob, [0; 32], []);
        crate::server::start(&ds).await;
        for _ in 0..2 {
            tokio::time::timeout(OUTAGE_REREAD * 3, subscription.signal.lagged())
                .await
                .expect("subscribers re-read the store while NATS is away");
        }
        // This replica's own subscribers are served live all the same.
        push(&ds, &bob, 3).await;
        assert_eq!(next_inbox_seq(&mut subscription).await, 1);
        ds.shutdown.cancel();
    }
}
