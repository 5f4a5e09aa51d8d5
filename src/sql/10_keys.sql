-- Keys and erasure (keyring.c, sql_keys.c): master key rotation, crypto-
-- shredding purge and the decrypted export of one user. rewrap_keys is
-- m365sync_admin's; export_user and purge_user are m365sync_privacy's only
-- (from 0.2.0): the operator configures and watches, and reads no content.
-- The _encrypt_*/_decrypt_* helpers are internal: granted to nobody, so only
-- a superuser or a superuser-owned function (export_user) can call them.

CREATE FUNCTION m365sync.rewrap_keys() RETURNS integer
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_rewrap_keys';
COMMENT ON FUNCTION m365sync.rewrap_keys() IS
    'Rewraps every data key under the current (first) master key in one transaction; returns how many. Afterwards older key lines can be removed from m365sync.key_file.';

CREATE FUNCTION m365sync.purge_user(flowagent_user text) RETURNS void
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_purge_user';
COMMENT ON FUNCTION m365sync.purge_user(text) IS
    'Erases a FlowAgent user: destroys the data keys of the user''s accounts first (crypto-shredding), then deletes their rows.';

-- Internal helpers: the keyring from SQL. Never grant them.
CREATE FUNCTION m365sync._encrypt_text(tbl text, col text, account_id bigint, row_id bigint, value text)
    RETURNS bytea LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_encrypt_text';
CREATE FUNCTION m365sync._encrypt_jsonb(tbl text, col text, account_id bigint, row_id bigint, value jsonb)
    RETURNS bytea LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_encrypt_jsonb';
CREATE FUNCTION m365sync._decrypt_text(tbl text, col text, account_id bigint, row_id bigint, value bytea)
    RETURNS text LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_decrypt_text';
CREATE FUNCTION m365sync._decrypt_jsonb(tbl text, col text, account_id bigint, row_id bigint, value bytea)
    RETURNS jsonb LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_decrypt_jsonb';

-- Any change to data_keys, by anybody, drops the cached data keys of every
-- backend (a relcache invalidation), so a purge shreds everywhere at once.
CREATE FUNCTION m365sync._data_keys_changed() RETURNS trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_data_keys_changed';
CREATE TRIGGER data_keys_changed
    AFTER UPDATE OR DELETE OR TRUNCATE ON m365sync.data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION m365sync._data_keys_changed();

-- A data key is stored only if it unwraps under m365sync.key_file, so a
-- restore onto a server with another key file stops at data_keys with an
-- error naming the master key id, before any row could be used.
CREATE FUNCTION m365sync._data_key_check() RETURNS trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_data_key_check';
CREATE TRIGGER data_key_check
    BEFORE INSERT ON m365sync.data_keys
    FOR EACH ROW EXECUTE FUNCTION m365sync._data_key_check();

-- Everything held on one user, decrypted: accounts (no tokens, no secrets),
-- calendars, events with their whole content, pending changes, conflicts
-- with the losing version, sync history. Nothing of any other user.
CREATE FUNCTION m365sync.export_user(flowagent_user text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
AS $export$
DECLARE
    who text := $1;
BEGIN
    IF who IS NULL OR who = '' THEN
        RAISE EXCEPTION 'flowagent_user must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM m365sync._audit('export', who, NULL);
    RETURN pg_catalog.jsonb_build_object(
        'flowagent_user', who,
        'exported_at', pg_catalog.now(),
        'accounts', COALESCE((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'account_id', a.account_id,
                'tenant', t.tenant,
                'mode', a.mode,
                'ms_user_id', a.ms_user_id,
                'mailbox', m365sync._decrypt_text('accounts', 'mailbox', a.account_id, a.account_id, a.mailbox),
                'status', a.status,
                'last_error', a.last_error,
                'created_at', a.created_at,
                'last_sync_at', a.last_sync_at,
                'next_sync_at', a.next_sync_at,
                'calendars', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'calendar_id', c.calendar_id,
                        'graph_id', c.graph_id,
                        'name', m365sync._decrypt_text('calendars', 'name', c.account_id, c.calendar_id, c.name),
                        'is_default', c.is_default,
                        'can_edit', c.can_edit,
                        'sync_enabled', c.sync_enabled) ORDER BY c.calendar_id)
                      FROM m365sync.calendars c WHERE c.account_id = a.account_id), '[]'::jsonb),
                'events', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'event_id', e.event_id,
                        'calendar_id', e.calendar_id,
                        'graph_id', e.graph_id,
                        'series_master_id', e.series_master_id,
                        'event_type', e.event_type,
                        'start_at', e.start_at,
                        'end_at', e.end_at,
                        'is_all_day', e.is_all_day,
                        'start_date', e.start_date,
                        'end_date', e.end_date,
                        'show_as', e.show_as,
                        'is_cancelled', e.is_cancelled,
                        'sync_state', e.sync_state,
                        'deleted', e.deleted,
                        'remote_modified_at', e.remote_modified_at,
                        'local_modified_at', e.local_modified_at,
                        'content', m365sync._decrypt_jsonb('events', 'content', e.account_id, e.event_id, e.content))
                        ORDER BY e.event_id)
                      FROM m365sync.events e WHERE e.account_id = a.account_id), '[]'::jsonb),
                'pending_changes', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'event_id', o.event_id,
                        'op', o.op,
                        'changed_fields', o.changed_fields,
                        'attempts', o.attempts,
                        'last_error', o.last_error,
                        'created_at', o.created_at) ORDER BY o.outbox_id)
                      FROM m365sync.outbox o
                     WHERE o.account_id = a.account_id AND o.state = 'pending'), '[]'::jsonb),
                'conflicts', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'event_id', k.event_id,
                        'detected_at', k.detected_at,
                        'policy', k.policy,
                        'kept', k.kept,
                        'lost', m365sync._decrypt_jsonb('conflicts', 'lost', k.account_id, k.conflict_id, k.lost),
                        'resolved_at', k.resolved_at) ORDER BY k.conflict_id)
                      FROM m365sync.conflicts k WHERE k.account_id = a.account_id), '[]'::jsonb),
                'sync_runs', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'started_at', r.started_at,
                        'finished_at', r.finished_at,
                        'fetched', r.fetched,
                        'applied', r.applied,
                        'pushed', r.pushed,
                        'status', r.status,
                        'error_code', r.error_code) ORDER BY r.run_id)
                      FROM m365sync.sync_run_log r WHERE r.account_id = a.account_id), '[]'::jsonb))
                ORDER BY a.account_id)
              FROM m365sync.accounts a
              LEFT JOIN m365sync.tenants t ON t.tenant_id = a.tenant_id
             WHERE a.flowagent_user = who), '[]'::jsonb));
END
$export$;
COMMENT ON FUNCTION m365sync.export_user(text) IS
    'Everything m365sync holds on a FlowAgent user, decrypted (no tokens or secrets).';

REVOKE ALL ON FUNCTION m365sync.rewrap_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.purge_user(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.export_user(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._encrypt_text(text, text, bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._encrypt_jsonb(text, text, bigint, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._decrypt_text(text, text, bigint, bigint, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._decrypt_jsonb(text, text, bigint, bigint, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._data_keys_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._data_key_check() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.rewrap_keys() TO m365sync_admin;
GRANT EXECUTE ON FUNCTION m365sync.purge_user(text) TO m365sync_privacy;
GRANT EXECUTE ON FUNCTION m365sync.export_user(text) TO m365sync_privacy;
