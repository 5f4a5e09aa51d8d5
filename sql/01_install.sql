-- The extension installs, drops and installs again; roles are cluster-wide
-- and survive; every object lives in schema m365sync.
CREATE EXTENSION m365sync;
DROP EXTENSION m365sync;
SELECT count(*) AS schema_left FROM pg_namespace WHERE nspname = 'm365sync';
CREATE EXTENSION m365sync;

SELECT rolname, rolcanlogin, rolsuper
  FROM pg_roles WHERE rolname LIKE 'm365sync%' ORDER BY rolname;

SELECT extname, extversion, extrelocatable, n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'm365sync';

-- Every member object of the extension is in schema m365sync.
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'm365sync')
   AND deptype = 'e'
   AND pg_describe_object(classid, objid, 0) NOT LIKE '%m365sync.%'
 ORDER BY 1;

-- The tables, views and types of the contract.
SELECT c.relname, c.relkind, c.relrowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'm365sync' AND c.relkind IN ('r', 'v')
 ORDER BY c.relname;

SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute
 WHERE attrelid = 'm365sync.event'::regclass AND attnum > 0
 ORDER BY attnum;

-- Test helper for later files: run a statement, show its SQLSTATE and message.
CREATE FUNCTION public.regress_error(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
