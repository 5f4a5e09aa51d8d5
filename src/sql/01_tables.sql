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
                                      'consent_required', 'disabled', 'error',
                                      -- states of the mailbox, retried after a while (issue 22)
                                      'mailbox_disabled', 'access_denied')),
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
    subscription_retry_at timestamptz,       -- no new subscription attempt before this
    calendars_listed_at timestamptz          -- last read of the calendar list; null: read it at the next round
);
CREATE INDEX accounts_flowagent_user ON m365sync.accounts (flowagent_user);
-- The accounts due by their schedule (store_accounts_schedule.c: the same
-- expression and predicate there): the due query scans what is due, not
-- every account.
CREATE INDEX accounts_due ON m365sync.accounts
    ((GREATEST(coalesce(next_sync_at, '-infinity'), coalesce(backoff_until, '-infinity'))))
    WHERE status IN ('connected', 'error', 'mailbox_disabled', 'access_denied') AND ms_user_id IS NOT NULL;

-- Each FlowAgent user's account, by user: the user functions find the
-- acting user's account here, by the primary key. Written with accounts in
-- the same transaction (store_accounts.c), never apart. On Citus a
-- reference table (distribute()): the coordinator reads it locally, where
-- a search of accounts by flowagent_user would ask every shard.
CREATE TABLE m365sync.user_accounts (
    flowagent_user  text PRIMARY KEY,
    account_id      bigint NOT NULL
);

-- The id of every account, and nothing else: the table a Citus coordinator
-- routes events() by (store_events.c). On Citus distributed and co-located
-- with accounts, so a statement naming one id runs on the node of that
-- account's shards; without row level security (an id is a surrogate key,
-- nothing of the user), so the statement reaches that node without the
-- acting user: m365sync._events_window() gets the user as an argument and
-- reads the account's rows under the shards' own policies (SECURITY.md).
-- Written with accounts (store_accounts.c); the key removes a row with its
-- account.
CREATE TABLE m365sync.account_routes (
    account_id      bigint PRIMARY KEY REFERENCES m365sync.accounts ON DELETE CASCADE
);

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
    gone_at         timestamptz,             -- answered 404: not pulled; the next list read drops or revives it
    PRIMARY KEY (account_id, calendar_id),
    UNIQUE (account_id, graph_id)
);

CREATE TABLE m365sync.events (
    account_id      bigint NOT NULL,
    event_id        bigserial,
    calendar_id     bigint NOT NULL,
    graph_id        text COLLATE "C",        -- null until first pushed; opaque bytes, compared as such
    ical_uid        text,                    -- keyed hash "hmac:<hex>" of the iCalUId (store_events.h), never the UID
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
    changed_fields  text[],                  -- names Graph accepts in a PATCH (event_patch.c), or '*'; never a caller's own keys
    base_change_key text,                    -- If-Match
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,                    -- Graph error code
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    sent_at         timestamptz,             -- first send (a resent create may meet its first incarnation)
    done_at         timestamptz,
    base_hashes     text[],                  -- update: "field=hmac:..." keyed hashes of the last-known
                                             -- remote value of each changed field (a changeKey that moved
                                             -- by itself is told from a remote edit by them; issue 22)
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
    skipped         integer NOT NULL DEFAULT 0,  -- items the pull could not map (0.2.0)
    PRIMARY KEY (account_id, run_id)
);
CREATE INDEX sync_run_log_started ON m365sync.sync_run_log (started_at);
-- a round still 'running' when its account's next round starts was cut off
CREATE INDEX sync_run_log_running ON m365sync.sync_run_log (account_id) WHERE status = 'running';

-- Graph change-notification subscriptions (subscriptions.c): one per
-- synced calendar, on users/{id}/calendars/{graph id}/events (one on
-- users/{id}/events reports the default calendar only, GRAPH.md §11). The
-- worker creates, renews, recreates and deletes them with the calendar's
-- sync switch; handle_notification() finds one by subscription_id and
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
    calendar_id     bigint,                  -- the calendar it watches; null: 0.1.0's account-wide one (replaced)
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

