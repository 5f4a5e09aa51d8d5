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

-- Every function is SECURITY DEFINER with a pinned search_path, or is an
-- internal C helper that touches no table (listed by name).
SELECT p.proname
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'm365sync'
   AND NOT (p.prosecdef AND p.proconfig @> ARRAY['search_path=pg_catalog, m365sync, pg_temp'])
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
RESET ROLE;

DROP ROLE regress_app;
DROP ROLE regress_admin;
