-- Live delivery across replicas: every row appended to a group log or an
-- inbox is announced on channel `confide_entries` by its id, never by its
-- content; a replica that has live subscribers for it reads the row itself.
--
--   g:<group id in hex>:<seq>:<replica>
--   i:<user>:<device>:<seq>:<replica>
--
-- User and device names are [A-Za-z0-9._-], so ':' separates safely.
-- <replica> is the `confide.replica` setting of the connection that wrote the
-- row (every pooled connection of a DS carries its replica's id; empty when
-- unset), so a replica skips what it already pushed to its own subscribers.
--
-- PostgreSQL sends a notification when, and only if, its transaction commits,
-- in commit order; per group and per inbox that is sequence order.

CREATE FUNCTION notify_group_log_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('confide_entries', concat_ws(':',
        'g', encode(NEW.group_id, 'hex'), NEW.seq,
        coalesce(current_setting('confide.replica', true), '')));
    RETURN NULL;
END;
$$;

CREATE TRIGGER group_log_notify
    AFTER INSERT ON group_log
    FOR EACH ROW EXECUTE FUNCTION notify_group_log_entry();

CREATE FUNCTION notify_inbox_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('confide_entries', concat_ws(':',
        'i', NEW.user_name, NEW.device_name, NEW.seq,
        coalesce(current_setting('confide.replica', true), '')));
    RETURN NULL;
END;
$$;

CREATE TRIGGER inbox_notify
    AFTER INSERT ON inbox
    FOR EACH ROW EXECUTE FUNCTION notify_inbox_entry();
