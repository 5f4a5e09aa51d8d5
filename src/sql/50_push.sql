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
