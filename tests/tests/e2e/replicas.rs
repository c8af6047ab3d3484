//! Several DS replicas on one database and one NATS: what one accepts, the
//! others deliver and build on, through a NATS outage too.

use confide_client::ClientId;
use confide_ds::config::BusKind;
use confide_tests::rpc::{group_seqs_until_welcome, next_group_entry, next_welcome, subscribe};
use confide_tests::{Member, PrivateNats, RawMember, Received, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_another_replica_receives_messages_live() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    bob.reconnect(replica.api().await).await?;

    let talk = async {
        for i in 0..3 {
            alice
                .send(&group, format!("message {i}").as_bytes())
                .await?;
        }
        anyhow::Ok(())
    };
    let (talked, received) = tokio::join!(talk, bob.expect_live_messages(&group, 3));
    talked?;
    let bodies: Vec<Vec<u8>> = received.into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, [b"message 0", b"message 1", b"message 2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_through_one_replica_gets_the_group_live_on_another() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (group, [mut alice]) = app.conversation(["alice"]).await;
    alice.send(&group, b"before dave").await?;
    let mut dave = app.client("dave", "phone").await;
    dave.reconnect(replica.api().await).await?;
    let mut stream = subscribe(dave.api()).await;
    alice.add_users(&group, &["dave"]).await?;
    let seq = alice.send(&group, b"welcome dave").await?;

    let welcome = next_welcome(&mut stream).await;
    assert_eq!(welcome.group_id.as_ref(), group.as_slice());
    let entry = next_group_entry(&mut stream).await;
    assert_eq!(
        entry.seq, seq,
        "the first group entry is the first after the add"
    );
    drop(stream);

    // What follows arrives live too, through the library's own stream.
    let (sent, received) = tokio::join!(
        alice.send(&group, b"still there?"),
        dave.expect_live_messages(&group, 2)
    );
    sent?;
    let bodies: Vec<&[u8]> = received.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [&b"welcome dave"[..], b"still there?"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_through_one_replica_stops_receiving_on_another() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    carol.reconnect(replica.api().await).await?;
    let mut stream = subscribe(carol.api()).await;
    alice.send(&group, b"before").await?;
    let removal = alice.remove_users(&group, &["carol"]).await?;
    alice.send(&group, b"after").await?;

    // Bob invites carol elsewhere: once that Welcome is on her stream, the
    // replica has routed alice's entries before it too.
    let other = bob.create_group().await?;
    bob.add_users(&other, &["carol"]).await?;
    let seen = group_seqs_until_welcome(&mut stream, &group, &other).await;
    assert_eq!(
        seen,
        [removal.seq - 1, removal.seq],
        "carol's stream on the other replica carries the group up to the commit removing her"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_through_two_replicas_keep_one_commit_per_epoch() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    bob.reconnect(replica.api().await).await?;

    // Taking turns, each replica must see the epoch the other one moved to.
    for _ in 0..3 {
        alice.self_update(&group).await?;
        bob.self_update(&group).await?;
    }
    // And racing.
    let (a, b) = tokio::join!(alice.self_update(&group), bob.self_update(&group));
    let epoch = a?.epoch.max(b?.epoch);

    let commit_epochs = app.commit_epochs(alice.id(), &group).await;
    assert_eq!(commit_epochs, (0..epoch).collect::<Vec<_>>());
    alice.expect_epoch(&group, epoch).await;
    bob.expect_epoch(&group, epoch).await;
    assert_eq!(
        alice.epoch_authenticator(&group)?,
        bob.epoch_authenticator(&group)?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_made_through_one_replica_can_be_committed_through_another() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (group, [mut alice, bob]) = app.conversation(["alice", "bob"]).await;
    // Rita uses the replica; alice's commits go through the first DS.
    let mut rita = RawMember::register(&replica, "rita", "laptop").await;
    alice.add_users(&group, &["rita"]).await?;
    rita.join().await;

    let proposal = rita.propose_remove(bob.id());
    rita.submit_proposal(&group, proposal).await?;
    alice.self_update(&group).await?;
    assert_eq!(
        alice.members(&group)?,
        [alice.id().clone(), rita.id.clone()]
    );
    Ok(())
}

/// The messages `member` should decrypt: all but its own, in seq order.
fn seen_by(sent: &[Received], member: &ClientId) -> Vec<Received> {
    let mut seen: Vec<Received> = sent
        .iter()
        .filter(|m| m.sender != *member)
        .cloned()
        .collect();
    seen.sort_by_key(|m| m.seq);
    seen
}

/// Each member sends one message per round, in turn; what the DS acknowledged.
async fn talk(group: &[u8], members: &mut [Member], phase: &str, rounds: usize) -> Vec<Received> {
    let mut sent = Vec::new();
    for round in 0..rounds {
        for member in members.iter_mut() {
            let body = format!("{} {phase} {round}", member.id().user());
            let seq = member
                .send(group, body.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("{} sending {body:?}: {e}", member.id()));
            sent.push(Received {
                seq,
                sender: member.id().clone(),
                body: body.into_bytes(),
            });
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_during_a_three_replica_run_loses_nothing() {
    let mut nats = PrivateNats::start().await;
    let url = nats.url();
    let app = spawn_app_with(|s| s.bus.url = url).await;
    let (second, third) = (app.spawn_replica().await, app.spawn_replica().await);
    let (group, [alice, mut bob, mut carol]) = app.conversation(["alice", "bob", "carol"]).await;
    bob.reconnect(second.api().await).await.unwrap();
    carol.reconnect(third.api().await).await.unwrap();
    let mut members = [alice, bob, carol];

    let mut sent = talk(&group, &mut members, "before", 2).await;
    expect_every_message(&group, &mut members, &sent).await;

    nats.kill();
    // Sends are acknowledged as ever: the bus is a wake-up, not the log.
    sent.extend(talk(&group, &mut members, "during", 3).await);
    nats.restart().await;
    // Nothing sent since: what was sent during the outage arrives because
    // the replicas re-read, not because a later entry shows a gap.
    expect_every_message(&group, &mut members, &sent).await;
    sent.extend(talk(&group, &mut members, "after", 2).await);
    expect_every_message(&group, &mut members, &sent).await;

    let mut seqs: Vec<u64> = sent.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), sent.len(), "every send got its own seq");
}

/// Every member receives every acknowledged message of the others on its
/// live stream, in order, once each (a gap would have failed it already),
/// and nothing more.
async fn expect_every_message(group: &[u8], members: &mut [Member], sent: &[Received]) {
    for member in members {
        let expected = seen_by(sent, member.id());
        assert_eq!(
            member.expect_live_messages(group, expected.len()).await,
            expected,
            "what {} received on its live stream",
            member.id()
        );
        member.catch_up().await;
        assert_eq!(member.messages(group), expected, "nothing more arrives");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_without_a_bus_delivers_live_to_its_own_subscribers() {
    let app = spawn_app_with(|s| s.bus.kind = BusKind::None).await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let (sent, received) = tokio::join!(
        alice.send(&group, b"no bus needed"),
        bob.expect_live_messages(&group, 1)
    );
    sent.unwrap();
    assert_eq!(received[0].body, b"no bus needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ds_whose_nats_cannot_be_reached_starts_and_serves_its_own_members() {
    let mut nats = PrivateNats::start().await;
    let url = nats.url();
    nats.kill();
    let app = spawn_app_with(|s| s.bus.url = url).await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let (sent, received) = tokio::join!(
        alice.send(&group, b"NATS is away"),
        bob.expect_live_messages(&group, 1)
    );
    sent.unwrap();
    assert_eq!(received[0].body, b"NATS is away");
    // And a replica started meanwhile catches up once NATS is back.
    let replica = app.spawn_replica().await;
    bob.reconnect(replica.api().await).await.unwrap();
    nats.restart().await;
    let (sent, received) = tokio::join!(
        alice.send(&group, b"NATS is back"),
        bob.expect_live_messages(&group, 2)
    );
    sent.unwrap();
    assert_eq!(received[1].body, b"NATS is back");
}
