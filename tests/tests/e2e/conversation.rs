//! A conversation: everyone decrypts everything, in one order; a self-update
//! moves everyone to the same epoch.

use confide_client::ClientId;
use confide_tests::{Received, spawn_app};

/// The messages `member` should decrypt: all of them but its own, in order.
fn seen_by(all: &[Received], member: &ClientId) -> Vec<Received> {
    all.iter()
        .filter(|m| m.sender != *member)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_decrypt_every_message_in_the_same_order() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    const ROUNDS: usize = 6;

    // Alice and Carol talk at the same time while Bob listens live.
    let mut sent = Vec::new();
    let talk = async {
        for round in 0..ROUNDS {
            let (a, c) = (format!("alice {round}"), format!("carol {round}"));
            let (a_seq, c_seq) = tokio::join!(
                alice.send(&group, a.as_bytes()),
                carol.send(&group, c.as_bytes())
            );
            sent.push((a_seq?, alice.id().clone(), a));
            sent.push((c_seq?, carol.id().clone(), c));
        }
        anyhow::Ok(())
    };
    let (talked, live) = tokio::join!(talk, bob.expect_live_messages(&group, 2 * ROUNDS));
    talked?;
    // Then Bob answers.
    for i in 0..3 {
        let body = format!("bob {i}");
        let seq = bob.send(&group, body.as_bytes()).await?;
        sent.push((seq, bob.id().clone(), body));
    }

    let mut all: Vec<Received> = sent
        .into_iter()
        .map(|(seq, sender, body)| Received {
            seq,
            sender,
            body: body.into_bytes(),
        })
        .collect();
    all.sort_by_key(|m| m.seq);
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "every send got its own sequence number: {all:#?}"
    );
    assert_eq!(live, seen_by(&all, bob.id()));
    let from_bob_and_carol = all.len() - ROUNDS;
    assert_eq!(
        alice.expect_messages(&group, from_bob_and_carol).await,
        seen_by(&all, alice.id())
    );
    assert_eq!(
        carol.expect_messages(&group, from_bob_and_carol).await,
        seen_by(&all, carol.id())
    );

    // The DS's log numbers its entries without gaps.
    let log = app.group_log(alice.id(), &group).await;
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_update_moves_every_member_to_the_same_new_epoch() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    let before = alice.epoch_authenticator(&group)?;
    let old_epoch = alice.epoch(&group)?;

    let update = bob.self_update(&group).await?;
    assert_eq!(update.epoch, old_epoch + 1);
    assert_eq!(bob.epoch(&group)?, update.epoch);
    alice.expect_epoch(&group, update.epoch).await;
    carol.expect_epoch(&group, update.epoch).await;

    let authenticator = bob.epoch_authenticator(&group)?;
    assert_ne!(authenticator, before, "a new epoch has new secrets");
    assert_eq!(alice.epoch_authenticator(&group)?, authenticator);
    assert_eq!(carol.epoch_authenticator(&group)?, authenticator);

    // The new epoch works: a message from it decrypts for everyone.
    bob.send(&group, b"fresh keys").await?;
    for member in [&mut alice, &mut carol] {
        let received = member.expect_messages(&group, 1).await;
        assert_eq!(received[0].body, b"fresh keys");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_in_the_same_epoch_show_the_same_safety_code_and_it_changes_with_the_epoch() {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    let code = alice.safety_code(&group).expect("alice's code");
    assert_eq!(code.split(' ').count(), 12, "{code}");
    assert!(
        code.split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())),
        "{code}"
    );
    bob.expect_epoch(&group, alice.epoch(&group).expect("alice's epoch"))
        .await;
    carol
        .expect_epoch(&group, alice.epoch(&group).expect("alice's epoch"))
        .await;
    assert_eq!(bob.safety_code(&group).expect("bob's code"), code);
    assert_eq!(carol.safety_code(&group).expect("carol's code"), code);

    // A new epoch (carol leaves): a new code, the same for those still in.
    alice
        .remove_users(&group, &["carol"])
        .await
        .expect("removing carol");
    let epoch = alice.epoch(&group).expect("alice's epoch");
    bob.expect_epoch(&group, epoch).await;
    let new_code = alice.safety_code(&group).expect("alice's new code");
    assert_ne!(new_code, code);
    assert_eq!(bob.safety_code(&group).expect("bob's new code"), new_code);
}