-- Event ids of events a delta page reported @removed, kept for a week: an
-- event moved to another calendar keeps its Graph id (immutable ids) and
-- shows up there as new, maybe rounds later (GRAPH.md §11); it then gets
-- its old event_id back instead of a new one. No content, ids only.
CREATE TABLE m365sync.removed_events (
    account_id      bigint NOT NULL REFERENCES m365sync.accounts ON DELETE CASCADE,
    graph_id        text COLLATE "C" NOT NULL,
    event_id        bigint NOT NULL,
    removed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (account_id, graph_id)
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
    data                jsonb,
    -- 0.2.0: read from data (issue 17): a master's patternedRecurrence, the
    -- online meeting's join link, the user's own response
    recurrence          jsonb,
    join_url            text,
    my_response         text
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
    m365sync.sync_run_log, m365sync.subscriptions, m365sync.account_wakeups,
    m365sync.removed_events, m365sync.user_accounts
    TO m365sync_definer;
-- rows of account_routes come with their account and go with it (the key)
GRANT SELECT, INSERT ON m365sync.account_routes TO m365sync_definer;
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
ALTER TABLE m365sync.removed_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE m365sync.user_accounts ENABLE ROW LEVEL SECURITY;

-- The per-account tables' policies call m365sync._acting_owns(account_id)
-- (C in sql_citus.c, store_placement.c) instead of a subquery on accounts:
-- Citus refuses subqueries in policies on distributed tables, where every
-- shard carries the policy and evaluates it on its own node. The function
-- reads the account row under the accounts policy (on a Citus node, from
-- the account's co-located shard, which is on the same node), so it answers
-- true only for the acting user's accounts, as the subquery did.
-- Owned by m365sync_definer, which the policies bind: it runs as that role
-- whoever calls it, so the accounts policy always applies to its read.
-- No SET search_path, unlike every other function: a policy calls it for
-- each row, and a SET clause makes each call a GUC nest level (the path set,
-- then every setting walked at its end), which cost more than the read it
-- guards. Its one query is kept and names every relation and operator by
-- schema, so no search_path can change what it reads.
CREATE FUNCTION m365sync._acting_owns(account_id bigint) RETURNS boolean
    LANGUAGE c STABLE STRICT SECURITY DEFINER
    AS 'MODULE_PATHNAME', 'm365sync_acting_owns';
REVOKE ALL ON FUNCTION m365sync._acting_owns(bigint) FROM PUBLIC;
ALTER FUNCTION m365sync._acting_owns(bigint) OWNER TO m365sync_definer;

CREATE POLICY acting_user ON m365sync.accounts TO m365sync_definer
    USING (flowagent_user = pg_catalog.current_setting('m365sync.flowagent_user', true));
CREATE POLICY acting_user ON m365sync.user_accounts TO m365sync_definer
    USING (flowagent_user = pg_catalog.current_setting('m365sync.flowagent_user', true));
CREATE POLICY acting_user ON m365sync.oauth_states TO m365sync_definer
    USING (kind = 'connect'
           AND flowagent_user = pg_catalog.current_setting('m365sync.flowagent_user', true));
-- The installation key (account 0) protects the app's client secret, which a
-- user's connect needs for the token exchange.
CREATE POLICY acting_user ON m365sync.data_keys TO m365sync_definer
    USING (account_id = 0 OR m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.calendars TO m365sync_definer
    USING (m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.events TO m365sync_definer
    USING (m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.outbox TO m365sync_definer
    USING (m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.conflicts TO m365sync_definer
    USING (m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.sync_run_log TO m365sync_definer
    USING (m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.subscriptions TO m365sync_definer
    USING (m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.account_wakeups TO m365sync_definer
    USING (m365sync._acting_owns(account_id));
CREATE POLICY acting_user ON m365sync.removed_events TO m365sync_definer
    USING (m365sync._acting_owns(account_id));

-- pg_dump: every table above holds installation or user data (none is
-- filled at install time), so all of them, and the sequences behind their
-- ids, are dumped with their rows; without this pg_dump writes an extension
-- member's definition but never its rows. The short-lived ones are dumped
-- too: a restore brings back sync history (sync_run_log), notification marks
-- not yet served (account_wakeups) and connects under way (oauth_states,
-- which expire on their own). Ids are restored as they were, so every
-- envelope's additional data (table, column, account and row id) still
-- matches. sql/03_dump_config.sql fails when a table is missing here.
SELECT pg_catalog.pg_extension_config_dump('m365sync.app_config', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.tenants_tenant_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.oauth_states', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.oauth_states_state_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.data_keys', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.accounts_account_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.user_accounts', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.account_routes', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.calendars', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.calendars_calendar_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.events', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.events_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.outbox_outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.conflicts', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.conflicts_conflict_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.sync_run_log', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.sync_run_log_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.account_wakeups', '');
SELECT pg_catalog.pg_extension_config_dump('m365sync.removed_events', '');
