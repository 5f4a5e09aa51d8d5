-- Security tests (issue 9, SECURITY.md): SQL injection through every text
-- argument and JSON field of the user and admin functions, search_path
-- hijacking of the SECURITY DEFINER functions, another user's ids, oversize
-- and odd inputs. Nothing may execute, every error has its SQLSTATE, and no
-- secret appears in any message. (The key file mode check is in
-- test/t/010_encryption.pl, TLS host verification in test/t/032_http_tls.pl.)
SET client_min_messages = warning;
DROP EXTENSION m365sync CASCADE;
CREATE EXTENSION m365sync;
CREATE ROLE regress_sec_app LOGIN IN ROLE m365sync_app;
CREATE ROLE regress_sec_admin LOGIN IN ROLE m365sync_admin, m365sync_privacy;
RESET client_min_messages;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';

-- A canary the injections try to drop, and a record of every error seen.
CREATE TABLE public.regress_canary (note text);
INSERT INTO public.regress_canary VALUES ('still here');
CREATE TABLE public.regress_sec_errors (stmt text, err text);
GRANT INSERT, SELECT ON public.regress_sec_errors TO PUBLIC;
-- Run a statement expected to fail: 'SQLSTATE: message' with ids masked,
-- and the full error kept for the secret scan at the end.
CREATE FUNCTION public.regress_sec_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    e text;
BEGIN
    e := public.regress_error(stmt);
    INSERT INTO public.regress_sec_errors VALUES (stmt, e);
    RETURN regexp_replace(e, '(event|calendar|account) [0-9]+', '\1 N', 'g');
END $$;
GRANT EXECUTE ON FUNCTION public.regress_sec_try(text) TO PUBLIC;

-- alice and bob, each with a writable default calendar.
INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, status)
VALUES (301, 'alice', 'delegated', 'connected'), (302, 'bob', 'delegated', 'connected');
INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, name, is_default, can_edit, sync_enabled)
VALUES (301, 3011, 'cal-a', m365sync._encrypt_text('calendars', 'name', 301, 3011, 'Alice'), true, true, true),
       (302, 3021, 'cal-b', m365sync._encrypt_text('calendars', 'name', 302, 3021, 'Bob'), true, true, true);
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM m365sync.events) || ' events, ' ||
           (SELECT count(*) FROM m365sync.outbox) || ' outbox rows, ' ||
           (SELECT count(*) FROM m365sync.accounts) || ' accounts, ' ||
           (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'm365sync' AND c.relkind = 'r') || ' tables'
$$;

SET ROLE regress_sec_app;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'bob';
SELECT m365sync.upsert_event('{"subject": "Bob private",
  "start": {"dateTime": "2026-05-04T09:00:00", "timeZone": "UTC"},
  "end": {"dateTime": "2026-05-04T10:00:00", "timeZone": "UTC"}}') AS bob_event \gset
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT m365sync.upsert_event('{"subject": "Alice base",
  "start": {"dateTime": "2026-05-04T09:00:00", "timeZone": "UTC"},
  "end": {"dateTime": "2026-05-04T10:00:00", "timeZone": "UTC"}}') AS alice_event \gset
COMMIT;
RESET ROLE;

