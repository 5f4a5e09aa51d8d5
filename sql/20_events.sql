-- The FlowAgent event API: events, event, calendars, set_calendar_sync,
-- upsert_event, delete_event (SPEC §4 "User"), as m365sync_app acting for
-- one FlowAgent user.
SET client_min_messages = warning;
-- A fresh install, so the ids below do not depend on earlier files.
DROP EXTENSION m365sync CASCADE;
CREATE EXTENSION m365sync;
CREATE ROLE regress_api LOGIN IN ROLE m365sync_app;
RESET client_min_messages;


-- Set-up as superuser, as the connect flow would: alice has a default
-- calendar, a read-only one and a second writable one; bob has one; carol
-- has no account.
INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, status)
VALUES (101, 'alice', 'delegated', 'connected'), (102, 'bob', 'delegated', 'connected');
INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, name, is_default, can_edit, sync_enabled)
VALUES (101, 1011, 'AQMkA-cal', m365sync._encrypt_text('calendars', 'name', 101, 1011, 'Calendar'), true, true, true),
       (101, 1012, 'AQMkA-hol', m365sync._encrypt_text('calendars', 'name', 101, 1012, 'Holidays in Denmark'), false, false, false),
       (101, 1013, 'AQMkA-team', NULL, false, true, false),
       (102, 1021, 'AQMkB-cal', m365sync._encrypt_text('calendars', 'name', 102, 1021, 'Bob''s calendar'), true, true, true);

-- A view of what is stored, for the superuser only: clear columns and queue.
CREATE FUNCTION pg_temp.stored() RETURNS TABLE (account_id bigint, event_id bigint, calendar_id bigint,
    event_type text, start_at timestamptz, end_at timestamptz, is_all_day boolean,
    start_date date, end_date date, deleted boolean, sync_state text, outbox text)
LANGUAGE sql AS $$
    SELECT e.account_id, e.event_id, e.calendar_id, e.event_type, e.start_at, e.end_at,
           e.is_all_day, e.start_date, e.end_date, e.deleted, e.sync_state,
           (SELECT string_agg(o.op || coalesce(' ' || o.changed_fields::text, '') ||
                              coalesce(' if-match ' || o.base_change_key, ''), '; ' ORDER BY o.outbox_id)
              FROM m365sync.outbox o
             WHERE o.account_id = e.account_id AND o.event_id = e.event_id AND o.state = 'pending')
      FROM m365sync.events e ORDER BY e.event_id
$$;
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM m365sync.events) || ' events, ' ||
           (SELECT count(*) FROM m365sync.outbox) || ' outbox rows'
$$;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';

