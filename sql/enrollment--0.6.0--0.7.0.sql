-- enrollment 0.6.0 -> 0.7.0
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.7.0'" to load this file. \quit

-- 0.7.0: a tenant's license node limit.  An enrollment that would create a
-- node beyond it is refused with node_limit_exceeded (SQLSTATE NR007).  The
-- library checks nothing until this update has added the column.

ALTER TABLE enrollment.tenant_setting
    ADD COLUMN node_limit integer CHECK (node_limit OPERATOR(pg_catalog.>=) 0);

-- The current tenant's license node limit (0.7.0): a DBA's call, since the
-- license is not the tenant's to raise.  NULL lifts it.  A limit below the
-- nodes the tenant has removes none; it stops new enrollments until enough
-- are removed.  Returns the nodes the tenant has now (not removed).
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
    INSERT INTO enrollment.tenant_setting AS s (tenant, node_limit)
    VALUES (t, set_node_limit.node_limit)
    ON CONFLICT (tenant) DO UPDATE SET node_limit = excluded.node_limit;
    SELECT pg_catalog.count(*) INTO n FROM enrollment.node_record AS r
     WHERE r.tenant OPERATOR(pg_catalog.=) t AND r.status OPERATOR(pg_catalog.<>) 'removed';
    PERFORM enrollment.audit('node_limit_set', 'tenant', t,
                             pg_catalog.jsonb_build_object('node_limit', set_node_limit.node_limit, 'nodes', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION enrollment.set_node_limit(integer) IS
    'License node limit of the current tenant (NULL: none); returns its nodes not removed (DBA only)';
REVOKE ALL ON FUNCTION enrollment.set_node_limit(integer) FROM PUBLIC;
