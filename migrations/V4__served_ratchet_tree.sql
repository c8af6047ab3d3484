-- The DS serves a joiner the group's ratchet tree with its Welcome, so the
-- Welcome need not carry it (RFC 9420 §12.4.3.3). Empty for Welcomes stored
-- before this migration, which carry the tree themselves.
ALTER TABLE inbox ADD COLUMN ratchet_tree bytea;
