-- enrollment: machine credentials inside PostgreSQL
-- Install script; the Makefile copies it to enrollment--<version>.sql.

\echo Use "CREATE EXTENSION enrollment CASCADE" to load this file. \quit

--------------------------------------------------------------------------
-- Tables (private: nothing here is granted to PUBLIC)
--------------------------------------------------------------------------

-- Keys of tokens and nodes are time-ordered (version 7) UUIDs: the rows an
-- enrollment writes then land near each other in every index on those keys
-- instead of on random pages (src/uuid_v7.c).
CREATE FUNCTION enrollment.uuid_v7() RETURNS uuid
    AS 'MODULE_PATHNAME', 'enrollment_uuid_v7' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION enrollment.uuid_v7() IS
    'A time-ordered UUID (version 7): 48 bits of Unix milliseconds, then random bits';

-- Enrolled machines.  The credential is kept only as public id + digest.
-- Rules (constraint node_record_rules, checked in C: see below): name has 1
-- to 128 characters, role 1 to 64, cluster_id 1 to 128; status is active,
-- pending_approval or removed; secret_hash is a 32-byte digest;
-- enroll_count >= 1; node_group and os have 1 to 64 characters; private_ip
-- is one host's address (/32 or /128).
CREATE TABLE enrollment.node_record (
    node_id           uuid PRIMARY KEY DEFAULT enrollment.uuid_v7(),
    tenant            text NOT NULL DEFAULT 'default',
    name              text NOT NULL,
    role              text,
    cluster_id        text,
    status            text NOT NULL DEFAULT 'active',
    enrolled_by       uuid NOT NULL,          -- token_id; kept after the token is purged
    secret_prefix     text NOT NULL,
    secret_public_id  bigint NOT NULL UNIQUE,
    secret_hash       bytea NOT NULL,
    enrolled_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    reenrolled_at     timestamptz,
    enroll_count      integer NOT NULL DEFAULT 1,
    last_seen_at      timestamptz,
    removed_at        timestamptz,
    node_group        text NOT NULL DEFAULT 'default',     -- 0.7.0: see "Where a node is placed"
    os                text,
    private_ip        inet
);
-- (enrolled_by, enrolled_at) since 0.7.0: a token's enrollments of the last
-- hour are one range of it (src/rate_limit.c)
CREATE INDEX node_record_enrolled_by_idx ON enrollment.node_record (enrolled_by, enrolled_at);
CREATE INDEX node_record_tenant_enrolled_at_idx ON enrollment.node_record (tenant, enrolled_at);

-- Enrollment tokens.  status holds the last state written; the tokens view
-- also reports a token whose expires_at has passed as expired, so expiry
-- never waits for a background job.
-- Rules (constraint enrollment_token_rules, checked in C: see below): kind
-- is once, cluster or reusable; status is pending, active, used, exhausted,
-- expired or revoked; token_hash is a 32-byte digest; label has at most 128
-- characters and cluster_id 1 to 128; use_count >= 0, max_uses > 0 and
-- use_count <= max_uses; a cluster token, and only a cluster token, has a
-- cluster_id; only a once token is bound to a node; a once token has
-- max_uses = 1; revoked_at is set exactly when status is revoked.
CREATE TABLE enrollment.enrollment_token (
    token_id      uuid PRIMARY KEY DEFAULT enrollment.uuid_v7(),
    tenant        text NOT NULL DEFAULT 'default',
    public_id     bigint NOT NULL UNIQUE,
    prefix        text NOT NULL,
    token_hash    bytea NOT NULL,
    kind          text NOT NULL,
    label         text,
    status        text NOT NULL,
    use_count     integer NOT NULL DEFAULT 0,
    max_uses      integer,
    cluster_id    text,
    node_id       uuid REFERENCES enrollment.node_record (node_id) ON DELETE CASCADE,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at    timestamptz,
    used_at       timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    revoked_by    text,
    retention_from timestamptz              -- see below (0.5.0)
) WITH (fillfactor = 75);
CREATE INDEX enrollment_token_tenant_created_at_idx
    ON enrollment.enrollment_token (tenant, created_at);
-- retention_from is the time enrollment.token_retention counts from once the
-- token is done: its expiry, set when it is created, or the time of the use
-- that ended it, when that expiry is further away than token_retention; NULL
-- for a revoked token (kept) and one that never expires and is not used up.
-- The worker finds tokens to expire and to purge by this one index.  No
-- index depends on status, use_count or the use times, and a quarter of each
-- page is left free, so counting a use is a HOT update: it adds no index
-- entry (bench/README.md).
CREATE INDEX enrollment_token_retention_from_idx
    ON enrollment.enrollment_token (retention_from);

-- The rules of the two tables every enrollment writes are one CHECK each,
-- calling a C function with the whole row: PostgreSQL parses and plans the
-- stored text of every CHECK constraint again on each execution of an
-- INSERT or UPDATE, which for separate constraints cost more than the rest
-- of an enrollment together (src/row_rules.c, bench/README.md).
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
    details      jsonb NOT NULL DEFAULT '{}',
    object_type  text,                    -- api_token, member, node, ... (0.2.0)
    object_id    text
);
CREATE INDEX audit_event_token_idx ON enrollment.audit_event (token_id) WHERE token_id IS NOT NULL;
CREATE INDEX audit_event_occurred_at_idx ON enrollment.audit_event (occurred_at);

CREATE FUNCTION enrollment.audit_event_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    -- enrollment.purge_audit (retention) is the one exception
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE'
       AND pg_catalog.current_setting('enrollment_internal.audit_retention', true) OPERATOR(pg_catalog.=) 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log_append_only'
        USING ERRCODE = '42501',
              DETAIL = pg_catalog.format('%s on %s is not allowed.', TG_OP, TG_TABLE_NAME),
              HINT = 'The audit log only grows; events cannot be changed, and leave it only through enrollment.purge_audit.';
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

-- enroll's result row (a named type, like the per-request functions' below:
-- the executor takes its shape from the type cache)
CREATE TYPE enrollment.enrolled_node AS (
    node_id     uuid,
    node_secret text,
    status      text,
    token_id    uuid,
    reenrolled  boolean,
    node_group  text,           -- 0.7.0
    private_ip  inet);

CREATE FUNCTION enrollment.enroll(
    token      text,
    node_name  text,
    cluster_id text DEFAULT NULL,
    node_role  text DEFAULT NULL,
    node_group text DEFAULT NULL,
    node_os    text DEFAULT NULL)
    RETURNS enrollment.enrolled_node
    AS 'MODULE_PATHNAME', 'enrollment_enroll'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.enroll(text, text, text, text, text, text) IS
    'Enroll a machine with a token: counts the use, creates (or re-enrolls) the node, places it (group, address, OS) and returns its credential once';

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
    enrolled_at timestamptz,
    node_group  text,           -- 0.7.0
    os          text,
    private_ip  inet);

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
    'The node a credential belongs to, or no row when the credential is unknown or wrong, or the node is not active (removed, or waiting for approval)';

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
    PERFORM enrollment.require_role('admin', 'revoke API keys');
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
       AND a.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
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
    INSERT INTO enrollment.audit_event (tenant, actor, action, object_type, object_id, details)
    VALUES (k.tenant, actor, 'api_key_revoked', 'api_key', revoke_api_key.key_id,
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
    PERFORM enrollment.require_role('operator', 'revoke enrollment tokens');
    IF revoke_token.token_id IS NULL THEN
        RAISE EXCEPTION 'token_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO t FROM enrollment.enrollment_token AS e
     WHERE e.token_id OPERATOR(pg_catalog.=) revoke_token.token_id
       AND e.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant() FOR UPDATE;
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
       SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = actor,
           retention_from = NULL
     WHERE e.token_id OPERATOR(pg_catalog.=) t.token_id;
    INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, object_type, object_id, details)
    VALUES (t.tenant, actor, 'sensor_enrollment_token_revoked', t.token_id, 'enrollment_token', t.token_id::text,
            pg_catalog.jsonb_build_object('kind', t.kind,
                'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'),
                'use_count', t.use_count OPERATOR(pg_catalog.+)
                    (SELECT pg_catalog.count(*)::integer FROM enrollment.token_use AS u
                      WHERE u.token_id OPERATOR(pg_catalog.=) t.token_id)));
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
-- Tenants, members and roles (0.2.0)
--------------------------------------------------------------------------

-- Who may do what in a tenant.  Roles, strongest first: owner, admin,
-- operator, analyst, viewer.  A DBA (superuser or member of enrollment_admin,
-- with no enrollment.actor set) counts as owner of every tenant.
CREATE TABLE enrollment.member (
    tenant    text NOT NULL,
    identity  text NOT NULL CHECK (pg_catalog.char_length(identity) BETWEEN 1 AND 256),
    role      text NOT NULL CHECK (role IN ('owner', 'admin', 'operator', 'analyst', 'viewer')),
    added_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    added_by  text NOT NULL,
    PRIMARY KEY (tenant, identity)
);

-- Per-tenant settings; a tenant without a row uses the defaults.
-- node_limit (0.7.0): the license node limit, the most nodes that are not
-- removed the tenant may have; NULL: none (src/node_limit.c).
-- node_approval (0.7.0): 'manual' if new nodes wait for approval unless an
-- auto-approve rule admits them; NULL: they are active at once
-- (src/approval.c).
-- ip_pool (0.7.0): the network new nodes get their private address from;
-- NULL: none (src/placement.c).
CREATE TABLE enrollment.tenant_setting (
    tenant            text PRIMARY KEY,
    api_token_prefix  text NOT NULL DEFAULT 'api_'
                      CHECK (api_token_prefix OPERATOR(pg_catalog.~) '^[a-z][a-z0-9-]{0,14}_$'),
    node_limit        integer CHECK (node_limit OPERATOR(pg_catalog.>=) 0),
    node_approval     text CHECK (node_approval OPERATOR(pg_catalog.=) 'manual'),
    ip_pool           cidr CHECK (pg_catalog.masklen(ip_pool) OPERATOR(pg_catalog.<=)
                                  CASE pg_catalog.family(ip_pool) WHEN 4 THEN 30 ELSE 126 END)
);