-- Error text with ids masked: ids depend on what earlier tests inserted.
CREATE FUNCTION public.regress20_error(stmt text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(public.regress_error(stmt), '(event|calendar) [0-9]+', '\1 N')
$$;

SET ROLE regress_api;

-- No acting user: 28000.
SELECT regress_error('SELECT * FROM m365sync.events(''2026-01-01'', ''2026-02-01'')');
SELECT regress_error('SELECT m365sync.upsert_event(''{}'')');

-- m365sync_app cannot touch the tables, not even with a user set. (The
-- acting user counts only in the transaction that sets it, so each part
-- below runs in one transaction.)
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT regress_error('SELECT count(*) FROM m365sync.events');
SELECT regress_error('SELECT count(*) FROM m365sync.outbox');
SELECT regress_error('DELETE FROM m365sync.events');

-- calendars(): the acting user's only, names decrypted.
SELECT * FROM m365sync.calendars();
SELECT m365sync.set_calendar_sync(1013, true);
SELECT calendar_id, sync_enabled FROM m365sync.calendars() WHERE calendar_id = 1013;
SELECT regress_error('SELECT m365sync.set_calendar_sync(1021, false)');   -- bob's: as if missing
SELECT regress_error('SELECT m365sync.set_calendar_sync(99999, false)');

-- Create: a timed event in a Windows zone, on the DST day in Paris.
-- 10:00 CEST (UTC+2) is 08:00Z.
SELECT m365sync.upsert_event('{
  "subject": "Planning",
  "body": {"contentType": "html", "content": "<p>Agenda</p>"},
  "start": {"dateTime": "2026-03-29T10:00:00.0000000", "timeZone": "Romance Standard Time"},
  "end":   {"dateTime": "2026-03-29T11:30:00.0000000", "timeZone": "Romance Standard Time"},
  "location": {"displayName": "Room 4"},
  "attendees": [{"type": "required", "emailAddress": {"name": "Bob", "address": "bob@example.com"}}],
  "categories": ["Blue", "Team"],
  "showAs": "busy", "sensitivity": "normal", "importance": "high",
  "isReminderOn": true, "reminderMinutesBeforeStart": 15,
  "someFutureField": {"kept": true}
}') AS planning \gset
SELECT event_id = :planning AS same_id, calendar_id, graph_id, event_type, subject, body, body_type,
       location, start_at, end_at, is_all_day, start_date, end_date, time_zone, show_as,
       sensitivity, importance, is_cancelled, organizer, attendees, categories, web_link,
       remote_modified_at, sync_state
  FROM m365sync.event(:planning);
-- data is the whole Graph object, unknown fields included, calendarId not.
SELECT jsonb_pretty(data) FROM m365sync.event(:planning);

-- The stored object keeps every JSON value: Unicode, escapes, numbers, nesting.
SELECT m365sync.upsert_event('{"subject": "Zürich 会議 🎉 \"q\" \\ \u0001",
  "start": {"dateTime": "2026-03-30T08:00:00", "timeZone": "UTC"},
  "end":   {"dateTime": "2026-03-30T08:30:00", "timeZone": "UTC"},
  "someFutureField": {"n": [0, -3, 1.5, 0.1, 1e-7, 2.5e30, 123456789012, 3.141592653589793],
                      "t": true, "f": false, "z": null, "a": [[], {}, [{"k": "v"}]]}}') AS unicode \gset
SELECT data->'subject' AS subject, subject = data->>'subject' AS column_agrees,
       data->'someFutureField' AS kept
  FROM m365sync.event(:unicode);

-- A caller cannot forge Microsoft's fields.
SELECT m365sync.upsert_event('{"id": "AAMk-forged", "changeKey": "x", "type": "occurrence",
  "subject": "Forged", "calendarId": 1013,
  "start": {"dateTime": "2026-03-30T09:00:00", "timeZone": "Europe/Copenhagen"},
  "end":   {"dateTime": "2026-03-30T09:30:00", "timeZone": "Europe/Copenhagen"}}') AS forged \gset
SELECT calendar_id, graph_id, event_type, data ? 'id' AS has_id, data ? 'calendarId' AS has_calendar_id
  FROM m365sync.event(:forged);

-- Other zone spellings: Windows names in any case, IANA, tzone://Microsoft/Utc, explicit offsets.
SELECT z, (SELECT start_at FROM m365sync.event(m365sync.upsert_event(jsonb_build_object(
           'subject', 'zone test',
           'start', jsonb_build_object('dateTime', '2026-07-01T12:00:00', 'timeZone', z),
           'end', jsonb_build_object('dateTime', '2026-07-01T13:00:00', 'timeZone', z))))) AS start_at
  FROM unnest(ARRAY['Pacific Standard Time', 'w. europe standard time', 'Asia/Kolkata',
                    'tzone://Microsoft/Utc', 'UTC']) AS z;
SELECT start_at FROM m365sync.event(m365sync.upsert_event('{"subject": "offset",
  "start": {"dateTime": "2026-07-01T12:00:00+05:30"}, "end": {"dateTime": "2026-07-01T13:00:00Z"}}'));

-- Every bad input: the SQLSTATE, a message naming the field, nothing written.
RESET ROLE;
SELECT pg_temp.counts() AS before_bad_input \gset
SET ROLE regress_api;
SELECT input, regress_error(format('SELECT m365sync.upsert_event(%L)', input)) AS error
  FROM (VALUES
  ('{"start": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}}'),
  ('{"start": {"dateTime": "2026-03-29T11:00:00", "timeZone": "Europe/Paris"}, "end": {"dateTime": "2026-03-29T08:30:00", "timeZone": "UTC"}}'),
  ('{"start": {"dateTime": "29.03.2026 10:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-02-30T11:00:00", "timeZone": "UTC"}}'),
  ('{"start": {"dateTime": "2026-03-29T24:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-30T11:00:00", "timeZone": "UTC"}}'),
  ('{"start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "Mars Standard Time"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "tzone://Microsoft/Custom"}}'),
  ('{"start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "Customized Time Zone"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"start": {"dateTime": "2026-03-29T10:00:00"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"isAllDay": true, "start": {"dateTime": "2026-12-24T09:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-12-25T00:00:00", "timeZone": "UTC"}}'),
  ('{"isAllDay": true, "start": {"dateTime": "2026-12-24T00:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-12-24T00:00:00", "timeZone": "UTC"}}'),
  ('{"subject": 7, "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"showAs": "asleep", "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"attendees": [{"emailAddress": {"address": "a@example.com"}}, {"emailAddress": {"name": "No Address"}}], "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"recurrence": {"pattern": {"type": "weekly", "interval": 1}, "range": {"type": "noEnd", "startDate": "2026-03-29"}}, "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"calendarId": 1012, "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"calendarId": 1021, "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('{"calendarId": 424242, "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'),
  ('[1, 2]'),
  ('"just a string"')
  ) AS t(input);
-- malformed JSON never reaches the function: the jsonb cast refuses it with 22P02
SELECT regress_error($$SELECT m365sync.upsert_event('{"subject": "x",')$$);
-- subject over 255 characters (not bytes), body over 4 MB
SELECT regress_error(format('SELECT m365sync.upsert_event(%L)', jsonb_build_object(
  'subject', repeat('é', 256),
  'start', '{"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}'::jsonb,
  'end', '{"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}'::jsonb)));
SELECT regress_error(format('SELECT m365sync.upsert_event(%L)', jsonb_build_object(
  'body', jsonb_build_object('contentType', 'text', 'content', repeat('x', 4 * 1024 * 1024 + 1)),
  'start', '{"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}'::jsonb,
  'end', '{"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}'::jsonb)));
-- updates are checked the same way, and unknown ids are P0002
SELECT regress_error(format('SELECT m365sync.upsert_event(%L, %s)',
  '{"end": {"dateTime": "2026-03-29T07:00:00", "timeZone": "UTC"}}', :planning));
SELECT regress_error(format('SELECT m365sync.upsert_event(%L, %s)', '{"isAllDay": true}', :planning));
SELECT regress_error(format('SELECT m365sync.upsert_event(%L, %s)', '{"importance": "urgent"}', :planning));
SELECT regress_error(format('SELECT m365sync.upsert_event(%L, %s)', '{"calendarId": 1013}', :planning));
SELECT regress_error('SELECT m365sync.upsert_event(''{"subject": "x"}'', 999999)');
SELECT regress_error('SELECT m365sync.delete_event(999999)');
SELECT regress_error('SELECT m365sync.event(999999)');
RESET ROLE;
SELECT pg_temp.counts() = :'before_bad_input' AS nothing_written;
SET ROLE regress_api;
-- 255 characters is fine
SELECT length(subject) FROM m365sync.event(m365sync.upsert_event(jsonb_build_object(
  'subject', repeat('é', 255),
  'start', '{"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}'::jsonb,
  'end', '{"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}'::jsonb)));

-- Update: a partial object, Graph PATCH style; id and calendar stay.
SELECT m365sync.upsert_event('{"subject": "Planning (moved)", "location": {"displayName": "Room 5"}}', :planning) = :planning AS same_id;
SELECT subject, location, start_at, body FROM m365sync.event(:planning);
-- an update that changes nothing writes nothing
SELECT m365sync.upsert_event('{"subject": "Planning (moved)"}', :planning) = :planning AS same_id;
RESET ROLE;
-- create + update is still one create
SELECT event_id = :planning AS planning, event_type, start_at, sync_state, outbox
  FROM pg_temp.stored() WHERE event_id = :planning;

-- A synced event (as the pull leaves it): graph_id, changeKey, no queue.
UPDATE m365sync.events SET graph_id = 'AAMk-planning', change_key = 'CK1', sync_state = 'synced'
 WHERE event_id = :planning;
DELETE FROM m365sync.outbox WHERE event_id = :planning;
SET ROLE regress_api;
-- update + update merge their changed fields; If-Match is the synced changeKey
SELECT m365sync.upsert_event('{"subject": "Planning v2"}', :planning) = :planning AS same_id;
SELECT m365sync.upsert_event('{"importance": "low", "subject": "Planning v3"}', :planning) = :planning AS same_id;
SELECT graph_id, subject, importance, sync_state FROM m365sync.event(:planning);
RESET ROLE;
SELECT event_id = :planning AS planning, sync_state, outbox FROM pg_temp.stored() WHERE event_id = :planning;
SELECT change_key FROM m365sync.events WHERE event_id = :planning;
-- the content is stored encrypted, bound to its row
SELECT position('Planning' in encode(content, 'escape')) AS subject_in_clear
  FROM m365sync.events WHERE event_id = :planning;
SELECT m365sync._decrypt_jsonb('events', 'content', 101, :planning, content)->>'subject' AS decrypted
  FROM m365sync.events WHERE event_id = :planning;
SET ROLE regress_api;

-- Delete of a synced event: marked, remote delete queued (the pending update
-- becomes the delete), gone from events() and event() at once.
SELECT m365sync.delete_event(:planning);
SELECT count(*) AS visible FROM m365sync.events('2026-03-29', '2026-03-30') WHERE event_id = :planning;
SELECT regress20_error(format('SELECT m365sync.event(%s)', :planning));
SELECT regress20_error(format('SELECT m365sync.delete_event(%s)', :planning));
SELECT regress20_error(format('SELECT m365sync.upsert_event(''{"subject": "zombie"}'', %s)', :planning));
RESET ROLE;
SELECT event_id = :planning AS planning, deleted, sync_state, outbox FROM pg_temp.stored() WHERE event_id = :planning;
SET ROLE regress_api;
-- Delete of a never-pushed event: create + delete leave nothing at all.
SELECT m365sync.delete_event(:forged);
RESET ROLE;
SELECT count(*) AS forged_rows FROM m365sync.events WHERE event_id = :forged;
SELECT count(*) AS forged_outbox FROM m365sync.outbox WHERE event_id = :forged;
SET ROLE regress_api;

COMMIT;

-- Transactions: a rollback leaves no row and no queue entry.
RESET ROLE;
SELECT pg_temp.counts() AS before_rollback \gset
SET ROLE regress_api;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT m365sync.upsert_event('{"subject": "rolled back", "start": {"dateTime": "2026-05-01T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-05-01T11:00:00", "timeZone": "UTC"}}') > 0 AS created;
SELECT count(*) AS inside FROM m365sync.events('2026-05-01', '2026-05-02');
ROLLBACK;
BEGIN;
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT count(*) AS after FROM m365sync.events('2026-05-01', '2026-05-02');
RESET ROLE;
SELECT pg_temp.counts() = :'before_rollback' AS nothing_left;
SET ROLE regress_api;

-- Recurrence: a series master with pattern and range.
SELECT event_type, start_at, data->'recurrence'->'pattern'->>'type' AS pattern
  FROM m365sync.event(m365sync.upsert_event('{"subject": "Standup",
  "start": {"dateTime": "2026-06-01T09:00:00", "timeZone": "W. Europe Standard Time"},
  "end": {"dateTime": "2026-06-01T09:15:00", "timeZone": "W. Europe Standard Time"},
  "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday"], "firstDayOfWeek": "monday"},
                 "range": {"type": "endDate", "startDate": "2026-06-01", "endDate": "2026-12-31", "recurrenceTimeZone": "W. Europe Standard Time"}}}'));
-- Until its occurrences come back from Outlook, the series shows as its master.
SELECT subject, event_type FROM m365sync.events('2026-06-01', '2026-06-02') WHERE subject = 'Standup';

-- Role isolation: bob cannot read, update, delete or detect alice's events;
-- the error for her event is the one for an id that does not exist.
SELECT min(event_id) AS alice_event FROM m365sync.events('2026-01-01', '2027-01-01') \gset
SET LOCAL m365sync.flowagent_user = 'bob';
SELECT count(*) AS bob_sees FROM m365sync.events('-infinity', 'infinity');
SELECT regress20_error(format('SELECT m365sync.event(%s)', :alice_event));
SELECT regress20_error(format('SELECT m365sync.upsert_event(''{"subject": "mine now"}'', %s)', :alice_event));
SELECT regress20_error(format('SELECT m365sync.delete_event(%s)', :alice_event));
SELECT regress20_error('SELECT m365sync.delete_event(888888)');
SELECT calendar_id, name FROM m365sync.calendars();
SELECT m365sync.upsert_event('{"subject": "Bob''s", "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}') AS bob_event \gset
SELECT calendar_id, subject FROM m365sync.events('2026-03-29', '2026-03-30');
-- carol has no account: nothing to read, nowhere to write
SET LOCAL m365sync.flowagent_user = 'carol';
SELECT count(*) FROM m365sync.events('-infinity', 'infinity');
SELECT count(*) FROM m365sync.calendars();
SELECT regress_error('SELECT m365sync.upsert_event(''{"subject": "x", "start": {"dateTime": "2026-03-29T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-03-29T11:00:00", "timeZone": "UTC"}}'')');
SELECT regress20_error(format('SELECT m365sync.event(%s)', :bob_event));
SET LOCAL m365sync.flowagent_user = 'alice';
SELECT regress20_error(format('SELECT m365sync.event(%s)', :bob_event));
SELECT regress20_error(format('SELECT m365sync.delete_event(%s)', :bob_event));

-- events() filters: calendar, window edges (half-open), empty window.
SELECT m365sync.upsert_event('{"subject": "Team sync", "calendarId": 1013,
  "start": {"dateTime": "2026-04-01T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-04-01T11:00:00", "timeZone": "UTC"}}') AS team \gset
SELECT m365sync.upsert_event('{"subject": "Long project", "start": {"dateTime": "2026-01-01T00:00:00", "timeZone": "UTC"},
  "end": {"dateTime": "2026-09-01T00:00:00", "timeZone": "UTC"}}') AS long_event \gset
SELECT m365sync.upsert_event('{"subject": "Instant", "start": {"dateTime": "2026-04-01T12:00:00", "timeZone": "UTC"},
  "end": {"dateTime": "2026-04-01T12:00:00", "timeZone": "UTC"}}') AS instant \gset
SELECT f, t, cal, (SELECT string_agg(subject, ', ' ORDER BY start_at, event_id)
                     FROM m365sync.events(f::timestamptz, t::timestamptz, cal)) AS subjects
  FROM (VALUES ('2026-04-01 00:00', '2026-04-02 00:00', NULL::bigint),
               ('2026-04-01 00:00', '2026-04-02 00:00', 1013),
               ('2026-04-01 00:00', '2026-04-02 00:00', 1011),
               ('2026-04-01 11:00', '2026-04-01 12:00', NULL),
               ('2026-04-01 09:00', '2026-04-01 10:00', NULL),
               ('2026-04-01 12:00', '2026-04-01 12:00:01', NULL),
               ('2026-08-31 23:59', '2026-09-01 00:00', NULL),
               ('2026-09-01 00:00', '2026-09-02 00:00', NULL),
               ('2026-04-02 00:00', '2026-04-01 00:00', NULL)) AS v(f, t, cal);

-- All-day events are dates: 2026-12-24 (end 2026-12-25) is found by
-- events('2026-12-24', '2026-12-25') in every zone, and by no range that
-- does not contain that date.
SELECT m365sync.upsert_event('{"subject": "Christmas Eve", "isAllDay": true,
  "start": {"dateTime": "2026-12-24T00:00:00.0000000", "timeZone": "Pacific Standard Time"},
  "end": {"dateTime": "2026-12-25T00:00:00.0000000", "timeZone": "Pacific Standard Time"}}') AS eve \gset
SELECT is_all_day, start_date, end_date FROM m365sync.event(:eve);
\set allday_q 'SELECT current_setting(''TimeZone'') AS zone, f, t, (SELECT count(*) FROM m365sync.events(f::timestamptz, t::timestamptz) WHERE event_id = ' :eve ') AS found FROM (VALUES (''2026-12-24'', ''2026-12-25''), (''2026-12-24 23:59'', ''2026-12-25 00:00''), (''2026-12-20'', ''2026-12-24''), (''2026-12-25'', ''2026-12-26''), (''2026-12-24 00:00:01'', ''2026-12-24 00:00:02''), (''2026-12-23 12:00'', ''2026-12-24 00:00''), (''2026-12-25 00:00'', ''2027-01-01'')) AS r(f, t)'
SET TimeZone = 'Europe/Copenhagen';
:allday_q;
SET TimeZone = 'America/Los_Angeles';
:allday_q;
SET TimeZone = 'Pacific/Kiritimati';
:allday_q;
SET TimeZone = 'Pacific/Pago_Pago';
:allday_q;
RESET TimeZone;
SET TimeZone = 'UTC';

RESET ROLE;
-- what the queue holds for alice at the end
SELECT op, count(*) FROM m365sync.outbox WHERE account_id = 101 AND state = 'pending' GROUP BY op ORDER BY op;
SELECT events, pending_pushes FROM m365sync.account_status WHERE account_id = 101;
COMMIT;
RESET m365sync.flowagent_user;
DROP FUNCTION public.regress20_error(text);
