//! The behaviour every [`Store`](super::Store) must show, as one `pub async fn` per check.
//! Each store runs every check on a fresh, empty instance with
//! [`conformance_tests!`], which generates one `#[tokio::test]` per check:
//!
//! ```text
//! #[cfg(test)]
//! mod tests {
//!     crate::store::conformance::conformance_tests!(super::MemoryStore::new());
//! }
//! ```
//!
//! The checks use made-up bytes where MLS messages would go: a store never
//! parses MLS.

mod clients;
mod commits;
mod delivery;
mod key_packages;
mod messages;
mod support;

pub use clients::*;
pub use commits::*;
pub use delivery::*;
pub use key_packages::*;
pub use messages::*;

/// Generates one `#[tokio::test]` per conformance check. The argument is an
/// expression (it may use `.await`) that yields a fresh, empty store; it is
/// evaluated once per test.
#[cfg(test)]
macro_rules! conformance_tests {
    ($store:expr) => {
        $crate::store::conformance::conformance_tests!(@checks $store;
            registration_binds_key,
            challenge_is_single_use,
            sessions_expire,
            a_revoked_session_is_gone_and_others_remain,
            a_removed_client_loses_sessions_and_key_packages_and_stays_removed,
            key_package_claim_hands_each_out_once,
            concurrent_claims_never_hand_out_twice,
            the_low_pool_notice_is_taken_once_per_publish,
            create_group_rejects_taken_id,
            commit_is_accepted_once_per_epoch,
            concurrent_commits_for_one_epoch_accept_one,
            duplicate_commit_returns_original,
            append_assigns_gap_free_sequence,
            duplicate_message_returns_original_seq,
            replayed_message_bytes_return_the_original_entry,
            a_non_member_learns_nothing_from_duplicates,
            state_writes_from_an_old_version_are_refused,
            non_member_cannot_append,
            epoch_window_enforced,
            removed_member_sees_nothing_after_removal,
            joiner_sees_nothing_before_join,
            welcome_lands_in_joiner_inbox,
            inbox_is_per_client_and_gap_free,
            memberships_cover_current_and_past_groups,
            acks_are_monotonic,
            ack_beyond_the_end_is_refused,
            read_group_pages_in_order,
        );
    };
    (@checks $store:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn $crate::store::Store> =
                    ::std::sync::Arc::new($store);
                $crate::store::conformance::$check(store).await;
            }
        )*
    };
}
#[cfg(test)]
pub(crate) use conformance_tests;
