-- handle_notification: FlowAgent's webhook handler calls it as the app role,
-- with no user context. Bad input gets a specific SQLSTATE and does nothing;
-- a notification from no subscription of ours is refused with 42501.
-- Earlier files' set_calendar_sync(true) marked accounts due; start from none.
DELETE FROM m365sync.account_wakeups;
CREATE ROLE regress_hook LOGIN IN ROLE m365sync_app;
CREATE ROLE regress_nobody LOGIN;
CREATE ROLE regress_hook_admin LOGIN IN ROLE m365sync_admin;
SET ROLE regress_hook;

-- The validation handshake echoes the token, whatever the body.
SELECT m365sync.handle_notification(NULL, 'Validation: Testing client application reachability for subscription Request-Id: 7');
SELECT m365sync.handle_notification('ignored', 'abc');

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
        ('no body, no token', NULL, NULL),
        ('empty token', NULL, ''),
        ('token over 1024 bytes', NULL, repeat('t', 1025)),
        ('body over 1 MB', repeat(' ', 1024 * 1024 + 1), NULL),
        ('not json', 'not json', NULL),
        ('empty body', '', NULL),
        ('no value', '{"x":[]}', NULL),
        ('empty value', '{"value":[]}', NULL),
        ('array body', '[{"subscriptionId":"a"}]', NULL),
        ('item not an object', '{"value":["a"]}', NULL),
        ('no subscriptionId', '{"value":[{"clientState":"x"}]}', NULL),
        ('subscriptionId not a string', '{"value":[{"subscriptionId":1,"clientState":"x"}]}', NULL),
        ('subscriptionId with a quote', '{"value":[{"subscriptionId":"a''b","clientState":"x"}]}', NULL),
        ('subscriptionId over 64 chars', '{"value":[{"subscriptionId":"' || repeat('a', 65) || '","clientState":"x"}]}', NULL),
        ('clientState not a string', '{"value":[{"subscriptionId":"abc","clientState":{}}]}', NULL),
        ('lifecycleEvent not a string', '{"value":[{"subscriptionId":"abc","lifecycleEvent":[]}]}', NULL),
        ('over 1000 items', '{"value":[' || (SELECT string_agg('{"subscriptionId":"a","clientState":"x"}', ',')
                                              FROM generate_series(1, 1001)) || ']}', NULL),
        ('unknown subscription', '{"value":[{"subscriptionId":"00000000-0000-0000-0000-000000000000","clientState":"x"}]}', NULL),
        ('unknown subscription, lifecycle', '{"value":[{"subscriptionId":"abc","clientState":"x","lifecycleEvent":"missed"}]}', NULL),
        ('unknown subscription, no clientState', '{"value":[{"subscriptionId":"abc"}]}', NULL)
    ) AS t(name, body, token)
    LOOP
        BEGIN
            PERFORM m365sync.handle_notification(c.body, c.token);
            RAISE NOTICE '%: accepted', c.name;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE '%: %', c.name, SQLSTATE;
        END;
    END LOOP;
END
$$;
RESET ROLE;

-- Nothing was marked due.
SELECT count(*) AS due_marks FROM m365sync.account_wakeups;

-- Errors name the problem, never the body or a clientState.
SET ROLE regress_hook;
\set VERBOSITY default
SELECT m365sync.handle_notification('{"value":[{"subscriptionId":"abc","clientState":"my-secret-state"}]}');
SELECT m365sync.handle_notification('{"value":"my-secret-body"}');
RESET ROLE;

-- Only the app and admin roles may call it (even with the schema usable).
GRANT USAGE ON SCHEMA m365sync TO regress_nobody;
SET ROLE regress_nobody;
SELECT m365sync.handle_notification(NULL, 'abc');
RESET ROLE;
SET ROLE regress_hook_admin;
SELECT m365sync.handle_notification(NULL, 'abc');
RESET ROLE;

-- What changed is asked for by the app, acting for a user (NOTIFY m365sync
-- carries no payload): never without a user, never by a role without grants.
SET ROLE regress_hook;
SELECT regress_error('SELECT * FROM m365sync.changes_since()');
BEGIN;
SET LOCAL m365sync.flowagent_user = 'regress-nobody-connected';
SELECT * FROM m365sync.changes_since(0);
COMMIT;
RESET ROLE;
SET ROLE regress_nobody;
SELECT regress_error('SELECT * FROM m365sync.changes_since()');
RESET ROLE;
SET ROLE regress_hook_admin;
SELECT regress_error('SELECT * FROM m365sync.changes_since()');
RESET ROLE;

REVOKE USAGE ON SCHEMA m365sync FROM regress_nobody;
DROP ROLE regress_hook;
DROP ROLE regress_nobody;
DROP ROLE regress_hook_admin;
