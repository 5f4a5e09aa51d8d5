-- m365sync install script, assembled by the Makefile from src/sql/*.sql in
-- name order. This piece: roles and the privilege model.
\echo Use "CREATE EXTENSION m365sync" to load this file. \quit

-- Roles are cluster-wide: create them only when missing, so CREATE EXTENSION
-- works again after DROP EXTENSION and in a second database.
--   m365sync_admin    DBA / operator: admin functions and status views.
--   m365sync_app      the FlowAgent backend: user functions, one user per
--                     transaction (m365sync.flowagent_user).
--   m365sync_definer  owns the user functions. It is not a superuser, so the
--                     row level security policies below bind everything those
--                     functions do to the acting user: a second wall behind
--                     the functions' own checks. Nobody is granted it.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'm365sync_admin') THEN
        CREATE ROLE m365sync_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'm365sync_app') THEN
        CREATE ROLE m365sync_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'm365sync_definer') THEN
        CREATE ROLE m365sync_definer NOLOGIN NOINHERIT;
    END IF;
END
$roles$;

REVOKE ALL ON SCHEMA m365sync FROM PUBLIC;
GRANT USAGE ON SCHEMA m365sync TO m365sync_admin, m365sync_app, m365sync_definer;
-- Tables and types. Per-account tables carry account_id as the first column
-- of their primary key and of every foreign key between them, so Citus can
-- distribute them on account_id unchanged; tenants, app_config and
-- oauth_states are small and can become reference tables. No query joins two
-- accounts' rows. Encrypted columns are bytea envelopes made by keyring.c.

-- The FlowAgent app registration (one row).
CREATE TABLE m365sync.app_config (
    id              integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    client_id       text NOT NULL,
    client_secret   bytea NOT NULL,          -- encrypted (installation key)
    redirect_uri    text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Tenants known to the installation and their organisation consent.
CREATE TABLE m365sync.tenants (
    tenant_id       bigserial PRIMARY KEY,
    tenant          text NOT NULL UNIQUE,    -- as the admin named it: guid or domain
    tenant_guid     text,                    -- as Microsoft reported it at consent
    consent_status  text NOT NULL DEFAULT 'none'
                    CHECK (consent_status IN ('none', 'granted', 'consent_required', 'permission_denied')),
    consent_error   text,                    -- Microsoft's error code, never a description
    consented_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Single-use OAuth states (user connect and admin consent), 10 minutes.
-- Only a hash of the state is stored; the PKCE verifier is encrypted.
CREATE TABLE m365sync.oauth_states (
    state_id        bigserial PRIMARY KEY,
    state_hash      bytea NOT NULL UNIQUE,
    kind            text NOT NULL CHECK (kind IN ('connect', 'admin_consent')),
    flowagent_user  text,
    tenant          text,
    code_verifier   bytea,                   -- encrypted (installation key)
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);

-- Data keys: one per account (0 = the installation), wrapped by a master key.
CREATE TABLE m365sync.data_keys (
    account_id      bigint PRIMARY KEY,
    master_key_id   text NOT NULL,
    generation      integer NOT NULL DEFAULT 1,  -- named in every envelope; bumped only if a data key is ever replaced
    wrapped_key     bytea NOT NULL,          -- AES-256-GCM under master_key_id, bound to account and generation
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rewrapped_at    timestamptz
);

CREATE TABLE m365sync.accounts (
    account_id      bigserial PRIMARY KEY,
    flowagent_user  text NOT NULL,           -- one account per user, guarded in code (Citus allows no
                                             -- unique constraint without the distribution column)
    tenant_id       bigint REFERENCES m365sync.tenants,
    mode            text NOT NULL CHECK (mode IN ('delegated', 'application')),
    ms_user_id      text,                    -- Graph's user id (a GUID), not an address
    mailbox         bytea,                   -- encrypted user principal name / address
    status          text NOT NULL DEFAULT 'connecting'
                    CHECK (status IN ('connecting', 'connected', 'reauth_required',
                                      'consent_required', 'disabled', 'error')),
    last_error      text,                    -- an error code, never content
    access_token    bytea,                   -- encrypted
    refresh_token   bytea,                   -- encrypted
    token_expires_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_sync_at    timestamptz,
    next_sync_at    timestamptz,
    failures        integer NOT NULL DEFAULT 0,
    backoff_until   timestamptz,
    subscription_error text,                 -- Graph error code of the last failed subscription call
    subscription_retry_at timestamptz        -- no new subscription attempt before this
);
CREATE INDEX accounts_flowagent_user ON m365sync.accounts (flowagent_user);
CREATE INDEX accounts_next_sync ON m365sync.accounts (next_sync_at);

CREATE TABLE m365sync.calendars (
    account_id      bigint NOT NULL REFERENCES m365sync.accounts ON DELETE CASCADE,
    calendar_id     bigserial,
    graph_id        text NOT NULL,
    name            bytea,                   -- encrypted
    is_default      boolean NOT NULL DEFAULT false,
    can_edit        boolean NOT NULL DEFAULT true,
    sync_enabled    boolean NOT NULL DEFAULT false,
    delta_link      bytea,                   -- encrypted next/delta link (cursor)
    delta_is_final  boolean NOT NULL DEFAULT false, -- delta_link is a deltaLink, not a nextLink
    full_round_id   bigint,                  -- set while a full (re)sync round is under way
    window_start    timestamptz,
    window_end      timestamptz,
    PRIMARY KEY (account_id, calendar_id),
    UNIQUE (account_id, graph_id)
);

CREATE TABLE m365sync.events (
    account_id      bigint NOT NULL,
    event_id        bigserial,
    calendar_id     bigint NOT NULL,
    graph_id        text,                    -- null until first pushed
    ical_uid        text,
    series_master_id bigint,
    event_type      text NOT NULL DEFAULT 'singleInstance'
                    CHECK (event_type IN ('singleInstance', 'occurrence', 'exception', 'seriesMaster')),
    start_at        timestamptz NOT NULL,
    end_at          timestamptz NOT NULL,
    is_all_day      boolean NOT NULL DEFAULT false,
    start_date      date,                    -- all-day only
    end_date        date,                    -- all-day only, exclusive
    show_as         text,
    is_cancelled    boolean NOT NULL DEFAULT false,
    content         bytea NOT NULL,          -- encrypted: every content field as one value
    change_key      text,
    remote_modified_at timestamptz,
    local_modified_at  timestamptz,
    sync_state      text NOT NULL DEFAULT 'synced'
                    CHECK (sync_state IN ('synced', 'pending', 'conflict', 'failed')),
    deleted         boolean NOT NULL DEFAULT false,  -- deleted locally, remote delete queued
    seen_round      bigint,                  -- last full round that saw it (resync sweep)
    PRIMARY KEY (account_id, event_id),
    UNIQUE (account_id, graph_id),
    FOREIGN KEY (account_id, calendar_id) REFERENCES m365sync.calendars ON DELETE CASCADE
);
-- Ciphertext does not compress, so never try; and keep rows up to a full
-- page inline: a typical event (1-4 kB sealed) is read with its row instead
-- of through a TOAST index, and written without a second heap insert.
ALTER TABLE m365sync.events ALTER COLUMN content SET STORAGE EXTERNAL;
ALTER TABLE m365sync.events SET (toast_tuple_target = 8160);
CREATE INDEX events_by_start ON m365sync.events (account_id, start_at);
CREATE INDEX events_by_date ON m365sync.events (account_id, start_date) WHERE is_all_day;
CREATE INDEX events_by_master ON m365sync.events (account_id, series_master_id)
    WHERE series_master_id IS NOT NULL;

-- Local changes waiting to be pushed, written in the app's transaction.
-- Content is not copied here: the push reads the event row when it sends.
CREATE TABLE m365sync.outbox (
    account_id      bigint NOT NULL,
    outbox_id       bigserial,
    event_id        bigint NOT NULL,
    op              text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    transaction_id  uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
    changed_fields  text[],                  -- Graph field names, for a minimal PATCH
    base_change_key text,                    -- If-Match
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,                    -- Graph error code
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    sent_at         timestamptz,             -- first send (a resent create may meet its first incarnation)
    done_at         timestamptz,
    PRIMARY KEY (account_id, outbox_id),
    FOREIGN KEY (account_id, event_id) REFERENCES m365sync.events ON DELETE CASCADE
);
CREATE INDEX outbox_pending ON m365sync.outbox (account_id, outbox_id) WHERE state = 'pending';

CREATE TABLE m365sync.conflicts (
    account_id      bigint NOT NULL,
    conflict_id     bigserial,
    event_id        bigint NOT NULL,
    detected_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    policy          text NOT NULL,
    kept            text NOT NULL CHECK (kept IN ('local', 'remote')),
    lost            bytea NOT NULL,          -- encrypted: the losing version as Graph JSON
    resolved_at     timestamptz,
    PRIMARY KEY (account_id, conflict_id),
    FOREIGN KEY (account_id, event_id) REFERENCES m365sync.events ON DELETE CASCADE
);

CREATE TABLE m365sync.sync_run_log (
    account_id      bigint NOT NULL REFERENCES m365sync.accounts ON DELETE CASCADE,
    run_id          bigserial,
    started_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at     timestamptz,
    pages           integer NOT NULL DEFAULT 0,
    fetched         integer NOT NULL DEFAULT 0,
    applied         integer NOT NULL DEFAULT 0,
    deleted         integer NOT NULL DEFAULT 0,
    pushed          integer NOT NULL DEFAULT 0,
    http_requests   integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'running',
    error_code      text,
    PRIMARY KEY (account_id, run_id)
);
CREATE INDEX sync_run_log_started ON m365sync.sync_run_log (started_at);
-- a round still 'running' when its account's next round starts was cut off
CREATE INDEX sync_run_log_running ON m365sync.sync_run_log (account_id) WHERE status = 'running';

-- Graph change-notification subscriptions (subscriptions.c): at most one
-- per account, on users/{id}/events. The worker creates, renews and
-- recreates them; handle_notification() finds one by subscription_id and
-- checks the notification's clientState against client_state.
CREATE TABLE m365sync.subscriptions (
    account_id      bigint NOT NULL REFERENCES m365sync.accounts ON DELETE CASCADE,
    subscription_id text NOT NULL,           -- Graph's id (a GUID)
    client_state    bytea NOT NULL,          -- encrypted: 32 random bytes, base64url
    notification_url text NOT NULL,          -- what it was made for; a changed setting recreates it
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    renewed_at      timestamptz,
    expires_at      timestamptz NOT NULL,
    renew_at        timestamptz NOT NULL,    -- when the worker renews it (half its lifetime)
    recreate        boolean NOT NULL DEFAULT false,  -- removed at Microsoft: make a new one
    PRIMARY KEY (account_id, subscription_id)
);
-- Lookup by Graph's id alone (a notification names nothing else); not
-- unique, as Citus allows no unique index without account_id.
CREATE INDEX subscriptions_by_id ON m365sync.subscriptions (subscription_id);

-- Accounts a change notification marked due: the next worker round pulls
-- them whatever their next_sync_at. A separate table, without a foreign key,
-- so handle_notification() never waits for a lock the worker holds on the
-- account row during a round; the round deletes the mark when it starts.
CREATE TABLE m365sync.account_wakeups (
    account_id      bigint PRIMARY KEY,
    marked_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TYPE m365sync.event AS (
    event_id            bigint,
    calendar_id         bigint,
    graph_id            text,
    ical_uid            text,
    series_master_id    bigint,
    event_type          text,
    subject             text,
    body                text,
    body_type           text,
    location            text,
    start_at            timestamptz,
    end_at              timestamptz,
    is_all_day          boolean,
    start_date          date,
    end_date            date,
    time_zone           text,
    show_as             text,
    sensitivity         text,
    importance          text,
    is_cancelled        boolean,
    organizer           jsonb,
    attendees           jsonb,
    categories          text[],
    web_link            text,
    remote_modified_at  timestamptz,
    sync_state          text,
    data                jsonb
);

CREATE TYPE m365sync.sync_result AS (
    account_id  bigint,
    calendars   integer,
    fetched     integer,
    applied     integer,
    deleted     integer,
    pushed      integer,
    conflicts   integer,
    status      text,
    error       text
);

-- Nobody reads or writes the tables directly: not PUBLIC, not our roles.
-- The user functions' owner gets what they need, under the policies below.
REVOKE ALL ON ALL TABLES IN SCHEMA m365sync FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA m365sync FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    m365sync.accounts, m365sync.calendars, m365sync.events, m365sync.outbox,
    m365sync.conflicts, m365sync.data_keys, m365sync.oauth_states,
    m365sync.sync_run_log, m365sync.subscriptions, m365sync.account_wakeups
    TO m365sync_definer;
GRANT SELECT ON m365sync.app_config, m365sync.tenants TO m365sync_definer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA m365sync TO m365sync_definer;

-- Row level security: every table holding user data answers only for the
-- accounts of the acting FlowAgent user. Superusers (the worker, admin
-- functions) bypass it; m365sync_definer does not.
ALTER TABLE m365sync.accounts      ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.calendars     ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.events        ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.outbox        ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.conflicts     ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.data_keys     ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.oauth_states  ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.sync_run_log  ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.account_wakeups ENABLE ROW LEVEL SECURITY;

CREATE POLICY acting_user ON m365sync.accounts TO m365sync_definer
    USING (flowagent_user = pg_catalog.current_setting('m365sync.flowagent_user', true));
CREATE POLICY acting_user ON m365sync.oauth_states TO m365sync_definer
    USING (kind = 'connect'
           AND flowagent_user = pg_catalog.current_setting('m365sync.flowagent_user', true));
-- The installation key (account 0) protects the app's client secret, which a
-- user's connect needs for the token exchange.
CREATE POLICY acting_user ON m365sync.data_keys TO m365sync_definer
    USING (account_id = 0 OR account_id IN (SELECT a.account_id FROM m365sync.accounts a));
CREATE POLICY acting_user ON m365sync.calendars TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
CREATE POLICY acting_user ON m365sync.events TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
CREATE POLICY acting_user ON m365sync.outbox TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
CREATE POLICY acting_user ON m365sync.conflicts TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
CREATE POLICY acting_user ON m365sync.sync_run_log TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
CREATE POLICY acting_user ON m365sync.subscriptions TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
CREATE POLICY acting_user ON m365sync.account_wakeups TO m365sync_definer
    USING (account_id IN (SELECT a.account_id FROM m365sync.accounts a));
-- The acting FlowAgent user, and the admin's status views (no secrets, no
-- content, no addresses: ids, states, counts and times only).

CREATE FUNCTION m365sync.acting_user() RETURNS text
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_acting_user';
COMMENT ON FUNCTION m365sync.acting_user() IS
    'The FlowAgent user the current transaction acts for (m365sync.flowagent_user); ERROR 28000 when unset.';
REVOKE ALL ON FUNCTION m365sync.acting_user() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.acting_user() TO m365sync_app, m365sync_definer;

-- One row per account. last_error also names a push that failed for good
-- (an error code, never content) until the event is changed again.
-- subscription: off (no notification_url), pending (to be made), active,
-- expired, removed (to be made again) or error, with its expiry and the
-- last failure's Graph error code; the clientState stays in
-- m365sync.subscriptions.
CREATE VIEW m365sync.account_status AS
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

CREATE VIEW m365sync.sync_runs AS
SELECT account_id, started_at, finished_at, pages, fetched, applied, deleted,
       pushed, http_requests, status, error_code
  FROM m365sync.sync_run_log;

REVOKE ALL ON m365sync.account_status, m365sync.sync_runs FROM PUBLIC;
GRANT SELECT ON m365sync.account_status, m365sync.sync_runs TO m365sync_admin;
-- Keys and erasure (keyring.c, sql_keys.c): master key rotation, crypto-
-- shredding purge and the decrypted export of one user, for m365sync_admin.
-- The _encrypt_*/_decrypt_* helpers are internal: granted to nobody, so only
-- a superuser or a superuser-owned function (export_user) can call them.

