//! The linking mailbox: offers kept for their user until they expire, at
//! most so many per user, answered once, the answer taken once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::support::*;
use crate::store::{LinkAnswer, LinkAnswered, LinkOffer, LinkPosted, Store};

/// Up to this many pending links per user in these checks.
const MAX_PENDING: usize = 3;

fn offer(link: u8, user: &str, expires_at: SystemTime) -> LinkOffer {
    LinkOffer {
        link_id: vec![link; 16],
        user: user.to_owned(),
        sealed_offer: Bytes::from(format!("offer {link} to {user}")),
        expires_at,
    }
}

/// An offer is kept for its user until it expires; posting it again is
/// harmless, another offer under its id is refused, and once it expired its
/// id is free again.
pub async fn a_link_offer_is_kept_for_its_user_until_it_expires(store: Arc<dyn Store>) {
    let now = SystemTime::now();
    let expires_at = now + Duration::from_secs(600);
    let after = expires_at + Duration::from_secs(1);
    let first = offer(1, "alice", expires_at);
    assert_eq!(
        ok(store.post_link_offer(&first, MAX_PENDING, now).await),
        LinkPosted::UnknownUser
    );
    register(&*store, "alice", "phone").await;
    register(&*store, "bob", "phone").await;
    let posted = ok(store.post_link_offer(&first, MAX_PENDING, now).await);
    let LinkPosted::Posted { expires_at: kept } = posted else {
        panic!("expected the offer to be posted, got {posted:?}");
    };
    let later = LinkOffer {
        expires_at: expires_at + Duration::from_secs(5),
        ..first.clone()
    };
    assert_eq!(
        ok(store.post_link_offer(&later, MAX_PENDING, now).await),
        LinkPosted::Posted { expires_at: kept },
        "a retry keeps the original expiry"
    );
    let other = LinkOffer {
        user: "bob".into(),
        ..first.clone()
    };
    assert_eq!(
        ok(store.post_link_offer(&other, MAX_PENDING, now).await),
        LinkPosted::Taken
    );
    assert_eq!(
        ok(store.link_offer(&first.link_id, now).await),
        Some(("alice".into(), first.sealed_offer.clone()))
    );
    assert_eq!(ok(store.link_offer(&[9; 16], now).await), None);

    assert_eq!(ok(store.link_offer(&first.link_id, after).await), None);
    let reused = offer(1, "bob", after + Duration::from_secs(600));
    assert!(matches!(
        ok(store.post_link_offer(&reused, MAX_PENDING, after).await),
        LinkPosted::Posted { .. }
    ));
    assert_eq!(
        ok(store.link_offer(&first.link_id, after).await),
        Some(("bob".into(), reused.sealed_offer))
    );
}

/// A user has at most so many pending links; expired ones do not count,
/// and another user's do not either.
pub async fn a_user_has_at_most_so_many_pending_links(store: Arc<dyn Store>) {
    register(&*store, "alice", "phone").await;
    register(&*store, "bob", "phone").await;
    let now = SystemTime::now();
    let soon = now + Duration::from_secs(10);
    let later = now + Duration::from_secs(600);
    for link in 0..MAX_PENDING as u8 {
        let expires_at = if link == 0 { soon } else { later };
        assert!(matches!(
            ok(store
                .post_link_offer(&offer(link, "alice", expires_at), MAX_PENDING, now)
                .await),
            LinkPosted::Posted { .. }
        ));
    }
    let one_more = offer(100, "alice", later);
    assert_eq!(
        ok(store.post_link_offer(&one_more, MAX_PENDING, now).await),
        LinkPosted::TooMany
    );
    assert_eq!(ok(store.link_offer(&one_more.link_id, now).await), None);
    assert!(matches!(
        ok(store
            .post_link_offer(&offer(101, "bob", later), MAX_PENDING, now)
            .await),
        LinkPosted::Posted { .. }
    ));
    let after_first = soon + Duration::from_secs(1);
    assert!(matches!(
        ok(store
            .post_link_offer(&one_more, MAX_PENDING, after_first)
            .await),
        LinkPosted::Posted { .. }
    ));
}

/// A link is answered once, by a device of its user; the new device sees
/// it pending, then takes the answer once, which ends the link.
pub async fn a_link_is_answered_once_and_its_answer_taken_once(store: Arc<dyn Store>) {
    register(&*store, "alice", "phone").await;
    let now = SystemTime::now();
    let link = offer(7, "alice", now + Duration::from_secs(600));
    ok(store.post_link_offer(&link, MAX_PENDING, now).await);
    let id = &link.link_id;
    let answer = Bytes::from_static(b"sealed answer");

    assert_eq!(
        ok(store.take_link_answer(id, now).await),
        LinkAnswer::Pending
    );
    assert_eq!(
        ok(store.post_link_answer(id, "bob", &answer, now).await),
        LinkAnswered::NotFound
    );
    assert_eq!(
        ok(store
            .post_link_answer(&[8; 16], "alice", &answer, now)
            .await),
        LinkAnswered::NotFound
    );
    assert_eq!(
        ok(store.post_link_answer(id, "alice", &answer, now).await),
        LinkAnswered::Posted
    );
    assert_eq!(
        ok(store.post_link_answer(id, "alice", &answer, now).await),
        LinkAnswered::Posted,
        "the same answer again is a retry"
    );
    let other = Bytes::from_static(b"another answer");
    assert_eq!(
        ok(store.post_link_answer(id, "alice", &other, now).await),
        LinkAnswered::AlreadyAnswered
    );
    assert_eq!(
        ok(store.take_link_answer(id, now).await),
        LinkAnswer::Answered(answer.clone())
    );
    assert_eq!(
        ok(store.take_link_answer(id, now).await),
        LinkAnswer::NotFound
    );
    assert_eq!(ok(store.link_offer(id, now).await), None);
    assert_eq!(
        ok(store.post_link_answer(id, "alice", &answer, now).await),
        LinkAnswered::NotFound
    );
}

/// An expired link can be neither answered nor taken, and the purge
/// deletes it with expired sessions.
pub async fn expired_links_are_gone_and_purged(store: Arc<dyn Store>) {
    register(&*store, "alice", "phone").await;
    let now = SystemTime::now();
    let expires_at = now + Duration::from_secs(60);
    let after = expires_at + Duration::from_secs(1);
    let answered = offer(1, "alice", expires_at);
    let pending = offer(2, "alice", expires_at);
    let kept = offer(3, "alice", after + Duration::from_secs(60));
    for link in [&answered, &pending, &kept] {
        ok(store.post_link_offer(link, MAX_PENDING, now).await);
    }
    let answer = Bytes::from_static(b"answer");
    ok(store
        .post_link_answer(&answered.link_id, "alice", &answer, now)
        .await);
    assert_eq!(
        ok(store.take_link_answer(&answered.link_id, after).await),
        LinkAnswer::NotFound
    );
    assert_eq!(
        ok(store
            .post_link_answer(&pending.link_id, "alice", &answer, after)
            .await),
        LinkAnswered::NotFound
    );
    assert_eq!(ok(store.purge_expired(after).await), 2);
    assert_eq!(
        ok(store.take_link_answer(&answered.link_id, now).await),
        LinkAnswer::NotFound,
        "purged"
    );
    assert!(ok(store.link_offer(&kept.link_id, after).await).is_some());
}
