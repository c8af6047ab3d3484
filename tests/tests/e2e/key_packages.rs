//! Key package pools: each key package is handed out at most once, the
//! last-resort one when the pool is empty, and a low pool gets replenished.

use std::collections::HashSet;

use confide_client::{Api, Event};
use confide_proto::v1;
use confide_tests::rpc::{claim_key_packages, expect_refused, inbox_stream};
use confide_tests::{RawMember, spawn_app};
use openmls::prelude::Lifetime;
use tonic::Code;

/// One raw claim of a key package for every device of `user`.
async fn claim(api: Api, user: &str) -> Vec<v1::ClaimedKeyPackage> {
    claim_key_packages(&api, user).await
}

async fn count(api: &Api) -> v1::CountKeyPackagesResponse {
    api.key_packages()
        .count_key_packages(api.request(v1::CountKeyPackagesRequest {}))
        .await
        .expect("counting key packages")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_hand_out_each_key_package_once_then_the_last_resort_one() {
    let app = spawn_app().await;
    let alice = app.client("alice", "laptop").await;
    // Registering uploads 20 key packages and a last-resort one.
    let bob = app.client("bob", "phone").await;

    let mut handed_out = HashSet::new();
    for _ in 0..10 {
        let claimed = claim(alice.api().clone(), "bob").await;
        assert_eq!(claimed.len(), 1, "bob has one device");
        assert!(!claimed[0].last_resort);
        assert!(handed_out.insert(claimed[0].key_package.clone()));
    }

    // 20 claims at once on the 10 left.
    let claims: Vec<_> = (0..20)
        .map(|_| tokio::spawn(claim(alice.api().clone(), "bob")))
        .collect();
    let mut last_resort = Vec::new();
    let mut pooled = 0;
    for task in claims {
        let claimed = task.await.expect("a claim task");
        assert_eq!(claimed.len(), 1, "bob has one device");
        let claimed = claimed.into_iter().next().expect("one key package");
        let bob_phone = v1::ClientId {
            user: "bob".into(),
            device: "phone".into(),
        };
        assert_eq!(claimed.client, Some(bob_phone));
        if claimed.last_resort {
            last_resort.push(claimed.key_package);
        } else {
            pooled += 1;
            assert!(
                handed_out.insert(claimed.key_package),
                "a key package was handed out twice"
            );
        }
    }
    assert_eq!(pooled, 10, "each of the 10 left went to exactly one claim");
    assert_eq!(last_resort.len(), 10, "the others got the last-resort one");
    assert!(
        last_resort.iter().all(|kp| *kp == last_resort[0]),
        "there is one last-resort key package"
    );
    assert!(!handed_out.contains(&last_resort[0]));

    let left = count(bob.api()).await;
    assert_eq!(left.available, 0);
    assert!(left.has_last_resort, "the last-resort one stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_pool_runs_low_replenishes_it() {
    let app = spawn_app().await;
    let alice = app.client("alice", "laptop").await;
    let mut bob = app.client("bob", "phone").await;
    let watermark = count(bob.api()).await.low_watermark as usize;
    let initial = confide_client::client::KEY_PACKAGE_BATCH;
    assert!(watermark > 0 && watermark < initial);

    // Claim until the pool is just below the low watermark.
    for _ in 0..=initial - watermark {
        claim(alice.api().clone(), "bob").await;
    }
    bob.wait_until("replenishing key packages", |m| {
        m.events()
            .iter()
            .any(|e| matches!(e, Event::KeyPackagesReplenished { .. }))
    })
    .await;
    let left = count(bob.api()).await;
    assert_eq!(left.available as usize, watermark - 1 + initial);
    let claimed = claim(alice.api().clone(), "bob").await;
    assert!(!claimed[0].last_resort);
}

async fn publish(
    member: &RawMember,
    key_packages: Vec<Vec<u8>>,
    last_resort: Vec<u8>,
) -> Result<tonic::Response<v1::PublishKeyPackagesResponse>, tonic::Status> {
    let api = member.api();
    api.key_packages()
        .publish_key_packages(api.request(v1::PublishKeyPackagesRequest {
            key_packages: key_packages.into_iter().map(Into::into).collect(),
            last_resort_key_package: last_resort.into(),
        }))
        .await
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_resort_key_package_must_carry_the_extension_and_no_other_may() {
    let app = spawn_app().await;
    let rita = RawMember::register(&app, "rita", "laptop").await;

    let unmarked = expect_refused(
        publish(&rita, Vec::new(), rita.key_package(None)).await,
        Code::InvalidArgument,
        "an unmarked last-resort key package",
    );
    assert!(
        unmarked.message().contains("last_resort extension"),
        "{unmarked:?}"
    );
    let marked = expect_refused(
        publish(&rita, vec![rita.last_resort_key_package()], Vec::new()).await,
        Code::InvalidArgument,
        "a last-resort key package in the pool",
    );
    assert!(
        marked.message().contains("last_resort extension"),
        "{marked:?}"
    );
    let left = count(rita.api()).await;
    assert_eq!(
        (left.available, left.has_last_resort),
        (1, false),
        "nothing refused was stored"
    );

    let last_resort = rita.last_resort_key_package();
    publish(&rita, Vec::new(), last_resort.clone())
        .await
        .expect("publishing a marked last-resort key package");
    let claimer = RawMember::register(&app, "alice", "laptop").await;
    claim(claimer.api().clone(), "rita").await;
    let claimed = claim(claimer.api().clone(), "rita").await;
    assert!(claimed[0].last_resort);
    assert_eq!(claimed[0].key_package, last_resort);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_package_lifetimes_are_bounded_and_a_client_clock_slightly_ahead_is_tolerated() {
    let app = spawn_app().await;
    let rita = RawMember::register(&app, "rita", "laptop").await;
    let now = unix_now();
    let day = 86_400;
    // The defaults: at most 90 days, 5 minutes of clock skew.
    for (what, lifetime) in [
        (
            "a key package valid for 10 years",
            Lifetime::init(now - 60, now + 3650 * day),
        ),
        (
            "a key package valid for 91 days",
            Lifetime::init(now - 60, now + 91 * day - 60),
        ),
        (
            "a key package valid from in 15 minutes",
            Lifetime::init(now + 900, now + 30 * day),
        ),
    ] {
        expect_refused(
            publish(&rita, vec![rita.key_package(Some(lifetime))], Vec::new()).await,
            Code::InvalidArgument,
            what,
        );
    }
    for (what, lifetime) in [
        (
            "a key package valid for 89 days",
            Lifetime::init(now - 60, now + 89 * day - 60),
        ),
        (
            "a key package dated 5 s ahead",
            Lifetime::init(now + 5, now + 30 * day),
        ),
        (
            "a key package dated 4 minutes ahead",
            Lifetime::init(now + 240, now + 30 * day),
        ),
    ] {
        publish(&rita, vec![rita.key_package(Some(lifetime))], Vec::new())
            .await
            .unwrap_or_else(|status| panic!("{what} was refused: {status:?}"));
    }
    assert_eq!(count(rita.api()).await.available, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_below_the_watermark_is_told_once_per_publish_that_it_is_low() {
    let app = spawn_app().await;
    // Registering publishes one key package, far below the watermark.
    let rita = RawMember::register(&app, "rita", "laptop").await;
    let watermark = count(rita.api()).await.low_watermark;
    assert!(watermark > 3, "the test needs a watermark above 3");
    let claimer = RawMember::register(&app, "alice", "laptop").await;
    let notices = async || {
        let api = rita.api();
        api.delivery()
            .fetch(api.request(v1::FetchRequest {
                stream: inbox_stream(),
                after_seq: 0,
                limit: 0,
            }))
            .await
            .expect("reading rita's inbox")
            .into_inner()
            .entries
            .into_iter()
            .filter_map(|entry| match entry.entry {
                Some(v1::envelope::Entry::Inbox(v1::InboxEntry {
                    item: Some(v1::inbox_entry::Item::KeyPackagesLow(low)),
                    ..
                })) => Some(low.available),
                _ => None,
            })
            .collect::<Vec<_>>()
    };

    publish(
        &rita,
        vec![rita.key_package(None), rita.key_package(None)],
        Vec::new(),
    )
    .await
    .expect("publishing");
    claim(claimer.api().clone(), "rita").await;
    assert_eq!(
        notices().await,
        [2],
        "the first claim tells rita her pool is low"
    );
    claim(claimer.api().clone(), "rita").await;
    assert_eq!(notices().await, [2], "told once until she publishes");

    publish(&rita, vec![rita.key_package(None)], Vec::new())
        .await
        .expect("publishing again");
    claim(claimer.api().clone(), "rita").await;
    assert_eq!(
        notices().await,
        [2, 1],
        "a publish makes the notice due again"
    );
}
