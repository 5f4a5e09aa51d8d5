-- test/bench/load: FlowAgent shows the week, then renames one of its events.
\set u random(1, :nusers)
BEGIN;
SELECT set_config('m365sync.flowagent_user', 'load-' || CAST(:u AS text), true);
SELECT coalesce(max(e), 0) AS eid
  FROM (SELECT event_id AS e FROM m365sync.events(now(), now() + interval '7 days') ORDER BY random() LIMIT 1) s \gset
\if :eid > 0
SELECT load.update_event(:eid, 'Load renamed ' || CAST(:u AS text));
\endif
COMMIT;
