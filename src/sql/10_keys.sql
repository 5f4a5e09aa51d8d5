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
    acc record;
    accounts jsonb := '[]';
    cals jsonb;
    evs jsonb;
    pend jsonb;
    confl jsonb;
    runs jsonb;
BEGIN
    IF who IS NULL OR who = '' THEN
        RAISE EXCEPTION 'flowagent_user must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM m365sync._audit('export', who, NULL);
    -- Each table's rows are read as stored (ciphertext as hex, in "_c"),
    -- then decrypted in a query on no table: on Citus a query on the shards
    -- runs on their node, where decrypting would read data_keys through a
    -- distributed query nested in a shard's, which Citus refuses.
    FOR acc IN SELECT a.account_id, t.tenant, a.mode, a.ms_user_id, a.mailbox, a.status, a.last_error,
                      a.created_at, a.last_sync_at, a.next_sync_at
                 FROM m365sync.accounts a
                 LEFT JOIN m365sync.tenants t ON t.tenant_id = a.tenant_id
                WHERE a.flowagent_user = who
                ORDER BY a.account_id LOOP
        SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'calendar_id', c.calendar_id,
                   'graph_id', c.graph_id,
                   '_c', pg_catalog.encode(c.name, 'hex'),
                   'is_default', c.is_default,
                   'can_edit', c.can_edit,
                   'sync_enabled', c.sync_enabled) ORDER BY c.calendar_id), '[]'::jsonb)
          INTO cals FROM m365sync.calendars c WHERE c.account_id = acc.account_id;
        SELECT COALESCE(pg_catalog.jsonb_agg((r - '_c') || pg_catalog.jsonb_build_object('name',
                   m365sync._decrypt_text('calendars', 'name', acc.account_id, (r ->> 'calendar_id')::bigint,
                                          pg_catalog.decode(r ->> '_c', 'hex'))) ORDER BY o), '[]'::jsonb)
          INTO cals FROM pg_catalog.jsonb_array_elements(cals) WITH ORDINALITY x(r, o);

        SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
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
                   '_c', pg_catalog.encode(e.content, 'hex')) ORDER BY e.event_id), '[]'::jsonb)
          INTO evs FROM m365sync.events e WHERE e.account_id = acc.account_id;
        SELECT COALESCE(pg_catalog.jsonb_agg((r - '_c') || pg_catalog.jsonb_build_object('content',
                   m365sync._decrypt_jsonb('events', 'content', acc.account_id, (r ->> 'event_id')::bigint,
                                           pg_catalog.decode(r ->> '_c', 'hex'))) ORDER BY o), '[]'::jsonb)
          INTO evs FROM pg_catalog.jsonb_array_elements(evs) WITH ORDINALITY x(r, o);

        SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'event_id', ob.event_id,
                   'op', ob.op,
                   'changed_fields', ob.changed_fields,
                   'attempts', ob.attempts,
                   'last_error', ob.last_error,
                   'created_at', ob.created_at) ORDER BY ob.outbox_id), '[]'::jsonb)
          INTO pend FROM m365sync.outbox ob WHERE ob.account_id = acc.account_id AND ob.state = 'pending';

        SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   '_id', k.conflict_id,
                   'event_id', k.event_id,
                   'detected_at', k.detected_at,
                   'policy', k.policy,
                   'kept', k.kept,
                   '_c', pg_catalog.encode(k.lost, 'hex'),
                   'resolved_at', k.resolved_at) ORDER BY k.conflict_id), '[]'::jsonb)
          INTO confl FROM m365sync.conflicts k WHERE k.account_id = acc.account_id;
        SELECT COALESCE(pg_catalog.jsonb_agg((r - '_c' - '_id') || pg_catalog.jsonb_build_object('lost',
                   m365sync._decrypt_jsonb('conflicts', 'lost', acc.account_id, (r ->> '_id')::bigint,
                                           pg_catalog.decode(r ->> '_c', 'hex'))) ORDER BY o), '[]'::jsonb)
          INTO confl FROM pg_catalog.jsonb_array_elements(confl) WITH ORDINALITY x(r, o);

        SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'started_at', rl.started_at,
                   'finished_at', rl.finished_at,
                   'fetched', rl.fetched,
                   'applied', rl.applied,
                   'pushed', rl.pushed,
                   'status', rl.status,
                   'error_code', rl.error_code) ORDER BY rl.run_id), '[]'::jsonb)
          INTO runs FROM m365sync.sync_run_log rl WHERE rl.account_id = acc.account_id;

        accounts := accounts || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'account_id', acc.account_id,
            'tenant', acc.tenant,
            'mode', acc.mode,
            'ms_user_id', acc.ms_user_id,
            'mailbox', m365sync._decrypt_text('accounts', 'mailbox', acc.account_id, acc.account_id, acc.mailbox),
            'status', acc.status,
            'last_error', acc.last_error,
            'created_at', acc.created_at,
            'last_sync_at', acc.last_sync_at,
            'next_sync_at', acc.next_sync_at,
            'calendars', cals,
            'events', evs,
            'pending_changes', pend,
            'conflicts', confl,
            'sync_runs', runs));
    END LOOP;
    RETURN pg_catalog.jsonb_build_object(
        'flowagent_user', who,
        'exported_at', pg_catalog.now(),
        'accounts', accounts);
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
