//! The devices list and the linking mailbox.

use bytes::Bytes;

use super::fixture::*;
use crate::Settings;
use crate::devices::{LinkPoll, MAX_PENDING_LINKS, MAX_SEALED_BYTES};

const LINK: [u8; 16] = [7; 16];

#[tokio::test]
async fn the_devices_list_shows_the_identity_key_each_device_with_its_certificate() {
    let ds = ds();
    let alice = User::new("alice");
    let (phone, laptop) = (alice.device("phone"), alice.device("laptop"));
    phone.register(&ds).await.unwrap();
    laptop.register(&ds).await.unwrap();
    let devices = ds.list_devices("alice").await.unwrap();
    assert_eq!(devices.identity_key.as_deref(), Some(alice.identity_key()));
    let listed: Vec<_> = devices
        .devices
        .iter()
        .map(|d| (d.id.clone(), d.signature_key.clone(), d.certificate.clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                laptop.id.clone(),
                laptop.signer.public().to_vec(),
                Some(laptop.certificate.to_bytes())
            ),
            (
                phone.id.clone(),
                phone.signer.public().to_vec(),
                Some(phone.certificate.to_bytes())
            ),
        ]
    );
    assert_eq!(ds.list_devices("nobody").await.unwrap(), Default::default());
    assert_refused(
        ds.list_devices("no one").await,
        "INVALID_ARGUMENT",
        "user must be",
    );
}

#[tokio::test]
async fn a_new_device_is_linked_through_the_mailbox_by_a_device_of_its_user_only() {
    let ds = ds();
    let alice = User::new("alice");
    let phone = alice.device("phone");
    phone.register(&ds).await.unwrap();
    let bob = User::new("bob").device("phone");
    bob.register(&ds).await.unwrap();
    let offer = Bytes::from_static(b"sealed offer");
    let answer = Bytes::from_static(b"sealed answer");

    ds.post_link_offer("alice", &LINK, offer.clone())
        .await
        .expect("posting the offer");
    assert_eq!(ds.take_link_answer(&LINK).await.unwrap(), LinkPoll::Pending);
    // To anyone but alice's devices the link does not exist.
    assert_refused(
        ds.take_link_offer(&bob.id, &LINK).await,
        "NOT_FOUND",
        "no such link",
    );
    assert_refused(
        ds.post_link_answer(&bob.id, &LINK, answer.clone()).await,
        "NOT_FOUND",
        "no such link",
    );
    assert_eq!(ds.take_link_answer(&LINK).await.unwrap(), LinkPoll::Pending);

    assert_eq!(ds.take_link_offer(&phone.id, &LINK).await.unwrap(), offer);
    ds.post_link_answer(&phone.id, &LINK, answer.clone())
        .await
        .expect("answering");
    ds.post_link_answer(&phone.id, &LINK, answer.clone())
        .await
        .expect("the same answer again is a retry");
    assert_refused(
        ds.post_link_answer(&phone.id, &LINK, Bytes::from_static(b"other"))
            .await,
        "ALREADY_EXISTS",
        "this link was answered already",
    );
    assert_eq!(
        ds.take_link_answer(&LINK).await.unwrap(),
        LinkPoll::Answered(answer)
    );
    assert_refused(
        ds.take_link_answer(&LINK).await,
        "NOT_FOUND",
        "no such link",
    );
    assert_refused(
        ds.take_link_offer(&phone.id, &LINK).await,
        "NOT_FOUND",
        "no such link",
    );
}

