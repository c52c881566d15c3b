-- Installation, the extension's public surface, and a helper used by the
-- later files to show an error as "SQLSTATE: message" (no row may change).
CREATE EXTENSION enrollment CASCADE;

SELECT extversion FROM pg_extension WHERE extname = 'enrollment';
SELECT extrelocatable, extnamespace::regnamespace FROM pg_extension WHERE extname = 'enrollment';

-- every member of the extension: API drift must be deliberate
SELECT pg_describe_object(classid, objid, 0) AS member
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'enrollment')
 ORDER BY 1;

-- settings and their defaults
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'enrollment.%' ORDER BY name;
SHOW enrollment.once_token_ttl;
SHOW enrollment.cluster_token_ttl;
SHOW enrollment.max_token_ttl;

-- nothing is granted to PUBLIC
SELECT c.relname, c.relacl IS NULL OR NOT EXISTS (
           SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0) AS no_public
  FROM pg_class c WHERE c.relnamespace = 'enrollment'::regnamespace AND c.relkind IN ('r', 'v', 'S')
 ORDER BY 1;
SELECT p.proname, NOT has_function_privilege('public', p.oid, 'EXECUTE') AS no_public_execute,
       p.prosecdef, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'enrollment'::regnamespace ORDER BY 1;

-- the helper: run a statement, report SQLSTATE and message, roll it back
CREATE FUNCTION err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || msg;
END
$$;

-- DROP removes every object (the schema named in the control file is made
-- by CREATE EXTENSION itself and stays, empty); CREATE again works
DROP EXTENSION enrollment;
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'enrollment'::regnamespace) AS relations,
       (SELECT count(*) FROM pg_proc WHERE pronamespace = 'enrollment'::regnamespace) AS functions,
       (SELECT count(*) FROM pg_type WHERE typnamespace = 'enrollment'::regnamespace) AS types;
CREATE EXTENSION enrollment;
SELECT count(*) FROM enrollment.tokens;
