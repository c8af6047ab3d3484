//! Key package pools: each key package is handed out at most once, the
//! last-resort one when the pool is empty, and a low pool gets replenished.

use std::collections::HashSet;

use confide_client::{Api, Event};
use confide_proto::v1;
use confide_tests::rpc::claim_key_packages;
use confide_tests::spawn_app;

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