-- Bearer API tokens: public id + SHA-256 digest, owned by a member.
-- permissions NULL (perm_mask -1) means whatever the owner's role allows.
CREATE TABLE enrollment.api_token (
    token_id     uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    tenant       text NOT NULL,
    public_id    bigint NOT NULL UNIQUE,
    prefix       text NOT NULL,
    token_hash   bytea NOT NULL CHECK (pg_catalog.octet_length(token_hash) = 32),
    label        text NOT NULL CHECK (pg_catalog.char_length(label) BETWEEN 1 AND 128),
    permissions  text[],
    perm_mask    integer NOT NULL,
    owner        text NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    revoked_at   timestamptz,
    revoked_by   text,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX api_token_tenant_owner_idx ON enrollment.api_token (tenant, owner);

-- The hash chain over the audit log.  Events are sealed in the order they
-- become visible, shortly after they commit (by the worker, or by
-- enrollment.seal_audit()), so that enrollments never wait on one another
-- for the chain: hash = sha256(prev_hash || canonical text of the event).
CREATE TABLE enrollment.audit_chain (
    seq        bigint PRIMARY KEY,
    event_id   bigint NOT NULL UNIQUE,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL,
    sealed_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TRIGGER audit_chain_no_update_delete
    BEFORE UPDATE OR DELETE ON enrollment.audit_chain
    FOR EACH ROW EXECUTE FUNCTION enrollment.audit_event_immutable();
CREATE TRIGGER audit_chain_no_truncate
    BEFORE TRUNCATE ON enrollment.audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment.audit_event_immutable();

SELECT pg_catalog.pg_extension_config_dump('enrollment.member', '');
SELECT pg_catalog.pg_extension_config_dump('enrollment.tenant_setting', '');
SELECT pg_catalog.pg_extension_config_dump('enrollment.api_token', '');
SELECT pg_catalog.pg_extension_config_dump('enrollment.audit_chain', '');
REVOKE ALL ON enrollment.member, enrollment.tenant_setting, enrollment.api_token,
              enrollment.audit_chain FROM PUBLIC;

CREATE FUNCTION enrollment.current_member_role() RETURNS text
    AS 'MODULE_PATHNAME', 'enrollment_current_member_role'
    LANGUAGE C STABLE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.current_member_role() IS
    'Role of the current actor in the current tenant (owner for a DBA in psql); NULL when not a member';

CREATE FUNCTION enrollment.require_role(min_role text, action text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'enrollment_require_role'
    LANGUAGE C STABLE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.require_role(text, text) IS
    'true if the current actor holds at least min_role in the current tenant; raises permission_denied otherwise';

CREATE FUNCTION enrollment.require_dba(action text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'enrollment_require_dba'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION enrollment.require_dba(text) IS
    'true if the caller is a DBA (superuser or enrollment_admin, no actor set); raises permission_denied otherwise';
REVOKE ALL ON FUNCTION enrollment.require_dba(text) FROM PUBLIC;

CREATE FUNCTION enrollment.may_read_audit() RETURNS boolean
    AS 'MODULE_PATHNAME', 'enrollment_may_read_audit'
    LANGUAGE C STABLE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.may_read_audit() IS
    'true if the caller may read the audit log: admin and above, or a request verified for audit:read in this transaction';

CREATE FUNCTION enrollment.role_permissions(role text) RETURNS text[]
    AS 'MODULE_PATHNAME', 'enrollment_role_permissions'
    LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION enrollment.role_permissions(text) IS
    'The API token permissions a role allows';

-- Record an audit event (internal helper of the management functions)
CREATE FUNCTION enrollment.audit(action text, object_type text, object_id text, details jsonb,
                                 token_id uuid DEFAULT NULL, node_id uuid DEFAULT NULL)
RETURNS void LANGUAGE sql VOLATILE SET search_path = '' AS $$
    INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, node_id, details,
                                        object_type, object_id)
    VALUES (enrollment.current_tenant(), enrollment.current_actor(), action, token_id, node_id,
            details, object_type, object_id)
$$;

CREATE FUNCTION enrollment.add_member(identity text, role text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    PERFORM enrollment.require_role('admin', 'add members');
    IF identity IS NULL OR role IS NULL THEN
        RAISE EXCEPTION 'identity and role must not be null' USING ERRCODE = '22004';
    END IF;
    IF role OPERATOR(pg_catalog.=) 'owner' THEN
        PERFORM enrollment.require_role('owner', 'make owners');
    END IF;
    INSERT INTO enrollment.member (tenant, identity, role, added_by)
    VALUES (enrollment.current_tenant(), identity, role, enrollment.current_actor());
    PERFORM enrollment.audit('member_added', 'member', identity, pg_catalog.jsonb_build_object('role', role));
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'member_exists' USING ERRCODE = '23505',
            DETAIL = pg_catalog.format('%s is already a member of tenant %s.', identity, enrollment.current_tenant()),
            HINT = 'Use enrollment.set_member_role to change the role.';
    WHEN check_violation THEN
        RAISE EXCEPTION 'invalid role or identity' USING ERRCODE = '22023',
            DETAIL = 'Roles are owner, admin, operator, analyst and viewer; an identity has 1 to 256 characters.';
END
$$;
COMMENT ON FUNCTION enrollment.add_member(text, text) IS
    'Add a member to the current tenant with a role (admin and above; owner to add an owner)';

CREATE FUNCTION enrollment.set_member_role(identity text, role text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    old text;
BEGIN
    PERFORM enrollment.require_role('admin', 'change member roles');
    IF role IS NULL OR role OPERATOR(pg_catalog.<>) ALL (ARRAY['owner', 'admin', 'operator', 'analyst', 'viewer']) THEN
        RAISE EXCEPTION 'invalid role' USING ERRCODE = '22023',
            DETAIL = 'Roles are owner, admin, operator, analyst and viewer.';
    END IF;
    SELECT m.role INTO old FROM enrollment.member AS m
     WHERE m.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
       AND m.identity OPERATOR(pg_catalog.=) set_member_role.identity FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'member_not_found' USING ERRCODE = 'NR020',
            DETAIL = pg_catalog.format('%s is not a member of tenant %s.', identity, enrollment.current_tenant());
    END IF;
    IF 'owner' OPERATOR(pg_catalog.=) ANY (ARRAY[old, role]) THEN
        PERFORM enrollment.require_role('owner', 'grant or take the owner role');
    END IF;
    UPDATE enrollment.member AS m SET role = set_member_role.role
     WHERE m.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
       AND m.identity OPERATOR(pg_catalog.=) set_member_role.identity;
    PERFORM enrollment.audit('member_role_changed', 'member', identity,
                             pg_catalog.jsonb_build_object('from', old, 'to', role));
END
$$;
COMMENT ON FUNCTION enrollment.set_member_role(text, text) IS
    'Change a member''s role; API tokens they own narrow or widen with it at once';

-- Removing a member revokes every enrollment token and API token they
-- created and removes the nodes enrolled through their tokens (seed 001),
-- in one transaction, each change audited.
CREATE FUNCTION enrollment.remove_member(identity text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    cur_tenant text := enrollment.current_tenant();
    cur_actor text := enrollment.current_actor();
    old text;
    t record;
    ntokens bigint := 0;
    nnodes bigint := 0;
    napi bigint := 0;
BEGIN
    PERFORM enrollment.require_role('admin', 'remove members');
    SELECT m.role INTO old FROM enrollment.member AS m
     WHERE m.tenant OPERATOR(pg_catalog.=) cur_tenant
       AND m.identity OPERATOR(pg_catalog.=) remove_member.identity FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'member_not_found' USING ERRCODE = 'NR020',
            DETAIL = pg_catalog.format('%s is not a member of tenant %s.', identity, cur_tenant);
    END IF;
    IF old OPERATOR(pg_catalog.=) 'owner' THEN
        PERFORM enrollment.require_role('owner', 'remove an owner');
    END IF;

    -- the member's usable tokens and the re-enrollment tokens of the nodes
    -- about to go, locked first and in the order of their ids, as
    -- remove_node and revoke_bound_tokens lock tokens (0.7.0)
    PERFORM FROM enrollment.enrollment_token AS e
     WHERE e.tenant OPERATOR(pg_catalog.=) cur_tenant
       AND ((e.created_by OPERATOR(pg_catalog.=) remove_member.identity
             AND e.status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active']))
            OR e.node_id OPERATOR(pg_catalog.=) ANY (ARRAY(
                SELECT n.node_id FROM enrollment.node_record AS n
                  JOIN enrollment.enrollment_token AS x ON x.token_id OPERATOR(pg_catalog.=) n.enrolled_by
                 WHERE n.tenant OPERATOR(pg_catalog.=) cur_tenant
                   AND x.created_by OPERATOR(pg_catalog.=) remove_member.identity
                   AND n.status OPERATOR(pg_catalog.<>) 'removed')))
     ORDER BY e.token_id
       FOR UPDATE;

    FOR t IN
        UPDATE enrollment.enrollment_token AS e
           SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = cur_actor,
               retention_from = NULL
         WHERE e.tenant OPERATOR(pg_catalog.=) cur_tenant
           AND e.created_by OPERATOR(pg_catalog.=) remove_member.identity
           AND e.status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active'])
        RETURNING e.token_id, e.prefix, e.public_id
    LOOP
        PERFORM enrollment.audit('sensor_enrollment_token_revoked', 'enrollment_token', t.token_id::text,
            pg_catalog.jsonb_build_object('reason', 'member_removed', 'member', identity,
                'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0')),
            t.token_id);
        ntokens := ntokens OPERATOR(pg_catalog.+) 1;
    END LOOP;

    -- the nodes' re-enrollment tokens before the nodes (0.7.0: see revoke_bound_tokens)
    PERFORM enrollment.revoke_bound_tokens(ARRAY(
        SELECT n.node_id FROM enrollment.node_record AS n
          JOIN enrollment.enrollment_token AS e ON e.token_id OPERATOR(pg_catalog.=) n.enrolled_by
         WHERE n.tenant OPERATOR(pg_catalog.=) cur_tenant
           AND e.created_by OPERATOR(pg_catalog.=) remove_member.identity
           AND n.status OPERATOR(pg_catalog.<>) 'removed'));

    FOR t IN
        UPDATE enrollment.node_record AS n
           SET status = 'removed', removed_at = pg_catalog.statement_timestamp()
          FROM enrollment.enrollment_token AS e
         WHERE n.tenant OPERATOR(pg_catalog.=) cur_tenant
           AND e.token_id OPERATOR(pg_catalog.=) n.enrolled_by
           AND e.created_by OPERATOR(pg_catalog.=) remove_member.identity
           AND n.status OPERATOR(pg_catalog.<>) 'removed'
        RETURNING n.node_id, n.name
    LOOP
        PERFORM enrollment.audit('sensor_removed', 'node', t.node_id::text,
            pg_catalog.jsonb_build_object('reason', 'member_removed', 'member', identity, 'name', t.name),
            NULL, t.node_id);
        nnodes := nnodes OPERATOR(pg_catalog.+) 1;
    END LOOP;

    FOR t IN
        UPDATE enrollment.api_token AS a
           SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = cur_actor
         WHERE a.tenant OPERATOR(pg_catalog.=) cur_tenant
           AND a.owner OPERATOR(pg_catalog.=) remove_member.identity
           AND a.status OPERATOR(pg_catalog.=) 'active'
        RETURNING a.token_id
    LOOP
        PERFORM enrollment.audit('api_token_revoked', 'api_token', t.token_id::text,
            pg_catalog.jsonb_build_object('reason', 'member_removed', 'member', identity));
        napi := napi OPERATOR(pg_catalog.+) 1;
    END LOOP;

    DELETE FROM enrollment.member AS m
     WHERE m.tenant OPERATOR(pg_catalog.=) cur_tenant
       AND m.identity OPERATOR(pg_catalog.=) remove_member.identity;
    PERFORM enrollment.audit('member_removed', 'member', identity,
        pg_catalog.jsonb_build_object('role', old, 'tokens_revoked', ntokens,
                                      'nodes_removed', nnodes, 'api_tokens_revoked', napi));
    RETURN pg_catalog.jsonb_build_object('tokens_revoked', ntokens, 'nodes_removed', nnodes,
                                         'api_tokens_revoked', napi);
END
$$;
COMMENT ON FUNCTION enrollment.remove_member(text) IS
    'Remove a member: revokes their enrollment and API tokens and removes the nodes enrolled through their tokens';

CREATE FUNCTION enrollment.create_self_enrollment_token(
    ttl interval DEFAULT '15 minutes',
    OUT token_id   uuid,
    OUT token      text,
    OUT prefix     text,
    OUT kind       text,
    OUT expires_at timestamptz,
    OUT max_uses   integer,
    OUT cluster_id text,
    OUT node_id    uuid)
    AS 'MODULE_PATHNAME', 'enrollment_create_self_enrollment_token'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.create_self_enrollment_token(interval) IS
    'Any member: a once token for one''s own machine, valid at most an hour, created by (bound to) the caller';

--------------------------------------------------------------------------
-- Bearer API tokens (seed 002)
--------------------------------------------------------------------------

CREATE TYPE enrollment.api_token_verdict AS (
    ok          boolean,
    error       text,
    http_status integer,
    token_id    uuid,
    owner       text,
    permissions text[]);

CREATE FUNCTION enrollment.create_api_token(
    label       text,
    permissions text[] DEFAULT NULL,
    OUT token_id    uuid,
    OUT token       text,
    OUT prefix      text,
    OUT permissions text[])
    AS 'MODULE_PATHNAME', 'enrollment_create_api_token'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.create_api_token(text, text[]) IS
    'Create a bearer API token owned by the caller (operator and above); the token is returned only here';

CREATE FUNCTION enrollment.verify_api_token(token text, required_permission text DEFAULT NULL)
    RETURNS enrollment.api_token_verdict
    AS 'MODULE_PATHNAME', 'enrollment_verify_api_token'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION enrollment.verify_api_token(text, text) IS
    'Authenticate a bearer API token; permissions are the token''s own within its owner''s current role';

CREATE FUNCTION enrollment.set_api_token_prefix(prefix text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    PERFORM enrollment.require_role('admin', 'set the API token prefix');
    INSERT INTO enrollment.tenant_setting AS s (tenant, api_token_prefix)
    VALUES (enrollment.current_tenant(), prefix)
    ON CONFLICT (tenant) DO UPDATE SET api_token_prefix = excluded.api_token_prefix;
    PERFORM enrollment.audit('api_token_prefix_set', 'tenant', enrollment.current_tenant(),
                             pg_catalog.jsonb_build_object('prefix', prefix));
EXCEPTION
    WHEN check_violation OR not_null_violation THEN
        RAISE EXCEPTION 'invalid prefix' USING ERRCODE = '22023',
            DETAIL = 'A prefix is 2 to 16 characters: a lowercase letter, then lowercase letters, digits or ''-'', ending in ''_''.';
END
$$;
COMMENT ON FUNCTION enrollment.set_api_token_prefix(text) IS
    'Prefix of the tenant''s new API tokens, e.g. tc-apiv1_ (admin and above)';

-- The current tenant's license node limit (0.7.0): a DBA's call, since the
-- license is not the tenant's to raise.  NULL lifts it.  A limit below the
-- nodes the tenant has removes none; it stops new enrollments until enough
-- are removed.  Returns the nodes the tenant has now (not removed).  It
-- holds up every enrollment of the database while it runs (src/node_limit.c).
-- set_node_limit's count: drops the tenant's kept count and the changes
-- appended to it, and counts its nodes that are not removed, both under the
-- newest snapshot (src/node_limit.c).
CREATE FUNCTION enrollment.recount_tenant_nodes(tenant text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'enrollment_recount_tenant_nodes' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION enrollment.recount_tenant_nodes(text) IS
    'Drops a tenant''s kept node count and counts its nodes not removed, as committed now (internal: set_node_limit)';
REVOKE ALL ON FUNCTION enrollment.recount_tenant_nodes(text) FROM PUBLIC;

CREATE FUNCTION enrollment.set_node_limit(node_limit integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t text := enrollment.current_tenant();
    n bigint;
BEGIN
    PERFORM enrollment.require_dba('set the license node limit');
    IF node_limit OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'invalid node limit' USING ERRCODE = '22023',
            DETAIL = 'A node limit is 0 or more, or NULL for none.';
    END IF;
    -- wait for the enrollments that asked for the limit before this one
    -- (they hold ROW EXCLUSIVE), and make the next ones ask after its commit
    LOCK TABLE enrollment.node_record IN SHARE MODE;
    INSERT INTO enrollment.tenant_setting AS s (tenant, node_limit)
    VALUES (t, set_node_limit.node_limit)
    ON CONFLICT (tenant) DO UPDATE SET node_limit = excluded.node_limit;
    -- its nodes as committed now, whatever the isolation level; none is
    -- being written (the lock above), so the count kept from here is exact
    -- (what was kept before, and changes a removal left, are dropped first)
    n := enrollment.recount_tenant_nodes(t);
    IF set_node_limit.node_limit IS NOT NULL THEN
        INSERT INTO enrollment.tenant_node_count AS c (tenant, nodes) VALUES (t, n)
        ON CONFLICT (tenant) DO UPDATE SET nodes = excluded.nodes;
    END IF;
    PERFORM enrollment.audit('node_limit_set', 'tenant', t,
                             pg_catalog.jsonb_build_object('node_limit', set_node_limit.node_limit, 'nodes', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION enrollment.set_node_limit(integer) IS
    'License node limit of the current tenant (NULL: none); returns its nodes not removed (DBA only)';
REVOKE ALL ON FUNCTION enrollment.set_node_limit(integer) FROM PUBLIC;

-- The API token a management call acts on, locked, if the caller may
-- manage it: admins and owners any of the tenant's, operators their own.
CREATE FUNCTION enrollment.api_token_for_management(token_id uuid, action text)
RETURNS enrollment.api_token LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
    t enrollment.api_token%ROWTYPE;
BEGIN
    PERFORM enrollment.require_role('operator', action);
    SELECT * INTO t FROM enrollment.api_token AS a
     WHERE a.token_id OPERATOR(pg_catalog.=) api_token_for_management.token_id
       AND a.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
       FOR UPDATE;
    IF NOT FOUND OR (t.owner OPERATOR(pg_catalog.<>) enrollment.current_actor()
                     AND enrollment.current_member_role() OPERATOR(pg_catalog.<>) ALL (ARRAY['owner', 'admin'])) THEN
        RAISE EXCEPTION 'invalid_token' USING ERRCODE = 'NR001',
            DETAIL = pg_catalog.format('No API token %s that you may manage in tenant %s.',
                                       api_token_for_management.token_id, enrollment.current_tenant());
    END IF;
    RETURN t;
END
$$;

CREATE FUNCTION enrollment.revoke_api_token(token_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t enrollment.api_token%ROWTYPE := enrollment.api_token_for_management(token_id, 'revoke API tokens');
BEGIN
    IF t.status OPERATOR(pg_catalog.=) 'revoked' THEN
        RETURN false;
    END IF;
    UPDATE enrollment.api_token AS a
       SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(),
           revoked_by = enrollment.current_actor()
     WHERE a.token_id OPERATOR(pg_catalog.=) t.token_id;
    PERFORM enrollment.audit('api_token_revoked', 'api_token', t.token_id::text,
                             pg_catalog.jsonb_build_object('label', t.label, 'owner', t.owner));
    RETURN true;
END
$$;
COMMENT ON FUNCTION enrollment.revoke_api_token(uuid) IS
    'Revoke an API token permanently; its record stays for the audit';

CREATE FUNCTION enrollment.delete_api_token(token_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t enrollment.api_token%ROWTYPE := enrollment.api_token_for_management(token_id, 'delete API tokens');
BEGIN
    DELETE FROM enrollment.api_token AS a WHERE a.token_id OPERATOR(pg_catalog.=) t.token_id;
    PERFORM enrollment.audit('api_token_deleted', 'api_token', t.token_id::text,
                             pg_catalog.jsonb_build_object('label', t.label, 'owner', t.owner));
END
$$;
COMMENT ON FUNCTION enrollment.delete_api_token(uuid) IS 'Delete an API token permanently (audited)';

CREATE FUNCTION enrollment.reassign_api_token(token_id uuid, new_owner text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t enrollment.api_token%ROWTYPE;
    new_role text;
BEGIN
    PERFORM enrollment.require_role('admin', 'reassign API tokens');
    t := enrollment.api_token_for_management(token_id, 'reassign API tokens');
    SELECT m.role INTO new_role FROM enrollment.member AS m
     WHERE m.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
       AND m.identity OPERATOR(pg_catalog.=) new_owner;
    IF new_role IS NULL THEN
        RAISE EXCEPTION 'member_not_found' USING ERRCODE = 'NR020',
            DETAIL = pg_catalog.format('%s is not a member of tenant %s.', new_owner, enrollment.current_tenant());
    END IF;
    UPDATE enrollment.api_token AS a SET owner = new_owner
     WHERE a.token_id OPERATOR(pg_catalog.=) t.token_id;
    PERFORM enrollment.audit('api_token_reassigned', 'api_token', t.token_id::text,
                             pg_catalog.jsonb_build_object('from', t.owner, 'to', new_owner));
END
$$;
COMMENT ON FUNCTION enrollment.reassign_api_token(uuid, text) IS
    'Give an API token to another member (admin and above); its permissions follow the new owner''s role';

--------------------------------------------------------------------------
-- The audit hash chain
--------------------------------------------------------------------------

-- The text of an event that its chain hash covers
CREATE FUNCTION enrollment.audit_canonical(e enrollment.audit_event) RETURNS bytea
LANGUAGE sql IMMUTABLE SET search_path = '' AS $$
    SELECT pg_catalog.convert_to(pg_catalog.concat_ws(E'\x1f',
        e.event_id::text, e.tenant,
        (pg_catalog.extract('epoch', e.occurred_at) OPERATOR(pg_catalog.*) 1000000)::bigint::text,
        e.actor, e.action, e.token_id::text, e.node_id::text, e.object_type, e.object_id,
        e.details::text), 'UTF8')
$$;

-- Seal the events not sealed yet into the chain, in the order they became
-- visible.  One sealer at a time; returns how many were sealed.
CREATE FUNCTION enrollment.seal_audit() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    last enrollment.audit_chain%ROWTYPE;
    e enrollment.audit_event%ROWTYPE;
    h bytea;
    s bigint;
    n bigint := 0;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(7308604897068083556) THEN
        RETURN 0;                           -- another sealer is at work
    END IF;
    SELECT * INTO last FROM enrollment.audit_chain AS c ORDER BY c.seq DESC LIMIT 1;
    h := COALESCE(last.hash, pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex'));
    s := COALESCE(last.seq, 0);
    -- an event commits after a later one now and then: look back 10000 ids
    FOR e IN
        SELECT a.* FROM enrollment.audit_event AS a
         WHERE a.event_id OPERATOR(pg_catalog.>) (COALESCE(last.event_id, 0) OPERATOR(pg_catalog.-) 10000)
           AND NOT EXISTS (SELECT FROM enrollment.audit_chain AS c
                            WHERE c.event_id OPERATOR(pg_catalog.=) a.event_id)
         ORDER BY a.event_id
    LOOP
        s := s OPERATOR(pg_catalog.+) 1;
        INSERT INTO enrollment.audit_chain (seq, event_id, prev_hash, hash)
        VALUES (s, e.event_id, h,
                pg_catalog.sha256(h OPERATOR(pg_catalog.||) enrollment.audit_canonical(e)));
        h := pg_catalog.sha256(h OPERATOR(pg_catalog.||) enrollment.audit_canonical(e));
        n := n OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION enrollment.seal_audit() IS
    'Add the audit events not sealed yet to the hash chain (the worker does this every round)';

CREATE FUNCTION enrollment.verify_audit_chain(
    OUT ok boolean, OUT events_checked bigint, OUT first_bad_seq bigint, OUT problem text,
    OUT unsealed bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r record;
    h bytea;
    expect_seq bigint;
BEGIN
    -- the chain links every tenant's events: its verdict is about all of them
    PERFORM enrollment.require_dba('verify the audit chain');
    ok := true;
    events_checked := 0;
    FOR r IN
        SELECT c.seq, c.event_id AS chained_id, c.prev_hash, c.hash, a AS ev
          FROM enrollment.audit_chain AS c
          LEFT JOIN enrollment.audit_event AS a ON a.event_id OPERATOR(pg_catalog.=) c.event_id
         ORDER BY c.seq
    LOOP
        IF h IS NOT NULL AND (r.seq OPERATOR(pg_catalog.<>) expect_seq
                              OR r.prev_hash OPERATOR(pg_catalog.<>) h) THEN
            ok := false; first_bad_seq := r.seq; problem := 'chain_broken'; EXIT;
        END IF;
        IF (r.ev).event_id IS NULL THEN
            ok := false; first_bad_seq := r.seq; problem := 'event_missing'; EXIT;
        END IF;
        IF pg_catalog.sha256(r.prev_hash OPERATOR(pg_catalog.||) enrollment.audit_canonical(r.ev))
           OPERATOR(pg_catalog.<>) r.hash THEN
            ok := false; first_bad_seq := r.seq; problem := 'event_altered'; EXIT;
        END IF;
        h := r.hash;
        expect_seq := r.seq OPERATOR(pg_catalog.+) 1;
        events_checked := events_checked OPERATOR(pg_catalog.+) 1;
    END LOOP;
    SELECT pg_catalog.count(*) INTO unsealed FROM enrollment.audit_event AS a
     WHERE NOT EXISTS (SELECT FROM enrollment.audit_chain AS c WHERE c.event_id OPERATOR(pg_catalog.=) a.event_id);
END
$$;
COMMENT ON FUNCTION enrollment.verify_audit_chain() IS
    'Recompute the audit hash chain: ok, events checked, the first bad link and why, events not sealed yet';

-- The one way events leave the log: retention.  Removes sealed events
-- (and their chain links) older than the given age, and records that it did.
CREATE FUNCTION enrollment.purge_audit(older_than interval) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    n bigint;
    upto bigint;
BEGIN
    -- one chain for every tenant: its prefix goes, whoever's events it holds
    PERFORM enrollment.require_dba('purge the audit log');
    IF older_than IS NULL OR older_than OPERATOR(pg_catalog.<) interval '1 day' THEN
        RAISE EXCEPTION 'older_than must be at least 1 day' USING ERRCODE = '22023';
    END IF;
    -- the chain loses a prefix: up to the first link whose event is young enough
    -- to stay (an old event sealed after a young one waits for a later purge)
    SELECT COALESCE(pg_catalog.min(c.seq) FILTER (
               WHERE a.occurred_at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than)
                  OR a.event_id IS NULL) OPERATOR(pg_catalog.-) 1,
                    pg_catalog.max(c.seq))
      INTO upto
      FROM enrollment.audit_chain AS c LEFT JOIN enrollment.audit_event AS a USING (event_id);
    IF upto IS NULL OR upto OPERATOR(pg_catalog.<) 1 THEN
        RETURN 0;
    END IF;
    PERFORM pg_catalog.set_config('enrollment_internal.audit_retention', 'on', true);
    DELETE FROM enrollment.audit_event AS a
     USING enrollment.audit_chain AS c
     WHERE c.event_id OPERATOR(pg_catalog.=) a.event_id AND c.seq OPERATOR(pg_catalog.<=) upto;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM enrollment.audit_chain AS c WHERE c.seq OPERATOR(pg_catalog.<=) upto;
    PERFORM pg_catalog.set_config('enrollment_internal.audit_retention', 'off', true);
    PERFORM enrollment.audit('audit_purged', 'audit_log', NULL,
        pg_catalog.jsonb_build_object('events', n, 'older_than', older_than::text, 'through_seq', upto));
    RETURN n;
END
$$;
COMMENT ON FUNCTION enrollment.purge_audit(interval) IS
    'Retention: delete sealed audit events older than the given age (at least a day); the purge itself is audited';

CREATE VIEW enrollment.members WITH (security_barrier) AS
SELECT m.identity, m.role, m.added_at, m.added_by
  FROM enrollment.member AS m
 WHERE m.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('admin', 'list members'));
COMMENT ON VIEW enrollment.members IS 'Members of the current tenant and their roles (admin and above)';

-- Owners and admins see every API token of the tenant, operators their own
CREATE VIEW enrollment.api_tokens WITH (security_barrier) AS
SELECT a.token_id,
       a.label,
       a.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(a.public_id), 16, '0') AS prefix,
       a.owner,
       a.permissions,
       a.status,
       a.created_by,
       a.created_at,
       a.revoked_at,
       a.revoked_by
  FROM enrollment.api_token AS a
 WHERE a.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('operator', 'list API tokens'))
   AND (a.owner OPERATOR(pg_catalog.=) enrollment.current_actor()
        OR (SELECT enrollment.current_member_role()) OPERATOR(pg_catalog.=) ANY (ARRAY['owner', 'admin']));
COMMENT ON VIEW enrollment.api_tokens IS
    'API tokens of the current tenant, without digests; NULL permissions: whatever the owner''s role allows';

REVOKE ALL ON enrollment.members, enrollment.api_tokens FROM PUBLIC;

-- A tenant's own figures, computed from its rows (enrollment.stats is
-- server-wide and for DBAs only); analyst and above
CREATE VIEW enrollment.tenant_stats WITH (security_barrier) AS
WITH t AS (SELECT enrollment.current_tenant() AS tenant
            WHERE (SELECT enrollment.require_role('analyst', 'read tenant statistics')))
SELECT 'tokens' AS area, s.status AS counter, pg_catalog.count(k.status) AS value
  FROM t CROSS JOIN (VALUES ('pending'), ('active'), ('used'), ('exhausted'), ('expired'), ('revoked')) AS s(status)
  LEFT JOIN enrollment.enrollment_token AS k
    ON k.tenant OPERATOR(pg_catalog.=) t.tenant
   AND (CASE WHEN k.status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active'])
                  AND k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp()
             THEN 'expired' ELSE k.status END) OPERATOR(pg_catalog.=) s.status
 GROUP BY s.status
UNION ALL
SELECT 'nodes', s.status, pg_catalog.count(n.status)
  FROM t CROSS JOIN (VALUES ('active'), ('pending_approval'), ('removed')) AS s(status)
  LEFT JOIN enrollment.node_record AS n
    ON n.tenant OPERATOR(pg_catalog.=) t.tenant AND n.status OPERATOR(pg_catalog.=) s.status
 GROUP BY s.status
UNION ALL
SELECT 'api_keys', 'active', pg_catalog.count(*)
  FROM t JOIN enrollment.api_key AS k ON k.tenant OPERATOR(pg_catalog.=) t.tenant
 WHERE k.revoked_at IS NULL
   AND (k.expires_at IS NULL OR k.expires_at OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp())
UNION ALL
SELECT 'api_tokens', s.status, pg_catalog.count(a.status)
  FROM t CROSS JOIN (VALUES ('active'), ('revoked')) AS s(status)
  LEFT JOIN enrollment.api_token AS a
    ON a.tenant OPERATOR(pg_catalog.=) t.tenant AND a.status OPERATOR(pg_catalog.=) s.status
 GROUP BY s.status
UNION ALL
SELECT 'enrollments', 'last_24h', pg_catalog.count(*)
  FROM t JOIN enrollment.audit_event AS e ON e.tenant OPERATOR(pg_catalog.=) t.tenant
 WHERE e.action OPERATOR(pg_catalog.=) 'sensor_enrolled'
   AND e.occurred_at OPERATOR(pg_catalog.>) (pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) interval '1 day');
COMMENT ON VIEW enrollment.tenant_stats IS
    'The current tenant''s tokens, nodes, keys and API tokens by status, and its enrollments of the last 24 hours (analyst and above)';
REVOKE ALL ON enrollment.tenant_stats FROM PUBLIC;
REVOKE ALL ON FUNCTION
    enrollment.current_member_role(),
    enrollment.require_role(text, text),
    enrollment.may_read_audit(),
    enrollment.audit(text, text, text, jsonb, uuid, uuid),
    enrollment.add_member(text, text),
    enrollment.set_member_role(text, text),
    enrollment.remove_member(text),
    enrollment.create_self_enrollment_token(interval),
    enrollment.create_api_token(text, text[]),
    enrollment.verify_api_token(text, text),
    enrollment.set_api_token_prefix(text),
    enrollment.api_token_for_management(uuid, text),
    enrollment.revoke_api_token(uuid),
    enrollment.delete_api_token(uuid),
    enrollment.reassign_api_token(uuid, text),
    enrollment.seal_audit(),
    enrollment.verify_audit_chain(),
    enrollment.purge_audit(interval)
  FROM PUBLIC;

--------------------------------------------------------------------------
-- Uses not yet counted in the token row (0.6.0).  A reusable or cluster
-- token without max_uses caps nothing, so concurrent enrollments through it
-- need not queue for its row: after its first use (which sets used_at in
-- the row), enroll appends one row here per use instead of updating the
-- token, under a FOR SHARE lock of its row (src/enroll.c), and the worker
-- folds these rows into use_count and last_used_at every round
-- (fold_token_uses).  The tokens view adds the rows not folded yet, so a
-- listing is exact at any time.  A token with a cap, and the first use of
-- any token, still update the token row under its lock: that lock is what
-- makes a cap exact.  Rows of a token that is gone are dropped by the fold.
--------------------------------------------------------------------------

CREATE TABLE enrollment.token_use (
    token_id  uuid NOT NULL,
    used_at   timestamptz NOT NULL
);
CREATE INDEX token_use_token_id_idx ON enrollment.token_use (token_id);
-- A burst of enrollments fills the table with the uses of one token, and an
-- ANALYZE then would see a single token_id and let the planner expect every
-- row for whichever token the tokens view asks about: a sequential scan per
-- listed token, and a listing costly enough to be JIT-compiled (bench/README.md).
-- Each token's rows are few for planning purposes.
ALTER TABLE enrollment.token_use ALTER COLUMN token_id SET (n_distinct = -1);
COMMENT ON TABLE enrollment.token_use IS
    'Enrollments through uncapped reusable and cluster tokens not yet counted in enrollment_token (folded by the worker)';
SELECT pg_catalog.pg_extension_config_dump('enrollment.token_use', '');
REVOKE ALL ON enrollment.token_use FROM PUBLIC;

-- Move up to batch rows of token_use into their tokens' use_count and
-- last_used_at, in one statement (rows inserted meanwhile wait for the next
-- call); returns how many rows it moved.  (max_uses is set only when a token
-- is made; should one be written into the table by hand after uses were
-- appended, use_count stops at it, so that the row rules still hold.)
CREATE FUNCTION enrollment.fold_token_uses(batch integer DEFAULT 10000) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
    WITH d AS (
        DELETE FROM enrollment.token_use AS u
         WHERE u.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
                   SELECT l.ctid FROM enrollment.token_use AS l LIMIT fold_token_uses.batch))
        RETURNING u.token_id, u.used_at),
    s AS (
        SELECT d.token_id, pg_catalog.count(*)::integer AS n, pg_catalog.max(d.used_at) AS last
          FROM d GROUP BY d.token_id),
    f AS (
        UPDATE enrollment.enrollment_token AS t
           SET use_count = CASE WHEN t.max_uses IS NULL THEN t.use_count OPERATOR(pg_catalog.+) s.n
                                ELSE LEAST(t.use_count OPERATOR(pg_catalog.+) s.n, t.max_uses) END,
               last_used_at = GREATEST(t.last_used_at, s.last)
          FROM s
         WHERE t.token_id OPERATOR(pg_catalog.=) s.token_id)
    SELECT COALESCE(pg_catalog.sum(s.n), 0)::bigint FROM s
$$;
COMMENT ON FUNCTION enrollment.fold_token_uses(integer) IS
    'Count the enrollments appended to token_use in their tokens (the worker calls it every round); returns the rows moved';
REVOKE ALL ON FUNCTION enrollment.fold_token_uses(integer) FROM PUBLIC;

--------------------------------------------------------------------------
-- Enrollments per hour of a reusable token (0.7.0).  A token with a row
-- here enrolls at most max_per_hour nodes in any hour (0: none, a token
-- switched off without being revoked).  Its enrollments count their use in
-- the token row under its lock, never appending it, and count the token's
-- nodes of the last hour under that lock (src/rate_limit.c), so the rate
-- holds under concurrency.  No foreign key: it would put triggers on
-- enrollment_token, which would send every enrollment through SQL; the
-- worker drops the rows of tokens that are gone.
--------------------------------------------------------------------------

CREATE TABLE enrollment.token_rate (
    token_id      uuid PRIMARY KEY,
    max_per_hour  integer NOT NULL CHECK (max_per_hour OPERATOR(pg_catalog.>=) 0)
);
COMMENT ON TABLE enrollment.token_rate IS
    'Enrollments per hour allowed through a reusable token (set_token_rate)';
SELECT pg_catalog.pg_extension_config_dump('enrollment.token_rate', '');
REVOKE ALL ON enrollment.token_rate FROM PUBLIC;

-- Whether any tenant has a node limit or any token a rate is remembered by
-- each backend, so that enrollments and check_token read these two tables
-- only where a limit exists (src/limits_cache.c).  Every row written to
-- either table, and a TRUNCATE, also with session_replication_role =
-- replica, tells the other backends at the commit through this trigger (per
-- row, so that a statement that changes nothing, such as the worker's
-- sweep of the rates of purged tokens, tells nobody).
CREATE FUNCTION enrollment.limits_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'enrollment_limits_changed' LANGUAGE C;
COMMENT ON FUNCTION enrollment.limits_changed() IS
    'Trigger of tenant_setting and token_rate: the backends forget what they know of node limits and rates at the commit';
REVOKE ALL ON FUNCTION enrollment.limits_changed() FROM PUBLIC;
CREATE TRIGGER limits_changed AFTER INSERT OR UPDATE OR DELETE ON enrollment.tenant_setting
    FOR EACH ROW EXECUTE FUNCTION enrollment.limits_changed();
CREATE TRIGGER limits_truncated AFTER TRUNCATE ON enrollment.tenant_setting
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment.limits_changed();
ALTER TABLE enrollment.tenant_setting ENABLE ALWAYS TRIGGER limits_changed;
ALTER TABLE enrollment.tenant_setting ENABLE ALWAYS TRIGGER limits_truncated;
CREATE TRIGGER limits_changed AFTER INSERT OR UPDATE OR DELETE ON enrollment.token_rate
    FOR EACH ROW EXECUTE FUNCTION enrollment.limits_changed();
CREATE TRIGGER limits_truncated AFTER TRUNCATE ON enrollment.token_rate
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment.limits_changed();
ALTER TABLE enrollment.token_rate ENABLE ALWAYS TRIGGER limits_changed;
ALTER TABLE enrollment.token_rate ENABLE ALWAYS TRIGGER limits_truncated;

-- The nodes (not removed) of each tenant that has a node limit, kept so
-- that an enrollment or a check_token need not count the tenant's fleet
-- (0.7.0, src/node_limit.c).  set_node_limit writes a tenant's row from a
-- count made while no node can be written; each enrollment of a new node
-- folds into it, under the tenant's setting-row lock, the changes appended
-- since and its own node, and the worker folds them every round.  A node removed, reinstated, moved or deleted
-- appends a change of one where a count is kept (tenant_node_change,
-- trigger node_count_changed) and takes no lock, in the transaction that
-- changes the node: so any
-- snapshot, a dump's too, sees the count of the nodes it sees, and both
-- tables are dumped with them.  A change of the limit or of the tenant's
-- name in the setting row, its deletion, and a TRUNCATE of tenant_setting,
-- node_record or tenant_node_change drop the tenant's rows (trigger
-- forget_node_count); without a row the nodes are counted at each call
-- until set_node_limit.  Nodes inserted into node_record other than by
-- enroll are not added.  Both tables belong to their database: they are
-- not to be published for logical replication.
CREATE TABLE enrollment.tenant_node_count (
    tenant  text PRIMARY KEY,
    nodes   bigint NOT NULL
);
COMMENT ON TABLE enrollment.tenant_node_count IS
    'Nodes not removed of each tenant with a node limit, as of the last fold of its changes (internal)';
SELECT pg_catalog.pg_extension_config_dump('enrollment.tenant_node_count', '');
REVOKE ALL ON enrollment.tenant_node_count FROM PUBLIC;
CREATE TABLE enrollment.tenant_node_change (
    change_id  uuid PRIMARY KEY DEFAULT enrollment.uuid_v7(),   -- a replica identity
    tenant     text NOT NULL,
    delta      integer NOT NULL
);
CREATE INDEX tenant_node_change_tenant_idx ON enrollment.tenant_node_change (tenant);
COMMENT ON TABLE enrollment.tenant_node_change IS
    'Changes of a kept node count since its last fold: nodes removed, reinstated, moved or deleted (internal)';
SELECT pg_catalog.pg_extension_config_dump('enrollment.tenant_node_change', '');
REVOKE ALL ON enrollment.tenant_node_change FROM PUBLIC;

-- The two triggers write the owner's tables: they run as the owner, so
-- that a role granted UPDATE or DELETE on node_record or tenant_setting
-- needs no privilege on the count tables.
CREATE FUNCTION enrollment.node_count_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'enrollment_node_count_changed'
    LANGUAGE C SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.node_count_changed() IS
    'Trigger of node_record: a node removed, reinstated, moved or deleted appends a change of its tenant''s kept node count';
REVOKE ALL ON FUNCTION enrollment.node_count_changed() FROM PUBLIC;
CREATE TRIGGER node_count_changed AFTER UPDATE OF status, tenant OR DELETE ON enrollment.node_record
    FOR EACH ROW EXECUTE FUNCTION enrollment.node_count_changed();
ALTER TABLE enrollment.node_record ENABLE ALWAYS TRIGGER node_count_changed;

CREATE FUNCTION enrollment.forget_node_count() RETURNS trigger
    AS 'MODULE_PATHNAME', 'enrollment_forget_node_count'
    LANGUAGE C SECURITY DEFINER SET search_path = '';
COMMENT ON FUNCTION enrollment.forget_node_count() IS
    'Trigger of tenant_setting and node_record: drops kept node counts that may no longer hold';
REVOKE ALL ON FUNCTION enrollment.forget_node_count() FROM PUBLIC;
CREATE TRIGGER forget_node_count AFTER UPDATE OF tenant, node_limit OR DELETE ON enrollment.tenant_setting
    FOR EACH ROW EXECUTE FUNCTION enrollment.forget_node_count();
CREATE TRIGGER forget_node_counts AFTER TRUNCATE ON enrollment.tenant_setting
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment.forget_node_count();
CREATE TRIGGER forget_node_counts AFTER TRUNCATE ON enrollment.node_record
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment.forget_node_count();
CREATE TRIGGER forget_node_counts AFTER TRUNCATE ON enrollment.tenant_node_change
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment.forget_node_count();
ALTER TABLE enrollment.tenant_setting ENABLE ALWAYS TRIGGER forget_node_count;
ALTER TABLE enrollment.tenant_setting ENABLE ALWAYS TRIGGER forget_node_counts;
ALTER TABLE enrollment.node_record ENABLE ALWAYS TRIGGER forget_node_counts;
ALTER TABLE enrollment.tenant_node_change ENABLE ALWAYS TRIGGER forget_node_counts;

-- The worker's fold of a tenant's changes into its kept count, each round,
-- so that they do not pile up where no enrollment folds them; it waits for
-- no table lock nor for the tenant's setting row, and returns the changes
-- folded (src/node_limit.c).
CREATE FUNCTION enrollment.fold_node_changes(tenant text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'enrollment_fold_node_changes' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION enrollment.fold_node_changes(text) IS
    'Folds the changes appended to a tenant''s kept node count into it, if its locks are free (the worker calls it every round); returns the changes folded';
REVOKE ALL ON FUNCTION enrollment.fold_node_changes(text) FROM PUBLIC;

-- Set (NULL: lift) a reusable token's limit of enrollments per hour; returns
-- its enrollments of the last hour.  The token row is locked as an
-- enrollment's count of its use locks it, so the change waits for the
-- enrollments in flight and applies to those that start after it.
CREATE FUNCTION enrollment.set_token_rate(token_id uuid, max_per_hour integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t enrollment.enrollment_token%ROWTYPE;
    public_part text;
    n bigint;
BEGIN
    PERFORM enrollment.require_role('operator', 'limit the rate of enrollment tokens');
    IF set_token_rate.token_id IS NULL THEN
        RAISE EXCEPTION 'token_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF set_token_rate.max_per_hour OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'invalid rate' USING ERRCODE = '22023',
            DETAIL = 'max_per_hour is 0 (no enrollments) or more, or NULL for no limit.';
    END IF;
    SELECT * INTO t FROM enrollment.enrollment_token AS e
     WHERE e.token_id OPERATOR(pg_catalog.=) set_token_rate.token_id
       AND e.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant() FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid_token' USING ERRCODE = 'NR001',
            DETAIL = pg_catalog.format('No enrollment token has id %s.', set_token_rate.token_id);
    END IF;
    public_part := t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0');
    IF t.kind OPERATOR(pg_catalog.<>) 'reusable' THEN
        RAISE EXCEPTION 'only reusable tokens have a rate' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Token %s is a %s token.', public_part, t.kind),
            HINT = 'Cap a cluster token with max_uses; a once token enrolls once.';
    END IF;
    IF set_token_rate.max_per_hour IS NULL THEN
        DELETE FROM enrollment.token_rate AS r WHERE r.token_id OPERATOR(pg_catalog.=) t.token_id;
    ELSE
        INSERT INTO enrollment.token_rate AS r (token_id, max_per_hour)
        VALUES (t.token_id, set_token_rate.max_per_hour)
        ON CONFLICT ON CONSTRAINT token_rate_pkey DO UPDATE SET max_per_hour = excluded.max_per_hour;
    END IF;
    SELECT pg_catalog.count(*) INTO n FROM enrollment.node_record AS r
     WHERE r.enrolled_by OPERATOR(pg_catalog.=) t.token_id
       AND r.enrolled_at OPERATOR(pg_catalog.>)
           (pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval);
    PERFORM enrollment.audit('enrollment_token_rate_set', 'enrollment_token', t.token_id::text,
        pg_catalog.jsonb_build_object('prefix', public_part, 'max_per_hour', set_token_rate.max_per_hour,
                                      'last_hour', n),
        token_id => t.token_id);
    RETURN n;
END
$$;
COMMENT ON FUNCTION enrollment.set_token_rate(uuid, integer) IS
    'Most enrollments per hour through a reusable token (0: none, NULL: no limit); returns its enrollments of the last hour';
REVOKE ALL ON FUNCTION enrollment.set_token_rate(uuid, integer) FROM PUBLIC;

--------------------------------------------------------------------------
-- Lifecycle of single nodes and tokens (0.7.0): removing one node,
-- renewing a token (a successor with the same settings, the old one left
-- valid until revoked), and revoking a token together with every node it
-- enrolled.  Cold management paths, so PL/pgSQL.
--------------------------------------------------------------------------

-- The re-enrollment tokens bound to nodes about to be removed are revoked
-- with them, so the tokens listing does not show as pending a token that
-- can no longer enroll anything.  They are locked before the nodes, in the
-- order of their ids, as a re-enrollment locks its token before its node:
-- a removal and a re-enrollment of one node queue one behind the other,
-- never for each other.  Only a token that could still be used is revoked
-- (pending, not expired); the others say already why they cannot.  Called
-- by remove_node, revoke_token_and_nodes and remove_member, with the nodes
-- they are about to remove; returns how many tokens it revoked.
CREATE INDEX enrollment_token_node_id_idx ON enrollment.enrollment_token (node_id)
    WHERE node_id IS NOT NULL;

CREATE FUNCTION enrollment.revoke_bound_tokens(nodes uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
    actor text := enrollment.current_actor();
    t record;
    public_part text;
    n bigint := 0;
BEGIN
    FOR t IN
        SELECT e.token_id, e.tenant, e.kind, e.prefix, e.public_id, e.node_id, e.status, e.expires_at
          FROM enrollment.enrollment_token AS e
         WHERE e.node_id OPERATOR(pg_catalog.=) ANY (revoke_bound_tokens.nodes)
         ORDER BY e.token_id
           FOR UPDATE
    LOOP
        CONTINUE WHEN t.status OPERATOR(pg_catalog.<>) 'pending'
                   OR t.expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp();
        public_part := t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0');
        UPDATE enrollment.enrollment_token AS e
           SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = actor,
               retention_from = NULL
         WHERE e.token_id OPERATOR(pg_catalog.=) t.token_id;
        INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, node_id, object_type, object_id, details)
        VALUES (t.tenant, actor, 'sensor_enrollment_token_revoked', t.token_id, t.node_id, 'enrollment_token',
                t.token_id::text,
                pg_catalog.jsonb_build_object('kind', t.kind, 'prefix', public_part, 'use_count', 0,
                                              'reason', 'node_removed'));
        PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
            'event', 'revoked', 'tenant', t.tenant, 'token_id', t.token_id, 'prefix', public_part)::text);
        n := n OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION enrollment.revoke_bound_tokens(uuid[]) IS
    'Revoke the re-enrollment tokens bound to nodes about to be removed (called by the functions that remove nodes)';
REVOKE ALL ON FUNCTION enrollment.revoke_bound_tokens(uuid[]) FROM PUBLIC;

-- Remove one node.  Its credential stops authenticating at the next call
-- (authenticate_node answers no row for a removed node), a re-enrollment
-- token bound to it can no longer be used, and it no longer counts against
-- the tenant's node limit.  The row stays, for the nodes view and the audit
-- trail.  The node row is locked as a re-enrollment locks it, so the two
-- apply one after the other.
CREATE FUNCTION enrollment.remove_node(node_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    n enrollment.node_record%ROWTYPE;
BEGIN
    PERFORM enrollment.require_role('operator', 'remove nodes');
    IF remove_node.node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be null' USING ERRCODE = '22004';
    END IF;
    -- its re-enrollment tokens first: they are locked before the node
    IF EXISTS (SELECT FROM enrollment.node_record AS r
                WHERE r.node_id OPERATOR(pg_catalog.=) remove_node.node_id
                  AND r.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
                  AND r.status OPERATOR(pg_catalog.<>) 'removed') THEN
        PERFORM enrollment.revoke_bound_tokens(ARRAY[remove_node.node_id]);
    END IF;
    SELECT * INTO n FROM enrollment.node_record AS r
     WHERE r.node_id OPERATOR(pg_catalog.=) remove_node.node_id
       AND r.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant() FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node_not_found' USING ERRCODE = 'NR021',
            DETAIL = pg_catalog.format('No node has id %s.', remove_node.node_id);
    END IF;
    IF n.status OPERATOR(pg_catalog.=) 'removed' THEN
        RETURN false;                       -- already removed: nothing to do
    END IF;
    UPDATE enrollment.node_record AS r
       SET status = 'removed', removed_at = pg_catalog.statement_timestamp()
     WHERE r.node_id OPERATOR(pg_catalog.=) n.node_id;
    PERFORM enrollment.audit('sensor_removed', 'node', n.node_id::text,
        pg_catalog.jsonb_build_object('reason', 'removed', 'name', n.name), NULL, n.node_id);
    PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
        'event', 'node_removed', 'tenant', n.tenant, 'node_id', n.node_id)::text);
    RETURN true;
END
$$;
COMMENT ON FUNCTION enrollment.remove_node(uuid) IS
    'Remove a node: its credential stops authenticating at once; true if removed now, false if it already was';

-- Renew a token: a successor of the same kind, label, cap, cluster, bound
-- node and rate, with a fresh secret and the same lifetime counted from now
-- (none if the token has none; a duration in seconds, so that a change of
-- daylight saving time in between does not move it).  The old token is
-- left as it is, so a fleet can move to the successor before the old one is
-- revoked.  Its row is share-locked, so a rate being set on it meanwhile is
-- either waited for and copied or set after the successor exists.
CREATE FUNCTION enrollment.renew_token(token_id uuid)
RETURNS TABLE (successor_id uuid, token text, prefix text, kind text, expires_at timestamptz,
               max_uses integer, cluster_id text, node_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t enrollment.enrollment_token%ROWTYPE;
    s record;
    rate integer;
BEGIN
    PERFORM enrollment.require_role('operator', 'renew enrollment tokens');
    IF renew_token.token_id IS NULL THEN
        RAISE EXCEPTION 'token_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO t FROM enrollment.enrollment_token AS e
     WHERE e.token_id OPERATOR(pg_catalog.=) renew_token.token_id
       AND e.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant() FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid_token' USING ERRCODE = 'NR001',
            DETAIL = pg_catalog.format('No enrollment token has id %s.', renew_token.token_id);
    END IF;
    SELECT * INTO s FROM enrollment.create_token(
        kind     => t.kind,
        label    => t.label,
        ttl      => pg_catalog.make_interval(secs => EXTRACT(epoch FROM
                        t.expires_at OPERATOR(pg_catalog.-) t.created_at)),
        max_uses => CASE WHEN t.kind OPERATOR(pg_catalog.<>) 'once' THEN t.max_uses END,
        cluster_id => t.cluster_id,
        node_id  => t.node_id) AS c;
    SELECT r.max_per_hour INTO rate FROM enrollment.token_rate AS r
     WHERE r.token_id OPERATOR(pg_catalog.=) t.token_id;
    IF rate IS NOT NULL THEN
        INSERT INTO enrollment.token_rate (token_id, max_per_hour) VALUES (s.token_id, rate);
    END IF;
    PERFORM enrollment.audit('enrollment_token_renewed', 'enrollment_token', t.token_id::text,
        pg_catalog.jsonb_build_object(
            'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'),
            'successor_id', s.token_id, 'successor_prefix', s.prefix, 'max_per_hour', rate),
        token_id => t.token_id);
    RETURN QUERY SELECT s.token_id, s.token, s.prefix, s.kind, s.expires_at, s.max_uses, s.cluster_id, s.node_id;
END
$$;
COMMENT ON FUNCTION enrollment.renew_token(uuid) IS
    'A successor of a token with the same settings and a fresh secret; the token itself stays valid until revoked';

-- Revoke a token and remove every node it enrolled (seed 003's bulk
-- revoke), in one transaction.  The token row is locked first, which waits
-- for the enrollments through it that are in flight; the nodes are then
-- read by a statement that starts after they committed, so none is missed.
-- That needs READ COMMITTED (or READ UNCOMMITTED, which PostgreSQL runs as
-- such): under a snapshot taken earlier a node enrolled meanwhile would stay.
CREATE FUNCTION enrollment.revoke_token_and_nodes(token_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t enrollment.enrollment_token%ROWTYPE;
    public_part text;
    revoked boolean := false;
    n record;
    nnodes bigint := 0;
BEGIN
    PERFORM enrollment.require_role('operator', 'revoke enrollment tokens and remove their nodes');
    IF revoke_token_and_nodes.token_id IS NULL THEN
        RAISE EXCEPTION 'token_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) ALL
           (ARRAY['read committed', 'read uncommitted']) THEN
        RAISE EXCEPTION 'revoke_token_and_nodes needs READ COMMITTED' USING ERRCODE = '25000',
            DETAIL = pg_catalog.format('The transaction runs at %s, whose snapshot could miss a node enrolled while it waits for the token.',
                                       pg_catalog.upper(pg_catalog.current_setting('transaction_isolation'))),
            HINT = 'Call it in a READ COMMITTED transaction (the default).';
    END IF;
    SELECT * INTO t FROM enrollment.enrollment_token AS e
     WHERE e.token_id OPERATOR(pg_catalog.=) revoke_token_and_nodes.token_id
       AND e.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant() FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid_token' USING ERRCODE = 'NR001',
            DETAIL = pg_catalog.format('No enrollment token has id %s.', revoke_token_and_nodes.token_id);
    END IF;
    public_part := t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0');
    -- A token that can still be used is revoked; a used, exhausted or
    -- revoked one has nothing left to revoke, but its nodes go all the same.
    -- One whose expiry has passed but is not marked yet is marked expired
    -- now, as the worker would: an enrollment that started before the
    -- expiry and waits for this lock checks the row again once it has it,
    -- and must find it changed, or its node would come after the removal.
    IF t.status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active']) THEN
        IF t.expires_at IS NULL OR t.expires_at OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp() THEN
            revoked := enrollment.revoke_token(t.token_id);
        ELSE
            UPDATE enrollment.enrollment_token AS e SET status = 'expired'
             WHERE e.token_id OPERATOR(pg_catalog.=) t.token_id;
            PERFORM enrollment.audit('sensor_enrollment_token_expired', 'enrollment_token', t.token_id::text,
                pg_catalog.jsonb_build_object('kind', t.kind, 'prefix', public_part), token_id => t.token_id);
            PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
                'event', 'expired', 'tenant', t.tenant, 'token_id', t.token_id, 'prefix', public_part)::text);
        END IF;
    END IF;
    -- the nodes' re-enrollment tokens before the nodes (see revoke_bound_tokens)
    PERFORM enrollment.revoke_bound_tokens(ARRAY(
        SELECT r.node_id FROM enrollment.node_record AS r
         WHERE r.enrolled_by OPERATOR(pg_catalog.=) t.token_id
           AND r.tenant OPERATOR(pg_catalog.=) t.tenant
           AND r.status OPERATOR(pg_catalog.<>) 'removed'));
    FOR n IN
        UPDATE enrollment.node_record AS r
           SET status = 'removed', removed_at = pg_catalog.statement_timestamp()
         WHERE r.enrolled_by OPERATOR(pg_catalog.=) t.token_id
           AND r.tenant OPERATOR(pg_catalog.=) t.tenant
           AND r.status OPERATOR(pg_catalog.<>) 'removed'
        RETURNING r.node_id, r.name
    LOOP
        PERFORM enrollment.audit('sensor_removed', 'node', n.node_id::text,
            pg_catalog.jsonb_build_object('reason', 'token_revoked', 'token_prefix', public_part, 'name', n.name),
            t.token_id, n.node_id);
        PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
            'event', 'node_removed', 'tenant', t.tenant, 'node_id', n.node_id)::text);
        nnodes := nnodes OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('revoked', revoked, 'nodes_removed', nnodes);
END
$$;
COMMENT ON FUNCTION enrollment.revoke_token_and_nodes(uuid) IS
    'Revoke a token if it can still be used, and remove every node it enrolled; returns {revoked, nodes_removed}';

REVOKE ALL ON FUNCTION enrollment.remove_node(uuid), enrollment.renew_token(uuid),
                       enrollment.revoke_token_and_nodes(uuid) FROM PUBLIC;

--------------------------------------------------------------------------
-- Approval of new nodes (0.7.0).  A tenant whose node_approval setting is
-- 'manual' has each new node wait as pending_approval, which does not
-- authenticate, until an operator approves it (approve_node), unless the
-- auto-approve rule of the cluster its cluster token binds it to admits
-- it: its role is one of the rule's allowed_roles (an empty list admits any
-- role) and the rule has approved fewer than max_nodes nodes.  The
-- enrollment counts the approval in the row of a rule with a cap under its
-- lock (src/approval.c), so max_nodes holds under concurrency; a rule
-- without one counts nothing.  Deleting a rule leaves the nodes it
-- approved alone.
--------------------------------------------------------------------------

CREATE TABLE enrollment.auto_approve_rule (
    rule_id        uuid PRIMARY KEY DEFAULT enrollment.uuid_v7(),
    tenant         text NOT NULL,
    cluster_id     text NOT NULL CHECK (pg_catalog.char_length(cluster_id) BETWEEN 1 AND 128),
    label          text NOT NULL CHECK (pg_catalog.char_length(label) BETWEEN 1 AND 128),
    allowed_roles  text[] NOT NULL DEFAULT '{}',      -- empty: any role
    max_nodes      integer CHECK (max_nodes OPERATOR(pg_catalog.>) 0),
    approved_count integer NOT NULL DEFAULT 0,        -- nodes it has approved (with a cap)
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (tenant, cluster_id),
    CHECK (approved_count OPERATOR(pg_catalog.>=) 0
           AND (max_nodes IS NULL OR approved_count OPERATOR(pg_catalog.<=) max_nodes))
);
REVOKE ALL ON enrollment.auto_approve_rule FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('enrollment.auto_approve_rule', '');

-- 'manual' or 'auto' (the default); returns the mode before.  It holds for
-- the enrollments that start after its commit; nodes already enrolled keep
-- their status.
CREATE FUNCTION enrollment.set_node_approval(mode text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t text := enrollment.current_tenant();
    previous text;
BEGIN
    PERFORM enrollment.require_role('admin', 'set how new nodes are approved');
    IF set_node_approval.mode IS NULL THEN
        RAISE EXCEPTION 'mode must not be null' USING ERRCODE = '22004';
    END IF;
    IF set_node_approval.mode OPERATOR(pg_catalog.<>) ALL (ARRAY['auto', 'manual']) THEN
        RAISE EXCEPTION 'invalid approval mode' USING ERRCODE = '22023',
            DETAIL = 'The mode is auto (new nodes are active at once) or manual (new nodes wait for approve_node unless an auto-approve rule admits them).';
    END IF;
    -- the row first, then its lock: concurrent calls report each other
    INSERT INTO enrollment.tenant_setting AS s (tenant) VALUES (t) ON CONFLICT (tenant) DO NOTHING;
    SELECT s.node_approval INTO previous FROM enrollment.tenant_setting AS s
     WHERE s.tenant OPERATOR(pg_catalog.=) t FOR UPDATE;
    UPDATE enrollment.tenant_setting AS s SET node_approval = NULLIF(set_node_approval.mode, 'auto')
     WHERE s.tenant OPERATOR(pg_catalog.=) t;
    PERFORM enrollment.audit('node_approval_set', 'tenant', t,
        pg_catalog.jsonb_build_object('mode', set_node_approval.mode, 'previous', COALESCE(previous, 'auto')));
    RETURN COALESCE(previous, 'auto');
END
$$;
COMMENT ON FUNCTION enrollment.set_node_approval(text) IS
    'How the current tenant''s new nodes are approved: auto (active at once) or manual (pending_approval unless a rule admits them); returns the mode before (admin)';

CREATE FUNCTION enrollment.create_auto_approve_rule(cluster_id text, label text,
                                                    allowed_roles text[] DEFAULT NULL,
                                                    max_nodes integer DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    roles text[] := COALESCE(create_auto_approve_rule.allowed_roles, '{}');
    id uuid;
BEGIN
    PERFORM enrollment.require_role('admin', 'create auto-approve rules');
    IF create_auto_approve_rule.cluster_id IS NULL THEN
        RAISE EXCEPTION 'cluster_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF create_auto_approve_rule.label IS NULL THEN
        RAISE EXCEPTION 'label must not be null' USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.char_length(create_auto_approve_rule.cluster_id) OPERATOR(pg_catalog.>) 128 THEN
        RAISE EXCEPTION 'cluster_id is too long' USING ERRCODE = '22001',
            DETAIL = 'A cluster_id has at most 128 characters.';
    END IF;
    IF pg_catalog.char_length(create_auto_approve_rule.label) OPERATOR(pg_catalog.>) 128 THEN
        RAISE EXCEPTION 'label is too long' USING ERRCODE = '22001',
            DETAIL = 'A label has at most 128 characters.';
    END IF;
    IF create_auto_approve_rule.cluster_id OPERATOR(pg_catalog.=) '' OR create_auto_approve_rule.label OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'invalid auto-approve rule' USING ERRCODE = '22023',
            DETAIL = 'cluster_id and label must not be empty.';
    END IF;
    -- control characters would forge lines in logs and listings (as for tokens)
    IF create_auto_approve_rule.cluster_id OPERATOR(pg_catalog.~) '[[:cntrl:]]'
       OR create_auto_approve_rule.label OPERATOR(pg_catalog.~) '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid auto-approve rule' USING ERRCODE = '22023',
            DETAIL = 'cluster_id and label must not contain control characters.';
    END IF;
    IF pg_catalog.array_ndims(roles) OPERATOR(pg_catalog.>) 1
       OR EXISTS (SELECT FROM pg_catalog.unnest(roles) AS r(role)
                   WHERE r.role IS NULL OR pg_catalog.char_length(r.role) NOT BETWEEN 1 AND 64
                      OR r.role OPERATOR(pg_catalog.~) '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'invalid auto-approve rule' USING ERRCODE = '22023',
            DETAIL = 'allowed_roles is a list of node roles of 1 to 64 characters, without NULLs or control characters; empty or NULL admits any role.';
    END IF;
    IF create_auto_approve_rule.max_nodes OPERATOR(pg_catalog.<=) 0 THEN
        RAISE EXCEPTION 'invalid auto-approve rule' USING ERRCODE = '22023',
            DETAIL = 'max_nodes is 1 or more, or NULL for no cap.';
    END IF;
    INSERT INTO enrollment.auto_approve_rule AS r
           (tenant, cluster_id, label, allowed_roles, max_nodes, created_by)
    VALUES (enrollment.current_tenant(), create_auto_approve_rule.cluster_id,
            create_auto_approve_rule.label, roles, create_auto_approve_rule.max_nodes,
            enrollment.current_actor())
    ON CONFLICT ON CONSTRAINT auto_approve_rule_tenant_cluster_id_key DO NOTHING
    RETURNING r.rule_id INTO id;
    IF id IS NULL THEN
        RAISE EXCEPTION 'rule_exists' USING ERRCODE = '23505',
            DETAIL = pg_catalog.format('Cluster %s already has an auto-approve rule.', create_auto_approve_rule.cluster_id),
            HINT = 'Delete it first (enrollment.delete_auto_approve_rule).';
    END IF;
    PERFORM enrollment.audit('auto_approve_rule_created', 'auto_approve_rule', id::text,
        pg_catalog.jsonb_build_object('cluster_id', create_auto_approve_rule.cluster_id,
                                      'label', create_auto_approve_rule.label,
                                      'allowed_roles', roles, 'max_nodes', create_auto_approve_rule.max_nodes));
    RETURN id;
END
$$;
COMMENT ON FUNCTION enrollment.create_auto_approve_rule(text, text, text[], integer) IS
    'A rule that approves new nodes a cluster token enrolls into its cluster (where approval is manual): roles allowed (empty: any) and a cap (admin)';

-- Returns how many nodes the rule had approved (NULL: it had no cap, and
-- counted none).
CREATE FUNCTION enrollment.delete_auto_approve_rule(rule_id uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r enrollment.auto_approve_rule%ROWTYPE;
BEGIN
    PERFORM enrollment.require_role('admin', 'delete auto-approve rules');
    IF delete_auto_approve_rule.rule_id IS NULL THEN
        RAISE EXCEPTION 'rule_id must not be null' USING ERRCODE = '22004';
    END IF;
    DELETE FROM enrollment.auto_approve_rule AS a
     WHERE a.rule_id OPERATOR(pg_catalog.=) delete_auto_approve_rule.rule_id
       AND a.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
    RETURNING a.* INTO r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule_not_found' USING ERRCODE = 'NR022',
            DETAIL = pg_catalog.format('No auto-approve rule has id %s.', delete_auto_approve_rule.rule_id);
    END IF;
    IF r.max_nodes IS NULL THEN
        r.approved_count := NULL;           -- not counted
    END IF;
    PERFORM enrollment.audit('auto_approve_rule_deleted', 'auto_approve_rule', r.rule_id::text,
        pg_catalog.jsonb_build_object('cluster_id', r.cluster_id, 'label', r.label,
                                      'approved_count', r.approved_count));
    RETURN r.approved_count;
END
$$;
COMMENT ON FUNCTION enrollment.delete_auto_approve_rule(uuid) IS
    'Delete an auto-approve rule; the nodes it approved stay active; returns how many it approved (NULL: no cap, not counted) (admin)';

-- Approve a node that waits: it is active, and authenticates, from the
-- commit on.  The node row is locked as remove_node and a re-enrollment
-- lock it.
CREATE FUNCTION enrollment.approve_node(node_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    n enrollment.node_record%ROWTYPE;
BEGIN
    PERFORM enrollment.require_role('operator', 'approve nodes');
    IF approve_node.node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO n FROM enrollment.node_record AS r
     WHERE r.node_id OPERATOR(pg_catalog.=) approve_node.node_id
       AND r.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant() FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node_not_found' USING ERRCODE = 'NR021',
            DETAIL = pg_catalog.format('No node has id %s.', approve_node.node_id);
    END IF;
    IF n.status OPERATOR(pg_catalog.=) 'removed' THEN
        RAISE EXCEPTION 'node was removed' USING ERRCODE = '55000',
            DETAIL = pg_catalog.format('Node %s was removed at %s.', n.node_id, n.removed_at),
            HINT = 'Enroll the machine again with a new token.';
    END IF;
    IF n.status OPERATOR(pg_catalog.=) 'active' THEN
        RETURN false;                       -- approved already: nothing to do
    END IF;
    UPDATE enrollment.node_record AS r SET status = 'active'
     WHERE r.node_id OPERATOR(pg_catalog.=) n.node_id;
    PERFORM enrollment.audit('sensor_approved', 'node', n.node_id::text,
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'name', n.name, 'cluster_id', n.cluster_id, 'role', n.role)),
        n.enrolled_by, n.node_id);
    PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
        'event', 'node_approved', 'tenant', n.tenant, 'node_id', n.node_id)::text);
    RETURN true;
END
$$;
COMMENT ON FUNCTION enrollment.approve_node(uuid) IS
    'Approve a node waiting as pending_approval: it authenticates from the commit on; false if it was active already';

REVOKE ALL ON FUNCTION enrollment.set_node_approval(text),
                       enrollment.create_auto_approve_rule(text, text, text[], integer),
                       enrollment.delete_auto_approve_rule(uuid),
                       enrollment.approve_node(uuid) FROM PUBLIC;

CREATE VIEW enrollment.auto_approve_rules WITH (security_barrier) AS
SELECT r.rule_id,
       r.tenant,
       r.cluster_id,
       r.label,
       r.allowed_roles,
       r.max_nodes,
       CASE WHEN r.max_nodes IS NOT NULL THEN r.approved_count END AS approved_count,
       r.created_by,
       r.created_at
  FROM enrollment.auto_approve_rule AS r
 WHERE r.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('operator', 'list auto-approve rules'));
COMMENT ON VIEW enrollment.auto_approve_rules IS
    'Auto-approve rules of the current tenant (they act where set_node_approval is manual)';
COMMENT ON COLUMN enrollment.auto_approve_rules.allowed_roles IS 'Node roles the rule approves; empty: any';
COMMENT ON COLUMN enrollment.auto_approve_rules.approved_count IS 'Nodes the rule has approved, counted against max_nodes; NULL for a rule without a cap, which counts none';
REVOKE ALL ON enrollment.auto_approve_rules FROM PUBLIC;

--------------------------------------------------------------------------
-- Where a node is placed (0.7.0, seed 001): its group, its private address
-- and the OS it reports.  enroll's node_group names the group; a group the
-- tenant does not have yet is created by the first enrollment that names
-- it (audited group_created), and a node enrolled without one is in the
-- group 'default', which every tenant has without a row.  Where the tenant
-- has an address pool (set_ip_pool), each new node gets a free host
-- address of it (src/placement.c).  A re-enrolled node keeps its address;
-- a group or OS passed with the re-enrollment replaces the one it had.
--------------------------------------------------------------------------

CREATE TABLE enrollment.node_group (
    tenant      text NOT NULL,
    name        text NOT NULL CHECK (pg_catalog.char_length(name) BETWEEN 1 AND 64),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (tenant, name)
);
REVOKE ALL ON enrollment.node_group FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('enrollment.node_group', '');

-- The addresses of a tenant's nodes, one row per address held (removed
-- nodes included, until the pool runs out and hands theirs on): the primary
-- key keeps two nodes of a tenant from holding one address, and the pool is
-- searched here (src/placement.c).  node_record.private_ip is the node's
-- copy, for listings.  Only a tenant with a pool writes rows here, so the
-- enrollments of the others open no index for addresses.
CREATE TABLE enrollment.node_address (
    tenant   text NOT NULL,
    address  inet NOT NULL CHECK (pg_catalog.masklen(address) OPERATOR(pg_catalog.=)
                                  CASE pg_catalog.family(address) WHEN 4 THEN 32 ELSE 128 END),
    node_id  uuid NOT NULL REFERENCES enrollment.node_record (node_id) ON DELETE CASCADE,
    PRIMARY KEY (tenant, address)
);
CREATE INDEX node_address_node_id_idx ON enrollment.node_address (node_id);
REVOKE ALL ON enrollment.node_address FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('enrollment.node_address', '');

-- The current tenant's address pool: a network with at least two host
-- addresses (a mask of at most 30 bits for IPv4, 126 for IPv6), or NULL
-- for none.  Returns the pool before.  New nodes get an address of it from
-- its commit on; nodes keep the addresses they have, also outside a new
-- pool.  The tenant's enrollments under way finish first, and new ones
-- wait for its commit (lock_pool_setting); only where no tenant had a
-- pool, an enrollment already past that question may still commit after
-- it without an address (src/placement.c).  Unlike set_node_limit, it
-- does not hold up the other tenants' enrollments: it is a tenant admin's
-- call.
CREATE FUNCTION enrollment.lock_pool_setting(tenant text) RETURNS void
    AS 'MODULE_PATHNAME', 'enrollment_lock_pool_setting' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION enrollment.lock_pool_setting(text) IS
    'Wait for the tenant''s enrollments under way and hold new ones until the commit (called by set_ip_pool)';
REVOKE ALL ON FUNCTION enrollment.lock_pool_setting(text) FROM PUBLIC;

CREATE FUNCTION enrollment.set_ip_pool(pool cidr) RETURNS cidr
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    t text := enrollment.current_tenant();
    previous cidr;
BEGIN
    PERFORM enrollment.require_role('admin', 'set the address pool');
    IF (pg_catalog.masklen(set_ip_pool.pool) OPERATOR(pg_catalog.>)
        CASE pg_catalog.family(set_ip_pool.pool) WHEN 4 THEN 30 ELSE 126 END) THEN
        RAISE EXCEPTION 'invalid address pool' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Network %s has fewer than two host addresses.', set_ip_pool.pool),
            HINT = 'Give a network with a mask of at most 30 bits (IPv4) or 126 bits (IPv6).';
    END IF;
    -- before the setting row, which an enrollment locks after its share of this
    PERFORM enrollment.lock_pool_setting(t);
    INSERT INTO enrollment.tenant_setting AS s (tenant) VALUES (t) ON CONFLICT (tenant) DO NOTHING;
    SELECT s.ip_pool INTO previous FROM enrollment.tenant_setting AS s
     WHERE s.tenant OPERATOR(pg_catalog.=) t FOR UPDATE;
    UPDATE enrollment.tenant_setting AS s SET ip_pool = set_ip_pool.pool
     WHERE s.tenant OPERATOR(pg_catalog.=) t;
    PERFORM enrollment.audit('ip_pool_set', 'tenant', t,
        pg_catalog.jsonb_build_object('pool', set_ip_pool.pool, 'previous', previous));
    RETURN previous;
END
$$;
COMMENT ON FUNCTION enrollment.set_ip_pool(cidr) IS
    'The network the current tenant''s new nodes get their private address from (NULL: none); returns the one before (admin)';
REVOKE ALL ON FUNCTION enrollment.set_ip_pool(cidr) FROM PUBLIC;

CREATE VIEW enrollment.node_groups WITH (security_barrier) AS
SELECT g.tenant, g.name, g.created_by, g.created_at,
       COALESCE(c.nodes, 0) AS nodes
  FROM (SELECT enrollment.current_tenant() AS tenant, 'default'::text AS name,
               NULL::text AS created_by, NULL::timestamptz AS created_at
        UNION ALL
        SELECT r.tenant, r.name, r.created_by, r.created_at
          FROM enrollment.node_group AS r
         WHERE r.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()) AS g
  LEFT JOIN (SELECT n.node_group, pg_catalog.count(*) AS nodes
               FROM enrollment.node_record AS n
              WHERE n.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
                AND n.status OPERATOR(pg_catalog.<>) 'removed'
              GROUP BY n.node_group) AS c ON c.node_group OPERATOR(pg_catalog.=) g.name
 WHERE (SELECT enrollment.require_role('viewer', 'list node groups'));
COMMENT ON VIEW enrollment.node_groups IS
    'Node groups of the current tenant (''default'' included), with how many of its nodes that are not removed each has';
COMMENT ON COLUMN enrollment.node_groups.created_by IS 'Actor of the enrollment that created the group; NULL for ''default''';
REVOKE ALL ON enrollment.node_groups FROM PUBLIC;

CREATE VIEW enrollment.ip_pools WITH (security_barrier) AS
SELECT s.tenant, s.ip_pool AS pool,
       ((2::numeric OPERATOR(pg_catalog.^)
          (CASE pg_catalog.family(s.ip_pool) WHEN 4 THEN 32 ELSE 128 END
           OPERATOR(pg_catalog.-) pg_catalog.masklen(s.ip_pool))) OPERATOR(pg_catalog.-) 2)::numeric(39, 0) AS addresses,
       (SELECT pg_catalog.count(*) FROM enrollment.node_address AS a
          JOIN enrollment.node_record AS n ON n.node_id OPERATOR(pg_catalog.=) a.node_id
         WHERE a.tenant OPERATOR(pg_catalog.=) s.tenant AND a.address OPERATOR(pg_catalog.<<) s.ip_pool
           AND n.status OPERATOR(pg_catalog.<>) 'removed') AS in_use,
       (SELECT pg_catalog.count(*) FROM enrollment.node_address AS a
          JOIN enrollment.node_record AS n ON n.node_id OPERATOR(pg_catalog.=) a.node_id
         WHERE a.tenant OPERATOR(pg_catalog.=) s.tenant AND a.address OPERATOR(pg_catalog.<<) s.ip_pool
           AND n.status OPERATOR(pg_catalog.=) 'removed') AS held_by_removed
  FROM enrollment.tenant_setting AS s
 WHERE s.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant() AND s.ip_pool IS NOT NULL
   AND (SELECT enrollment.require_role('operator', 'list the address pool'));
COMMENT ON VIEW enrollment.ip_pools IS
    'The current tenant''s address pool, if it has one: its host addresses, and how many nodes hold one';
COMMENT ON COLUMN enrollment.ip_pools.addresses IS 'Host addresses new nodes may get (the network''s first and last are never given)';
COMMENT ON COLUMN enrollment.ip_pools.held_by_removed IS 'Addresses removed nodes still hold; handed on once no other is free';
REVOKE ALL ON enrollment.ip_pools FROM PUBLIC;

--------------------------------------------------------------------------
-- Views (the listing interface)
--
-- tokens, nodes and audit_log are not security barriers: a barrier view is
-- planned apart from the query around it, so a page of a large tenant
-- ("ORDER BY created_at DESC LIMIT 50") would sort all its rows instead of
-- reading 50 from the index.  The small listings (members, api_tokens,
-- api_keys, tenant_stats) are.  See "Privileges" in the README: readers of
-- these three views must not be able to create functions.
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
       t.use_count OPERATOR(pg_catalog.+) CASE WHEN t.kind OPERATOR(pg_catalog.<>) 'once'
            THEN (SELECT pg_catalog.count(*)::integer FROM enrollment.token_use AS u
                   WHERE u.token_id OPERATOR(pg_catalog.=) t.token_id)
            ELSE 0 END AS use_count,
       t.max_uses,
       t.cluster_id,
       t.node_id,
       t.created_by,
       t.created_at,
       t.expires_at,
       t.used_at,
       CASE WHEN t.kind OPERATOR(pg_catalog.<>) 'once'
            THEN GREATEST(t.last_used_at, (SELECT pg_catalog.max(u.used_at) FROM enrollment.token_use AS u
                                            WHERE u.token_id OPERATOR(pg_catalog.=) t.token_id))
            ELSE t.last_used_at END AS last_used_at,
       t.revoked_at,
       CASE WHEN t.kind OPERATOR(pg_catalog.=) 'reusable'
            THEN (SELECT r.max_per_hour FROM enrollment.token_rate AS r
                   WHERE r.token_id OPERATOR(pg_catalog.=) t.token_id)
            END AS max_per_hour
  FROM enrollment.enrollment_token AS t
 WHERE t.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('operator', 'list enrollment tokens'));
