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

-- One row per account. last_error also names a push that failed for good
-- (an error code, never content) until the event is changed again.
-- subscription: off (no notification_url), pending (to be made), active,
-- expired, removed (to be made again) or error, with its expiry and the
-- last failure's Graph error code; the clientState stays in
-- m365sync.subscriptions.
-- The views read through SECURITY DEFINER functions of the extension's
-- owner: on a Citus cluster (SPEC §2 "Scale-out") a view's rows are read on
-- the nodes as the role that queries it, and m365sync_admin may read no
-- table; through the functions the nodes read as the owner, on a single
-- server as on a cluster.
CREATE FUNCTION m365sync._account_status()
    RETURNS TABLE (account_id bigint, flowagent_user text, tenant text, mode text, status text,
                   last_sync_at timestamptz, next_sync_at timestamptz, last_error text,
                   events bigint, pending_pushes bigint, conflicts bigint, subscription text,
                   subscription_expires_at timestamptz, subscription_error text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS $status$
SELECT a.account_id,
       a.flowagent_user,
       t.tenant,
       a.mode,
       a.status,
       a.last_sync_at,
       a.next_sync_at,
       coalesce(a.last_error,
                (SELECT 'push failed: ' || o.last_error FROM m365sync.outbox o
                  WHERE o.account_id = a.account_id AND o.state = 'failed'
                  ORDER BY o.outbox_id DESC LIMIT 1)) AS last_error,
       (SELECT pg_catalog.count(*) FROM m365sync.events e
         WHERE e.account_id = a.account_id AND NOT e.deleted) AS events,
       (SELECT pg_catalog.count(*) FROM m365sync.outbox o
         WHERE o.account_id = a.account_id AND o.state = 'pending') AS pending_pushes,
       (SELECT pg_catalog.count(*) FROM m365sync.conflicts c
         WHERE c.account_id = a.account_id AND c.resolved_at IS NULL) AS conflicts,
       CASE WHEN s.account_id IS NOT NULL AND s.recreate THEN 'removed'
            WHEN s.account_id IS NOT NULL AND s.expires_at <= pg_catalog.now() THEN 'expired'
            WHEN s.account_id IS NOT NULL THEN 'active'
            WHEN coalesce(pg_catalog.current_setting('m365sync.notification_url', true), '') = '' THEN 'off'
            WHEN a.subscription_error IS NOT NULL THEN 'error'
            ELSE 'pending' END AS subscription,
       s.expires_at AS subscription_expires_at,
       a.subscription_error
  FROM m365sync.accounts a
  LEFT JOIN m365sync.tenants t ON t.tenant_id = a.tenant_id
  LEFT JOIN LATERAL (SELECT s1.account_id, s1.recreate, s1.expires_at FROM m365sync.subscriptions s1
                      WHERE s1.account_id = a.account_id
                      ORDER BY s1.created_at DESC LIMIT 1) s ON true
$status$;

CREATE FUNCTION m365sync._sync_runs()
    RETURNS TABLE (account_id bigint, started_at timestamptz, finished_at timestamptz,
                   pages integer, fetched integer, applied integer, deleted integer,
                   pushed integer, http_requests integer, status text, error_code text,
                   skipped integer)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS $runs$
SELECT account_id, started_at, finished_at, pages, fetched, applied, deleted,
       pushed, http_requests, status, error_code, skipped
  FROM m365sync.sync_run_log
$runs$;
REVOKE ALL ON FUNCTION m365sync._account_status(), m365sync._sync_runs() FROM PUBLIC;
-- a view's functions run with the querying role's EXECUTE right
GRANT EXECUTE ON FUNCTION m365sync._account_status(), m365sync._sync_runs() TO m365sync_admin;

CREATE VIEW m365sync.account_status AS
SELECT * FROM m365sync._account_status();

CREATE VIEW m365sync.sync_runs AS
SELECT * FROM m365sync._sync_runs();

REVOKE ALL ON m365sync.account_status, m365sync.sync_runs FROM PUBLIC;
GRANT SELECT ON m365sync.account_status, m365sync.sync_runs TO m365sync_admin;
