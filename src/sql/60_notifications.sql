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
    'For the webhook handler: with validation_token returns it (the handshake); otherwise checks every item''s clientState (42501 for any mismatch, nothing done) and marks the accounts due; returns ''accepted''.';
REVOKE ALL ON FUNCTION m365sync.handle_notification(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.handle_notification(text, text) TO m365sync_app, m365sync_admin;
