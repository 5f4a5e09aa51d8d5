-- The acting FlowAgent user, and the admin's status views (no secrets, no
-- content, no addresses: ids, states, counts and times only).

CREATE FUNCTION m365sync.acting_user() RETURNS text
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_acting_user';
COMMENT ON FUNCTION m365sync.acting_user() IS
    'The FlowAgent user the current transaction acts for (m365sync.flowagent_user); ERROR 28000 when unset.';
REVOKE ALL ON FUNCTION m365sync.acting_user() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.acting_user() TO m365sync_app, m365sync_definer;

CREATE VIEW m365sync.account_status AS
SELECT a.account_id,
       a.flowagent_user,
       t.tenant,
       a.mode,
       a.status,
       a.last_sync_at,
       a.next_sync_at,
       a.last_error,
       (SELECT pg_catalog.count(*) FROM m365sync.events e
         WHERE e.account_id = a.account_id AND NOT e.deleted) AS events,
       (SELECT pg_catalog.count(*) FROM m365sync.outbox o
         WHERE o.account_id = a.account_id AND o.state = 'pending') AS pending_pushes,
       (SELECT pg_catalog.count(*) FROM m365sync.conflicts c
         WHERE c.account_id = a.account_id AND c.resolved_at IS NULL) AS conflicts
  FROM m365sync.accounts a
  LEFT JOIN m365sync.tenants t ON t.tenant_id = a.tenant_id;

CREATE VIEW m365sync.sync_runs AS
SELECT account_id, started_at, finished_at, pages, fetched, applied, deleted,
       pushed, http_requests, status, error_code
  FROM m365sync.sync_run_log;

REVOKE ALL ON m365sync.account_status, m365sync.sync_runs FROM PUBLIC;
GRANT SELECT ON m365sync.account_status, m365sync.sync_runs TO m365sync_admin;
