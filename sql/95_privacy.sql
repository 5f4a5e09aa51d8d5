-- Privacy and access (issue 23): the powers split between m365sync_admin
-- (configuration, status, the audit trail; never content) and
-- m365sync_privacy (export_user, purge_user); the append-only audit trail;
-- and the one-transaction rule for the acting user. Keeps the issue's
-- reproductions as regression checks. The worker-bound parts (add_mailbox
-- against the simulator) are in test/t/095_privacy.pl.
SET client_min_messages = warning;
DROP EXTENSION m365sync CASCADE;
CREATE EXTENSION m365sync;
CREATE ROLE regress_pv_app LOGIN IN ROLE m365sync_app;
CREATE ROLE regress_pv_admin LOGIN IN ROLE m365sync_admin;
CREATE ROLE regress_pv_privacy LOGIN IN ROLE m365sync_privacy;
RESET client_min_messages;
SET TimeZone = 'UTC';

-- ---- 1. Roles and grants ----

SELECT rolname, rolcanlogin, rolsuper, rolinherit
  FROM pg_roles WHERE rolname LIKE 'm365sync\_%' ORDER BY 1;

-- Who may run what, for every function granted to any of the roles.
SELECT p.oid::regprocedure AS function,
       has_function_privilege('m365sync_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('m365sync_privacy', p.oid, 'EXECUTE') AS privacy,
       has_function_privilege('m365sync_app', p.oid, 'EXECUTE') AS app
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'm365sync'
   AND (has_function_privilege('m365sync_admin', p.oid, 'EXECUTE')
        OR has_function_privilege('m365sync_privacy', p.oid, 'EXECUTE')
        OR has_function_privilege('m365sync_app', p.oid, 'EXECUTE'))
 ORDER BY p.oid::regprocedure::text;

-- Views: the admin reads status and the audit trail, nobody else reads any.
SELECT c.relname,
       has_table_privilege('m365sync_admin', c.oid, 'SELECT') AS admin,
       has_table_privilege('m365sync_privacy', c.oid, 'SELECT') AS privacy,
       has_table_privilege('m365sync_app', c.oid, 'SELECT') AS app
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'm365sync' AND c.relkind = 'v' ORDER BY 1;

-- audit_log: nobody may change or delete a row, by grant; the definer may
-- only add one.
SELECT r.rolname,
       has_table_privilege(r.rolname, 'm365sync.audit_log', 'SELECT') AS sel,
       has_table_privilege(r.rolname, 'm365sync.audit_log', 'INSERT') AS ins,
       has_table_privilege(r.rolname, 'm365sync.audit_log', 'UPDATE') AS upd,
       has_table_privilege(r.rolname, 'm365sync.audit_log', 'DELETE') AS del,
       has_table_privilege(r.rolname, 'm365sync.audit_log', 'TRUNCATE') AS trunc
  FROM pg_roles r WHERE r.rolname LIKE 'm365sync\_%' ORDER BY 1;

-- A user with an account, a calendar, an event with content and a conflict.
CREATE FUNCTION pg_temp.make_user(who text, marker text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    acc bigint;
    cal bigint;
    ev bigint;
    k bigint;
BEGIN
    INSERT INTO m365sync.accounts (flowagent_user, mode, status)
    VALUES (who, 'delegated', 'connected') RETURNING account_id INTO acc;
    UPDATE m365sync.accounts
       SET mailbox = m365sync._encrypt_text('accounts', 'mailbox', acc, acc, who || '@contoso.example')
     WHERE account_id = acc;
    cal := nextval('m365sync.calendars_calendar_id_seq');
    INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, name, is_default, sync_enabled)
    VALUES (acc, cal, 'cal-' || who,
            m365sync._encrypt_text('calendars', 'name', acc, cal, 'Calendar'), true, true);
    ev := nextval('m365sync.events_event_id_seq');
    INSERT INTO m365sync.events (account_id, event_id, calendar_id, graph_id, start_at, end_at, content)
    VALUES (acc, ev, cal, 'ev-' || who, '2024-05-01 09:00Z', '2024-05-01 10:00Z',
            m365sync._encrypt_jsonb('events', 'content', acc, ev,
                                    jsonb_build_object('subject', marker || ' board meeting',
                                        'start', jsonb_build_object('dateTime', '2024-05-01T09:00:00', 'timeZone', 'UTC'),
                                        'end', jsonb_build_object('dateTime', '2024-05-01T10:00:00', 'timeZone', 'UTC'))));
    k := nextval('m365sync.conflicts_conflict_id_seq');
    INSERT INTO m365sync.conflicts (account_id, conflict_id, event_id, policy, kept, lost)
    VALUES (acc, k, ev, 'latest_wins', 'local',
            m365sync._encrypt_jsonb('conflicts', 'lost', acc, k,
                                    jsonb_build_object('subject', marker || ' lost')));
    RETURN acc;
END $$;
SELECT pg_temp.make_user('fa-bob', 'BOB-SECRET') AS bob \gset
SELECT event_id AS bob_event FROM m365sync.events WHERE account_id = :bob \gset

-- Reproduction (issue 23, 2): the operator exported fa-bob's calendar in
-- clear. Now export_user and purge_user are refused to m365sync_admin, and
-- the admin cannot read a table either.
SET ROLE regress_pv_admin;
SELECT regress_error('SELECT m365sync.export_user(''fa-bob'')') AS admin_export;
SELECT regress_error('SELECT m365sync.purge_user(''fa-bob'')') AS admin_purge;
SELECT regress_error('SELECT * FROM m365sync.audit_log') AS admin_reads_table;
SELECT regress_error('SELECT * FROM m365sync.events') AS admin_reads_events;
RESET ROLE;
SET ROLE regress_pv_app;
SELECT regress_error('SELECT m365sync.export_user(''fa-bob'')') AS app_export;
SELECT regress_error('SELECT * FROM m365sync.audit_trail') AS app_reads_audit;
RESET ROLE;

-- ---- 2. The audit trail: one row per privileged act ----

-- The privacy role exports (content, decrypted) and the act is recorded.
SET ROLE regress_pv_privacy;
SELECT m365sync.export_user('fa-bob') -> 'accounts' -> 0 -> 'events' -> 0 -> 'content' ->> 'subject' AS exported;
SELECT regress_error('SELECT * FROM m365sync.audit_trail') AS privacy_reads_audit;
SELECT regress_error('SELECT m365sync.configure(''11111111-2222-3333-4444-555555555555'', ''s'', ''https://x.example/cb'')') AS privacy_configures;
RESET ROLE;

-- The admin configures and rewraps: recorded; a refused configure is not.
SET ROLE regress_pv_admin;
SELECT m365sync.configure('11111111-2222-3333-4444-555555555555', 'CANARY-SECRET', 'https://flowagent.example/cb');
SELECT regress_error('SELECT m365sync.configure(''not-a-guid'', ''CANARY-SECRET'', ''https://x.example/cb'')') AS bad_configure;
SELECT m365sync.rewrap_keys() > 0 AS rewrapped;
RESET ROLE;

-- The user settles a conflict and disconnects: recorded under the user.
SET ROLE regress_pv_app;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'fa-bob';
SELECT m365sync.resolve_conflict(:bob_event, 'kept');
COMMIT;
-- a rolled-back act leaves no row
BEGIN;
SET LOCAL m365sync.flowagent_user = 'fa-bob';
SELECT m365sync.disconnect();
ROLLBACK;
RESET ROLE;

-- The privacy role purges.
SET ROLE regress_pv_privacy;
SELECT m365sync.purge_user('fa-bob');
RESET ROLE;

-- What the admin sees: when, role, user or account, act; nothing else.
SET ROLE regress_pv_admin;
SELECT db_role, flowagent_user, account_id = :bob AS bobs_account, act,
       at > now() - interval '1 hour' AS recent
  FROM m365sync.audit_trail ORDER BY at, act;
SELECT attname FROM pg_attribute
 WHERE attrelid = 'm365sync.audit_trail'::regclass AND attnum > 0 ORDER BY attnum;
RESET ROLE;
-- no content or secret in any column of any row
SELECT count(*) AS rows_with_content
  FROM m365sync.audit_log a
 WHERE a::text ~ '(CANARY|SECRET|board meeting|contoso)';

-- A definer-owned function may add rows only for the acting user (RLS).
SELECT polname, polcmd, polroles::regrole[] AS roles
  FROM pg_policy WHERE polrelid = 'm365sync.audit_log'::regclass;

-- ---- 3. Append-only, for the superuser too; pruning the only delete ----

SELECT regress_error('UPDATE m365sync.audit_log SET act = ''configure''') AS update_refused;
SELECT regress_error('DELETE FROM m365sync.audit_log') AS delete_refused;
SELECT regress_error('TRUNCATE m365sync.audit_log') AS truncate_refused;
SELECT count(*) AS rows_kept FROM m365sync.audit_log;

-- Rows past m365sync.audit_retention (default 365 days) are pruned by the
-- worker's round and by m365sync.sync(); younger ones stay. A restore may
-- bring such old rows back, as this INSERT does.
SHOW m365sync.audit_retention;
SELECT regress_error('SET m365sync.audit_retention = ''1d''') AS retention_is_sighup;
INSERT INTO m365sync.audit_log (at, db_role, act)
VALUES (now() - interval '366 days', 'old_role', 'configure'),
       (now() - interval '364 days', 'young_role', 'configure');
SELECT count(*) FROM m365sync.sync();
SELECT db_role, count(*) FROM m365sync.audit_log
 WHERE db_role IN ('old_role', 'young_role') GROUP BY 1 ORDER BY 1;
SELECT regress_error('DELETE FROM m365sync.audit_log WHERE db_role = ''young_role''') AS young_delete_refused;

-- ---- 4. The acting user lives for exactly one transaction ----

-- Reproduction (issue 23, 1): a session-level value set in an earlier
-- transaction no longer acts; SET LOCAL outside a block does not either.
SET ROLE regress_pv_app;
SET m365sync.flowagent_user = 'fa-alice';
SELECT regress_error('SELECT m365sync.acting_user()') AS earlier_transaction;
SET LOCAL m365sync.flowagent_user = 'fa-alice';
SELECT regress_error('SELECT m365sync.acting_user()') AS set_local_autocommit;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'fa-alice';
SELECT m365sync.acting_user() AS in_its_transaction;
COMMIT;
RESET m365sync.flowagent_user;
RESET ROLE;

-- ---- 5. Honest metadata ----

-- Every clear (not bytea) column of every table. SECURITY.md §1 says what
-- each one reveals: a column added here must be added there.
SELECT c.relname, string_agg(a.attname, ', ' ORDER BY a.attnum) AS clear_columns
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname = 'm365sync' AND c.relkind = 'r'
   AND (a.atttypid <> 'bytea'::regtype OR (c.relname, a.attname) = ('oauth_states', 'state_hash'))
 GROUP BY c.relname ORDER BY 1;

-- Reproduction (issue 23, 3): the JSON keys of an update were stored in
-- clear in outbox.changed_fields, a made-up key included. Now the outbox
-- lists only names Graph accepts in a PATCH; the other keys stay in the
-- encrypted content (kept, never sent).
SELECT pg_temp.make_user('fa-carol', 'CAROL') AS carol \gset
SELECT event_id AS carol_event FROM m365sync.events WHERE account_id = :carol \gset
SET ROLE regress_pv_app;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'fa-carol';
SELECT m365sync.upsert_event('{"subject": "moved", "Layoffs-Q1-list-canary": ["x"],
                               "someFutureField": 1, "showAs": "busy"}', :carol_event) = :carol_event AS updated;
SELECT data ? 'Layoffs-Q1-list-canary' AS in_content FROM m365sync.event(:carol_event);
COMMIT;
RESET ROLE;
SELECT op, changed_fields FROM m365sync.outbox WHERE account_id = :carol;
-- no clear column of any m365sync table holds it (control: the user's name,
-- a clear column, is found)
CREATE FUNCTION pg_temp.tables_holding(needle text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    r regclass;
    n bigint;
    found text[] := '{}';
BEGIN
    FOR r IN SELECT c.oid FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
              WHERE ns.nspname = 'm365sync' AND c.relkind = 'r' ORDER BY 1 LOOP
        EXECUTE format('SELECT count(*) FROM %s x WHERE x::text LIKE %L', r, '%' || needle || '%') INTO n;
        IF n > 0 THEN found := found || r::text; END IF;
    END LOOP;
    RETURN found;
END $$;
SELECT pg_temp.tables_holding('canary') AS canary, pg_temp.tables_holding('fa-carol') AS control;

-- events.ical_uid is a keyed hash under the account's data key: equal for
-- one UID within an account (matching), different across accounts (no join
-- shows who meets whom), and not the UID. The function is the one the
-- upgrade from 0.1.0 uses; the pull and the push write through the same code.
CREATE FUNCTION public.regress_ical_hash(bigint, text) RETURNS text
    LANGUAGE c STRICT AS '$libdir/m365sync', 'm365sync_ical_uid_hash';
SELECT pg_temp.make_user('fa-dave', 'DAVE') AS dave \gset
SELECT public.regress_ical_hash(:carol, 'UID-MEETING-1') ~ '^hmac:[0-9a-f]{64}$' AS is_hmac,
       public.regress_ical_hash(:carol, 'UID-MEETING-1') = public.regress_ical_hash(:carol, 'UID-MEETING-1') AS same_in_account,
       public.regress_ical_hash(:carol, 'UID-MEETING-1') <> public.regress_ical_hash(:dave, 'UID-MEETING-1') AS differs_across_accounts,
       public.regress_ical_hash(:carol, 'UID-MEETING-1') <> public.regress_ical_hash(:carol, 'UID-MEETING-2') AS differs_by_uid,
       position('MEETING' IN public.regress_ical_hash(:carol, 'UID-MEETING-1')) = 0 AS uid_not_in_it;
DROP FUNCTION public.regress_ical_hash(bigint, text);
SELECT m365sync.purge_user(u) FROM (VALUES ('fa-carol'), ('fa-dave')) v(u);

DROP ROLE regress_pv_app;
DROP ROLE regress_pv_admin;
DROP ROLE regress_pv_privacy;