CREATE FUNCTION m365sync.rewrap_keys() RETURNS integer
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_rewrap_keys';
COMMENT ON FUNCTION m365sync.rewrap_keys() IS
    'Rewraps every data key under the current (first) master key in one transaction; returns how many. Afterwards older key lines can be removed from m365sync.key_file.';

CREATE FUNCTION m365sync.purge_user(flowagent_user text) RETURNS void
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_purge_user';
COMMENT ON FUNCTION m365sync.purge_user(text) IS
    'Erases a FlowAgent user: destroys the data keys of the user''s accounts first (crypto-shredding), then deletes their rows.';

-- Internal helpers: the keyring from SQL. Never grant them.
CREATE FUNCTION m365sync._encrypt_text(tbl text, col text, account_id bigint, row_id bigint, value text)
    RETURNS bytea LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_encrypt_text';
CREATE FUNCTION m365sync._encrypt_jsonb(tbl text, col text, account_id bigint, row_id bigint, value jsonb)
    RETURNS bytea LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_encrypt_jsonb';
CREATE FUNCTION m365sync._decrypt_text(tbl text, col text, account_id bigint, row_id bigint, value bytea)
    RETURNS text LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_decrypt_text';
CREATE FUNCTION m365sync._decrypt_jsonb(tbl text, col text, account_id bigint, row_id bigint, value bytea)
    RETURNS jsonb LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_decrypt_jsonb';

