-- enrollment 0.5.1 -> 0.6.0
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.6.0'" to load this file. \quit

-- 0.6.0: an enrollment through an active reusable or cluster token without
-- max_uses appends its use to enrollment.token_use instead of updating the
-- token row, so that concurrent enrollments through one such token no longer
-- queue for that row; the worker folds the appended uses into the row.  The
-- library keeps updating the token row until this update has run, which is
-- as correct, only slower for a shared token.

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

-- the listing and revoke_token's audit event add the uses not folded yet
CREATE OR REPLACE VIEW enrollment.tokens AS
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
       t.revoked_at
  FROM enrollment.enrollment_token AS t
 WHERE t.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('operator', 'list enrollment tokens'));

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
                'use_count', t.use_count OPERATOR(pg_catalog.+)
                    (SELECT pg_catalog.count(*)::integer FROM enrollment.token_use AS u
                      WHERE u.token_id OPERATOR(pg_catalog.=) t.token_id)));
    PERFORM pg_catalog.pg_notify('enrollment_events', pg_catalog.json_build_object(
        'event', 'revoked', 'tenant', t.tenant, 'token_id', t.token_id,
        'prefix', t.prefix OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0'))::text);
    RETURN true;
END
$$;

-- The audit chain links the events of every tenant, so verifying it and
-- purging its prefix are for a DBA (as the server-wide counters and the
-- server key are): up to 0.5.1 a tenant's admin could verify it, seeing
-- other tenants' event counts, and a tenant's owner could purge it,
-- deleting other tenants' old events.
CREATE FUNCTION enrollment.require_dba(action text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'enrollment_require_dba'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION enrollment.require_dba(text) IS
    'true if the caller is a DBA (superuser or enrollment_admin, no actor set); raises permission_denied otherwise';
REVOKE ALL ON FUNCTION enrollment.require_dba(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION enrollment.verify_audit_chain(
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

CREATE OR REPLACE FUNCTION enrollment.purge_audit(older_than interval) RETURNS bigint
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

-- any role could read the last use of any tenant's key; the api_keys view
-- calls it with its reader's privileges, so who lists keys is granted it
REVOKE ALL ON FUNCTION enrollment.key_last_used(bigint) FROM PUBLIC;

-- the small listings are security barriers: a caller's own function in
-- WHERE, costed cheaper than the tenant filter, would otherwise see every
-- tenant's rows before the view's filter dropped them
ALTER VIEW enrollment.members SET (security_barrier);
ALTER VIEW enrollment.api_tokens SET (security_barrier);
ALTER VIEW enrollment.tenant_stats SET (security_barrier);
ALTER VIEW enrollment.api_keys SET (security_barrier);
