-- Encryption at rest (issue 3). Every encrypted column holds an AES-256-GCM
-- envelope bound to its table, column, account and row, under a data key per
-- account wrapped by the master key. Test rows are written as the superuser
-- through the internal helpers m365sync._encrypt_text/_encrypt_jsonb (granted
-- to nobody), since the events API is a capability of its own. Ids vary with
-- the files before this one, so they are never printed.
CREATE ROLE regress_app10 LOGIN IN ROLE m365sync_app;
CREATE ROLE regress_admin10 LOGIN IN ROLE m365sync_admin, m365sync_privacy;

-- An expected error with the ids masked.
CREATE FUNCTION public.regress10_try(stmt text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(public.regress_error(stmt), '(row|account) [0-9]+', '\1 N', 'g')
$$;

-- A user with one account, a calendar, three events, a pending change and a conflict.
CREATE FUNCTION public.regress10_make_user(who text, marker text) RETURNS bigint
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
       SET mailbox = m365sync._encrypt_text('accounts', 'mailbox', acc, acc, who || '@contoso.example'),
           access_token = m365sync._encrypt_text('accounts', 'access_token', acc, acc, 'at-' || marker),
           refresh_token = m365sync._encrypt_text('accounts', 'refresh_token', acc, acc, 'rt-' || marker)
     WHERE account_id = acc;
    cal := nextval('m365sync.calendars_calendar_id_seq');
    INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, name, is_default, sync_enabled)
    VALUES (acc, cal, 'cal-' || who,
            m365sync._encrypt_text('calendars', 'name', acc, cal, 'Kalender von ' || who || ' 📅'), true, true);
    FOR i IN 1..3 LOOP
        ev := nextval('m365sync.events_event_id_seq');
        INSERT INTO m365sync.events (account_id, event_id, calendar_id, graph_id, start_at, end_at, content)
        VALUES (acc, ev, cal, 'ev-' || who || i,
                timestamptz '2024-05-01 09:00Z' + i * interval '1 day',
                timestamptz '2024-05-01 10:00Z' + i * interval '1 day',
                m365sync._encrypt_jsonb('events', 'content', acc, ev, jsonb_build_object(
                    'subject', marker || ' meeting ' || i,
                    'body', jsonb_build_object('contentType', 'text',
                                               'content', 'Agenda für ' || who || ' — 会议 ✓'))));
    END LOOP;
    INSERT INTO m365sync.outbox (account_id, event_id, op, changed_fields)
    VALUES (acc, ev, 'update', ARRAY['subject']);
    k := nextval('m365sync.conflicts_conflict_id_seq');
    INSERT INTO m365sync.conflicts (account_id, conflict_id, event_id, policy, kept, lost)
    VALUES (acc, k, ev, 'latest_wins', 'local',
            m365sync._encrypt_jsonb('conflicts', 'lost', acc, k,
                                    jsonb_build_object('subject', marker || ' lost version')));
    RETURN acc;
END $$;

SELECT public.regress10_make_user('alice', 'ALICE-MARKER') AS alice \gset
SELECT public.regress10_make_user('bob', 'BOB-MARKER') AS bob \gset

-- One data key per account, 32 bytes wrapped under master key k1 (61 bytes:
-- format byte, nonce, key, tag), generation 1.
SELECT count(*) AS keys, bool_and(master_key_id = 'k1') AS under_k1,
       bool_and(length(wrapped_key) = 61) AS wrapped_61_bytes, bool_and(generation = 1) AS generation_1
  FROM m365sync.data_keys WHERE account_id IN (:alice, :bob);

-- Round trip: events, calendar names and the mailbox decrypt to what was written.
SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) AS content
  FROM m365sync.events WHERE account_id = :alice ORDER BY event_id;
SELECT m365sync._decrypt_text('calendars', 'name', account_id, calendar_id, name) AS name
  FROM m365sync.calendars WHERE account_id IN (:alice, :bob) ORDER BY calendar_id;
SELECT m365sync._decrypt_text('accounts', 'mailbox', account_id, account_id, mailbox) AS mailbox
  FROM m365sync.accounts WHERE account_id = :bob;