-- Any change to data_keys, by anybody, drops the cached data keys of every
-- backend (a relcache invalidation), so a purge shreds everywhere at once.
CREATE FUNCTION m365sync._data_keys_changed() RETURNS trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_data_keys_changed';
CREATE TRIGGER data_keys_changed
    AFTER UPDATE OR DELETE OR TRUNCATE ON m365sync.data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION m365sync._data_keys_changed();

-- Everything held on one user, decrypted: accounts (no tokens, no secrets),
-- calendars, events with their whole content, pending changes, conflicts
-- with the losing version, sync history. Nothing of any other user.
CREATE FUNCTION m365sync.export_user(flowagent_user text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
AS $export$
DECLARE
    who text := $1;
BEGIN
    IF who IS NULL OR who = '' THEN
        RAISE EXCEPTION 'flowagent_user must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'flowagent_user', who,
        'exported_at', pg_catalog.now(),
        'accounts', COALESCE((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'account_id', a.account_id,
                'tenant', t.tenant,
                'mode', a.mode,
                'ms_user_id', a.ms_user_id,
                'mailbox', m365sync._decrypt_text('accounts', 'mailbox', a.account_id, a.account_id, a.mailbox),
                'status', a.status,
                'last_error', a.last_error,
                'created_at', a.created_at,
                'last_sync_at', a.last_sync_at,
                'next_sync_at', a.next_sync_at,
                'calendars', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'calendar_id', c.calendar_id,
                        'graph_id', c.graph_id,
                        'name', m365sync._decrypt_text('calendars', 'name', c.account_id, c.calendar_id, c.name),
                        'is_default', c.is_default,
                        'can_edit', c.can_edit,
                        'sync_enabled', c.sync_enabled) ORDER BY c.calendar_id)
                      FROM m365sync.calendars c WHERE c.account_id = a.account_id), '[]'::jsonb),
                'events', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'event_id', e.event_id,
                        'calendar_id', e.calendar_id,
                        'graph_id', e.graph_id,
                        'ical_uid', e.ical_uid,
                        'series_master_id', e.series_master_id,
                        'event_type', e.event_type,
                        'start_at', e.start_at,
                        'end_at', e.end_at,
                        'is_all_day', e.is_all_day,
                        'start_date', e.start_date,
                        'end_date', e.end_date,
                        'show_as', e.show_as,
                        'is_cancelled', e.is_cancelled,
                        'sync_state', e.sync_state,
                        'deleted', e.deleted,
                        'remote_modified_at', e.remote_modified_at,
                        'local_modified_at', e.local_modified_at,
                        'content', m365sync._decrypt_jsonb('events', 'content', e.account_id, e.event_id, e.content))
                        ORDER BY e.event_id)
                      FROM m365sync.events e WHERE e.account_id = a.account_id), '[]'::jsonb),
                'pending_changes', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'event_id', o.event_id,
                        'op', o.op,
                        'changed_fields', o.changed_fields,
                        'attempts', o.attempts,
                        'last_error', o.last_error,
                        'created_at', o.created_at) ORDER BY o.outbox_id)
                      FROM m365sync.outbox o
                     WHERE o.account_id = a.account_id AND o.state = 'pending'), '[]'::jsonb),
                'conflicts', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'event_id', k.event_id,
                        'detected_at', k.detected_at,
                        'policy', k.policy,
                        'kept', k.kept,
                        'lost', m365sync._decrypt_jsonb('conflicts', 'lost', k.account_id, k.conflict_id, k.lost),
                        'resolved_at', k.resolved_at) ORDER BY k.conflict_id)
                      FROM m365sync.conflicts k WHERE k.account_id = a.account_id), '[]'::jsonb),
                'sync_runs', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'started_at', r.started_at,
                        'finished_at', r.finished_at,
                        'fetched', r.fetched,
                        'applied', r.applied,
                        'pushed', r.pushed,
                        'status', r.status,
                        'error_code', r.error_code) ORDER BY r.run_id)
                      FROM m365sync.sync_run_log r WHERE r.account_id = a.account_id), '[]'::jsonb))
                ORDER BY a.account_id)
              FROM m365sync.accounts a
              LEFT JOIN m365sync.tenants t ON t.tenant_id = a.tenant_id
             WHERE a.flowagent_user = who), '[]'::jsonb));
