-- m365sync install script, assembled by the Makefile from src/sql/*.sql in
-- name order. This piece: roles and the privilege model.
\echo Use "CREATE EXTENSION m365sync" to load this file. \quit

-- Roles are cluster-wide: create them only when missing, so CREATE EXTENSION
-- works again after DROP EXTENSION and in a second database.
--   m365sync_admin    DBA / operator: configuration, status views and the
--                     audit trail; never content.
--   m365sync_privacy  GDPR requests (from 0.2.0): export_user and
--                     purge_user, the only functions that read or erase a
--                     whole user's data on someone else's behalf.
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
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'm365sync_privacy') THEN
        CREATE ROLE m365sync_privacy NOLOGIN;
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
-- (its own statement, as in the 0.2.0 upgrade script, so both give one ACL)
GRANT USAGE ON SCHEMA m365sync TO m365sync_privacy;
