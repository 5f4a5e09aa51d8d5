-- m365sync 0.1.0 → 0.2.0 (ALTER EXTENSION m365sync UPDATE).
--
-- Every schema change of 0.2.0 is made twice: in its src/sql piece (what a
-- fresh CREATE EXTENSION builds) and here, so that an upgraded database ends
-- with the same catalog as a fresh one (checked by test/t/080_operations.pl).
\echo Use "ALTER EXTENSION m365sync UPDATE TO '0.2.0'" to load this file. \quit

-- ---- pg_dump and restore (issue 15) ----

-- Dump every table's rows and the sequences behind their ids (why: in
-- 01_tables.sql).
SELECT pg_catalog.pg_extension_config_dump('m365sync.app_config', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.tenants_tenant_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.oauth_states', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.oauth_states_state_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.data_keys', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.accounts_account_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.calendars', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.calendars_calendar_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.events', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.events_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.outbox_outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.conflicts', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.conflicts_conflict_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.sync_run_log', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.sync_run_log_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.account_wakeups', '');

-- A data key is stored only if it unwraps under m365sync.key_file (10_keys.sql).
CREATE FUNCTION m365sync._data_key_check() RETURNS trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_data_key_check';
CREATE TRIGGER data_key_check
    BEFORE INSERT ON m365sync.data_keys
    FOR EACH ROW EXECUTE FUNCTION m365sync._data_key_check();
REVOKE ALL ON FUNCTION m365sync._data_key_check() FROM PUBLIC;

-- ---- no poison events (issue 23) ----

-- Items of a delta page the pull could not map and skipped (pull_item.c).
-- (Added without a default, then filled: a fresh install's catalog has no
-- "missing value" for it, and neither may an upgraded one.)
ALTER TABLE m365sync.sync_run_log ADD COLUMN skipped integer;
UPDATE m365sync.sync_run_log SET skipped = 0;
ALTER TABLE m365sync.sync_run_log ALTER COLUMN skipped SET DEFAULT 0,
                                  ALTER COLUMN skipped SET NOT NULL;
CREATE OR REPLACE VIEW m365sync.sync_runs AS
SELECT account_id, started_at, finished_at, pages, fetched, applied, deleted,
       pushed, http_requests, status, error_code, skipped
  FROM m365sync.sync_run_log;

-- ---- NOTIFY without account ids (issue 23) ----
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