COMMENT ON VIEW enrollment.tokens IS 'Enrollment tokens, without secrets or digests';
COMMENT ON COLUMN enrollment.tokens.prefix IS 'Public part of the token (prefix and public id), safe to log and match';
COMMENT ON COLUMN enrollment.tokens.status IS 'pending/active, used, exhausted, expired or revoked, as of now';
COMMENT ON COLUMN enrollment.tokens.use_count IS 'Successful enrollments through this token';
COMMENT ON COLUMN enrollment.tokens.max_uses IS 'Cap on enrollments (max_nodes for cluster tokens); NULL is unlimited';
COMMENT ON COLUMN enrollment.tokens.node_id IS 'For a re-enrollment token: the node it is bound to';
COMMENT ON COLUMN enrollment.tokens.expires_at IS 'End of validity; NULL (reusable only) never expires';
COMMENT ON COLUMN enrollment.tokens.used_at IS 'First successful enrollment';
COMMENT ON COLUMN enrollment.tokens.last_used_at IS 'Latest successful enrollment';
COMMENT ON COLUMN enrollment.tokens.max_per_hour IS 'Most enrollments per hour (reusable tokens, set_token_rate); NULL is no limit';

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
       n.last_seen_at,
       n.node_group,
       n.os,
       n.private_ip,
       COALESCE(n.status OPERATOR(pg_catalog.=) 'active'
                AND n.last_seen_at OPERATOR(pg_catalog.>=) (pg_catalog.statement_timestamp()
                    OPERATOR(pg_catalog.-) COALESCE(pg_catalog.current_setting('enrollment.online_window', true),
                                                    '5min')::pg_catalog.interval), false) AS online
  FROM enrollment.node_record AS n
 WHERE n.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('viewer', 'list nodes'));
