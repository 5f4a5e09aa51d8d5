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

-- account_status gains the account's subscription: off (no
-- notification_url), pending (to be made), active, expired, removed (to be
-- made again) or error, its expiry and the last failure's Graph error code.
-- Nothing secret: the clientState stays in m365sync.subscriptions.
CREATE OR REPLACE VIEW m365sync.account_status AS
SELECT a.account_id,
       a.flowagent_user,
       t.tenant,
       a.mode,
       a.status,
       a.last_sync_at,
       a.next_sync_at,
       coalesce(a.last_error,
                (SELECT 'push failed: ' || o.last_error FROM m365sync.outbox o
                  WHERE o.account_id = a.account_id AND o.state = 'failed'
                  ORDER BY o.outbox_id DESC LIMIT 1)) AS last_error,
       (SELECT pg_catalog.count(*) FROM m365sync.events e
         WHERE e.account_id = a.account_id AND NOT e.deleted) AS events,
       (SELECT pg_catalog.count(*) FROM m365sync.outbox o
         WHERE o.account_id = a.account_id AND o.state = 'pending') AS pending_pushes,
       (SELECT pg_catalog.count(*) FROM m365sync.conflicts c
         WHERE c.account_id = a.account_id AND c.resolved_at IS NULL) AS conflicts,
       CASE WHEN s.account_id IS NOT NULL AND s.recreate THEN 'removed'
            WHEN s.account_id IS NOT NULL AND s.expires_at <= pg_catalog.now() THEN 'expired'
            WHEN s.account_id IS NOT NULL THEN 'active'
            WHEN coalesce(pg_catalog.current_setting('m365sync.notification_url', true), '') = '' THEN 'off'
            WHEN a.subscription_error IS NOT NULL THEN 'error'
            ELSE 'pending' END AS subscription,
       s.expires_at AS subscription_expires_at,
       a.subscription_error
  FROM m365sync.accounts a
  LEFT JOIN m365sync.tenants t ON t.tenant_id = a.tenant_id
  LEFT JOIN LATERAL (SELECT s1.account_id, s1.recreate, s1.expires_at FROM m365sync.subscriptions s1
                      WHERE s1.account_id = a.account_id
                      ORDER BY s1.created_at DESC LIMIT 1) s ON true;
