-- test/bench/load: a FlowAgent page view, the user's calendar for a week.
\set u random(1, :nusers)
BEGIN;
SELECT set_config('m365sync.flowagent_user', 'load-' || CAST(:u AS text), true);
SELECT * FROM m365sync.events(now(), now() + interval '7 days');
COMMIT;