-- 1. SQL injection through the event JSON: every text field is data. Each
-- hostile string is stored and read back byte for byte; none executes.
CREATE TEMP TABLE inj (n int, s text);
INSERT INTO inj VALUES
  (1, $i$'); DROP TABLE public.regress_canary; --$i$),
  (2, $i$'; DELETE FROM m365sync.events; --$i$),
  (3, $i$" OR "1"="1$i$),
  (4, $i$\'; SELECT pg_sleep(10); --$i$),
  (5, $i$1; UPDATE m365sync.accounts SET flowagent_user = 'alice'$i$),
  (6, E'back\\slash \\\\ and \\u0041 and \\x27'),
  (7, E'tab\tnewline\ncr\rbell\x07 del\x7f'),
  (8, $i$$$; DROP TABLE public.regress_canary; $$$i$),
  (9, $i$%s %n %x %p {0} ${jndi:ldap://x} $(id) `id`$i$),
  (10, $i$</script><script>alert(1)</script> & &amp; <!--$i$);
GRANT SELECT ON inj TO regress_sec_app, regress_sec_admin;
SET ROLE regress_sec_app;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
CREATE TEMP TABLE stored AS
SELECT n, s, m365sync.upsert_event(jsonb_build_object(
        'subject', s,
        'body', jsonb_build_object('contentType', 'text', 'content', s),
        'location', jsonb_build_object('displayName', s),
        'categories', jsonb_build_array(s),
        'attendees', jsonb_build_array(jsonb_build_object('type', 'required',
            'emailAddress', jsonb_build_object('name', s, 'address', 'x' || n || '@example.com'))),
        s, s,
        'start', jsonb_build_object('dateTime', '2026-06-0' || (n % 9 + 1) || 'T09:00:00', 'timeZone', 'UTC'),
        'end', jsonb_build_object('dateTime', '2026-06-0' || (n % 9 + 1) || 'T10:00:00', 'timeZone', 'UTC')))
       AS event_id
  FROM inj;
SELECT n,
       e.subject = s AS subject_same, e.body = s AS body_same, e.location = s AS location_same,
       e.categories = ARRAY[s] AS categories_same,
       e.attendees -> 0 -> 'emailAddress' ->> 'name' = s AS attendee_same,
       e.data ->> s = s AS unknown_field_same
  FROM stored, m365sync.event(stored.event_id) e ORDER BY n;
-- ...and patched in, too.
SELECT bool_and(m365sync.upsert_event(jsonb_build_object('subject', s || '!'), event_id) = event_id) AS patched
  FROM stored JOIN inj USING (n, s);
SELECT bool_and(e.subject = s || '!') AS patched_same
  FROM stored, m365sync.event(stored.event_id) e;
-- Fields with fixed vocabularies refuse the strings with 22023 or 22007.
SELECT n, regress_sec_try(format('SELECT m365sync.upsert_event(%L)', jsonb_build_object(
         'subject', 'SUBJECT-CANARY', 'body', jsonb_build_object('contentType', 'text', 'content', 'BODY-CANARY'), f, v,
         'start', '{"dateTime": "2026-06-01T09:00:00", "timeZone": "UTC"}'::jsonb,
         'end', '{"dateTime": "2026-06-01T10:00:00", "timeZone": "UTC"}'::jsonb))) AS error
  FROM inj, LATERAL (VALUES ('showAs', to_jsonb(s)), ('calendarId', to_jsonb(s)),
                            ('isAllDay', to_jsonb(s))) AS f(f, v)
 WHERE n IN (1, 5) ORDER BY n, f;
SELECT n, regress_sec_try(format('SELECT m365sync.upsert_event(%L)', jsonb_build_object(
         'subject', 'x',
         'start', jsonb_build_object('dateTime', '2026-06-01T09:00:00', 'timeZone', s),
         'end', jsonb_build_object('dateTime', '2026-06-01T10:00:00', 'timeZone', 'UTC')))) AS time_zone,
       regress_sec_try(format('SELECT m365sync.upsert_event(%L)', jsonb_build_object(
         'subject', 'x',
         'start', jsonb_build_object('dateTime', '2026-06-01T09:00:00', 'timeZone', 'UTC'),
         'end', jsonb_build_object('dateTime', s, 'timeZone', 'UTC')))) AS date_time
  FROM inj WHERE n IN (1, 2, 8) ORDER BY n;
-- connect_complete(state, code): checked before any lookup.
SELECT n, regress_sec_try(format('SELECT m365sync.connect_complete(%L, %L)', s, 'CODE-CANARY-1')) AS bad_state,
          regress_sec_try(format('SELECT m365sync.connect_complete(%L, %L)', repeat('A', 43), s)) AS bad_code
  FROM inj ORDER BY n;

-- The acting user itself is only ever a value: a hostile name acts for
-- nobody (P0002), finds no one's data and changes nothing.
SET LOCAL m365sync.flowagent_user = $u$'); DROP TABLE public.regress_canary; --$u$;
SELECT (SELECT count(*) FROM m365sync.calendars()) AS calendars,
       (SELECT count(*) FROM m365sync.events('2000-01-01', '2100-01-01')) AS events;
SET LOCAL m365sync.flowagent_user = $u$" OR "1"="1$u$;
SELECT (SELECT count(*) FROM m365sync.calendars()) AS calendars,
       (SELECT count(*) FROM m365sync.events('2000-01-01', '2100-01-01')) AS events;
SET LOCAL m365sync.flowagent_user = $u$alice' OR '1'='1$u$;
SELECT regress_sec_try('SELECT m365sync.upsert_event(''{"subject": "x"}'')') AS upsert;
COMMIT;
RESET ROLE;

-- 2. SQL injection through the admin functions' text arguments.
SET ROLE regress_sec_admin;
SELECT n, regress_sec_try(format('SELECT m365sync.configure(%L, %L, %L)', s, 'SECRET-CANARY-2', 'https://flowagent.example/cb')) AS client_id,
          regress_sec_try(format('SELECT m365sync.configure(%L, %L, %L)', '11111111-2222-3333-4444-555555555555', 'SECRET-CANARY-3', s)) AS redirect_uri
  FROM inj ORDER BY n;
SELECT n, regress_sec_try(format('SELECT m365sync.admin_consent_url(%L)', s)) AS consent_url,
          regress_sec_try(format('SELECT m365sync.admin_consent_complete(%L, %L, true, %L)', s, 'contoso.example', s)) AS consent_complete
  FROM inj ORDER BY n;
SELECT n, regress_sec_try(format('SELECT m365sync.add_mailbox(%L, %L, %L)', s, s, 'mailbox-CANARY@contoso.example')) AS tenant,
          regress_sec_try(format('SELECT m365sync.add_mailbox(%L, %L, %L)', 'carol', 'contoso.example', s)) AS mailbox
  FROM inj ORDER BY n;
-- export_user and purge_user take the name as a value: nobody matches.
SELECT n, m365sync.export_user(s) -> 'accounts' AS exported FROM inj ORDER BY n;
SELECT count(*) AS purge_calls FROM inj, LATERAL (SELECT m365sync.purge_user(s)) p;
RESET ROLE;
SELECT * FROM public.regress_canary;
SELECT pg_temp.counts() AS after_injections,
       (SELECT count(*) FROM m365sync.events WHERE account_id = 302) AS bob_events;

-- 3. search_path hijacking. The app role owns a schema full of look-alikes
-- (functions shadowing pg_catalog, an = operator that is always true, a
-- current_setting that claims to be bob) and puts it first, even before
-- pg_catalog; temporary tables shadow the extension's tables. The look-
-- alikes work in the caller's own queries, but not one runs inside a
-- SECURITY DEFINER function, whose search_path is pinned.
SELECT m365sync.configure('11111111-2222-3333-4444-555555555555', 'SECRET-CANARY-4', 'https://flowagent.example/cb');
CREATE SCHEMA regress_evil AUTHORIZATION regress_sec_app;
GRANT USAGE ON SCHEMA regress_evil TO PUBLIC;
CREATE TABLE public.regress_hijacked (what text);
GRANT INSERT, SELECT, DELETE ON public.regress_hijacked TO PUBLIC;
SET ROLE regress_sec_app;
CREATE FUNCTION regress_evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('now'); RETURN '1999-01-01'; END $$;
CREATE FUNCTION regress_evil.current_setting(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('current_setting ' || $1); RETURN 'bob'; END $$;
CREATE FUNCTION regress_evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('current_setting ' || $1); RETURN 'bob'; END $$;
CREATE FUNCTION regress_evil.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('lower'); RETURN 'bob'; END $$;
CREATE FUNCTION regress_evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('nextval'); RETURN 302; END $$;
CREATE FUNCTION regress_evil.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('advisory lock'); END $$;
CREATE FUNCTION regress_evil.jsonb_build_object(text, text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('jsonb_build_object'); RETURN '{}'; END $$;
CREATE FUNCTION regress_evil.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('= bigint'); RETURN true; END $$;
CREATE OPERATOR regress_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_evil.eq);
CREATE FUNCTION regress_evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.regress_hijacked VALUES ('= text'); RETURN true; END $$;
CREATE OPERATOR regress_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_evil.eq);
CREATE TEMP TABLE accounts (account_id bigint, flowagent_user text);
INSERT INTO accounts VALUES (302, 'alice');
CREATE TEMP TABLE events (account_id bigint, event_id bigint);
CREATE TEMP TABLE calendars (account_id bigint, calendar_id bigint);
CREATE TEMP TABLE data_keys (account_id bigint);
SET search_path = regress_evil, pg_temp, pg_catalog, public;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
-- The look-alikes are live in the caller's own statements:
SELECT 1::bigint = 2::bigint AS evil_eq, current_setting('m365sync.flowagent_user') AS evil_setting;
SELECT what FROM public.regress_hijacked ORDER BY what;
DELETE FROM public.regress_hijacked;
-- ...but not inside m365sync's functions: alice still sees only alice's.
SELECT event_id = :alice_event AS alices, subject
  FROM m365sync.events('2026-05-01', '2026-05-10') ORDER BY event_id;
SELECT regress_sec_try(format('SELECT * FROM m365sync.event(%s)', :bob_event)) AS bobs_event;
SELECT calendar_id, name FROM m365sync.calendars();
SELECT m365sync.upsert_event('{"subject": "made under a hostile search_path",
  "start": {"dateTime": "2026-05-05T09:00:00", "timeZone": "UTC"},
  "end": {"dateTime": "2026-05-05T10:00:00", "timeZone": "UTC"}}') AS hostile_event \gset
SELECT subject, calendar_id, start_at FROM m365sync.event(:hostile_event);
SELECT m365sync.upsert_event('{"subject": "patched under a hostile search_path"}', :alice_event) = :alice_event AS patched;
SELECT m365sync.delete_event(:hostile_event);
SELECT regress_sec_try(format('SELECT m365sync.delete_event(%s)', :bob_event)) AS delete_bobs;
SELECT regress_sec_try('SELECT m365sync.connect_complete(repeat(''A'', 43), ''x'')') AS connect_complete;
SELECT m365sync.connect_url() ~ '^https://[^ ]*/oauth2/v2.0/authorize\?' AS connect_url;
SELECT regress_sec_try('SELECT m365sync.disconnect()') IS NOT NULL AS disconnect_ran;
COMMIT;
RESET search_path;
RESET ROLE;
-- disconnect erased alice under the hostile path: bob's data is untouched.
SELECT account_id, flowagent_user FROM m365sync.accounts ORDER BY account_id;
SELECT count(*) AS bob_events FROM m365sync.events WHERE account_id = 302;
SET ROLE regress_sec_admin;
SET search_path = regress_evil, pg_temp, pg_catalog, public;
SELECT m365sync.export_user('bob') -> 'accounts' -> 0 -> 'events' -> 0 -> 'content' ->> 'subject' AS bob_export;
SELECT m365sync.export_user('nobody') -> 'accounts' AS nobody_export;
SELECT m365sync.purge_user('nobody');
SELECT m365sync.admin_consent_url('contoso.example') ~ '^https://[^ ]*/contoso.example/v2.0/adminconsent\?' AS consent_url;
SELECT account_id, flowagent_user, status FROM m365sync.account_status ORDER BY account_id;
RESET search_path;
RESET ROLE;
SELECT count(*) AS hijacked_calls, string_agg(DISTINCT what, ', ') AS what FROM public.regress_hijacked;
-- Nobody but the owner can put objects into the pinned schemas.
SELECT r, has_schema_privilege(r, 'm365sync', 'CREATE') AS create_m365sync,
       has_schema_privilege(r, 'public', 'CREATE') AS create_public
  FROM unnest(ARRAY['regress_sec_app', 'regress_sec_admin', 'm365sync_definer']) AS r ORDER BY r;

-- 4. Another user's ids fail exactly like ids that do not exist (P0002,
-- same message form), and change nothing.
INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, status)
VALUES (303, 'alice', 'delegated', 'connected');
INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, name, is_default, can_edit, sync_enabled)
VALUES (303, 3031, 'cal-a2', NULL, true, true, true);
SELECT pg_temp.counts() AS counts_before_ids \gset
SET ROLE regress_sec_app;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT which, regress_sec_try(format(stmt, id)) AS error
  FROM (VALUES ('bob''s', :bob_event), ('missing', 999999)) AS ids(which, id),
       (VALUES ('SELECT * FROM m365sync.event(%s)'),
               ('SELECT m365sync.delete_event(%s)'),
               ('SELECT m365sync.upsert_event(''{"subject": "mine now"}'', %s)')) AS s(stmt)
 ORDER BY stmt, which;
SELECT which, regress_sec_try(format(stmt, id)) AS error
  FROM (VALUES ('bob''s', 3021), ('missing', 999999)) AS ids(which, id),
       (VALUES ('SELECT m365sync.set_calendar_sync(%s, false)'),
               ('SELECT m365sync.upsert_event(''{"subject": "x", "calendarId": %s, "start": {"dateTime": "2026-05-05T09:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-05-05T10:00:00", "timeZone": "UTC"}}'')'),
               ('SELECT count(*) FROM m365sync.events(''2026-01-01'', ''2027-01-01'', %s)')) AS s(stmt)
 ORDER BY stmt, which;
COMMIT;
RESET ROLE;
SELECT pg_temp.counts() = :'counts_before_ids' AS nothing_changed,
       (SELECT data ->> 'subject' FROM m365sync.events e,
               LATERAL (SELECT m365sync._decrypt_jsonb('events', 'content', e.account_id, e.event_id, e.content) AS data) d
         WHERE e.event_id = :bob_event) AS bob_subject;

-- 5. Oversize and odd inputs: refused with their SQLSTATE, nothing written.
SELECT pg_temp.counts() AS counts_before_big \gset
SET ROLE regress_sec_app;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT what, regress_sec_try(stmt) AS error FROM (VALUES
  ('subject 256 chars', format('SELECT m365sync.upsert_event(%L)', jsonb_build_object('subject', repeat('x', 256)))),
  ('body 4 MB + 1', format('SELECT m365sync.upsert_event(%L)', jsonb_build_object('subject', 'x',
      'body', jsonb_build_object('contentType', 'text', 'content', repeat('b', 4 * 1024 * 1024 + 1))))),
  ('300 fields', format('SELECT m365sync.upsert_event(%L)', (SELECT jsonb_object_agg('f' || i, i) FROM generate_series(1, 300) i))),
  ('nested 1100 deep', format('SELECT m365sync.upsert_event(%L)', ('{"subject": "x", "deep": ' || repeat('[', 1100) || repeat(']', 1100) || '}'))),
  ('not an object', 'SELECT m365sync.upsert_event(''[1, 2]'')'),
  ('NUL escape', 'SELECT m365sync.upsert_event(''{"subject": "a\u0000b"}'')'),
  ('lone surrogate', 'SELECT m365sync.upsert_event(''{"subject": "a\ud800b"}'')'),
  ('null event', 'SELECT m365sync.upsert_event(NULL)'),
  ('state 100 kB', format('SELECT m365sync.connect_complete(%L, %L)', repeat('A', 100000), 'code')),
  ('code 100 kB', format('SELECT m365sync.connect_complete(%L, %L)', repeat('A', 43), repeat('c', 100000))),
  ('null state', 'SELECT m365sync.connect_complete(NULL, ''code'')'),
  ('huge range', 'SELECT count(*) FROM m365sync.events(''-infinity'', ''infinity'')')
) AS t(what, stmt);
SELECT regress_sec_try(format('SET m365sync.flowagent_user = %L', repeat('u', 100000))) AS huge_user_set,
       regress_sec_try('SELECT m365sync.calendars()') AS huge_user_use;
COMMIT;
RESET m365sync.flowagent_user;
RESET ROLE;
SET ROLE regress_sec_admin;
SELECT what, regress_sec_try(stmt) AS error FROM (VALUES
  ('client_secret 100 kB', format('SELECT m365sync.configure(%L, %L, %L)', '11111111-2222-3333-4444-555555555555', repeat('S', 100000), 'https://flowagent.example/cb')),
  ('tenant 100 kB', format('SELECT m365sync.admin_consent_url(%L)', repeat('t', 100000))),
  ('user 100 kB', format('SELECT m365sync.add_mailbox(%L, %L, %L)', repeat('u', 100000), 'contoso.example', 'x@contoso.example')),
  ('export null', 'SELECT m365sync.export_user(NULL)'),
  ('purge empty', 'SELECT m365sync.purge_user('''')')
) AS t(what, stmt);
RESET ROLE;
SELECT pg_temp.counts() = :'counts_before_big' AS nothing_written;

-- 6. No secret, code or address handed in appears in any error message
-- (each carries CANARY; the 100 kB secret is all S).
SELECT count(*) AS errors_seen,
       count(*) FILTER (WHERE err ~ '(CANARY|SECRET|SSSSSSSSSS)') AS with_secret,
       count(*) FILTER (WHERE err NOT LIKE '_____: %' AND err <> 'no error') AS without_sqlstate
  FROM public.regress_sec_errors;

DROP TABLE public.regress_canary, public.regress_sec_errors, public.regress_hijacked;
DROP FUNCTION public.regress_sec_try(text);
DROP SCHEMA regress_evil CASCADE;
DROP OWNED BY regress_sec_app, regress_sec_admin;
DROP ROLE regress_sec_app;
DROP ROLE regress_sec_admin;
