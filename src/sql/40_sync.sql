-- Syncing on demand: m365sync.sync() runs the worker's round in this
-- session (pg_cron, or servers without shared_preload_libraries).

CREATE FUNCTION m365sync.sync(account_id bigint DEFAULT NULL)
    RETURNS SETOF m365sync.sync_result
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_sync';
COMMENT ON FUNCTION m365sync.sync(bigint) IS
    'Sync one account, or every due account, now, in this transaction.';
REVOKE ALL ON FUNCTION m365sync.sync(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.sync(bigint) TO m365sync_admin;

-- What changed for the acting user (issue 23). NOTIFY m365sync carries no
-- payload, because any role may LISTEN; on one, the app asks this, acting
-- for each user it shows, with the highest `change` it has seen: one row per
-- finished sync round of the user's account that applied remote changes,
-- oldest first. Ids and counts only; events() then reads the events.
CREATE FUNCTION m365sync.changes_since(after bigint DEFAULT 0)
    RETURNS TABLE (change bigint, changed_at timestamptz, changed integer)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS $$
BEGIN
    PERFORM m365sync.acting_user();  -- 28000 without an acting user
    RETURN QUERY
        SELECT r.run_id, r.finished_at, r.applied + r.deleted
          FROM m365sync.sync_run_log r
         WHERE r.run_id > coalesce(after, 0) AND r.finished_at IS NOT NULL
           AND r.applied + r.deleted > 0
         ORDER BY r.run_id;
END
$$;
COMMENT ON FUNCTION m365sync.changes_since(bigint) IS
    'Sync rounds of the acting user''s account that applied remote changes, after the given change id, oldest first; for a NOTIFY m365sync (which carries no payload).';
ALTER FUNCTION m365sync.changes_since(bigint) OWNER TO m365sync_definer;
REVOKE ALL ON FUNCTION m365sync.changes_since(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.changes_since(bigint) TO m365sync_app;
