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

-- ---- Scale-out on Citus (issue 19) ----

-- Row level security without subqueries, which Citus refuses in policies on
-- distributed tables (why and how: 01_tables.sql).
-- Owned by m365sync_definer, which the policies bind: it runs as that role
-- whoever calls it, so the accounts policy always applies to its read.
CREATE FUNCTION m365sync._acting_owns(account_id bigint) RETURNS boolean
    LANGUAGE c STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_acting_owns';
REVOKE ALL ON FUNCTION m365sync._acting_owns(bigint) FROM PUBLIC;
ALTER FUNCTION m365sync._acting_owns(bigint) OWNER TO m365sync_definer;

ALTER POLICY acting_user ON m365sync.calendars
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.events
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.outbox
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.conflicts
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.sync_run_log
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.subscriptions
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.account_wakeups
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.data_keys
    USING (account_id = 0 OR m365sync._acting_owns(account_id));

-- m365sync.distribute() and the wake of an account's node (70_citus.sql).
CREATE FUNCTION m365sync._wake_here() RETURNS boolean
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_wake_here';
REVOKE ALL ON FUNCTION m365sync._wake_here() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync._wake_here() TO m365sync_definer;

CREATE FUNCTION m365sync.distribute() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS $distribute$
DECLARE
    t text;
    seq text;
    per_account constant text[] := ARRAY['calendars', 'events', 'outbox', 'conflicts',
        'sync_run_log', 'subscriptions', 'account_wakeups', 'data_keys'];
    reference constant text[] := ARRAY['app_config', 'tenants', 'oauth_states'];
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RAISE EXCEPTION 'Citus is not installed in database "%"', pg_catalog.current_database()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'On every node add citus to shared_preload_libraries (before m365sync); '
                         'on the coordinator run CREATE EXTENSION citus, add the worker nodes, '
                         'CREATE EXTENSION m365sync, then SELECT m365sync.distribute().';
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'm365sync.distribute() runs on the Citus coordinator'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Connect to the coordinator and call it there.';
    END IF;
    -- the triggers of data_keys run on its shards (key check, cache reset)
    SET LOCAL citus.enable_unsafe_triggers = on;
    SET LOCAL citus.multi_shard_modify_mode = 'sequential';
    SET LOCAL client_min_messages = warning;

    -- accounts refers to tenants: distribute both without the key, then restore it
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid = 'm365sync.tenants'::regclass) THEN
        ALTER TABLE m365sync.accounts DROP CONSTRAINT IF EXISTS accounts_tenant_id_fkey;
    END IF;
    FOREACH t IN ARRAY reference LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                        WHERE logicalrelid = ('m365sync.' || t)::regclass) THEN
            PERFORM pg_catalog.create_reference_table(('m365sync.' || t)::regclass);
            PERFORM pg_catalog.truncate_local_data_after_distributing_table(('m365sync.' || t)::regclass);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid = 'm365sync.accounts'::regclass) THEN
        PERFORM pg_catalog.create_distributed_table('m365sync.accounts', 'account_id');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'm365sync.accounts'::regclass
                      AND conname = 'accounts_tenant_id_fkey') THEN
        -- the nodes' copies of the extension still have it
        ALTER TABLE m365sync.accounts DROP CONSTRAINT IF EXISTS accounts_tenant_id_fkey;
        ALTER TABLE m365sync.accounts ADD CONSTRAINT accounts_tenant_id_fkey
            FOREIGN KEY (tenant_id) REFERENCES m365sync.tenants;
    END IF;
    FOREACH t IN ARRAY per_account LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                        WHERE logicalrelid = ('m365sync.' || t)::regclass) THEN
            PERFORM pg_catalog.create_distributed_table(('m365sync.' || t)::regclass, 'account_id',
                                                        colocate_with => 'm365sync.accounts');
        END IF;
    END LOOP;
    -- the coordinator's own copies of the rows are in the shards now
    FOREACH t IN ARRAY ARRAY['accounts'] || per_account LOOP
        PERFORM pg_catalog.truncate_local_data_after_distributing_table(('m365sync.' || t)::regclass);
    END LOOP;

    -- ids made on different nodes never collide: each node group its own range
    FOR seq IN SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'm365sync' AND c.relkind = 'S' ORDER BY 1 LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.run_command_on_all_nodes(pg_catalog.format(
            'DO $$ DECLARE g bigint := (SELECT groupid FROM pg_catalog.pg_dist_local_group); '
            'BEGIN IF g > 0 AND (SELECT last_value FROM %1$s) < (g << 48) THEN '
            'EXECUTE pg_catalog.format(''ALTER SEQUENCE %1$s RESTART WITH %%s'', (g << 48) + 1); '
            'END IF; END $$', seq)) r WHERE NOT r.success) THEN
            RAISE EXCEPTION 'could not give sequence % its range on every node', seq
                USING ERRCODE = 'connection_failure',
                      HINT = 'Check that every node is up (citus_check_cluster_node_health()) and call m365sync.distribute() again.';
        END IF;
    END LOOP;

    IF NOT (SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = 'm365sync_definer') THEN
        ALTER ROLE m365sync_definer LOGIN;
    END IF;
    EXECUTE pg_catalog.format('ALTER DATABASE %I SET citus.propagate_set_commands = local',
                              pg_catalog.current_database());
    -- AUDIT: record the act in m365sync.audit_log here once privpowers lands it
END
$distribute$;
COMMENT ON FUNCTION m365sync.distribute() IS
    'On a Citus coordinator: distributes the per-account tables by account_id (co-located with accounts) and makes the configuration tables reference tables; idempotent.';
REVOKE ALL ON FUNCTION m365sync.distribute() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.distribute() TO m365sync_admin;