-- Unicode text of every kind, empty text, and NULL.
SELECT octet_length(t) AS bytes,
       m365sync._decrypt_text('t', 'c', :alice, 1, m365sync._encrypt_text('t', 'c', :alice, 1, t)) = t AS same
  FROM (VALUES ('Grüße aus Zürich — 会议室 📅 مرحبا ∑ é e' || chr(769)),
               (''), (repeat('ß', 1000)), (chr(1114111))) v(t);
SELECT m365sync._encrypt_text('t', 'c', :alice, 1, NULL) IS NULL AS null_stays_null;

-- A 4 MB value, in an event row (TOASTed), round trips byte for byte.
CREATE TEMP TABLE big AS SELECT repeat('Grüße 📅 ', 330000) AS t;
SELECT octet_length(t) > 4 * 1024 * 1024 AS over_4mb FROM big;
SELECT min(event_id) AS big_event FROM m365sync.events WHERE account_id = :alice \gset
UPDATE m365sync.events
   SET content = m365sync._encrypt_jsonb('events', 'content', account_id, event_id,
                                          jsonb_build_object('subject', 'big', 'body', (SELECT t FROM big)))
 WHERE account_id = :alice AND event_id = :big_event;
SELECT octet_length(content) > 4 * 1024 * 1024 AS stored_over_4mb,
       md5(m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) ->> 'body')
         = (SELECT md5(t) FROM big) AS same
  FROM m365sync.events WHERE account_id = :alice AND event_id = :big_event;

-- The envelope: version 1, the data key's account and generation, a fresh
-- 96-bit nonce each time, ciphertext as long as the plaintext, a 16-byte tag.
SELECT get_byte(v1, 0) AS version,
       substring(v1 FROM 2 FOR 8) = int8send(:alice) AS names_account,
       substring(v1 FROM 10 FOR 4) = '\x00000001'::bytea AS names_generation,
       octet_length(v1) - octet_length('hello') AS overhead,
       substring(v1 FROM 14 FOR 12) <> substring(v2 FROM 14 FOR 12) AS fresh_nonce,
       v1 <> v2 AS fresh_ciphertext,
       position('hello'::bytea IN v1) = 0 AS no_plaintext
  FROM (SELECT m365sync._encrypt_text('t', 'c', :alice, 1, 'hello') AS v1,
               m365sync._encrypt_text('t', 'c', :alice, 1, 'hello') AS v2) s;

