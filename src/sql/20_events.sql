-- The FlowAgent event API (SPEC §4 "User"): read and write the acting
-- user's events in the caller's own transaction. C in sql_events.c. Every
-- function is SECURITY DEFINER, owned by m365sync_definer (so the row level
-- security policies bind it to m365sync.flowagent_user), and granted to
-- m365sync_app only.

-- Window reads find short events by start (events_by_start, events_by_date)
-- within a bound of one day before the window, and events longer than that
-- by end, through two small partial indexes on is_long (multi-day events
-- are few). So a one-week window reads about eight days of index, however
-- many years an account holds. is_long is a column, not an expression in
-- the index predicate, because under row level security the planner may
-- only use leakproof clauses to match a partial index, and timestamptz
-- subtraction is not.
-- store_events.c's window query repeats these bounds.
ALTER TABLE m365sync.events ADD COLUMN is_long boolean NOT NULL GENERATED ALWAYS AS (
    CASE WHEN is_all_day THEN end_date - start_date > 1
         ELSE end_at - start_at > interval '24 hours' END) STORED;
CREATE INDEX events_long_timed ON m365sync.events (account_id, end_at)
    WHERE is_long AND NOT is_all_day;
CREATE INDEX events_long_all_day ON m365sync.events (account_id, end_date)
    WHERE is_long AND is_all_day;

CREATE FUNCTION m365sync.events(from_ts timestamptz, to_ts timestamptz,
                                calendar_id bigint DEFAULT NULL)
    RETURNS SETOF m365sync.event
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_events';
COMMENT ON FUNCTION m365sync.events(timestamptz, timestamptz, bigint) IS
    'Events of the acting user overlapping [from_ts, to_ts), decrypted; all-day events by date in the session''s TimeZone.';

-- The part of events() a Citus coordinator routes to the node of the
-- account's shards (store_events.c, sql_events.c): the window query there,
-- on the shard, with a plan the node keeps; its rows packed in one bytea
-- (one row for Citus to move, and a fast-path router query on the
-- coordinator), content still sealed (the caller decrypts). The coordinator
-- routes it by account_routes (no row level security there), outside a
-- remote transaction when it can, where its SET LOCAL of the acting user
-- does not reach the node: so flowagent_user names the acting user, and the
-- function acts for that user while it reads, under the shards' own
-- policies (accounts, _acting_owns), as the user functions do. Owned by
-- m365sync_definer like the user functions and executable by that role
-- only (Citus's connection from events() logs in as it); that role can set
-- any acting user anyway, so the argument gives it nothing new.
CREATE FUNCTION m365sync._events_window(account_id bigint, from_ts timestamptz, to_ts timestamptz,
                                        from_date date, to_date date, calendar_id bigint,
                                        flowagent_user text)
    RETURNS bytea
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_events_window';
REVOKE ALL ON FUNCTION m365sync._events_window(bigint, timestamptz, timestamptz, date, date, bigint, text) FROM PUBLIC;
ALTER FUNCTION m365sync._events_window(bigint, timestamptz, timestamptz, date, date, bigint, text) OWNER TO m365sync_definer;

CREATE FUNCTION m365sync.event(event_id bigint) RETURNS m365sync.event
    LANGUAGE c STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_event';
COMMENT ON FUNCTION m365sync.event(bigint) IS
    'One event of the acting user; ERROR P0002 when there is none with that id.';

CREATE FUNCTION m365sync.calendars()
    RETURNS TABLE (calendar_id bigint, name text, is_default boolean,
                   can_edit boolean, sync_enabled boolean)
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_calendars';
COMMENT ON FUNCTION m365sync.calendars() IS
    'Calendars of the acting user.';

CREATE FUNCTION m365sync.set_calendar_sync(calendar_id bigint, enabled boolean) RETURNS void
    LANGUAGE c VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_set_calendar_sync';
COMMENT ON FUNCTION m365sync.set_calendar_sync(bigint, boolean) IS
    'Turn syncing of one of the acting user''s calendars on or off.';

CREATE FUNCTION m365sync.upsert_event(event jsonb, event_id bigint DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_upsert_event';
COMMENT ON FUNCTION m365sync.upsert_event(jsonb, bigint) IS
    'Create (event_id null) or update an event from Graph-shaped JSON; queued for Microsoft in the same transaction.';

CREATE FUNCTION m365sync.delete_event(event_id bigint) RETURNS void
    LANGUAGE c VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_delete_event';
COMMENT ON FUNCTION m365sync.delete_event(bigint) IS
    'Delete an event; gone from events() at once, deleted at Microsoft after commit.';

DO $grants$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'm365sync.events(timestamptz, timestamptz, bigint)',
        'm365sync.event(bigint)',
        'm365sync.calendars()',
        'm365sync.set_calendar_sync(bigint, boolean)',
        'm365sync.upsert_event(jsonb, bigint)',
        'm365sync.delete_event(bigint)']
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO m365sync_app', f);
        EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO m365sync_definer', f);
    END LOOP;
END
$grants$;
