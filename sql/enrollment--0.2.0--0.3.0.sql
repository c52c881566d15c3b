-- enrollment 0.2.0 -> 0.3.0
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.3.0'" to load this file. \quit

--------------------------------------------------------------------------
-- The rules of enrollment_token and node_record move from one CHECK
-- constraint per rule to one CHECK per table calling a C function with the
-- whole row (src/row_rules.c): PostgreSQL re-parses every CHECK constraint
-- on each INSERT or UPDATE, which cost more than the rest of an enrollment.
-- The rules themselves do not change; adding the new constraints checks
-- every existing row against them.
--------------------------------------------------------------------------

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT conrelid::pg_catalog.regclass AS tab, conname
               FROM pg_catalog.pg_constraint
              WHERE contype OPERATOR(pg_catalog.=) 'c'
                AND conrelid OPERATOR(pg_catalog.=) ANY (ARRAY['enrollment.enrollment_token'::pg_catalog.regclass,
                                                               'enrollment.node_record'::pg_catalog.regclass])
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', c.tab, c.conname);
    END LOOP;
END
$$;

CREATE FUNCTION enrollment.enrollment_token_rules(enrollment.enrollment_token) RETURNS boolean
    AS 'MODULE_PATHNAME', 'enrollment_token_rules' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION enrollment.enrollment_token_rules(enrollment.enrollment_token) IS
    'The integrity rules of an enrollment token row (constraint enrollment_token_rules): true, or check_violation naming the rule';
ALTER TABLE enrollment.enrollment_token ADD CONSTRAINT enrollment_token_rules
    CHECK (enrollment.enrollment_token_rules(enrollment_token.*));

CREATE FUNCTION enrollment.node_record_rules(enrollment.node_record) RETURNS boolean
    AS 'MODULE_PATHNAME', 'enrollment_node_record_rules' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION enrollment.node_record_rules(enrollment.node_record) IS
    'The integrity rules of a node row (constraint node_record_rules): true, or check_violation naming the rule';
ALTER TABLE enrollment.node_record ADD CONSTRAINT node_record_rules
    CHECK (enrollment.node_record_rules(node_record.*));

REVOKE ALL ON FUNCTION
    enrollment.enrollment_token_rules(enrollment.enrollment_token),
    enrollment.node_record_rules(enrollment.node_record)
  FROM PUBLIC;

--------------------------------------------------------------------------
-- enroll returns a named composite type (its OUT parameters made the
-- executor rebuild the row shape from the catalog on every call).  The
-- return type changes, so the function is dropped and created again;
-- EXECUTE grants given on it are carried over.
--------------------------------------------------------------------------

CREATE TYPE enrollment.enrolled_node AS (
    node_id     uuid,
    node_secret text,
    status      text,
    token_id    uuid,
    reenrolled  boolean);

DO $upgrade$
DECLARE
    fn      text := 'enrollment.enroll(text, text, text, text)';
    stmt    text;
    grants  text[] := '{}';
    g       record;
BEGIN
    FOR g IN
        SELECT a.grantee, a.is_grantable
          FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
         WHERE p.oid = fn::pg_catalog.regprocedure
           AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        grants := grants || pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', fn,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                 ELSE g.grantee::pg_catalog.regrole::text END,  -- regrole quotes as needed
            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    EXECUTE 'DROP FUNCTION ' || fn;
    CREATE FUNCTION enrollment.enroll(
        token      text,
        node_name  text,
        cluster_id text DEFAULT NULL,
        node_role  text DEFAULT NULL)
        RETURNS enrollment.enrolled_node
        AS 'MODULE_PATHNAME', 'enrollment_enroll'
        LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
    EXECUTE 'REVOKE ALL ON FUNCTION ' || fn || ' FROM PUBLIC';
    FOREACH stmt IN ARRAY grants LOOP
        EXECUTE stmt;
    END LOOP;
END
$upgrade$;

COMMENT ON FUNCTION enrollment.enroll(text, text, text, text) IS
    'Enroll a machine with a token: counts the use, creates (or re-enrolls) the node and returns its credential once';

--------------------------------------------------------------------------
-- New tokens and nodes get time-ordered (version 7) UUIDs, so that the rows
-- one enrollment writes land near each other in the indexes on those keys
-- (src/uuid_v7.c).  Existing ids stay as they are.
--------------------------------------------------------------------------

CREATE FUNCTION enrollment.uuid_v7() RETURNS uuid
    AS 'MODULE_PATHNAME', 'enrollment_uuid_v7' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION enrollment.uuid_v7() IS
    'A time-ordered UUID (version 7): 48 bits of Unix milliseconds, then random bits';
REVOKE ALL ON FUNCTION enrollment.uuid_v7() FROM PUBLIC;
ALTER TABLE enrollment.node_record ALTER COLUMN node_id SET DEFAULT enrollment.uuid_v7();
ALTER TABLE enrollment.enrollment_token ALTER COLUMN token_id SET DEFAULT enrollment.uuid_v7();
