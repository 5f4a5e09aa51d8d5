-- Scale-out on Citus (SPEC §2 "Scale-out", README "Scaling out with Citus").
--
-- m365sync.distribute() turns the installed schema into a distributed one
-- on a Citus coordinator: every per-account table is distributed on
-- account_id, co-located with accounts (so an account's rows live on one
-- node and its sync runs there by local execution); the app and tenant
-- configuration, the OAuth states and the users' account map (user_accounts)
-- become reference tables (a copy on
-- every node). Idempotent: a table already distributed is left as it is.
-- Citus's functions are named only in dynamic SQL, so this file installs
-- on a server without Citus, where the function refuses with a hint.
--
-- Also, once: m365sync_definer may log in (Citus opens its connections to
-- the other nodes as the current user, and the user functions run as that
-- role; pg_hba.conf decides from where), and the database propagates
-- SET LOCAL to the nodes (citus.propagate_set_commands = local), so the
-- shards' row level security sees m365sync.flowagent_user. Each node's
-- sequences get their own range (node group << 48), so ids (event_id, ...)
-- made on different nodes never collide.

-- m365sync._wake_here(): this node's worker wakes at commit. A coordinator
-- calls it through a query routed to an account's shard (store_placement.c),
-- so a change committed there wakes the owning node's worker.
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
        'sync_run_log', 'subscriptions', 'account_wakeups', 'data_keys', 'removed_events',
        'account_routes'];
    reference constant text[] := ARRAY['app_config', 'tenants', 'oauth_states', 'user_accounts'];
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
    -- a sync round meeting the conversion's locks gives way (it retries), not this
    SET LOCAL deadlock_timeout = '60s';

    -- The first time: the tables to ourselves, accounts first (as every
    -- round takes them), so no worker round deadlocks with the conversion.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid = 'm365sync.accounts'::regclass) THEN
        LOCK TABLE m365sync.accounts, m365sync.tenants, m365sync.app_config, m365sync.oauth_states,
                   m365sync.calendars, m365sync.events, m365sync.outbox, m365sync.conflicts,
                   m365sync.sync_run_log, m365sync.subscriptions, m365sync.account_wakeups,
                   m365sync.data_keys, m365sync.removed_events, m365sync.user_accounts,
                   m365sync.account_routes
                   IN ACCESS EXCLUSIVE MODE;
    END IF;
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
    PERFORM m365sync._audit('distribute', NULL, NULL);
END
$distribute$;
COMMENT ON FUNCTION m365sync.distribute() IS
    'On a Citus coordinator: distributes the per-account tables by account_id (co-located with accounts) and makes the configuration tables reference tables; idempotent.';
REVOKE ALL ON FUNCTION m365sync.distribute() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.distribute() TO m365sync_admin;
