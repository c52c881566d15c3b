-- enrollment 0.4.0 -> 0.5.0
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.5.0'" to load this file. \quit

--------------------------------------------------------------------------
-- Counting a use of an enrollment token becomes a HOT update (0.5.0).  The
-- two indexes the worker used to find tokens to expire and to purge were
-- partial on status and indexed last_used_at, so every enrollment wrote new
-- entries into all four indexes of the token table.  They are replaced by
-- one index on retention_from, a column a use changes only when it ends the
-- token and its expiry is further away than enrollment.token_retention, and
-- a quarter of each new page is left free for the updated row versions.
--------------------------------------------------------------------------

ALTER TABLE enrollment.enrollment_token ADD COLUMN retention_from timestamptz;
ALTER TABLE enrollment.enrollment_token SET (fillfactor = 75);

DROP INDEX enrollment.enrollment_token_expires_at_idx;
DROP INDEX enrollment.enrollment_token_terminal_idx;

-- existing rows keep the purge clock 0.4.0 gave them: the expiry of pending,
-- active and expired tokens, the last use of used and exhausted ones
UPDATE enrollment.enrollment_token
   SET retention_from = CASE WHEN status OPERATOR(pg_catalog.=) ANY (ARRAY['used', 'exhausted']) THEN last_used_at
                             WHEN status OPERATOR(pg_catalog.=) 'revoked' THEN NULL
                             ELSE expires_at END;

CREATE INDEX enrollment_token_retention_from_idx
    ON enrollment.enrollment_token (retention_from);

-- a revoked token is kept: revocation clears its retention_from

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
       SET status = 'revoked', revoked_at = pg_catalog.statement_timestamp(), revoked_by = actor,
           retention_from = NULL
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

CREATE OR REPLACE FUNCTION enrollment.remove_member(identity text) RETURNS jsonb
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
