-- enrollment: machine credentials inside PostgreSQL
-- Install script; the Makefile copies it to enrollment--<version>.sql.

\echo Use "CREATE EXTENSION enrollment CASCADE" to load this file. \quit

--------------------------------------------------------------------------
-- Tables (private: nothing here is granted to PUBLIC)
--------------------------------------------------------------------------

-- Enrolled machines.  The credential is kept only as public id + digest.
CREATE TABLE enrollment.node_record (
    node_id           uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    tenant            text NOT NULL DEFAULT 'default',
    name              text NOT NULL CHECK (pg_catalog.char_length(name) BETWEEN 1 AND 128),
    role              text CHECK (pg_catalog.char_length(role) BETWEEN 1 AND 64),
    cluster_id        text CHECK (pg_catalog.char_length(cluster_id) BETWEEN 1 AND 128),
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'pending_approval', 'removed')),
    enrolled_by       uuid NOT NULL,          -- token_id; kept after the token is purged
    secret_prefix     text NOT NULL,
    secret_public_id  bigint NOT NULL UNIQUE,
    secret_hash       bytea NOT NULL CHECK (pg_catalog.octet_length(secret_hash) = 32),
    enrolled_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    reenrolled_at     timestamptz,
    enroll_count      integer NOT NULL DEFAULT 1 CHECK (enroll_count >= 1),
    last_seen_at      timestamptz,
    removed_at        timestamptz
);
CREATE INDEX node_record_enrolled_by_idx ON enrollment.node_record (enrolled_by);
CREATE INDEX node_record_tenant_enrolled_at_idx ON enrollment.node_record (tenant, enrolled_at);

