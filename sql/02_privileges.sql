-- Roles act only through functions: no table, view or sequence is granted
-- to PUBLIC or to m365sync_app; m365sync_admin reads the status views only.
CREATE ROLE regress_app LOGIN IN ROLE m365sync_app;
CREATE ROLE regress_admin LOGIN IN ROLE m365sync_admin;

-- No table grants anybody but the functions' owner.
SELECT c.relname, g.grantee
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
  JOIN LATERAL (SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                            ELSE a.grantee::regrole::text END AS grantee) g ON true
 WHERE n.nspname = 'm365sync' AND c.relkind IN ('r', 'S')
   AND g.grantee NOT IN ('m365sync_definer', current_user)
 ORDER BY 1, 2;

SET ROLE regress_app;
SELECT * FROM m365sync.events;
INSERT INTO m365sync.accounts (flowagent_user, mode) VALUES ('u', 'delegated');
SELECT * FROM m365sync.data_keys;
SELECT * FROM m365sync.account_status;
RESET ROLE;

SET ROLE regress_admin;
SELECT * FROM m365sync.accounts;
UPDATE m365sync.app_config SET client_id = 'x';
SELECT count(*) FROM m365sync.account_status;
SELECT count(*) FROM m365sync.sync_runs;
RESET ROLE;

-- Every function is SECURITY DEFINER with a pinned search_path, except the
-- policies' per-row check _acting_owns: SECURITY DEFINER without a path of
-- its own (a SET clause per row cost more than its read), its one query
-- naming every relation and operator by schema (01_tables.sql).
SELECT p.proname
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'm365sync'
   AND NOT (p.prosecdef AND coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, m365sync, pg_temp'])
 ORDER BY 1;

-- No function is executable by PUBLIC.
SELECT p.proname
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'm365sync'
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;

-- The acting user: unset or empty is ERROR 28000 with a hint.
SET ROLE regress_app;
SELECT regress_error('SELECT m365sync.acting_user()');
BEGIN;
SET LOCAL m365sync.flowagent_user = '';
SELECT regress_error('SELECT m365sync.acting_user()');
ROLLBACK;
-- The hint shows the right syntax.
SELECT m365sync.acting_user();
BEGIN;
SET LOCAL m365sync.flowagent_user = 'user-42';
SELECT m365sync.acting_user();
COMMIT;
SELECT m365sync.acting_user();

-- The acting user lives for exactly one transaction (SPEC §3): a value from
-- an earlier transaction is refused with 28000, so a pooled session never
-- acts for the previous client's user.
-- A session-level SET, then a call in a later transaction (each psql line
-- below is its own transaction): refused, with the detail and hint.
SET m365sync.flowagent_user = 'user-stale';
SELECT m365sync.acting_user();
SELECT regress_error('SELECT count(*) FROM m365sync.events(''-infinity'', ''infinity'')') AS events_with_stale_user;
-- SET LOCAL in autocommit is its own (one-statement) transaction: PostgreSQL
-- warns, and the call after it is refused instead of using an older value.
SET LOCAL m365sync.flowagent_user = 'user-local';
SELECT regress_error('SELECT m365sync.acting_user()') AS after_set_local_in_autocommit;
-- SET LOCAL in a block works, and so does set_config(..., true).
BEGIN;
SET LOCAL m365sync.flowagent_user = 'user-local';
SELECT m365sync.acting_user();
SELECT count(*) AS events FROM m365sync.events('-infinity', 'infinity');
COMMIT;
-- after COMMIT the next transaction is refused again
SELECT regress_error('SELECT m365sync.acting_user()') AS after_commit;
BEGIN;
SELECT set_config('m365sync.flowagent_user', 'user-driver', true) AS set_config;
SELECT m365sync.acting_user();
COMMIT;
SELECT regress_error('SELECT m365sync.acting_user()') AS after_set_config_commit;
-- A plain SET inside the transaction block counts in that transaction only.
BEGIN;
SET m365sync.flowagent_user = 'user-in-block';
SELECT m365sync.acting_user();
COMMIT;
SELECT current_setting('m365sync.flowagent_user') AS session_value_left,
       regress_error('SELECT m365sync.acting_user()') AS next_transaction;
-- ROLLBACK TO SAVEPOINT restores the older session value, which stays refused;
-- a value set before the savepoint stays good.
BEGIN;
SAVEPOINT s;
SET LOCAL m365sync.flowagent_user = 'user-sp';
ROLLBACK TO SAVEPOINT s;
SELECT current_setting('m365sync.flowagent_user') AS restored,
       regress_error('SELECT m365sync.acting_user()') AS restored_value;
SELECT set_config('m365sync.flowagent_user', 'user-outer', true) AS set_config;
SAVEPOINT s2;
SET LOCAL m365sync.flowagent_user = 'user-inner';
ROLLBACK TO SAVEPOINT s2;
SELECT m365sync.acting_user();
COMMIT;
-- A rolled back transaction leaves nothing usable either.
BEGIN;
SET LOCAL m365sync.flowagent_user = 'user-rolled-back';
ROLLBACK;
SELECT regress_error('SELECT m365sync.acting_user()') AS after_rollback;
RESET m365sync.flowagent_user;
RESET ROLE;

DROP ROLE regress_app;
DROP ROLE regress_admin;

-- _acting_owns runs as its owner, whoever evaluates the policy.
SELECT p.prosecdef, p.proconfig, pg_catalog.pg_get_userbyid(p.proowner) AS owner
  FROM pg_proc p WHERE p.oid = 'm365sync._acting_owns(bigint)'::regprocedure;
