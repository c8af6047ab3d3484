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
mod devices;
mod key_packages;
mod links;
mod messages;
mod retention;
mod support;

pub use clients::*;
pub use commits::*;
pub use delivery::*;
pub use devices::*;
pub use key_packages::*;
pub use links::*;
pub use messages::*;
pub use retention::*;

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
            the_first_device_makes_the_users_identity_and_later_ones_need_it,
            concurrent_first_devices_of_a_user_make_one_identity,
            a_rekeyed_device_keeps_its_groups_and_inbox_and_loses_its_sessions,
            a_removal_keeps_its_revocation_for_the_users_devices,
            the_roster_knows_which_users_have_a_device_in_a_group,
            a_link_offer_is_kept_for_its_user_until_it_expires,
            a_user_has_at_most_so_many_pending_links,
            a_link_is_answered_once_and_its_answer_taken_once,
            expired_links_are_gone_and_purged,
            key_package_claim_hands_each_out_once,
            concurrent_claims_never_hand_out_twice,
            the_low_pool_notice_is_taken_once_per_publish,
            create_group_rejects_taken_id,
            commit_is_accepted_once_per_epoch,
            concurrent_commits_for_one_epoch_accept_one,
            duplicate_commit_returns_original,
            append_assigns_gap_free_sequence,
            a_batch_of_sends_to_several_groups_is_gapless_per_group,
            a_batch_answers_each_message_as_a_single_append_would,
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
            entries_every_member_acked_are_pruned_and_the_log_reads_on_from_the_horizon,
            entries_a_member_has_not_acked_stay_until_retention,
            retention_prunes_old_entries_whoever_acked_them,
            a_removed_members_membership_goes_once_its_window_is_pruned,
            acked_and_old_inbox_entries_and_expired_key_packages_are_pruned,
            pruning_is_idempotent,
            pruning_while_members_send_keeps_each_group_gapless,
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
