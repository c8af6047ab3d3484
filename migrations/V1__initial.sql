-- Confide delivery service schema.
--
-- Distribution rule: every table that belongs to a group leads its primary
-- key with group_id, every per-client table with (user_name, device_name), and
-- no hot-path query joins rows of different groups or different clients, so
-- the tables can be distributed by those keys (as Citus does) without
-- redesign. Foreign keys only ever point at a row with the same leading key.
--
-- u64 values (epochs, sequence numbers, cursors) are stored as bigint and are
-- never negative. Nothing here holds message content in the clear: group_log
-- and inbox hold MLS messages exactly as the clients encrypted them.

-- One row per client (a device of a user) and its signature key.
CREATE TABLE clients (
    user_name       text        NOT NULL,
    device_name     text        NOT NULL,
    signature_key   bytea       NOT NULL,
    -- Sequence number the next inbox entry gets (inbox seqs start at 1).
    inbox_next_seq  bigint      NOT NULL DEFAULT 1 CHECK (inbox_next_seq >= 1),
    -- Highest inbox seq the client acknowledged.
    inbox_acked_seq bigint      NOT NULL DEFAULT 0 CHECK (inbox_acked_seq >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, device_name)
);

-- Outstanding authentication challenges; each is consumed by its first use.
CREATE TABLE challenges (
    user_name   text        NOT NULL,
    device_name text        NOT NULL,
    challenge   bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (user_name, device_name, challenge),
    FOREIGN KEY (user_name, device_name)
        REFERENCES clients (user_name, device_name) ON DELETE CASCADE
);

-- Session tokens, looked up by the SHA-256 of the token (the token itself is
-- never stored). Keyed by the hash because that is all an RPC carries.
CREATE TABLE sessions (
    token_hash  bytea       NOT NULL PRIMARY KEY,
    user_name   text        NOT NULL,
    device_name text        NOT NULL,
    expires_at  timestamptz NOT NULL
);
-- For purging expired sessions and challenges.
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX challenges_expires_at ON challenges (expires_at);

-- Each client's pool of one-time key packages.
CREATE TABLE key_packages (
    user_name   text        NOT NULL,
    device_name text        NOT NULL,
    kp_ref      bytea       NOT NULL,
    data        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, device_name, kp_ref),
    FOREIGN KEY (user_name, device_name)
        REFERENCES clients (user_name, device_name) ON DELETE CASCADE
);

-- Each client's last-resort key package, handed out when its pool is empty.
CREATE TABLE last_resort_key_packages (
    user_name   text  NOT NULL,
    device_name text  NOT NULL,
    kp_ref      bytea NOT NULL,
    data        bytea NOT NULL,
    PRIMARY KEY (user_name, device_name),
    FOREIGN KEY (user_name, device_name)
        REFERENCES clients (user_name, device_name) ON DELETE CASCADE
);

-- One row per group; its row lock serialises every change to the group.
CREATE TABLE groups (
    group_id   bytea       NOT NULL PRIMARY KEY,
    epoch      bigint      NOT NULL CHECK (epoch >= 0),
    -- Sequence number the next log entry gets (log seqs start at 1).
    next_seq   bigint      NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
    -- The serialised public group state at `epoch`.
    state      bytea       NOT NULL,
    -- Bumped on every write of `state` (commits and proposals): a replica
    -- writes only if the state it validated against is still current.
    state_version bigint   NOT NULL DEFAULT 0 CHECK (state_version >= 0),
    group_info bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Each group's totally ordered log, written once and read by every member.
CREATE TABLE group_log (
    group_id   bytea       NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    seq        bigint      NOT NULL CHECK (seq >= 1),
    epoch      bigint      NOT NULL CHECK (epoch >= 0),
    -- 1 commit, 2 proposal, 3 application (domain::EntryKind).
    kind       smallint    NOT NULL CHECK (kind BETWEEN 1 AND 3),
    -- The client-chosen idempotency key; a retried send finds its entry.
    dedup_key  bytea       NOT NULL,
    -- SHA-256 of the MLS message: the same bytes are never appended twice,
    -- whatever idempotency key a replay carries.
    content_key bytea      NOT NULL,
    message    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, dedup_key),
    UNIQUE (group_id, content_key)
);

-- The DS roster: who may post to a group now. Kept per group (rather than
-- derived from memberships) so that checking a sender touches only rows of
-- that group.
CREATE TABLE group_members (
    group_id    bytea NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    user_name   text  NOT NULL,
    device_name text  NOT NULL,
    PRIMARY KEY (group_id, user_name, device_name)
);

-- A client's view of each group it belongs or belonged to: which part of the
-- log it may read (joined_seq, left_seq] and how far it acknowledged.
CREATE TABLE memberships (
    user_name   text   NOT NULL,
    device_name text   NOT NULL,
    group_id    bytea  NOT NULL,
    joined_seq  bigint NOT NULL CHECK (joined_seq >= 0),
    left_seq    bigint          CHECK (left_seq >= 0),
    acked_seq   bigint NOT NULL CHECK (acked_seq >= 0),
    PRIMARY KEY (user_name, device_name, group_id),
    FOREIGN KEY (user_name, device_name)
        REFERENCES clients (user_name, device_name) ON DELETE CASCADE
);

-- Per-client items (Welcomes, notices), gap-free per client.
CREATE TABLE inbox (
    user_name   text        NOT NULL,
    device_name text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 1),
    -- 1 Welcome (group_id, commit_seq, payload), 2 key packages low (available).
    kind        smallint    NOT NULL,
    group_id    bytea,
    commit_seq  bigint      CHECK (commit_seq >= 1),
    available   integer     CHECK (available >= 0),
    payload     bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, device_name, seq),
    FOREIGN KEY (user_name, device_name)
        REFERENCES clients (user_name, device_name) ON DELETE CASCADE,
    CHECK (
        (kind = 1 AND group_id IS NOT NULL AND commit_seq IS NOT NULL
            AND payload IS NOT NULL AND available IS NULL)
        OR (kind = 2 AND available IS NOT NULL
            AND group_id IS NULL AND commit_seq IS NULL AND payload IS NULL)
    )
);
