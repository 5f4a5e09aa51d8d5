-- pg_dump keeps an extension table's rows only when the table is registered
-- with pg_extension_config_dump. Every table of m365sync holds installation
-- or user data, so every one must be in pg_extension.extconfig, and so must
-- every sequence that feeds one of them (or restored ids would collide with
-- new ones). Both lists below must stay empty; a table added later without
-- its registration shows up here.

-- member tables and sequences missing from extconfig
SELECT c.relname AS not_dumped, c.relkind
  FROM pg_depend d
  JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'm365sync')
   AND d.deptype = 'e'
   AND c.relkind IN ('r', 'p', 'S')
   AND NOT EXISTS (SELECT 1 FROM pg_extension e
                    WHERE e.extname = 'm365sync' AND c.oid = ANY (e.extconfig))
 ORDER BY 1;

-- registered with a filter: none, as no table is filled at install time
SELECT cfg::regclass AS filtered, cond
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(cfg, cond)
 WHERE e.extname = 'm365sync' AND cond <> ''
 ORDER BY 1;

-- what is dumped (a change here is a decision: say why in 01_tables.sql)
SELECT cfg::regclass AS dumped, c.relkind
  FROM pg_extension e,
       unnest(e.extconfig) AS x(cfg)
  JOIN pg_class c ON c.oid = x.cfg
 WHERE e.extname = 'm365sync'
 ORDER BY x.cfg::regclass::text;
