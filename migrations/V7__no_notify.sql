-- No notifications on the write path. The triggers of V2 called pg_notify in
-- every append's transaction; PostgreSQL then holds one database-wide lock
-- from pre-commit through the WAL flush, which serialises every commit of
-- every replica (measured with pgbench, one-row inserts: 4.1x fewer commits/s
-- with pg_notify). Replicas now wake each other up on NATS after the commit
-- (`bus: nats`), with ids only; the rows are still read from here.

DROP TRIGGER IF EXISTS group_log_notify ON group_log;
DROP TRIGGER IF EXISTS inbox_notify ON inbox;
DROP FUNCTION IF EXISTS notify_group_log_entry();
DROP FUNCTION IF EXISTS notify_inbox_entry();
