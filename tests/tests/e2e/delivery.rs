//! Delivery: at least once, in order, exactly once after dedup; a member that
//! was away catches up; a retried send is delivered once.

use confide_client::{Client, ClientId, Event, StateLocation};
use confide_ds::domain::EntryKind;
use confide_proto::v1;
use confide_tests::rpc::{group_stream, next_group_entry, subscribe};
use confide_tests::{Member, TestApp, spawn_app, spawn_app_with};
use tonic::Code;

/// What a member observed of a group, reduced to messages and epoch changes.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Message(String),
    Epoch(u64),
}

fn transcript(member: &Member, group: &[u8]) -> Vec<Seen> {
    member
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::Message { group: g, body, .. } if g == group => Some(Seen::Message(
                String::from_utf8(body.clone()).expect("UTF-8 bodies"),
            )),
            Event::EpochChanged {
                group: g, epoch, ..
            } if g == group => Some(Seen::Epoch(*epoch)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_member_catches_up_on_reconnect_in_order_without_duplicates() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;

    // Bob is away while 50 messages and 2 commits go by.
    let mut expected = Vec::new();
    for i in 0..50 {
        if i == 20 {
            expected.push(Seen::Epoch(alice.self_update(&group).await?.epoch));
        }
        if i == 40 {
            expected.push(Seen::Epoch(carol.self_update(&group).await?.epoch));
        }
        let body = format!("message {i}");
        let sender = if i % 2 == 0 { &mut alice } else { &mut carol };
        sender.send(&group, body.as_bytes()).await?;
        expected.push(Seen::Message(body));
    }

    bob.reconnect(app.api().await).await?;
    let received = bob.expect_messages(&group, 50).await;
    assert!(
        received.windows(2).all(|w| w[0].seq < w[1].seq),
        "in log order"
    );
    assert_eq!(transcript(&bob, &group), expected);
    assert!(
        bob.catch_up().await.is_empty(),
        "nothing is delivered twice"
    );
    alice.catch_up().await;
    assert_eq!(bob.epoch(&group)?, alice.epoch(&group)?);
    assert_eq!(
        bob.epoch_authenticator(&group)?,
        alice.epoch_authenticator(&group)?
    );
    Ok(())
}

/// Sends `message` (an MLS PrivateMessage made with
/// `Client::encrypt_message`) under `message_id` in one raw call, as a client
/// resending the stored bytes of a send whose answer it lost.
async fn send_bytes(
    member: &Member,
    group: &[u8],
    message_id: &[u8],
    message: &[u8],
) -> Result<u64, tonic::Status> {
    let api = member.api();
    let request = api.request(v1::SendMessageRequest {
        group_id: group.to_vec().into(),
        message_id: message_id.to_vec().into(),
        message: message.to_vec().into(),
    });
    Ok(api.groups().send_message(request).await?.into_inner().seq)
}

fn application_entries(log: &[confide_ds::domain::GroupEntry]) -> usize {
    log.iter()
        .filter(|e| e.kind == EntryKind::Application)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_send_gets_the_same_sequence_number_and_is_delivered_once() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;

    let once = alice.encrypt_message(&group, b"once")?;
    let first = send_bytes(&alice, &group, b"message-1", &once).await?;
    let retried = send_bytes(&alice, &group, b"message-1", &once).await?;
    assert_eq!(retried, first, "a retry returns the original seq");
    let next = alice.send(&group, b"after").await?;
    assert_eq!(next, first + 1, "the retry took no place in the log");

    let received = bob.expect_messages(&group, 2).await;
    assert_eq!(received[0].seq, first);
    assert_eq!(received[0].body, b"once");
    assert_eq!(received[1].body, b"after");
    assert_eq!(
        application_entries(&app.group_log(alice.id(), &group).await),
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_message_id_with_other_bytes_is_already_exists_and_nothing_is_delivered()
-> anyhow::Result<()> {
    use tonic_types::StatusExt;
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;

    let first = alice.send_with_id(&group, b"message-1", b"first").await?;
    let other = alice.encrypt_message(&group, b"another message, same id")?;
    let status = send_bytes(&alice, &group, b"message-1", &other)
        .await
        .expect_err("a reused message id with other bytes is refused");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let info = status
        .get_details_error_info()
        .expect("the refusal carries an ErrorInfo");
    assert_eq!(info.reason, confide_proto::REASON_IDEMPOTENCY_KEY_REUSED);
    assert_eq!(info.domain, confide_proto::ERROR_DOMAIN);

    let next = alice.send(&group, b"next").await?;
    assert_eq!(next, first + 1, "the refused message took no place");
    let bodies: Vec<Vec<u8>> = bob
        .expect_messages(&group, 2)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, [b"first".to_vec(), b"next".to_vec()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_epoch_moved_on_returns_the_original_seq() -> anyhow::Result<()> {
    let lag = 1;
    let app = spawn_app_with(|settings| settings.max_epoch_lag = lag).await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;

    let message = alice.encrypt_message(&group, b"sent before the commits")?;
    let seq = send_bytes(&alice, &group, b"message-1", &message).await?;
    // Further than the epoch window takes a message.
    for _ in 0..=lag {
        bob.self_update(&group).await?;
    }
    let stale = alice.encrypt_message(&group, b"a new message in the old epoch")?;
    let refused = send_bytes(&alice, &group, b"message-2", &stale)
        .await
        .expect_err("the old epoch is outside the window");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    assert_eq!(
        send_bytes(&alice, &group, b"message-1", &message).await?,
        seq,
        "the retry finds the stored message"
    );
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].seq, seq);
    assert_eq!(
        application_entries(&app.group_log(bob.id(), &group).await),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_entries_are_delivered_again_acknowledged_ones_are_not() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let (group, [mut alice, bob]) = app.conversation(["alice", "bob"]).await;
    for i in 0..3 {
        alice
            .send(&group, format!("message {i}").as_bytes())
            .await?;
    }

    // Bob's stream delivers the three; he drops it without acking.
    let mut stream = subscribe(bob.api()).await;
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(next_group_entry(&mut stream).await);
    }
    drop(stream);
    let mut stream = subscribe(bob.api()).await;
    for entry in &first {
        assert_eq!(&next_group_entry(&mut stream).await, entry, "redelivered");
    }
    drop(stream);

    // Once he acks the second, only the third comes again; an ack further
    // back does not move the cursor back.
    let ack = |seq| {
        bob.api().request(v1::AckRequest {
            stream: group_stream(&group),
            seq,
        })
    };
    bob.api().delivery().ack(ack(first[1].seq)).await?;
    bob.api().delivery().ack(ack(first[0].seq)).await?;
    let mut stream = subscribe(bob.api()).await;
    assert_eq!(next_group_entry(&mut stream).await, first[2]);

    // New entries follow live, in order.
    let seq = alice.send(&group, b"live").await?;
    let live = next_group_entry(&mut stream).await;
    assert_eq!(live.seq, seq);
    assert_eq!(seq, first[2].seq + 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_restarted_from_its_state_file_resumes_its_groups() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let state = StateLocation::File(dir.path().join("bob.db"));
    let (group, [mut alice]) = app.conversation(["alice"]).await;
    let mut bob = member_on_file(&app, "bob", &state).await?;
    alice.add_users(&group, &["bob"]).await?;
    bob.expect_joined(&group).await;
    alice.send(&group, b"before the restart").await?;
    bob.expect_messages(&group, 1).await;
    drop(bob);

    alice.send(&group, b"while bob was down").await?;
    alice.self_update(&group).await?;
    alice.send(&group, b"in the new epoch").await?;
    let mut bob = Member::new(Client::open(app.api().await, &state).await?);
    let received = bob.expect_messages(&group, 2).await;
    let bodies: Vec<&[u8]> = received.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [&b"while bob was down"[..], b"in the new epoch"]);
    assert_eq!(
        bob.epoch_authenticator(&group)?,
        alice.epoch_authenticator(&group)?
    );
    bob.send(&group, b"back").await?;
    assert_eq!(alice.expect_messages(&group, 1).await[0].body, b"back");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_beyond_the_end_of_a_stream_does_not_skip_later_entries() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, bob]) = app.conversation(["alice", "bob"]).await;
    let last = alice.send(&group, b"hello").await?;

    // Bob acknowledges everything so far, then, confused, entries that do
    // not exist yet. The DS refuses that (or could clamp it) and must not
    // skip what is sent later.
    let api = bob.api();
    api.delivery()
        .ack(api.request(v1::AckRequest {
            stream: group_stream(&group),
            seq: last,
        }))
        .await?;
    let answer = api
        .delivery()
        .ack(api.request(v1::AckRequest {
            stream: group_stream(&group),
            seq: last + 100,
        }))
        .await;
    match &answer {
        Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{status:?}"),
        Ok(_) => panic!("an ack past the end of the stream was accepted"),
    }
    let seq = alice.send(&group, b"later").await?;
    let mut stream = subscribe(api).await;
    assert_eq!(
        next_group_entry(&mut stream).await.seq,
        seq,
        "the DS answered the ack with {answer:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_holds_up_nobody_and_misses_nothing() -> anyhow::Result<()>
{
    // Small buffers, a 16 KiB HTTP/2 receive window and 2 KiB messages: a
    // few hundred messages overflow the stalled stream's window, its gRPC
    // buffer and its live queue in the hub, so the DS drops its live events
    // and it must re-read from the store.
    const SENT: usize = 300;
    let app = spawn_app_with(|settings| {
        settings.live_queue_depth = 8;
        settings.stream_buffer = 8;
    })
    .await;
    let (group, [mut alice, mut bob, carol]) = app.conversation(["alice", "bob", "carol"]).await;
    let small_window = tonic::transport::Endpoint::from_shared(app.endpoint.clone())?
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await?;
    let mut stalled = subscribe(&carol.api().on_channel(small_window)).await;

    let padding = "x".repeat(2048);
    let send_all = async {
        let mut seqs = Vec::with_capacity(SENT);
        for i in 0..SENT {
            let body = format!("message {i} {padding}");
            seqs.push(alice.send(&group, body.as_bytes()).await?);
        }
        anyhow::Ok(seqs)
    };
    let (sent, live) = tokio::join!(send_all, bob.expect_live_messages(&group, SENT));
    let sent = sent?;
    assert_eq!(
        live.iter().map(|m| m.seq).collect::<Vec<_>>(),
        sent,
        "bob, reading live, got every message in order while carol read nothing"
    );

    // Carol finally reads: every entry after her cursor, in order, no gap,
    // no duplicate, through to the last message.
    let last = *sent.last().expect("messages were sent");
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let entry = next_group_entry(&mut stalled).await;
        if entry.group_id.as_ref() == group.as_slice() {
            seqs.push(entry.seq);
        }
    }
    let first = seqs[0];
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>());
    assert!(first <= sent[0], "carol's stream skipped messages");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_after_many_messages_reads_the_next_ones() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let state = StateLocation::File(dir.path().join("bob.db"));
    let (group, [mut alice]) = app.conversation(["alice"]).await;
    let mut bob = member_on_file(&app, "bob", &state).await?;
    alice.add_users(&group, &["bob"]).await?;
    bob.expect_joined(&group).await;
    for round in 0..3 {
        for i in 0..20 {
            let body = format!("round {round} message {i}");
            let id = [round as u8, i as u8];
            // Encrypted twice, as by a sender that lost the answer and
            // encrypted again: the second encryption (a later generation)
            // is never delivered.
            alice.send_with_id(&group, &id, body.as_bytes()).await?;
            alice.encrypt_message(&group, body.as_bytes())?;
        }
        let received = bob.expect_messages(&group, 20).await;
        assert_eq!(
            received[19].body,
            format!("round {round} message 19").as_bytes()
        );
        drop(bob);
        bob = Member::new(Client::open(app.api().await, &state).await?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_restarted_from_its_state_file_is_read_by_the_others() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let state = StateLocation::File(dir.path().join("bob.db"));
    let (group, [mut alice]) = app.conversation(["alice"]).await;
    let mut bob = member_on_file(&app, "bob", &state).await?;
    alice.add_users(&group, &["bob"]).await?;
    bob.expect_joined(&group).await;
    for round in 0..3 {
        for i in 0..10 {
            bob.send(&group, format!("round {round} message {i}").as_bytes())
                .await?;
        }
        // `expect_messages` counts every message alice decrypted so far.
        let received = alice.expect_messages(&group, 10 * (round + 1)).await;
        let last = received.last().expect("messages arrived");
        assert_eq!(last.body, format!("round {round} message 9").as_bytes());
        drop(bob);
        bob = Member::new(Client::open(app.api().await, &state).await?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_before_the_sender_saw_a_newcomer_is_skipped_by_the_newcomer()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut carol]) = app.conversation(["alice", "carol"]).await;
    let mut bob = app.client("bob", "phone").await;
    alice.add_users(&group, &["bob"]).await?;
    bob.expect_joined(&group).await;
    // Carol has not seen the commit adding bob: her message is for the
    // members of the epoch before, which the DS still accepts. Bob cannot
    // read it and must not report it as undecryptable (Member fails on that).
    carol.send(&group, b"before carol saw bob").await?;
    carol.sync().await?;
    carol.send(&group, b"after carol saw bob").await?;
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"after carol saw bob");
    let received = alice.expect_messages(&group, 2).await;
    assert_eq!(received[0].body, b"before carol saw bob");
    Ok(())
}

/// A member whose state lives in a file, so it can be restarted from it.
async fn member_on_file(
    app: &TestApp,
    user: &str,
    state: &StateLocation,
) -> anyhow::Result<Member> {
    let client =
        Client::register(app.api().await, ClientId::new(user, "phone")?, state, "").await?;
    Ok(Member::new(client))
}

/// Group commit: members of two groups all sending at once share the DS's
/// append transactions; each sender is told the seq its own message got,
/// and every member reads every message at exactly that seq, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_in_several_groups_are_each_told_their_own_seq_without_gaps() {
    const EACH: usize = 8;
    let app = spawn_app().await;
    let (one, [a, b, c]) = app.conversation(["ann", "ben", "cat"]).await;
    let (two, [d, e, f]) = app.conversation(["dan", "eve", "fay"]).await;
    let mut members = [(one.clone(), a), (one.clone(), b), (one.clone(), c)]
        .into_iter()
        .chain([(two.clone(), d), (two.clone(), e), (two.clone(), f)])
        .collect::<Vec<_>>();

    let sends = members.iter_mut().map(|(group, member)| async move {
        let user = member.id().user().to_owned();
        let mut told = Vec::new();
        for i in 0..EACH {
            let body = format!("{user} {i}");
            let seq = member.send(group, body.as_bytes()).await.expect("send");
            told.push((group.clone(), seq, body));
        }
        told
    });
    let told: Vec<Vec<(Vec<u8>, u64, String)>> = futures::future::join_all(sends).await;

    for (index, (group, member)) in members.iter_mut().enumerate() {
        // What the group's log holds, as its senders were told.
        let mut log: Vec<(u64, String)> = told
            .iter()
            .flatten()
            .filter(|(g, _, _)| g == group)
            .map(|(_, seq, body)| (*seq, body.clone()))
            .collect();
        log.sort();
        let seqs: Vec<u64> = log.iter().map(|(seq, _)| *seq).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "application messages of one group follow each other: {seqs:?}"
        );
        assert_eq!(seqs.len(), 3 * EACH);

        let received = member.expect_messages(group, 2 * EACH).await;
        let mut seen: Vec<(u64, String)> = received
            .iter()
            .map(|message| {
                let body = String::from_utf8(message.body.clone()).expect("UTF-8 bodies");
                (message.seq, body)
            })
            .chain(
                told[index]
                    .iter()
                    .map(|(_, seq, body)| (*seq, body.clone())),
            )
            .collect();
        seen.sort();
        assert_eq!(seen, log, "{} reads each message at its seq", member.id());
    }
}
