-- Bounded storage: the DS prunes (Store::prune, run by the periodic purge)
-- each group's log entries that every member acknowledged or that are older
-- than the retention period, inbox entries acknowledged or older than it, and
-- key packages whose lifetime ended. Pruning removes a prefix of a group's
-- log; the group remembers how far, so a reader whose cursor is below it is
-- told (ENTRIES_PRUNED) rather than silently skipped ahead.

-- Entries with seq <= pruned_seq were pruned; the log holds the rest.
-- A constant default: adding the column rewrites nothing.
ALTER TABLE groups ADD COLUMN pruned_seq bigint NOT NULL DEFAULT 0 CHECK (pruned_seq >= 0);

-- The lowest cursor of a group's members, for pruning one group at a time.
-- Only the purge reads by group (memberships are keyed by client); acks do
-- not change an indexed column, so they stay HOT updates.
CREATE INDEX memberships_group ON memberships (group_id);

-- The end of each key package's lifetime, validated at upload. Rows from
-- before this migration get the longest lifetime the DS accepts by default
-- (90 days) from their upload; a last-resort key package from before it has
-- none and stays until replaced.
ALTER TABLE key_packages ADD COLUMN not_after timestamptz;
UPDATE key_packages SET not_after = created_at + interval '90 days';
ALTER TABLE key_packages ALTER COLUMN not_after SET NOT NULL;
CREATE INDEX key_packages_not_after ON key_packages (not_after);
ALTER TABLE last_resort_key_packages ADD COLUMN not_after timestamptz;