COMMENT ON VIEW enrollment.nodes IS 'Enrolled nodes, without credentials';
COMMENT ON COLUMN enrollment.nodes.token_id IS 'Token the node was first enrolled with';
COMMENT ON COLUMN enrollment.nodes.credential_prefix IS 'Public part of the node''s current credential';
COMMENT ON COLUMN enrollment.nodes.enroll_count IS '1 plus the number of re-enrollments';
COMMENT ON COLUMN enrollment.nodes.private_ip IS 'Address from the tenant''s pool (NULL: it had none when the node enrolled)';
COMMENT ON COLUMN enrollment.nodes.online IS 'Active and seen (authenticated) within enrollment.online_window; the worker writes last_seen_at each round';

CREATE VIEW enrollment.audit_log AS
SELECT a.event_id, a.tenant, a.occurred_at, a.actor, a.action, a.token_id, a.node_id, a.details,
       a.object_type, a.object_id
  FROM enrollment.audit_event AS a
 WHERE a.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.may_read_audit());
COMMENT ON VIEW enrollment.audit_log IS 'Append-only record of every change: who, what, when, which token or node';

CREATE VIEW enrollment.api_keys WITH (security_barrier) AS
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
 WHERE k.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('admin', 'list API keys'))
   AND k.revoked_at IS NULL
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
    enrollment.uuid_v7(),
    enrollment.enrollment_token_rules(enrollment.enrollment_token),
    enrollment.node_record_rules(enrollment.node_record),
    enrollment.create_token(text, text, interval, integer, text, uuid, integer),
    enrollment.enroll(text, text, text, text, text, text),
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
    enrollment.revoke_api_key(text),
    enrollment.key_last_used(bigint)
  FROM PUBLIC;

