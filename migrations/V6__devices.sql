-- No ghost devices: every user has an identity key, made by its first
-- device, and every device carries a certificate by it (confide-core
-- `certificate`). The DS refuses a device its user's identity key did not
-- certify: at registration, in key packages and in every leaf a commit
-- brings in.
--
-- Distribution (V1's rule): `users` is per user and leads with user_name,
-- the column every per-client table leads with, so a user's row lives with
-- its devices' rows; `device_revocations` is per client. `device_links` is
-- the linking mailbox, addressed by a random link id alone (the new device
-- has no session and no other key), so it leads with link_id; it is small
-- and short-lived, and no query joins it with another table.

-- One row per user: the identity key its first certified device brought.
-- It never changes: a device certified by another key is refused.
CREATE TABLE users (
    user_name    text        NOT NULL PRIMARY KEY,
    identity_key bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The device's certificate by its user's identity key, over its client id
-- and signature key. NULL for clients registered before this migration:
-- they are refused in new leaves and key packages until they register
-- again with a certificate (the first of a user's such devices to do so
-- makes the user's identity key).
ALTER TABLE clients ADD COLUMN device_certificate bytea;

-- Revocations signed by a user's identity key, kept for good and served
-- with the user's devices, so every client refuses the device too.
CREATE TABLE device_revocations (
    user_name   text        NOT NULL,
    device_name text        NOT NULL,
    -- confide-core `Revocation` bytes: the signature key and the signature.
    revocation  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, device_name),
    FOREIGN KEY (user_name, device_name)
        REFERENCES clients (user_name, device_name) ON DELETE CASCADE
);

-- Linking a new device: the new device posts an offer sealed under a key
-- derived from the code its person types on an existing device, which
-- takes it and posts a sealed answer; the new device takes that, which
-- deletes the link. The DS holds only the sealed blobs until they expire.
CREATE TABLE device_links (
    link_id       bytea       NOT NULL PRIMARY KEY CHECK (length(link_id) = 16),
    -- The user the new device asks to join; only its devices see the offer.
    user_name     text        NOT NULL,
    sealed_offer  bytea       NOT NULL,
    sealed_answer bytea,
    expires_at    timestamptz NOT NULL
);
-- Counting a user's pending links, and purging expired ones.
CREATE INDEX device_links_user ON device_links (user_name, expires_at);
CREATE INDEX device_links_expires_at ON device_links (expires_at);
