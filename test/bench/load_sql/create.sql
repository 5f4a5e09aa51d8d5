-- test/bench/load: FlowAgent creates an event in the coming week. (A
-- timestamp becomes ISO 8601 in jsonb; no colon may appear in the text, since
-- pgbench would take ":MI" for a variable.)
\set u random(1, :nusers)
\set h random(1, 167)
BEGIN;
SELECT set_config('m365sync.flowagent_user', 'load-' || CAST(:u AS text), true);
SELECT m365sync.upsert_event(jsonb_build_object(
    'subject', 'Load meeting ' || CAST(:h AS text),
    'body', jsonb_build_object('contentType', 'text', 'content', 'Agenda: load test'),
    'start', jsonb_build_object('dateTime', date_trunc('hour', now() AT TIME ZONE 'UTC') + make_interval(hours => CAST(:h AS int)), 'timeZone', 'UTC'),
    'end', jsonb_build_object('dateTime', date_trunc('hour', now() AT TIME ZONE 'UTC') + make_interval(hours => CAST(:h AS int), mins => 30), 'timeZone', 'UTC')));
COMMIT;
