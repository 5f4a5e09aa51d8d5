-- Connect: app registration, organisation consent, app-only mailboxes, and
-- the user's sign-in (authorization code with PKCE). C in sql_connect.c.

-- A user completing a sign-in must learn that a state is another user's
-- (28000) rather than unknown (22023), so the definer may read every connect
-- state's owner. It sees only hashes, owners and times; it can still change
-- only its own user's rows (policy acting_user).
CREATE POLICY read_connect_states ON m365sync.oauth_states FOR SELECT TO m365sync_definer
    USING (kind = 'connect');

-- Admin -------------------------------------------------------------------

CREATE FUNCTION m365sync.configure(client_id text, client_secret text, redirect_uri text)
    RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_configure';
COMMENT ON FUNCTION m365sync.configure(text, text, text) IS
    'Registers the FlowAgent app (Entra application id, client secret, redirect URI); the secret is stored encrypted.';

CREATE FUNCTION m365sync.admin_consent_url(tenant text)
    RETURNS text
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_admin_consent_url';
COMMENT ON FUNCTION m365sync.admin_consent_url(text) IS
    'The URL a tenant administrator opens to grant organisation consent; its state is single-use and expires in 10 minutes.';

CREATE FUNCTION m365sync.admin_consent_complete(state text, tenant text, admin_consent boolean,
                                                error text DEFAULT NULL)
    RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_admin_consent_complete';
COMMENT ON FUNCTION m365sync.admin_consent_complete(text, text, boolean, text) IS
    'Records the outcome of organisation consent from the parameters of the redirect (state, tenant, admin_consent, error).';

CREATE FUNCTION m365sync.add_mailbox(flowagent_user text, tenant text, mailbox text)
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_add_mailbox';
COMMENT ON FUNCTION m365sync.add_mailbox(text, text, text) IS
    'Adds an app-only account (client credentials) for a mailbox of a consented tenant; returns its account_id.';

REVOKE ALL ON FUNCTION m365sync.configure(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.admin_consent_url(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.admin_consent_complete(text, text, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.add_mailbox(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.configure(text, text, text) TO m365sync_admin;
GRANT EXECUTE ON FUNCTION m365sync.admin_consent_url(text) TO m365sync_admin;
GRANT EXECUTE ON FUNCTION m365sync.admin_consent_complete(text, text, boolean, text) TO m365sync_admin;
GRANT EXECUTE ON FUNCTION m365sync.add_mailbox(text, text, text) TO m365sync_admin;

-- User (acting for m365sync.flowagent_user) ------------------------------

CREATE FUNCTION m365sync.connect_url()
    RETURNS text
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_connect_url';
COMMENT ON FUNCTION m365sync.connect_url() IS
    'Microsoft sign-in URL for the acting user: authorization code flow, PKCE S256, single-use state valid 10 minutes.';

CREATE FUNCTION m365sync.connect_complete(state text, code text)
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_connect_complete';
COMMENT ON FUNCTION m365sync.connect_complete(text, text) IS
    'Completes the sign-in with the state and code of the redirect: stores tokens encrypted, lists calendars, schedules the first sync; returns account_id.';

CREATE FUNCTION m365sync.disconnect()
    RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_disconnect';
COMMENT ON FUNCTION m365sync.disconnect() IS
    'Stops syncing for the acting user and erases their data (data keys first), as purge_user does.';

ALTER FUNCTION m365sync.connect_url() OWNER TO m365sync_definer;
ALTER FUNCTION m365sync.connect_complete(text, text) OWNER TO m365sync_definer;
ALTER FUNCTION m365sync.disconnect() OWNER TO m365sync_definer;
REVOKE ALL ON FUNCTION m365sync.connect_url() FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.connect_complete(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.disconnect() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.connect_url() TO m365sync_app;
GRANT EXECUTE ON FUNCTION m365sync.connect_complete(text, text) TO m365sync_app;
GRANT EXECUTE ON FUNCTION m365sync.disconnect() TO m365sync_app;
