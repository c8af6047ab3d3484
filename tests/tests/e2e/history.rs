//! What a person reads: a group's name and topic reach every member (those
//! added later too), and each device keeps every message, its own
//! included, with unread counts.

use confide_client::Event;
use confide_tests::spawn_app;

fn names(member: &confide_tests::Member) -> Vec<(String, Option<String>)> {
    member
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::GroupRenamed { name, topic, .. } => Some((name.clone(), topic.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_set_by_any_member_reaches_everyone_and_a_member_added_later_learns_it()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;

    alice.rename(&group, "Ops", Some("on call")).await?;
    bob.wait_until("the name", |m| !names(m).is_empty()).await;
    assert_eq!(
        names(&bob),
        [("Ops".to_string(), Some("on call".to_string()))]
    );
    assert_eq!(bob.group_profile(&group)?.name.as_deref(), Some("Ops"));

    // Bob renames it; Alice sees the new name.
    bob.rename(&group, "Ops team", None).await?;
    alice
        .wait_until("the new name", |m| !names(m).is_empty())
        .await;
    assert_eq!(names(&alice), [("Ops team".to_string(), None)]);
    assert_eq!(
        alice.group_profile(&group)?.name.as_deref(),
        Some("Ops team")
    );

    // Carol, added after both, cannot read those messages, but is told the
    // name by the member who added her; the others are not told again.
    let mut carol = app.client("carol", "laptop").await;
    alice.add_users(&group, &["carol"]).await?;
    carol.wait_until("the name", |m| !names(m).is_empty()).await;
    assert_eq!(names(&carol), [("Ops team".to_string(), None)]);
    alice.send(&group, b"welcome carol").await?;
    bob.expect_messages(&group, 1).await;
    assert_eq!(
        names(&bob),
        [("Ops".to_string(), Some("on call".to_string()))]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_every_message_own_ones_included_with_its_sending_time_and_unread_counts()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;

    alice.send(&group, b"one").await?;
    bob.expect_messages(&group, 1).await;
    bob.send(&group, b"two").await?;
    alice.send(&group, b"three").await?;
    bob.expect_messages(&group, 2).await;

    let said = |member: &confide_tests::Member| -> anyhow::Result<Vec<(String, String)>> {
        Ok(member
            .history(&group, 100)?
            .into_iter()
            .filter_map(|entry| match entry.event {
                Event::Message {
                    sender,
                    body,
                    sent_at_ms,
                    ..
                } => {
                    assert!(sent_at_ms.is_some_and(|at| at >= before), "{sent_at_ms:?}");
                    Some((sender.user().to_string(), String::from_utf8(body).unwrap()))
                }
                _ => None,
            })
            .collect())
    };
    let conversation = [("alice", "one"), ("bob", "two"), ("alice", "three")]
        .map(|(who, what)| (who.to_string(), what.to_string()));
    assert_eq!(said(&bob)?, conversation);
    alice.catch_up().await;
    assert_eq!(said(&alice)?, conversation);

    // Only the others' messages count as unread, until read.
    assert_eq!(bob.unread(&group)?, 2);
    bob.mark_read(&group)?;
    assert_eq!(bob.unread(&group)?, 0);
    alice.send(&group, b"four").await?;
    bob.expect_messages(&group, 3).await;
    assert_eq!(bob.unread(&group)?, 1);
    Ok(())
}