-- Enrollment tokens.  status holds the last state written; the tokens view
-- also reports a token whose expires_at has passed as expired, so expiry
-- never waits for a background job.
CREATE TABLE enrollment.enrollment_token (
    token_id      uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    tenant        text NOT NULL DEFAULT 'default',
    public_id     bigint NOT NULL UNIQUE,
    prefix        text NOT NULL,
    token_hash    bytea NOT NULL CHECK (pg_catalog.octet_length(token_hash) = 32),
    kind          text NOT NULL CHECK (kind IN ('once', 'cluster', 'reusable')),
    label         text CHECK (pg_catalog.char_length(label) <= 128),
    status        text NOT NULL
                  CHECK (status IN ('pending', 'active', 'used', 'exhausted', 'expired', 'revoked')),
    use_count     integer NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    max_uses      integer CHECK (max_uses > 0),
    cluster_id    text CHECK (pg_catalog.char_length(cluster_id) BETWEEN 1 AND 128),
    node_id       uuid REFERENCES enrollment.node_record (node_id) ON DELETE CASCADE,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at    timestamptz,
    used_at       timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    revoked_by    text,
    CHECK (kind <> 'cluster' OR cluster_id IS NOT NULL),
    CHECK (kind = 'cluster' OR cluster_id IS NULL),
    CHECK (kind = 'once' OR node_id IS NULL),
    CHECK (kind <> 'once' OR max_uses = 1),
    CHECK (max_uses IS NULL OR use_count <= max_uses),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX enrollment_token_tenant_created_at_idx
    ON enrollment.enrollment_token (tenant, created_at);
CREATE INDEX enrollment_token_expires_at_idx
    ON enrollment.enrollment_token (expires_at)
    WHERE status IN ('pending', 'active');
-- the worker purges terminal tokens by the time they became terminal
CREATE INDEX enrollment_token_terminal_idx
    ON enrollment.enrollment_token ((CASE WHEN status = 'expired' THEN expires_at ELSE last_used_at END))
    WHERE status IN ('used', 'exhausted', 'expired');

-- API keys for HMAC-SHA256 signed requests.  The secret is stored only
-- sealed (AES-256-GCM) under the server key, which lives outside the
-- database; key_version names the server key version that sealed it.
CREATE TABLE enrollment.api_key (
    key_id         bigint PRIMARY KEY,        -- shown as 16 hex digits
    tenant         text NOT NULL DEFAULT 'default',
    label          text NOT NULL CHECK (pg_catalog.char_length(label) BETWEEN 1 AND 128),
    scopes         text[] NOT NULL,
    scope_mask     integer NOT NULL,
    secret_sealed  bytea NOT NULL CHECK (pg_catalog.octet_length(secret_sealed) = 60),
    key_version    integer NOT NULL CHECK (key_version >= 1),
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at     timestamptz,
    last_used_at   timestamptz,
    revoked_at     timestamptz,
    revoked_by     text
);
CREATE INDEX api_key_tenant_created_at_idx ON enrollment.api_key (tenant, created_at);

-- Append-only audit trail.  No secret ever goes into details.
CREATE TABLE enrollment.audit_event (
    event_id     bigserial PRIMARY KEY,
    tenant       text NOT NULL DEFAULT 'default',
    occurred_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    token_id     uuid,
    node_id      uuid,
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_event_token_idx ON enrollment.audit_event (token_id) WHERE token_id IS NOT NULL;
CREATE INDEX audit_event_occurred_at_idx ON enrollment.audit_event (occurred_at);

CREATE FUNCTION enrollment.audit_event_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    RAISE EXCEPTION 'audit_log_append_only'
        USING ERRCODE = '42501',
              DETAIL = pg_catalog.format('%s on enrollment.audit_event is not allowed.', TG_OP),
              HINT = 'The audit log only grows; events cannot be changed or removed.';
END
$$;
CREATE TRIGGER audit_event_no_update_delete
    BEFORE UPDATE OR DELETE ON enrollment.audit_event
    FOR EACH ROW EXECUTE FUNCTION enrollment.audit_event_immutable();
CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON enrollment.audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment.audit_event_immutable();

-- pg_dump keeps the rows of extension tables only when told to
SELECT pg_catalog.pg_extension_config_dump('enrollment.node_record', '');
SELECT pg_catalog.pg_extension_config_dump('enrollment.enrollment_token', '');
SELECT pg_catalog.pg_extension_config_dump('enrollment.audit_event', '');
SELECT pg_catalog.pg_extension_config_dump('enrollment.api_key', '');
SELECT pg_catalog.pg_extension_config_dump('enrollment.audit_event_event_id_seq', '');

REVOKE ALL ON enrollment.node_record, enrollment.enrollment_token,
              enrollment.audit_event, enrollment.api_key FROM PUBLIC;
REVOKE ALL ON SEQUENCE enrollment.audit_event_event_id_seq FROM PUBLIC;

--------------------------------------------------------------------------
-- Identity
--------------------------------------------------------------------------

CREATE FUNCTION enrollment.current_actor() RETURNS text
    AS 'MODULE_PATHNAME', 'enrollment_current_actor' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION enrollment.current_actor() IS
    'Identity recorded for changes: enrollment.actor if set, else the session user';

CREATE FUNCTION enrollment.current_tenant() RETURNS text
    AS 'MODULE_PATHNAME', 'enrollment_current_tenant' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION enrollment.current_tenant() IS
    'Tenant new objects belong to: the enrollment.tenant setting';

--------------------------------------------------------------------------
-- Enrollment tokens (C)
--------------------------------------------------------------------------

CREATE FUNCTION enrollment.create_token(
    kind         text     DEFAULT 'once',
    label        text     DEFAULT NULL,
    ttl          interval DEFAULT NULL,
    max_uses     integer  DEFAULT NULL,
    cluster_id   text     DEFAULT NULL,
    node_id      uuid     DEFAULT NULL,
    expires_days integer  DEFAULT NULL,
    OUT token_id   uuid,
    OUT token      text,
    OUT prefix     text,
    OUT kind       text,
    OUT expires_at timestamptz,
    OUT max_uses   integer,
    OUT cluster_id text,
    OUT node_id    uuid)
    AS 'MODULE_PATHNAME', 'enrollment_create_token'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.create_token(text, text, interval, integer, text, uuid, integer) IS
    'Create an enrollment token (once, cluster or reusable); the plaintext token is returned only here';

CREATE FUNCTION enrollment.enroll(
    token      text,
    node_name  text,
    cluster_id text DEFAULT NULL,
    node_role  text DEFAULT NULL,
    OUT node_id     uuid,
    OUT node_secret text,
    OUT status      text,
    OUT token_id    uuid,
    OUT reenrolled  boolean)
    AS 'MODULE_PATHNAME', 'enrollment_enroll'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.enroll(text, text, text, text) IS
    'Enroll a machine with a token: counts the use, creates (or re-enrolls) the node and returns its credential once';

-- Result rows of the per-request functions are named composite types: the
-- executor then takes their shape from the type cache instead of rebuilding
-- it from the function's OUT parameters on every call.
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

-- The per-request read paths (check_token, authenticate_node, verify_request)
-- run no SQL: they read their one row with a direct unique-index probe
-- (src/probe.c), which neither checks table privileges nor depends on the
-- caller's search_path, so they are not SECURITY DEFINER and pay no
-- per-call search_path switch.
CREATE FUNCTION enrollment.check_token(token text, cluster_id text DEFAULT NULL)
    RETURNS enrollment.token_check
    AS 'MODULE_PATHNAME', 'enrollment_check_token'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION enrollment.check_token(text, text) IS
    'Check an enrollment token without using it; returns ok/error instead of raising';

CREATE FUNCTION enrollment.authenticate_node(node_secret text)
    RETURNS SETOF enrollment.node_identity
    AS 'MODULE_PATHNAME', 'enrollment_authenticate_node'
    LANGUAGE C STABLE ROWS 1;
COMMENT ON FUNCTION enrollment.authenticate_node(text) IS
    'The node a credential belongs to, or no row when the credential is unknown, wrong or the node was removed';

--------------------------------------------------------------------------
-- API keys and signed requests (C)
--------------------------------------------------------------------------

CREATE FUNCTION enrollment.create_api_key(
    label        text,
    scopes       text[],
    expires_days integer DEFAULT NULL,
    OUT key_id      text,
    OUT label       text,
    OUT scopes      text[],
    OUT hmac_secret text,
    OUT expires_at  timestamptz)
    AS 'MODULE_PATHNAME', 'enrollment_create_api_key'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.create_api_key(text, text[], integer) IS
    'Create an API key; hmac_secret (64 hex digits) is returned only here and stored only encrypted';

CREATE FUNCTION enrollment.verify_request(
    method         text,
    path           text,
    key_id         text,
    ts             text,
    nonce          text,
    signature      text,
    body           bytea DEFAULT ''::bytea,
    required_scope text  DEFAULT NULL)
    RETURNS enrollment.request_verdict
    AS 'MODULE_PATHNAME', 'enrollment_verify_request'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION enrollment.verify_request(text, text, text, text, text, text, bytea, text) IS
    'Authenticate an HMAC-SHA256 signed request; returns ok/error/http_status instead of raising';

CREATE FUNCTION enrollment.verify_request(
    method         text,
    path           text,
    headers        jsonb,
    body           bytea DEFAULT ''::bytea,
    required_scope text  DEFAULT NULL)
    RETURNS enrollment.request_verdict
    AS 'MODULE_PATHNAME', 'enrollment_verify_request_headers'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION enrollment.verify_request(text, text, jsonb, bytea, text) IS
    'Authenticate a signed request given its headers as a jsonb object (names matched case-insensitively)';

CREATE FUNCTION enrollment.sign_request(
    method      text,
    path        text,
    key_id      text,
    hmac_secret text,
    body        bytea  DEFAULT ''::bytea,
    ts          bigint DEFAULT NULL,
    nonce       text   DEFAULT NULL)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'enrollment_sign_request'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION enrollment.sign_request(text, text, text, text, bytea, bigint, text) IS
    'Client-side helper: the four headers of a signed request (ts defaults to now, nonce to a random UUID)';

CREATE FUNCTION enrollment.rotate_server_key(OUT version integer, OUT resealed bigint)
    AS 'MODULE_PATHNAME', 'enrollment_rotate_server_key'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.rotate_server_key() IS
    'Add a server key version and re-seal every stored API key secret under it, online';

CREATE FUNCTION enrollment.key_last_used(key_id bigint) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'enrollment_key_last_used'
    LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION enrollment.key_last_used(bigint) IS
    'Latest accepted request of a key noted in shared memory and not yet written to its row';

CREATE FUNCTION enrollment.revoke_api_key(key_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    k enrollment.api_key%ROWTYPE;
    actor text := enrollment.current_actor();
BEGIN
    IF revoke_api_key.key_id IS NULL THEN
        RAISE EXCEPTION 'key_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF revoke_api_key.key_id OPERATOR(pg_catalog.!~) '^[0-9a-f]{16}$' THEN
        RAISE EXCEPTION 'invalid_key' USING ERRCODE = 'NR010',
            DETAIL = 'A key_id is 16 lowercase hex digits.';
    END IF;
    SELECT * INTO k FROM enrollment.api_key AS a
     WHERE a.key_id OPERATOR(pg_catalog.=)
           ('x' OPERATOR(pg_catalog.||) revoke_api_key.key_id)::bit(64)::bigint
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid_key' USING ERRCODE = 'NR010',
            DETAIL = pg_catalog.format('No API key has key_id %s.', revoke_api_key.key_id);
    END IF;
    IF k.revoked_at IS NOT NULL THEN
        RETURN false;
    END IF;
    UPDATE enrollment.api_key AS a
       SET revoked_at = pg_catalog.statement_timestamp(), revoked_by = actor
     WHERE a.key_id OPERATOR(pg_catalog.=) k.key_id;
    INSERT INTO enrollment.audit_event (tenant, actor, action, details)
    VALUES (k.tenant, actor, 'api_key_revoked',
            pg_catalog.jsonb_build_object('key_id', revoke_api_key.key_id, 'label', k.label));
    PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
        'event', 'api_key_revoked', 'tenant', k.tenant, 'key_id', revoke_api_key.key_id)::text);
    RETURN true;
END
$$;
COMMENT ON FUNCTION enrollment.revoke_api_key(text) IS
    'Revoke an API key permanently; the next request signed with it fails with invalid_key';

--------------------------------------------------------------------------
-- Management (cold paths, PL/pgSQL)
--------------------------------------------------------------------------

CREATE FUNCTION enrollment.revoke_token(token_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t enrollment.enrollment_token%ROWTYPE;
    actor text := enrollment.current_actor();
BEGIN
    IF revoke_token.token_id IS NULL THEN
        RAISE EXCEPTION 'token_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO t FROM enrollment.enrollment_token AS e
     WHERE e.token_id OPERATOR(pg_catalog.=) revoke_token.token_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid_token' USING ERRCODE = 'NR001',
            DETAIL = pg_catalog.format('No enrollment token has id %s.', revoke_token.token_id);
    END IF;
    IF t.status OPERATOR(pg_catalog.=) 'revoked' THEN
        RETURN false;                       -- already revoked: nothing to do
    END IF;
    IF t.status OPERATOR(pg_catalog.=) ANY (ARRAY['used', 'exhausted']) THEN
        RAISE EXCEPTION 'token_exhausted' USING ERRCODE = 'NR004',
            DETAIL = pg_catalog.format('Token %s%s is %s and can no longer be used, so there is nothing to revoke.',
                                       t.prefix, pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'), t.status);
    END IF;
    IF t.status OPERATOR(pg_catalog.=) 'expired'
       OR t.expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp() THEN
        RAISE EXCEPTION 'token_expired' USING ERRCODE = 'NR002',
            DETAIL = pg_catalog.format('Token %s%s expired at %s, so there is nothing to revoke.',
                                       t.prefix, pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'), t.expires_at);
    END IF;

    UPDATE enrollment.enrollment_token AS e
       SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = actor
     WHERE e.token_id OPERATOR(pg_catalog.=) t.token_id;
    INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, details)
    VALUES (t.tenant, actor, 'sensor_enrollment_token_revoked', t.token_id,
            pg_catalog.jsonb_build_object('kind', t.kind,
                'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'),
                'use_count', t.use_count));
    PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
        'event', 'revoked', 'tenant', t.tenant, 'token_id', t.token_id,
        'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'))::text);
    RETURN true;
