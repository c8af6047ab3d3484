//! Reads what other replicas announced from PostgreSQL and pushes it to this
//! replica's hub: only the streams some local subscriber follows, each run of
//! consecutive sequence numbers in one read.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::{Appended, BATCH};
use crate::domain::{ClientId, GroupId};
use crate::hub::Hub;
use crate::store::StoreResult;
use crate::store::postgres::PostgresStore;

/// Relays what arrives on `announced` until it closes, in batches.
/// `overflowed` is set when announcements were dropped before they got here:
/// subscribers then re-read the store.
pub(super) async fn run(
    store: &PostgresStore,
    hub: &Hub,
    mut announced: mpsc::Receiver<Appended>,
    overflowed: &AtomicBool,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while announced.recv_many(&mut batch, BATCH).await > 0 {
        // Checked after a receive that follows any drop (a drop means the
        // queue was full), so the re-read comes after the dropped commits.
        if overflowed.swap(false, Ordering::AcqRel) {
            tracing::warn!("fell behind other replicas' entries; subscribers re-read the store");
            hub.mark_all_lagged();
        }
        if let Err(error) = publish(store, hub, batch.drain(..)).await {
            tracing::warn!(%error, "could not read other replicas' entries; subscribers re-read the store");
            hub.mark_all_lagged();
        }
    }
}

/// Reads the announced entries that some local subscriber follows and
/// publishes them, in sequence order per stream.
async fn publish(
    store: &PostgresStore,
    hub: &Hub,
    batch: impl Iterator<Item = Appended>,
) -> StoreResult<()> {
    let mut group_seqs: HashMap<GroupId, Vec<u64>> = HashMap::new();
    let mut inbox_seqs: HashMap<ClientId, Vec<u64>> = HashMap::new();
    for appended in batch {
        match appended {
            Appended::Group { group_id, seq } if hub.follows_group(&group_id) => {
                group_seqs.entry(group_id).or_default().push(seq);
            }
            Appended::Inbox { client, seq } if hub.follows_inbox(&client) => {
                inbox_seqs.entry(client).or_default().push(seq);
            }
            _ => {}
        }
    }
    if group_seqs.is_empty() && inbox_seqs.is_empty() {
        return Ok(());
    }
    let groups = group_seqs
        .into_iter()
        .map(|(group_id, seqs)| (group_id, runs(seqs)))
        .collect();
    let inboxes = inbox_seqs
        .into_iter()
        .map(|(client, seqs)| (client, runs(seqs)))
        .collect();
    let (group_entries, inbox_entries) = store.read_runs(groups, inboxes).await?;
    for entry in &group_entries {
        hub.publish_group(entry);
    }
    for (client, entry) in &inbox_entries {
        hub.publish_inbox(client, entry);
    }
    Ok(())
}

/// Sequence numbers as ascending runs of consecutive ones, duplicates dropped.
fn runs(mut seqs: Vec<u64>) -> Vec<RangeInclusive<u64>> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut runs: Vec<RangeInclusive<u64>> = Vec::new();
    for seq in seqs {
        match runs.last_mut() {
            Some(run) if *run.end() + 1 == seq => *run = *run.start()..=seq,
            _ => runs.push(seq..=seq),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_sequence_numbers() {
        assert_eq!(runs(vec![]), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(runs(vec![5, 3, 4, 4, 9, 1]), [1..=1, 3..=5, 9..=9]);
    }
}