-- A flipped bit anywhere (version, key reference, generation, nonce,
-- ciphertext, tag) is ERROR XX001 and the message holds no content.
SELECT pos, public.regress10_try(format('SELECT m365sync._decrypt_jsonb(%L, %L, %s, %s, %L)',
            'events', 'content', account_id, event_id,
            set_byte(content, pos, get_byte(content, pos) # 1))) AS result
  FROM m365sync.events, (VALUES (0), (3), (10), (20), (30), (-1)) p(p0),
       LATERAL (SELECT CASE WHEN p0 < 0 THEN octet_length(content) - 1 ELSE p0 END AS pos) q
 WHERE account_id = :alice AND event_id = :big_event + 1
 ORDER BY p0 = -1, p0;

-- A truncated value and something that is not an envelope at all.
SELECT public.regress10_try(format('SELECT m365sync._decrypt_text(%L, %L, %s, 1, %L)', 't', 'c', :alice,
       substring(m365sync._encrypt_text('t', 'c', :alice, 1, 'hello') FROM 1 FOR 40))) AS truncated;
SELECT public.regress10_try(format('SELECT m365sync._decrypt_text(%L, %L, %s, 1, %L)', 't', 'c', :alice,
       convert_to('plain text', 'UTF8'))) AS plaintext;

-- Moved: to another row, another column, another user's account.
SELECT public.regress10_try(format('SELECT m365sync._decrypt_jsonb(%L, %L, %s, %s, %L)',
       'events', 'content', account_id, event_id + 1, content)) AS other_row,
       public.regress10_try(format('SELECT m365sync._decrypt_jsonb(%L, %L, %s, %s, %L)',
       'conflicts', 'lost', account_id, event_id, content)) AS other_column,
       public.regress10_try(format('SELECT m365sync._decrypt_jsonb(%L, %L, %s, %s, %L)',
       'events', 'content', :bob, event_id, content)) AS other_user
  FROM m365sync.events WHERE account_id = :alice AND event_id = :big_event + 1;

-- Copied into another user's event row, the value does not decrypt there.
BEGIN;
UPDATE m365sync.events b
   SET content = (SELECT a.content FROM m365sync.events a
                   WHERE a.account_id = :alice AND a.event_id = :big_event + 1)
 WHERE b.account_id = :bob
   AND b.event_id = (SELECT min(event_id) FROM m365sync.events WHERE account_id = :bob);
SELECT public.regress10_try(format('SELECT m365sync._decrypt_jsonb(%L, %L, %s, %s, %L)',
       'events', 'content', account_id, event_id, content)) AS copied_to_bob
  FROM m365sync.events
 WHERE account_id = :bob AND event_id = (SELECT min(event_id) FROM m365sync.events WHERE account_id = :bob);
ROLLBACK;

-- A wrapped data key moved to another account does not unwrap (and the
-- change reaches the cached key at once, through the trigger on data_keys).
BEGIN;
UPDATE m365sync.data_keys SET wrapped_key = (SELECT wrapped_key FROM m365sync.data_keys WHERE account_id = :bob)
 WHERE account_id = :alice;
SELECT public.regress10_try(format('SELECT m365sync._decrypt_jsonb(%L, %L, %s, %s, %L)',
       'events', 'content', account_id, event_id, content)) AS swapped_wrapped_key
  FROM m365sync.events WHERE account_id = :alice AND event_id = :big_event + 1;
ROLLBACK;
SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) ->> 'subject' AS after_rollback
  FROM m365sync.events WHERE account_id = :alice AND event_id = :big_event + 1;

-- A data key made in a transaction that rolls back is forgotten with it:
-- the next write makes (and stores) a new one rather than using a lost key.
BEGIN;
SELECT m365sync._encrypt_text('t', 'c', 900001, 1, 'x') IS NOT NULL AS encrypted;
SELECT count(*) AS key_in_transaction FROM m365sync.data_keys WHERE account_id = 900001;
ROLLBACK;
SELECT count(*) AS key_after_rollback FROM m365sync.data_keys WHERE account_id = 900001;
SELECT m365sync._encrypt_text('t', 'c', 900001, 1, 'after rollback') AS v900001 \gset
SELECT count(*) AS key_stored FROM m365sync.data_keys WHERE account_id = 900001;
SELECT m365sync._decrypt_text('t', 'c', 900001, 1, :'v900001') AS decrypted;
-- The same for a savepoint rolled back.
BEGIN;
SAVEPOINT s;
SELECT m365sync._encrypt_text('t', 'c', 900002, 1, 'x') IS NOT NULL AS encrypted;
ROLLBACK TO SAVEPOINT s;
SELECT m365sync._encrypt_text('t', 'c', 900002, 1, 'after savepoint') AS v900002 \gset
COMMIT;
SELECT count(*) AS key_stored FROM m365sync.data_keys WHERE account_id = 900002;
SELECT m365sync._decrypt_text('t', 'c', 900002, 1, :'v900002') AS decrypted;

-- User functions run as m365sync_definer under RLS: they use the acting
-- user's keys and the installation key (account 0), never another user's.
-- (A stand-in owned by m365sync_definer; the real API functions are elsewhere.)
CREATE FUNCTION public.regress10_definer_encrypt(text, text, bigint, bigint, text) RETURNS bytea
    LANGUAGE c SECURITY DEFINER AS '$libdir/m365sync', 'm365sync_encrypt_text';
CREATE FUNCTION public.regress10_definer_decrypt(text, text, bigint, bigint, bytea) RETURNS text
    LANGUAGE c SECURITY DEFINER AS '$libdir/m365sync', 'm365sync_decrypt_text';
ALTER FUNCTION public.regress10_definer_encrypt(text, text, bigint, bigint, text) OWNER TO m365sync_definer;
ALTER FUNCTION public.regress10_definer_decrypt(text, text, bigint, bigint, bytea) OWNER TO m365sync_definer;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT public.regress10_definer_decrypt('accounts', 'mailbox', account_id, account_id, mailbox) AS own_mailbox
  FROM m365sync.accounts WHERE account_id = :alice;
SELECT public.regress10_definer_encrypt('t', 'c', 0, 1, 'installation') IS NOT NULL AS installation_key;
SELECT public.regress10_try(format('SELECT public.regress10_definer_encrypt(%L, %L, %s, 1, %L)',
       't', 'c', :bob, 'x')) AS write_for_bob;
SELECT public.regress10_try(format('SELECT public.regress10_definer_decrypt(%L, %L, %s, %s, %L)',
       'accounts', 'mailbox', account_id, account_id, mailbox)) AS read_bobs_mailbox
  FROM m365sync.accounts WHERE account_id = :bob;
ROLLBACK;
-- A new account gets its data key inside the user's connect transaction.
BEGIN;
SET LOCAL m365sync.flowagent_user = 'carol';
INSERT INTO m365sync.accounts (flowagent_user, mode) VALUES ('carol', 'delegated') RETURNING account_id AS carol \gset
SELECT public.regress10_definer_encrypt('accounts', 'refresh_token', :carol, :carol, 'rt-carol') IS NOT NULL AS encrypted;
COMMIT;
SELECT count(*) AS carol_keys FROM m365sync.data_keys WHERE account_id = :carol;

-- Admin functions: m365sync_admin only; m365sync_app gets 42501, and nobody
-- but a superuser reaches the internal helpers.
SET ROLE regress_app10;
SELECT public.regress_error('SELECT m365sync.rewrap_keys()') AS app_rewrap;
SELECT public.regress_error('SELECT m365sync.purge_user(''alice'')') AS app_purge;
SELECT public.regress_error('SELECT m365sync.export_user(''alice'')') AS app_export;
SELECT public.regress_error('SELECT m365sync._decrypt_text(''t'', ''c'', 1, 1, ''\x00'')') AS app_decrypt;
RESET ROLE;
SET ROLE regress_admin10;
SELECT public.regress_error('SELECT m365sync._decrypt_text(''t'', ''c'', 1, 1, ''\x00'')') AS admin_decrypt;
SELECT public.regress_error('SELECT m365sync._encrypt_text(''t'', ''c'', 1, 1, ''x'')') AS admin_encrypt;
SELECT public.regress_error('SELECT m365sync.purge_user(NULL)') AS purge_null;
SELECT public.regress_error('SELECT m365sync.export_user('''')') AS export_empty;
RESET ROLE;

-- rewrap_keys rewraps every data key in one go and returns how many;
-- everything still decrypts.
SELECT count(*) AS nkeys FROM m365sync.data_keys \gset
SET ROLE regress_admin10;
SELECT m365sync.rewrap_keys() = :nkeys AS rewrapped_all;
RESET ROLE;
SELECT bool_and(rewrapped_at IS NOT NULL) AS all_stamped FROM m365sync.data_keys;
SELECT count(*) AS events_decrypting
  FROM m365sync.events
 WHERE account_id IN (:alice, :bob)
   AND m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) IS NOT NULL;

-- export_user: everything on alice, decrypted; nothing of bob; no tokens.
SET ROLE regress_admin10;
SELECT m365sync.export_user('alice') AS export \gset
SELECT m365sync.export_user('nobody') -> 'accounts' AS unknown_user;
RESET ROLE;
SELECT jsonb_array_length(x -> 'accounts') AS accounts,
       x ->> 'flowagent_user' AS flowagent_user,
       x #>> '{accounts,0,mailbox}' AS mailbox,
       x #>> '{accounts,0,calendars,0,name}' AS calendar,
       jsonb_array_length(x #> '{accounts,0,events}') AS events,
       x #>> '{accounts,0,events,1,content,subject}' AS second_subject,
       x #>> '{accounts,0,events,1,content,body,content}' AS second_body,
       x #>> '{accounts,0,pending_changes,0,op}' AS pending_op,
       x #>> '{accounts,0,conflicts,0,lost,subject}' AS lost_subject
  FROM (SELECT :'export'::jsonb AS x) s;
SELECT position('BOB-MARKER' IN :'export') = 0 AS nothing_of_bob,
       position('bob@' IN :'export') = 0 AS no_bob_address,
       position('ALICE-MARKER' IN :'export') > 0 AS alice_content,
       position('at-ALICE' IN :'export') = 0 AND position('rt-ALICE' IN :'export') = 0 AS no_tokens;

-- purge_user shreds: keep a superuser's copy of alice's rows (a backup),
-- purge, put the copy back: nothing of it decrypts any more.
CREATE TABLE public.regress10_bak_accounts AS SELECT * FROM m365sync.accounts WHERE account_id = :alice;
CREATE TABLE public.regress10_bak_calendars AS SELECT * FROM m365sync.calendars WHERE account_id = :alice;
CREATE TABLE public.regress10_bak_events AS SELECT * FROM m365sync.events WHERE account_id = :alice;
ALTER TABLE public.regress10_bak_events DROP COLUMN is_long;  -- generated (20_events.sql): recomputed on restore
CREATE TABLE public.regress10_bak_conflicts AS SELECT * FROM m365sync.conflicts WHERE account_id = :alice;
SET ROLE regress_admin10;
SELECT m365sync.purge_user('alice');
SELECT m365sync.export_user('alice') -> 'accounts' AS export_after_purge;
RESET ROLE;
SELECT (SELECT count(*) FROM m365sync.data_keys WHERE account_id = :alice) AS keys,
       (SELECT count(*) FROM m365sync.accounts WHERE flowagent_user = 'alice') AS accounts,
       (SELECT count(*) FROM m365sync.calendars WHERE account_id = :alice) AS calendars,
       (SELECT count(*) FROM m365sync.events WHERE account_id = :alice) AS events,
       (SELECT count(*) FROM m365sync.outbox WHERE account_id = :alice) AS outbox,
       (SELECT count(*) FROM m365sync.conflicts WHERE account_id = :alice) AS conflicts;
INSERT INTO m365sync.accounts SELECT * FROM public.regress10_bak_accounts;
INSERT INTO m365sync.calendars SELECT * FROM public.regress10_bak_calendars;
INSERT INTO m365sync.events SELECT * FROM public.regress10_bak_events;
INSERT INTO m365sync.conflicts SELECT * FROM public.regress10_bak_conflicts;
SELECT count(*) AS restored,
       count(*) FILTER (WHERE public.regress10_try(format('SELECT m365sync._decrypt_jsonb(%L, %L, %s, %s, %L)',
                        'events', 'content', account_id, event_id, content)) LIKE 'XX001:%') AS refused
  FROM m365sync.events WHERE account_id = :alice;
SELECT public.regress10_try(format('SELECT m365sync._decrypt_text(%L, %L, %s, %s, %L)',
       'accounts', 'mailbox', account_id, account_id, mailbox)) AS restored_mailbox
  FROM m365sync.accounts WHERE account_id = :alice;
SELECT count(*) AS no_key_made_by_reading FROM m365sync.data_keys WHERE account_id = :alice;
-- bob is untouched.
SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) ->> 'subject' AS bob_subject
  FROM m365sync.events WHERE account_id = :bob ORDER BY event_id LIMIT 1;

-- Clean up for the files after this one.
SELECT m365sync.purge_user(u) FROM (VALUES ('alice'), ('bob'), ('carol')) v(u);
DELETE FROM m365sync.data_keys WHERE account_id IN (900001, 900002);
DROP TABLE public.regress10_bak_accounts, public.regress10_bak_calendars,
           public.regress10_bak_events, public.regress10_bak_conflicts;
DROP FUNCTION public.regress10_definer_encrypt(text, text, bigint, bigint, text);
DROP FUNCTION public.regress10_definer_decrypt(text, text, bigint, bigint, bytea);
DROP FUNCTION public.regress10_make_user(text, text);
DROP FUNCTION public.regress10_try(text);
DROP ROLE regress_app10;
DROP ROLE regress_admin10;
