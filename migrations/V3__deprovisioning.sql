-- Deprovisioning: a removed client (a lost device) is kept as a tombstone so
-- that its id can never be registered or authenticated again; its sessions,
-- challenges and key packages are deleted with it.
ALTER TABLE clients ADD COLUMN removed_at timestamptz;

-- Revoking every session of one client reads sessions by client.
CREATE INDEX sessions_client ON sessions (user_name, device_name);
