-- test/bench/load: the FlowAgent-side helpers the pgbench scripts call.
-- An app that reads an event and then edits or deletes it can find it gone:
-- another request of the same user, or the worker applying an Outlook-side
-- delete, removed it in between. FlowAgent answers such a request with
-- "not found"; pgbench 15 would abort the client on the error instead. So
-- the write runs in a function that turns exactly that error (SQLSTATE
-- P0002, no_data_found) into a count on a sequence, which the benchmark
-- prints. Every other error still fails the transaction and is reported.
CREATE SCHEMA load;
CREATE SEQUENCE load.not_found;
CREATE FUNCTION load.update_event(event_id bigint, subject text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM m365sync.upsert_event(jsonb_build_object('subject', subject), event_id);
EXCEPTION WHEN no_data_found THEN
    PERFORM nextval('load.not_found');
END $$;
CREATE FUNCTION load.delete_event(event_id bigint) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM m365sync.delete_event(event_id);
EXCEPTION WHEN no_data_found THEN
    PERFORM nextval('load.not_found');
END $$;
CREATE ROLE flowagent LOGIN IN ROLE m365sync_app;
GRANT USAGE ON SCHEMA load TO flowagent;
GRANT USAGE ON SEQUENCE load.not_found TO flowagent;
