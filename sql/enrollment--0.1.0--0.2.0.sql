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
                     ELSE g.grantee::pg_catalog.regrole::text END,  -- regrole quotes as needed
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

--------------------------------------------------------------------------
-- Tenants, members, roles, API tokens and the audit chain
--------------------------------------------------------------------------

ALTER TABLE enrollment.audit_event ADD COLUMN object_type text, ADD COLUMN object_id text;

CREATE OR REPLACE FUNCTION enrollment.audit_event_immutable() RETURNS trigger
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
CREATE TABLE enrollment.tenant_setting (
    tenant            text PRIMARY KEY,
    api_token_prefix  text NOT NULL DEFAULT 'api_'
                      CHECK (api_token_prefix OPERATOR(pg_catalog.~) '^[a-z][a-z0-9-]{0,14}_$')
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

    FOR t IN
        UPDATE enrollment.enrollment_token AS e
           SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = cur_actor
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
    PERFORM enrollment.require_role('admin', 'verify the audit log');
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
    PERFORM enrollment.require_role('owner', 'purge the audit log');
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

CREATE VIEW enrollment.members AS
SELECT m.identity, m.role, m.added_at, m.added_by
  FROM enrollment.member AS m
 WHERE m.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('admin', 'list members'));
COMMENT ON VIEW enrollment.members IS 'Members of the current tenant and their roles (admin and above)';

-- Owners and admins see every API token of the tenant, operators their own
CREATE VIEW enrollment.api_tokens AS
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
CREATE VIEW enrollment.tenant_stats AS
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

CREATE OR REPLACE FUNCTION enrollment.revoke_api_key(key_id text) RETURNS boolean
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
CREATE OR REPLACE FUNCTION enrollment.revoke_token(token_id uuid) RETURNS boolean
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
       SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = actor
     WHERE e.token_id OPERATOR(pg_catalog.=) t.token_id;
    INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, object_type, object_id, details)
    VALUES (t.tenant, actor, 'sensor_enrollment_token_revoked', t.token_id, 'enrollment_token', t.token_id::text,
            pg_catalog.jsonb_build_object('kind', t.kind,
                'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'),
                'use_count', t.use_count));
    PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
        'event', 'revoked', 'tenant', t.tenant, 'token_id', t.token_id,
        'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'))::text);
    RETURN true;
END
$$;
CREATE OR REPLACE VIEW enrollment.tokens AS
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
  FROM enrollment.enrollment_token AS t
 WHERE t.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('operator', 'list enrollment tokens'));
CREATE OR REPLACE VIEW enrollment.nodes AS
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
  FROM enrollment.node_record AS n
 WHERE n.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('viewer', 'list nodes'));
CREATE OR REPLACE VIEW enrollment.audit_log AS
SELECT a.event_id, a.tenant, a.occurred_at, a.actor, a.action, a.token_id, a.node_id, a.details,
       a.object_type, a.object_id
  FROM enrollment.audit_event AS a
 WHERE a.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.may_read_audit());
CREATE OR REPLACE VIEW enrollment.api_keys AS
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
