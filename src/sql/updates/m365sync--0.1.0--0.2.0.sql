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

-- ---- privacy and access (issue 23) ----

-- export_user and purge_user move from m365sync_admin to a role of their
-- own (00_roles_schema.sql).
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'm365sync_privacy') THEN
        CREATE ROLE m365sync_privacy NOLOGIN;
    END IF;
END
$roles$;
GRANT USAGE ON SCHEMA m365sync TO m365sync_privacy;
REVOKE ALL ON FUNCTION m365sync.purge_user(text) FROM m365sync_admin;
REVOKE ALL ON FUNCTION m365sync.export_user(text) FROM m365sync_admin;
GRANT EXECUTE ON FUNCTION m365sync.purge_user(text) TO m365sync_privacy;
GRANT EXECUTE ON FUNCTION m365sync.export_user(text) TO m365sync_privacy;

-- The audit trail (07_audit.sql, repeated here).
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

-- export_user records itself in the audit trail, and leaves the ical_uid
-- column (a keyed hash from 0.2.0) out: the content holds the iCalUId (10_keys.sql).
CREATE OR REPLACE FUNCTION m365sync.export_user(flowagent_user text) RETURNS jsonb
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

-- events.ical_uid holds a keyed hash from 0.2.0, never the iCalUId itself
-- (store_events.h); the clear value is in the encrypted content. Hash what
-- 0.1.0 stored in clear. The hash needs each account's data key, so this
-- step needs m365sync.key_file, as every read of the data does; a value
-- the 0.2.0 library already hashed (between installing it and this update)
-- is left as it is.
CREATE FUNCTION m365sync._upgrade_ical_uid_hash(account_id bigint, ical_uid text) RETURNS text
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'm365sync_ical_uid_hash';
UPDATE m365sync.events SET ical_uid = m365sync._upgrade_ical_uid_hash(account_id, ical_uid)
 WHERE ical_uid IS NOT NULL AND ical_uid !~ '^hmac:[0-9a-f]{64}$';
DROP FUNCTION m365sync._upgrade_ical_uid_hash(bigint, text);

-- outbox.changed_fields lists only names Graph accepts in a PATCH (the only
-- ones a push sends; event_patch.c), or '*' for the whole event. 0.1.0
-- listed every top-level key the caller sent, made-up ones included: keep
-- the accepted ones, which is all the push ever used.
UPDATE m365sync.outbox
   SET changed_fields = ARRAY(
         SELECT f FROM pg_catalog.unnest(changed_fields) WITH ORDINALITY AS u(f, n)
          WHERE f = ANY (ARRAY['*', 'subject', 'body', 'start', 'end', 'isAllDay', 'location',
                               'attendees', 'categories', 'showAs', 'sensitivity', 'importance',
                               'isReminderOn', 'reminderMinutesBeforeStart', 'recurrence',
                               'isOnlineMeeting', 'onlineMeetingProvider', 'responseRequested',
                               'allowNewTimeProposals', 'hideAttendees'])
          ORDER BY n)
 WHERE changed_fields IS NOT NULL;

-- ---- Live-service behaviours (issue 22: items 3, 6, 7) ----

-- When the calendar list was last read (daily, and at once after a calendar
-- answered 404), and which calendars answered 404 (01_tables.sql).
ALTER TABLE m365sync.accounts ADD COLUMN calendars_listed_at timestamptz;
ALTER TABLE m365sync.calendars ADD COLUMN gone_at timestamptz;

-- One subscription per synced calendar; 0.1.0's account-wide ones keep a
-- null calendar_id, and the worker replaces them.
ALTER TABLE m365sync.subscriptions ADD COLUMN calendar_id bigint;

-- Event ids of removed events, for an event moved between calendars.
CREATE TABLE m365sync.removed_events (
    account_id      bigint NOT NULL REFERENCES m365sync.accounts ON DELETE CASCADE,
    graph_id        text COLLATE "C" NOT NULL,
    event_id        bigint NOT NULL,
    removed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (account_id, graph_id)
);
REVOKE ALL ON m365sync.removed_events FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON m365sync.removed_events TO m365sync_definer;
ALTER TABLE m365sync.removed_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY acting_user ON m365sync.removed_events TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
SELECT pg_catalog.pg_extension_config_dump('m365sync.removed_events', '');

-- A notification POST is accepted when one of its items passes (issue 22
-- item 9, 60_notifications.sql).
COMMENT ON FUNCTION m365sync.handle_notification(text, text) IS
    'For the webhook handler: with validation_token returns it (the handshake); otherwise checks each item''s clientState, marks the accounts of the items that pass due and logs the others by subscription id; returns ''accepted'' (42501 when no item passes, nothing done).';

-- ---- recurring series, online meetings (issue 17) ----

-- Typed fields of m365sync.event the app would otherwise dig out of data
-- (01_tables.sql): a master's recurrence, the join link, the user's response.
ALTER TYPE m365sync.event ADD ATTRIBUTE recurrence jsonb;
ALTER TYPE m365sync.event ADD ATTRIBUTE join_url text;
ALTER TYPE m365sync.event ADD ATTRIBUTE my_response text;

-- ---- Scale-out on Citus (issue 19) ----

-- Row level security without subqueries, which Citus refuses in policies on
-- distributed tables (why and how: 01_tables.sql).
-- Owned by m365sync_definer, which the policies bind: it runs as that role
-- whoever calls it, so the accounts policy always applies to its read.
-- No SET search_path, unlike every other function: a policy calls it for
-- each row, and a SET clause makes each call a GUC nest level (the path set,
-- then every setting walked at its end), which cost more than the read it
-- guards. Its one query is kept and names every relation and operator by
-- schema, so no search_path can change what it reads.
CREATE FUNCTION m365sync._acting_owns(account_id bigint) RETURNS boolean
    LANGUAGE c STABLE STRICT SECURITY DEFINER
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
ALTER POLICY acting_user ON m365sync.removed_events
    USING (m365sync._acting_owns(account_id));