END
$$;
COMMENT ON FUNCTION enrollment.revoke_token(uuid) IS
    'Revoke an enrollment token permanently; true if revoked now, false if it already was. Enrolled nodes are not affected';

--------------------------------------------------------------------------
-- Monitoring (needs shared_preload_libraries)
--------------------------------------------------------------------------

CREATE FUNCTION enrollment.stats(OUT area text, OUT counter text, OUT value bigint, OUT at timestamptz)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'enrollment_stats'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION enrollment.stats() IS
    'Counters since server start or the last stats_reset(): enrollments and verifications by outcome, nonces, worker';

CREATE FUNCTION enrollment.stats_reset() RETURNS void
    AS 'MODULE_PATHNAME', 'enrollment_stats_reset'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION enrollment.stats_reset() IS 'Zero the counters of enrollment.stats';

CREATE VIEW enrollment.stats AS SELECT * FROM enrollment.stats();
COMMENT ON VIEW enrollment.stats IS
    'Counters since server start (or stats_reset): enroll and verify outcomes, nonces held and capacity, worker runs';
COMMENT ON COLUMN enrollment.stats.area IS 'enroll, verify, nonces, worker or stats';
COMMENT ON COLUMN enrollment.stats.counter IS 'Outcome (ok or the error key) or counter name';
COMMENT ON COLUMN enrollment.stats.at IS 'worker rows: end of the last run; stats row: time of the last reset';

