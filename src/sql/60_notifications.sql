-- Change notifications (Graph webhooks): the entry point of FlowAgent's
-- webhook handler. C in sql_notify.c; subscriptions are the worker's job
-- (subscriptions.c).
--
-- Owned by the installing superuser, like the admin functions: a
-- notification names a subscription, not a FlowAgent user, so the function
-- looks the subscription up across accounts. It reads nothing but the
-- subscription's clientState and writes nothing but "due" marks.

CREATE FUNCTION m365sync.handle_notification(body text, validation_token text DEFAULT NULL)
    RETURNS text
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_handle_notification';
COMMENT ON FUNCTION m365sync.handle_notification(text, text) IS
    'For the webhook handler: with validation_token returns it (the handshake); otherwise checks each item''s clientState, marks the accounts of the items that pass due and logs the others by subscription id; returns ''accepted'' (42501 when no item passes, nothing done).';
REVOKE ALL ON FUNCTION m365sync.handle_notification(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.handle_notification(text, text) TO m365sync_app, m365sync_admin;
