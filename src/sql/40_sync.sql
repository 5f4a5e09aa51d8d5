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