END
$export$;
COMMENT ON FUNCTION m365sync.export_user(text) IS
    'Everything m365sync holds on a FlowAgent user, decrypted (no tokens or secrets).';

REVOKE ALL ON FUNCTION m365sync.rewrap_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.purge_user(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync.export_user(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._encrypt_text(text, text, bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._encrypt_jsonb(text, text, bigint, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._decrypt_text(text, text, bigint, bigint, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._decrypt_jsonb(text, text, bigint, bigint, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION m365sync._data_keys_changed() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.rewrap_keys() TO m365sync_admin;
GRANT EXECUTE ON FUNCTION m365sync.purge_user(text) TO m365sync_admin;
GRANT EXECUTE ON FUNCTION m365sync.export_user(text) TO m365sync_admin;
-- The FlowAgent event API (SPEC §4 "User"): read and write the acting
-- user's events in the caller's own transaction. C in sql_events.c. Every
-- function is SECURITY DEFINER, owned by m365sync_definer (so the row level
-- security policies bind it to m365sync.flowagent_user), and granted to
-- m365sync_app only.

-- Window reads find short events by start (events_by_start, events_by_date)
-- within a bound of one day before the window, and events longer than that
-- by end, through two small partial indexes on is_long (multi-day events
-- are few). So a one-week window reads about eight days of index, however
-- many years an account holds. is_long is a column, not an expression in
-- the index predicate, because under row level security the planner may
-- only use leakproof clauses to match a partial index, and timestamptz
-- subtraction is not.
-- store_events.c's window query repeats these bounds.
ALTER TABLE m365sync.events ADD COLUMN is_long boolean NOT NULL GENERATED ALWAYS AS (
    CASE WHEN is_all_day THEN end_date - start_date > 1
         ELSE end_at - start_at > interval '24 hours' END) STORED;
CREATE INDEX events_long_timed ON m365sync.events (account_id, end_at)
    WHERE is_long AND NOT is_all_day;
CREATE INDEX events_long_all_day ON m365sync.events (account_id, end_date)
    WHERE is_long AND is_all_day;

CREATE FUNCTION m365sync.events(from_ts timestamptz, to_ts timestamptz,
                                calendar_id bigint DEFAULT NULL)
    RETURNS SETOF m365sync.event
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_events';
COMMENT ON FUNCTION m365sync.events(timestamptz, timestamptz, bigint) IS
    'Events of the acting user overlapping [from_ts, to_ts), decrypted; all-day events by date in the session''s TimeZone.';

CREATE FUNCTION m365sync.event(event_id bigint) RETURNS m365sync.event
    LANGUAGE c STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_event';
COMMENT ON FUNCTION m365sync.event(bigint) IS
    'One event of the acting user; ERROR P0002 when there is none with that id.';

CREATE FUNCTION m365sync.calendars()
    RETURNS TABLE (calendar_id bigint, name text, is_default boolean,
                   can_edit boolean, sync_enabled boolean)
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_calendars';
COMMENT ON FUNCTION m365sync.calendars() IS
    'Calendars of the acting user.';

CREATE FUNCTION m365sync.set_calendar_sync(calendar_id bigint, enabled boolean) RETURNS void
    LANGUAGE c VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_set_calendar_sync';
COMMENT ON FUNCTION m365sync.set_calendar_sync(bigint, boolean) IS
    'Turn syncing of one of the acting user''s calendars on or off.';

CREATE FUNCTION m365sync.upsert_event(event jsonb, event_id bigint DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_upsert_event';
COMMENT ON FUNCTION m365sync.upsert_event(jsonb, bigint) IS
    'Create (event_id null) or update an event from Graph-shaped JSON; queued for Microsoft in the same transaction.';

CREATE FUNCTION m365sync.delete_event(event_id bigint) RETURNS void
    LANGUAGE c VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_delete_event';
COMMENT ON FUNCTION m365sync.delete_event(bigint) IS
    'Delete an event; gone from events() at once, deleted at Microsoft after commit.';

DO $grants$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'm365sync.events(timestamptz, timestamptz, bigint)',
        'm365sync.event(bigint)',
        'm365sync.calendars()',
        'm365sync.set_calendar_sync(bigint, boolean)',
        'm365sync.upsert_event(jsonb, bigint)',
        'm365sync.delete_event(bigint)']
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO m365sync_app', f);
        EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO m365sync_definer', f);
    END LOOP;
END
$grants$;
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
-- Syncing on demand: m365sync.sync() runs the worker's round in this
-- session (pg_cron, or servers without shared_preload_libraries).

CREATE FUNCTION m365sync.sync(account_id bigint DEFAULT NULL)
    RETURNS SETOF m365sync.sync_result
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_sync';
COMMENT ON FUNCTION m365sync.sync(bigint) IS
    'Sync one account, or every due account, now, in this transaction.';
REVOKE ALL ON FUNCTION m365sync.sync(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365sync.sync(bigint) TO m365sync_admin;
-- Push sync: conflicts between FlowAgent's and Outlook's changes (C in
-- sql_conflicts.c). The push itself runs in the worker and in
-- m365sync.sync(). User functions are SECURITY DEFINER, owned by
-- m365sync_definer (row level security binds them to
-- m365sync.flowagent_user) and granted to m365sync_app only.

CREATE FUNCTION m365sync.conflicts()
    RETURNS TABLE (event_id bigint, detected_at timestamptz, policy text,
                   kept text, lost jsonb)
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_conflicts';
COMMENT ON FUNCTION m365sync.conflicts() IS
    'Unresolved conflicts of the acting user: the policy applied, which side was kept, and the losing version (decrypted).';

CREATE FUNCTION m365sync.resolve_conflict(event_id bigint, keep text) RETURNS void
    LANGUAGE c VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, m365sync, pg_temp
    AS 'MODULE_PATHNAME', 'm365sync_resolve_conflict';
COMMENT ON FUNCTION m365sync.resolve_conflict(bigint, text) IS
    'Settle an event''s conflict: keep ''local'', ''remote'' or the version already ''kept''; a change is pushed like any other.';

DO $grants$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'm365sync.conflicts()',
        'm365sync.resolve_conflict(bigint, text)']
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO m365sync_app', f);
        EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO m365sync_definer', f);
    END LOOP;
END
$grants$;
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
