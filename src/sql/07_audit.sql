-- The audit trail (from 0.2.0): one row per privileged act, written by the
-- act's own function in the act's transaction (store_audit.c), so an act
-- that fails or rolls back leaves no row and a committed one always does.
-- Who and what, never content: when, the database role that called (the
-- role in effect before SECURITY DEFINER, i.e. after any SET ROLE), the
-- FlowAgent user and/or account concerned, and the act.
--
-- Append-only for everyone: no role has UPDATE or DELETE on it, and a
-- trigger refuses UPDATE and TRUNCATE from anybody and DELETE of any row
-- younger than m365sync.audit_retention, so the one delete that passes is
-- the pruning of expired rows (worker round and m365sync.sync()). The table
-- is dumped with its rows (pg_extension_config_dump below). A superuser can
-- still disable the trigger: the trail guards against the extension's
-- roles, not against the cluster's owner.
CREATE TABLE m365sync.audit_log (
    audit_id        bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    db_role         text NOT NULL,
    flowagent_user  text,
    account_id      bigint,                  -- no foreign key: the row outlives a purged account
    act             text NOT NULL CHECK (act IN ('configure', 'consent', 'connect', 'disconnect',
                                                 'add_mailbox', 'export', 'purge', 'rewrap_keys',
                                                 'resolve_conflict', 'distribute'))
);
CREATE INDEX audit_log_at ON m365sync.audit_log (at);

REVOKE ALL ON m365sync.audit_log FROM PUBLIC;
REVOKE ALL ON SEQUENCE m365sync.audit_log_audit_id_seq FROM PUBLIC;
-- User functions (connect, disconnect, resolve_conflict) run as
-- m365sync_definer: it may add rows for the acting user, and nothing else.
GRANT INSERT ON m365sync.audit_log TO m365sync_definer;
GRANT USAGE ON SEQUENCE m365sync.audit_log_audit_id_seq TO m365sync_definer;
ALTER TABLE m365sync.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY acting_user ON m365sync.audit_log FOR INSERT TO m365sync_definer
    WITH CHECK (flowagent_user = pg_catalog.current_setting('m365sync.flowagent_user', true));

CREATE FUNCTION m365sync._audit_log_append_only() RETURNS trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_audit_log_append_only';
CREATE TRIGGER append_only
    BEFORE UPDATE OR DELETE ON m365sync.audit_log
    FOR EACH ROW EXECUTE FUNCTION m365sync._audit_log_append_only();
CREATE TRIGGER append_only_truncate
    BEFORE TRUNCATE ON m365sync.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION m365sync._audit_log_append_only();

-- For SQL-language acts (export_user, and m365sync.distribute()): record an
-- act in the caller's transaction. Internal, granted to nobody.
CREATE FUNCTION m365sync._audit(act text, flowagent_user text, account_id bigint)
    RETURNS void
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_audit';
REVOKE ALL ON FUNCTION m365sync._audit_log_append_only() FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._audit(text, text, bigint) FROM PUBLIC;

CREATE VIEW m365sync.audit_trail AS
SELECT at, db_role, flowagent_user, account_id, act
  FROM m365sync.audit_log;
COMMENT ON VIEW m365sync.audit_trail IS
    'Privileged acts, one row each: when, database role, FlowAgent user or account, act. No content; rows older than m365sync.audit_retention are pruned.';
REVOKE ALL ON m365sync.audit_trail FROM PUBLIC;
GRANT SELECT ON m365sync.audit_trail TO m365sync_admin;

SELECT pg_catalog.pg_extension_config_dump('m365sync.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.audit_log_audit_id_seq', '');
