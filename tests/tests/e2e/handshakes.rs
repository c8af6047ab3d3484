//! Validated handshakes: the DS checks every commit with `PublicGroup`
//! before anyone sees it, so an invalid one reaches no member.

use confide_client::Event;
use confide_proto::v1;
use confide_tests::rpc::{claim_key_package, expect_refused};
use confide_tests::{CraftedCommit, RawMember, spawn_app};
use tonic::Code;

/// The commit with one byte of its signature flipped. A member's commit
/// PublicMessage ends with its signature (64 bytes, 2-byte length), the
/// confirmation tag and the membership tag (32 bytes each, 1-byte length);
/// only the signature is something the DS can check.
fn with_broken_signature(crafted: &CraftedCommit) -> v1::SubmitCommitRequest {
    let mut commit = crafted.commit.clone();
    let end = commit.len();
    let (tags, signature) = (end - 2 * 33, end - 2 * 33 - 64);
    assert_eq!(commit[end - 33], 32, "membership tag length");
    assert_eq!(commit[tags], 32, "confirmation tag length");
    assert_eq!(
        commit[signature - 2..signature],
        [0x40, 0x40],
        "signature length"
    );
    commit[signature + 10] ^= 0x01;
    v1::SubmitCommitRequest {
        commit: commit.into(),
        ..crafted.request()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_a_broken_signature_never_reaches_a_member() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    alice.add_users(&group, &["rita"]).await?;
    rita.join().await;
    let epoch = alice.epoch(&group)?;

    let commit = rita.craft_self_update();
    expect_refused(
        rita.submit(with_broken_signature(&commit)).await,
        Code::InvalidArgument,
        "a commit with a broken signature",
    );
    // Untouched, the same commit is accepted, and it is the only one anybody
    // sees (a member fails the test on an entry it cannot process).
    let accepted = rita.submit(commit.request()).await?.into_inner();
    assert_eq!(accepted.epoch, epoch + 1);
    alice.expect_epoch(&group, epoch + 1).await;
    bob.expect_epoch(&group, epoch + 1).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_adds_members_needs_exactly_their_welcome() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    let mut dave = app.client("dave", "phone").await;
    let _erin = app.client("erin", "phone").await;
    alice.add_users(&group, &["rita"]).await?;
    rita.join().await;
    let (daves, erins) = (
        claim_key_package(rita.api(), "dave").await,
        claim_key_package(rita.api(), "erin").await,
    );
    let add_dave = rita.craft_add(&daves);
    let add_erin = rita.craft_add(&erins);
    let update = rita.craft_self_update();
    let invalid = Code::InvalidArgument;

    expect_refused(
        rita.submit(v1::SubmitCommitRequest {
            welcome: Default::default(),
            ..add_dave.request()
        })
        .await,
        invalid,
        "an add without its Welcome",
    );
    expect_refused(
        rita.submit(v1::SubmitCommitRequest {
            welcome: add_erin.welcome.clone().into(),
            ..add_dave.request()
        })
        .await,
        invalid,
        "an add of dave with the Welcome for erin",
    );
    expect_refused(
        rita.submit(v1::SubmitCommitRequest {
            welcome: add_dave.welcome.clone().into(),
            ..update.request()
        })
        .await,
        invalid,
        "a self-update with a Welcome",
    );

    // Only the real thing gets through, and dave joins with it.
    rita.submit(add_dave.request()).await?;
    dave.expect_joined(&group).await;
    alice.expect_epoch(&group, add_dave.epoch + 1).await;
    bob.expect_epoch(&group, add_dave.epoch + 1).await;
    assert_eq!(dave.members(&group)?, alice.members(&group)?);
    assert_eq!(
        dave.epoch_authenticator(&group)?,
        alice.epoch_authenticator(&group)?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_by_one_member_is_committed_by_another() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    alice.add_users(&group, &["rita"]).await?;
    rita.join().await;

    let proposal = rita.propose_remove(bob.id());
    rita.submit_proposal(&group, proposal).await?;
    // Alice's next commit carries the pending proposal.
    alice.self_update(&group).await?;
    assert_eq!(
        alice.members(&group)?,
        [alice.id().clone(), rita.id.clone()]
    );
    bob.wait_until("his removal", |m| {
        m.events()
            .iter()
            .any(|e| matches!(e, Event::Removed { .. }))
    })
    .await;
    let refused = bob.send(&group, b"still here?").await;
    assert!(refused.is_err(), "bob is out of the group");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_needs_the_group_info_of_the_epoch_it_starts() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, _bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    alice.add_users(&group, &["rita"]).await?;
    rita.join().await;
    let api = alice.api();
    let current_info = api
        .groups()
        .get_group_info(api.request(v1::GetGroupInfoRequest {
            group_id: group.clone().into(),
        }))
        .await?
        .into_inner()
        .group_info;
    // Two different commits for the same epoch: each has its own GroupInfo.
    let commit = rita.craft_self_update();
    let other = rita.craft_self_update();
    let invalid = Code::InvalidArgument;

    for (what, group_info) in [
        ("a garbage GroupInfo", b"not a GroupInfo".to_vec()),
        ("the GroupInfo of the current epoch", current_info.to_vec()),
        (
            "the GroupInfo another commit would start",
            other.group_info.clone(),
        ),
    ] {
        expect_refused(
            rita.submit(v1::SubmitCommitRequest {
                group_info: group_info.into(),
                ..commit.request()
            })
            .await,
            invalid,
            what,
        );
    }
    rita.submit(commit.request()).await?;
    let served = api
        .groups()
        .get_group_info(api.request(v1::GetGroupInfoRequest {
            group_id: group.clone().into(),
        }))
        .await?
        .into_inner();
    assert_eq!(served.epoch, commit.epoch + 1);
    assert_eq!(served.group_info.as_ref(), commit.group_info.as_slice());
    Ok(())
}
