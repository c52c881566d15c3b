-- enrollment 0.6.0 -> 0.7.0
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.7.0'" to load this file. \quit

-- 0.7.0: a tenant's license node limit.  An enrollment that would create a
-- node beyond it is refused with node_limit_exceeded (SQLSTATE NR007).  And
-- a reusable token's limit of enrollments per hour, refused with
-- rate_limited (NR008).  The library checks neither until this update has
-- added the column and the table.

ALTER TABLE enrollment.tenant_setting
    ADD COLUMN node_limit integer CHECK (node_limit OPERATOR(pg_catalog.>=) 0),
    ADD COLUMN node_approval text CHECK (node_approval OPERATOR(pg_catalog.=) 'manual');

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

DROP INDEX enrollment.node_record_enrolled_by_idx;
-- (enrolled_by, enrolled_at) since 0.7.0: a token's enrollments of the last
-- hour are one range of it (src/rate_limit.c)
CREATE INDEX node_record_enrolled_by_idx ON enrollment.node_record (enrolled_by, enrolled_at);

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

-- the tokens view shows the rate (a column added at the end)
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
       t.revoked_at,
       CASE WHEN t.kind OPERATOR(pg_catalog.=) 'reusable'
            THEN (SELECT r.max_per_hour FROM enrollment.token_rate AS r
                   WHERE r.token_id OPERATOR(pg_catalog.=) t.token_id)
            END AS max_per_hour
  FROM enrollment.enrollment_token AS t
 WHERE t.tenant OPERATOR(pg_catalog.=) enrollment.current_tenant()
   AND (SELECT enrollment.require_role('operator', 'list enrollment tokens'));
COMMENT ON COLUMN enrollment.tokens.max_per_hour IS 'Most enrollments per hour (reusable tokens, set_token_rate); NULL is no limit';

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

COMMENT ON FUNCTION enrollment.authenticate_node(text) IS
    'The node a credential belongs to, or no row when the credential is unknown or wrong, or the node is not active (removed, or waiting for approval)';

--------------------------------------------------------------------------
-- Where a node is placed (0.7.0): the node's group, OS and private
-- address, the tenant's address pool, and two more columns of enroll's
-- result.  enroll takes node_group and node_os: its arguments change, so
-- it is dropped and created again, and the EXECUTE grants given on it are
-- carried over (and kept out of the extension's initial privileges: see
-- below).
--------------------------------------------------------------------------

ALTER TABLE enrollment.node_record
    ADD COLUMN node_group text NOT NULL DEFAULT 'default',
    ADD COLUMN os text,
    ADD COLUMN private_ip inet;
ALTER TABLE enrollment.tenant_setting
    ADD COLUMN ip_pool cidr CHECK (pg_catalog.masklen(ip_pool) OPERATOR(pg_catalog.<=)
                                   CASE pg_catalog.family(ip_pool) WHEN 4 THEN 30 ELSE 126 END);
ALTER TYPE enrollment.enrolled_node
    ADD ATTRIBUTE node_group text,
    ADD ATTRIBUTE private_ip inet;
-- authenticate_node answers where the node is, too
ALTER TYPE enrollment.node_identity
    ADD ATTRIBUTE node_group text,
    ADD ATTRIBUTE os text,
    ADD ATTRIBUTE private_ip inet;

DO $upgrade$
DECLARE
    old     text := 'enrollment.enroll(text, text, text, text)';
    fn      text := 'enrollment.enroll(text, text, text, text, text, text)';
    stmt    text;
    grants  text[] := '{}';
    g       record;
BEGIN
    FOR g IN
        SELECT a.grantee, a.is_grantable
          FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
         WHERE p.oid = old::pg_catalog.regprocedure
           AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        grants := grants || pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', fn,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                 ELSE g.grantee::pg_catalog.regrole::text END,  -- regrole quotes as needed
            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    EXECUTE 'DROP FUNCTION ' || old;
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
    EXECUTE 'REVOKE ALL ON FUNCTION ' || fn || ' FROM PUBLIC';
    FOREACH stmt IN ARRAY grants LOOP
        EXECUTE stmt;
    END LOOP;
END
$upgrade$;

-- A GRANT run by an extension script is recorded as one of the extension's
-- initial privileges (pg_init_privs), which pg_dump leaves out of a dump.
-- So the grants carried over just now, and those the updates to 0.2.0 and
-- 0.3.0 carried over onto the functions they made again, would be lost by
-- a dump and restore.  The extension grants nothing on its functions to
-- anyone but their owner: every other grantee is taken out of their
-- initial privileges, which are then those of a fresh install.
UPDATE pg_catalog.pg_init_privs AS i
   SET initprivs = ARRAY(SELECT a FROM pg_catalog.unnest(i.initprivs) AS a
                          WHERE NOT EXISTS (SELECT FROM pg_catalog.aclexplode(ARRAY[a]) AS x
                                             WHERE x.grantee OPERATOR(pg_catalog.<>) p.proowner))
  FROM pg_catalog.pg_proc AS p, pg_catalog.pg_depend AS d
 WHERE i.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND i.objoid = p.oid
   AND d.classid = i.classoid AND d.objid = i.objoid AND d.deptype = 'e'
   AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension AS e WHERE e.extname = 'enrollment');

COMMENT ON FUNCTION enrollment.enroll(text, text, text, text, text, text) IS
    'Enroll a machine with a token: counts the use, creates (or re-enrolls) the node, places it (group, address, OS) and returns its credential once';

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

-- the nodes view shows where each node is placed
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
COMMENT ON COLUMN enrollment.nodes.private_ip IS 'Address from the tenant''s pool (NULL: it had none when the node enrolled)';
COMMENT ON COLUMN enrollment.nodes.online IS 'Active and seen (authenticated) within enrollment.online_window; the worker writes last_seen_at each round';

-- remove_member revokes the re-enrollment tokens of the nodes it removes
-- (see revoke_bound_tokens)
-- Removing a member revokes every enrollment token and API token they
-- created and removes the nodes enrolled through their tokens (seed 001),
-- in one transaction, each change audited.
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