ALTER POLICY acting_user ON m365sync.data_keys
    USING (account_id = 0 OR m365sync._acting_owns(account_id));

-- The status views read through SECURITY DEFINER functions (why: 05_views_identity.sql).
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

CREATE OR REPLACE VIEW m365sync.account_status AS
SELECT * FROM m365sync._account_status();

CREATE OR REPLACE VIEW m365sync.sync_runs AS
SELECT * FROM m365sync._sync_runs();

-- The part of events() a Citus coordinator routes to the node of the
-- account's shards (store_events.c, sql_events.c): the window query there,
-- on the shard, with a plan the node keeps; its rows packed in one bytea
-- (one row for Citus to move, and a fast-path router query on the
-- coordinator), content still sealed (the caller decrypts). The coordinator
-- routes it by account_routes (no row level security there), outside a
-- remote transaction when it can, where its SET LOCAL of the acting user
-- does not reach the node: so flowagent_user names the acting user, and the
-- function acts for that user while it reads, under the shards' own
-- policies (accounts, _acting_owns), as the user functions do. Owned by
-- m365sync_definer like the user functions and executable by that role
-- only (Citus's connection from events() logs in as it); that role can set
-- any acting user anyway, so the argument gives it nothing new.
CREATE FUNCTION m365sync._events_window(account_id bigint, from_ts timestamptz, to_ts timestamptz,
                                        from_date date, to_date date, calendar_id bigint,
                                        flowagent_user text)
    RETURNS bytea
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_events_window';
REVOKE ALL ON FUNCTION m365sync._events_window(bigint, timestamptz, timestamptz, date, date, bigint, text) FROM PUBLIC;
ALTER FUNCTION m365sync._events_window(bigint, timestamptz, timestamptz, date, date, bigint, text) OWNER TO m365sync_definer;

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

-- ---- Each FlowAgent user's account, by user (01_tables.sql) ----
-- The user functions find the acting user's account by its primary key;
-- on Citus a reference table, read on the coordinator without asking every
-- accounts shard. Filled from the accounts there are (one per user).
CREATE TABLE m365sync.user_accounts (
    flowagent_user  text PRIMARY KEY,
    account_id      bigint NOT NULL
);
INSERT INTO m365sync.user_accounts (flowagent_user, account_id)
SELECT DISTINCT ON (a.flowagent_user) a.flowagent_user, a.account_id
  FROM m365sync.accounts a
 ORDER BY a.flowagent_user, a.account_id;
REVOKE ALL ON m365sync.user_accounts FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON m365sync.user_accounts TO m365sync_definer;
ALTER TABLE m365sync.user_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY acting_user ON m365sync.user_accounts TO m365sync_definer
    USING (flowagent_user = pg_catalog.current_setting('m365sync.flowagent_user', true));
SELECT pg_catalog.pg_extension_config_dump('m365sync.user_accounts', '');

-- ---- The id of every account, to route events() by on Citus (01_tables.sql) ----
-- No row level security: ids only (SECURITY.md). Filled from the accounts there are.
CREATE TABLE m365sync.account_routes (
    account_id      bigint PRIMARY KEY REFERENCES m365sync.accounts ON DELETE CASCADE
);
INSERT INTO m365sync.account_routes (account_id) SELECT a.account_id FROM m365sync.accounts a;
REVOKE ALL ON m365sync.account_routes FROM PUBLIC;
GRANT SELECT, INSERT ON m365sync.account_routes TO m365sync_definer;
SELECT pg_catalog.pg_extension_config_dump('m365sync.account_routes', '');

-- ---- live-service behaviours (issue 22) ----

-- Two states of the mailbox, retried after a while (01_tables.sql):
-- mailbox_disabled (MailboxNotEnabledForRESTAPI) and access_denied (403
-- ErrorAccessDenied, e.g. an Exchange ApplicationAccessPolicy).
ALTER TABLE m365sync.accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE m365sync.accounts ADD CONSTRAINT accounts_status_check
    CHECK (status IN ('connecting', 'connected', 'reauth_required',
                      'consent_required', 'disabled', 'error',
                      'mailbox_disabled', 'access_denied'));

-- Keyed hashes of the last-known remote values of an update's fields
-- (01_tables.sql): a 412 or a delta item whose only news is the changeKey
-- is no conflict.
ALTER TABLE m365sync.outbox ADD COLUMN base_hashes text[];

-- ---- the due query by index (issue 18) ----

-- The accounts due by their schedule (01_tables.sql), in place of the
-- index on next_sync_at alone.
DROP INDEX m365sync.accounts_next_sync;
CREATE INDEX accounts_due ON m365sync.accounts
    ((GREATEST(coalesce(next_sync_at, '-infinity'), coalesce(backoff_until, '-infinity'))))
    WHERE status IN ('connected', 'error', 'mailbox_disabled', 'access_denied') AND ms_user_id IS NOT NULL;

-- ---- Graph ids compared as bytes (issue 18) ----

-- A Graph id is an opaque ASCII token: the unique index on it and every
-- lookup by it compare bytes, not the database's collation (strcoll on
-- long ids with a common prefix cost most of an index insert under a
-- linguistic locale). Rebuilds the (account_id, graph_id) index: on a large
-- table the update takes that long, under the lock ALTER TABLE takes.
ALTER TABLE m365sync.events ALTER COLUMN graph_id TYPE text COLLATE "C";
