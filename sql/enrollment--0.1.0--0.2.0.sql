-- enrollment 0.1.0 -> 0.2.0
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.2.0'" to load this file. \quit

--------------------------------------------------------------------------
-- The per-request functions return named composite types and are no
-- longer SECURITY DEFINER (they read with direct index probes).  Their
-- return type changes, so they are dropped and created again; EXECUTE
-- grants given on them are carried over.
--------------------------------------------------------------------------

CREATE TYPE enrollment.token_check AS (
    ok         boolean,
    error      text,
    token_id   uuid,
    kind       text,
    status     text,
    expires_at timestamptz,
    uses_left  integer);

CREATE TYPE enrollment.node_identity AS (
    node_id     uuid,
    tenant      text,
    name        text,
    role        text,
    cluster_id  text,
    status      text,
    enrolled_at timestamptz);

CREATE TYPE enrollment.request_verdict AS (
    ok          boolean,
    error       text,
    http_status integer,
    key_id      text,
    scopes      text[],
    tenant      text);

DO $upgrade$
DECLARE
    fn      text;
    stmt    text;
    grants  text[] := '{}';
    g       record;
    defs    text[] := ARRAY[
        'enrollment.check_token(text, text)',
        $$CREATE FUNCTION enrollment.check_token(token text, cluster_id text DEFAULT NULL)
            RETURNS enrollment.token_check
            AS 'MODULE_PATHNAME', 'enrollment_check_token'
            LANGUAGE C STABLE$$,
        'enrollment.authenticate_node(text)',
        $$CREATE FUNCTION enrollment.authenticate_node(node_secret text)
            RETURNS SETOF enrollment.node_identity
            AS 'MODULE_PATHNAME', 'enrollment_authenticate_node'
            LANGUAGE C STABLE ROWS 1$$,
        'enrollment.verify_request(text, text, text, text, text, text, bytea, text)',
        $$CREATE FUNCTION enrollment.verify_request(
            method text, path text, key_id text, ts text, nonce text, signature text,
            body bytea DEFAULT ''::bytea, required_scope text DEFAULT NULL)
            RETURNS enrollment.request_verdict
            AS 'MODULE_PATHNAME', 'enrollment_verify_request'
            LANGUAGE C VOLATILE$$,
        'enrollment.verify_request(text, text, jsonb, bytea, text)',
        $$CREATE FUNCTION enrollment.verify_request(
            method text, path text, headers jsonb,
            body bytea DEFAULT ''::bytea, required_scope text DEFAULT NULL)
            RETURNS enrollment.request_verdict
            AS 'MODULE_PATHNAME', 'enrollment_verify_request_headers'
            LANGUAGE C VOLATILE$$];
BEGIN
    FOR i IN 1 .. array_length(defs, 1) BY 2 LOOP
        fn := defs[i];
        grants := '{}';
        FOR g IN
            SELECT a.grantee, a.is_grantable
              FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid = fn::pg_catalog.regprocedure
               AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
        LOOP
            grants := grants || pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', fn,
                CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                     ELSE pg_catalog.quote_ident(g.grantee::pg_catalog.regrole::text) END,
                CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        EXECUTE 'DROP FUNCTION ' || fn;
        EXECUTE defs[i + 1];
        EXECUTE 'REVOKE ALL ON FUNCTION ' || fn || ' FROM PUBLIC';
        FOREACH stmt IN ARRAY grants LOOP
            EXECUTE stmt;
        END LOOP;
    END LOOP;
END
$upgrade$;

COMMENT ON FUNCTION enrollment.check_token(text, text) IS
    'Check an enrollment token without using it; returns ok/error instead of raising';
COMMENT ON FUNCTION enrollment.authenticate_node(text) IS
    'The node a credential belongs to, or no row when the credential is unknown, wrong or the node was removed';
COMMENT ON FUNCTION enrollment.verify_request(text, text, text, text, text, text, bytea, text) IS
    'Authenticate an HMAC-SHA256 signed request; returns ok/error/http_status instead of raising';
COMMENT ON FUNCTION enrollment.verify_request(text, text, jsonb, bytea, text) IS
    'Authenticate a signed request given its headers as a jsonb object (names matched case-insensitively)';