--------------------------------------------------------------------------
-- The replay horizon of this database, for failover (0.4.0).  verify_request
-- keeps accepted nonces in shared memory and, before it accepts a request
-- dated later than anything accepted so far, raises a horizon that covers
-- it (src/shmem.c).  The server keeps its horizon in a file of its own; this
-- one row is a copy that travels with the WAL to standbys.  It is written in
-- place, by C code only, never by UPDATE (src/replay_horizon.c): the write
-- needs no transaction id, is not undone when the verifying transaction
-- rolls back, and is replayed on a standby like any heap change.  After a
-- promotion, verification in this database refuses every request dated at
-- or before the horizon the old primary stored here.
--------------------------------------------------------------------------

CREATE TABLE enrollment.replay_horizon (
    instance  bigint NOT NULL,      -- random id of the server start that wrote the row
    horizon   bigint NOT NULL       -- every request accepted in this database is dated <= horizon (Unix seconds)
);
CREATE UNIQUE INDEX replay_horizon_one_row ON enrollment.replay_horizon ((true));
INSERT INTO enrollment.replay_horizon VALUES (0, 0);
COMMENT ON TABLE enrollment.replay_horizon IS
    'One row, written in place by verify_request: the replay horizon of this database, replicated to standbys';
REVOKE ALL ON enrollment.replay_horizon FROM PUBLIC;