#[tokio::test]
async fn link_requests_with_bad_ids_sizes_or_users_are_refused_and_store_nothing() {
    let ds = ds();
    let phone = User::new("alice").device("phone");
    phone.register(&ds).await.unwrap();
    let offer = Bytes::from_static(b"offer");
    assert_refused(
        ds.post_link_offer("alice", &[7; 15], offer.clone()).await,
        "INVALID_ARGUMENT",
        "link_id must be 16 bytes, not 15",
    );
    assert_refused(
        ds.take_link_answer(&[7; 17]).await,
        "INVALID_ARGUMENT",
        "link_id must be 16 bytes",
    );
    assert_refused(
        ds.take_link_offer(&phone.id, &[]).await,
        "INVALID_ARGUMENT",
        "link_id must be 16 bytes",
    );
    assert_refused(
        ds.post_link_offer("alice", &LINK, Bytes::new()).await,
        "INVALID_ARGUMENT",
        "missing field `sealed_offer`",
    );
    assert_refused(
        ds.post_link_offer("alice", &LINK, vec![0; MAX_SEALED_BYTES + 1].into())
            .await,
        "RESOURCE_EXHAUSTED",
        "sealed_offer",
    );
    assert_refused(
        ds.post_link_offer("bob", &LINK, offer.clone()).await,
        "NOT_FOUND",
        "user bob has no device to link this one from",
    );
    assert_refused(
        ds.post_link_offer("no one", &LINK, offer.clone()).await,
        "INVALID_ARGUMENT",
        "user must be",
    );
    assert_refused(
        ds.take_link_answer(&LINK).await,
        "NOT_FOUND",
        "no such link",
    );

    ds.post_link_offer("alice", &LINK, offer.clone())
        .await
        .unwrap();
    assert_refused(
        ds.post_link_answer(&phone.id, &LINK, vec![0; MAX_SEALED_BYTES + 1].into())
            .await,
        "RESOURCE_EXHAUSTED",
        "sealed_answer",
    );
    assert_refused(
        ds.post_link_offer("alice", &LINK, Bytes::from_static(b"another"))
            .await,
        "ALREADY_EXISTS",
        "this link id is taken",
    );
    assert_eq!(ds.take_link_answer(&LINK).await.unwrap(), LinkPoll::Pending);
    assert_eq!(ds.take_link_offer(&phone.id, &LINK).await.unwrap(), offer);
}

#[tokio::test]
async fn a_user_has_at_most_eight_pending_links() {
    let ds = ds();
    let phone = User::new("alice").device("phone");
    phone.register(&ds).await.unwrap();
    for link in 0..MAX_PENDING_LINKS as u8 {
        ds.post_link_offer("alice", &[link; 16], Bytes::from_static(b"offer"))
            .await
            .expect("a pending link");
    }
    let one_more = [100; 16];
    assert_refused(
        ds.post_link_offer("alice", &one_more, Bytes::from_static(b"offer"))
            .await,
        "RESOURCE_EXHAUSTED",
        "user alice has 8 pending links already",
    );
    assert_refused(
        ds.take_link_answer(&one_more).await,
        "NOT_FOUND",
        "no such link",
    );
    // Taking an answer ends a link and frees its place.
    ds.post_link_answer(&phone.id, &[0; 16], Bytes::from_static(b"answer"))
        .await
        .unwrap();
    ds.take_link_answer(&[0; 16]).await.unwrap();
    ds.post_link_offer("alice", &one_more, Bytes::from_static(b"offer"))
        .await
        .expect("a place is free");
}

#[tokio::test]
async fn an_expired_link_is_gone() {
    let mut settings = Settings::for_tests();
    settings.link_ttl_secs = 0;
    let ds = ds_with(settings);
    let phone = User::new("alice").device("phone");
    phone.register(&ds).await.unwrap();
    ds.post_link_offer("alice", &LINK, Bytes::from_static(b"offer"))
        .await
        .unwrap();
    assert_refused(
        ds.take_link_answer(&LINK).await,
        "NOT_FOUND",
        "no such link",
    );
    assert_refused(
        ds.take_link_offer(&phone.id, &LINK).await,
        "NOT_FOUND",
        "no such link",
    );
    assert_refused(
        ds.post_link_answer(&phone.id, &LINK, Bytes::from_static(b"answer"))
            .await,
        "NOT_FOUND",
        "no such link",
    );
}