--------------------------------------------------------------------------
-- Views (the listing interface)
--------------------------------------------------------------------------

CREATE VIEW enrollment.tokens AS
SELECT t.token_id,
       t.tenant,
       t.kind,
       t.label,
       t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0') AS prefix,
       CASE WHEN t.status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active'])
                 AND t.expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp()
            THEN 'expired' ELSE t.status END AS status,
       t.use_count,
       t.max_uses,
       t.cluster_id,
       t.node_id,
       t.created_by,
       t.created_at,
       t.expires_at,
       t.used_at,
       t.last_used_at,
       t.revoked_at
  FROM enrollment.enrollment_token AS t;
COMMENT ON VIEW enrollment.tokens IS 'Enrollment tokens, without secrets or digests';
COMMENT ON COLUMN enrollment.tokens.prefix IS 'Public part of the token (prefix and public id), safe to log and match';
COMMENT ON COLUMN enrollment.tokens.status IS 'pending/active, used, exhausted, expired or revoked, as of now';
COMMENT ON COLUMN enrollment.tokens.use_count IS 'Successful enrollments through this token';
COMMENT ON COLUMN enrollment.tokens.max_uses IS 'Cap on enrollments (max_nodes for cluster tokens); NULL is unlimited';
COMMENT ON COLUMN enrollment.tokens.node_id IS 'For a re-enrollment token: the node it is bound to';
COMMENT ON COLUMN enrollment.tokens.expires_at IS 'End of validity; NULL (reusable only) never expires';
COMMENT ON COLUMN enrollment.tokens.used_at IS 'First successful enrollment';
COMMENT ON COLUMN enrollment.tokens.last_used_at IS 'Latest successful enrollment';

CREATE VIEW enrollment.nodes AS
SELECT n.node_id,
       n.tenant,
       n.name,
       n.role,
       n.cluster_id,
       n.status,
       n.enrolled_by AS token_id,
       n.secret_prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(n.secret_public_id), 16, '0')
           AS credential_prefix,
       n.enrolled_at,
       n.reenrolled_at,
       n.enroll_count,
       n.last_seen_at
  FROM enrollment.node_record AS n;
COMMENT ON VIEW enrollment.nodes IS 'Enrolled nodes, without credentials';
COMMENT ON COLUMN enrollment.nodes.token_id IS 'Token the node was first enrolled with';
COMMENT ON COLUMN enrollment.nodes.credential_prefix IS 'Public part of the node''s current credential';
COMMENT ON COLUMN enrollment.nodes.enroll_count IS '1 plus the number of re-enrollments';

CREATE VIEW enrollment.audit_log AS
SELECT a.event_id, a.tenant, a.occurred_at, a.actor, a.action, a.token_id, a.node_id, a.details
  FROM enrollment.audit_event AS a;
COMMENT ON VIEW enrollment.audit_log IS 'Append-only record of every change: who, what, when, which token or node';

CREATE VIEW enrollment.api_keys AS
SELECT pg_catalog.lpad(pg_catalog.to_hex(k.key_id), 16, '0') AS key_id,
       k.tenant,
       k.label,
       k.scopes,
       k.created_by,
       k.expires_at,
       GREATEST(k.last_used_at, enrollment.key_last_used(k.key_id)) AS last_used_at,
       (k.revoked_at IS NOT NULL) AS revoked,
       k.created_at
  FROM enrollment.api_key AS k
 WHERE k.revoked_at IS NULL
   AND (k.expires_at IS NULL OR k.expires_at OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp());
COMMENT ON VIEW enrollment.api_keys IS 'API keys that are neither revoked nor expired, without secrets';
COMMENT ON COLUMN enrollment.api_keys.key_id IS 'The value of the key-id header of signed requests';
COMMENT ON COLUMN enrollment.api_keys.last_used_at IS 'Latest accepted signed request (includes stamps not yet written to the row)';
COMMENT ON COLUMN enrollment.api_keys.revoked IS 'Always false: revoked keys are not listed';

--------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; see README "Privileges" for the grants
--------------------------------------------------------------------------

REVOKE ALL ON enrollment.tokens, enrollment.nodes, enrollment.audit_log, enrollment.api_keys,
              enrollment.stats FROM PUBLIC;
REVOKE ALL ON FUNCTION
    enrollment.create_token(text, text, interval, integer, text, uuid, integer),
    enrollment.enroll(text, text, text, text),
    enrollment.check_token(text, text),
    enrollment.authenticate_node(text),
    enrollment.revoke_token(uuid),
    enrollment.audit_event_immutable(),
    enrollment.create_api_key(text, text[], integer),
    enrollment.verify_request(text, text, text, text, text, text, bytea, text),
    enrollment.verify_request(text, text, jsonb, bytea, text),
    enrollment.rotate_server_key(),
    enrollment.stats(),
    enrollment.stats_reset(),
    enrollment.revoke_api_key(text)
  FROM PUBLIC;
