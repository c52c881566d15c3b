-- A verdict function that is a FROM item of its own runs as the custom scan
-- of src/call_scan.c instead of PostgreSQL's function scan; every query here
-- must return the same rows both ways (enrollment.call_scan on and off).
SELECT token AS tok FROM enrollment.create_token('reusable', 'call scan') \gset
SELECT token AS ctok FROM enrollment.create_token('cluster', 'call scan', cluster_id => 'c-1') \gset
SELECT key_id AS kid, hmac_secret AS sec FROM enrollment.create_api_key('call scan', ARRAY['events:read']) \gset
-- an API token belongs to a member of the tenant
SELECT enrollment.add_member('call-scan', 'operator');
SET enrollment.actor = 'call-scan';
SELECT token AS atok FROM enrollment.create_api_token('call scan') \gset
RESET enrollment.actor;

-- The plan's scan of a query's verdict call ('custom', 'function', 'both'),
-- and whether its rows are the same with the setting on and off.
CREATE FUNCTION pg_temp.both_ways(q text) RETURNS TABLE (scan text, off_scan text, rows text)
LANGUAGE plpgsql AS $$
DECLARE
    on_rows text;
    off_rows text;
BEGIN
    PERFORM set_config('enrollment.call_scan', 'on', true);
    scan := pg_temp.scan_of(q);
    EXECUTE format('SELECT string_agg(r::text, '' | '' ORDER BY r::text) FROM (%s) r', q) INTO on_rows;
    PERFORM set_config('enrollment.call_scan', 'off', true);
    off_scan := pg_temp.scan_of(q);
    EXECUTE format('SELECT string_agg(r::text, '' | '' ORDER BY r::text) FROM (%s) r', q) INTO off_rows;
    PERFORM set_config('enrollment.call_scan', 'on', true);
    rows := CASE WHEN on_rows IS NOT DISTINCT FROM off_rows THEN 'same: ' || coalesce(on_rows, '(none)')
                 ELSE 'DIFFERENT: ' || coalesce(on_rows, '(none)') || ' / ' || coalesce(off_rows, '(none)') END;
    RETURN NEXT;
END $$;
CREATE FUNCTION pg_temp.scan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    found text := 'neither';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        IF line LIKE '%Custom Scan (EnrollmentCall)%' THEN
            found := 'custom';
        ELSIF line LIKE '%Function Scan%' AND line NOT LIKE '%generate_series%' THEN
            found := CASE found WHEN 'custom' THEN 'both' ELSE 'function' END;
        END IF;
    END LOOP;
    RETURN found;
END $$;
-- check_token as an extension before 0.3.0 declared it: OUT parameters
CREATE FUNCTION pg_temp.check_token_record(token text, cluster_id text DEFAULT NULL,
    OUT ok boolean, OUT error text, OUT token_id uuid, OUT kind text, OUT status text,
    OUT expires_at timestamptz, OUT uses_left integer)
    AS '$libdir/enrollment', 'enrollment_check_token' LANGUAGE C STABLE;
-- the same, STRICT: not called for a NULL token (no release declares it so)
CREATE FUNCTION pg_temp.check_token_strict(token text, cluster_id text DEFAULT NULL,
    OUT ok boolean, OUT error text, OUT token_id uuid, OUT kind text, OUT status text,
    OUT expires_at timestamptz, OUT uses_left integer)
    AS '$libdir/enrollment', 'enrollment_check_token' LANGUAGE C STABLE STRICT;
-- the token and ids vary from run to run: rows show what does not
CREATE FUNCTION pg_temp.call_scan_queries(tok text, ctok text, kid text, sec text, atok text)
RETURNS TABLE (n int, scan text, off_scan text, rows text) LANGUAGE plpgsql AS $$
DECLARE
    q text[] := ARRAY[
        -- every column, some, reordered, none
        format('SELECT ok, error, kind, status, expires_at, uses_left FROM enrollment.check_token(%L)', tok),
        format('SELECT kind, ok FROM enrollment.check_token(%L)', tok),
        format('SELECT count(*) FROM enrollment.check_token(%L)', tok),
        -- refusals, a NULL argument, a cluster token with and without its cluster
        'SELECT ok, error FROM enrollment.check_token(''not a token'')',
        'SELECT ok, error, token_id FROM enrollment.check_token(NULL)',
        format('SELECT ok, error, kind FROM enrollment.check_token(%L, ''c-2'')', ctok),
        format('SELECT ok, error, kind FROM enrollment.check_token(%L, ''c-1'')', ctok),
        -- a qual on a column the target list does not read, passing and not
        format('SELECT error FROM enrollment.check_token(%L) WHERE uses_left IS NULL', tok),
        format('SELECT error FROM enrollment.check_token(%L) WHERE NOT ok', tok),
        -- the other verdicts: a fresh signature per call, a bad one, a bearer token
        format('SELECT ok, error, http_status, scopes FROM enrollment.verify_request(''GET'', ''/x'', enrollment.sign_request(''GET'', ''/x'', %L, %L), NULL, ''events:read'')', kid, sec),
        format('SELECT ok, error, http_status FROM enrollment.verify_request(''GET'', ''/x'', %L, extract(epoch FROM now())::bigint::text, ''n-1'', ''sha256='' || repeat(''0'', 64))', kid),
        'SELECT ok, error FROM enrollment.verify_api_token(''not a token'')',
        -- joined with a table, and in a correlated subquery (called per row)
        format('SELECT g, c.ok FROM generate_series(1, 3) g, enrollment.check_token(%L) c', tok),
        format('SELECT g, (SELECT ok FROM enrollment.check_token(CASE WHEN g = 2 THEN %L END)) FROM generate_series(1, 3) g', tok),
        -- text columns kept across such calls: each new row replaces the last
        -- (a text by a text, by NULL, and NULL by a text)
        format('SELECT g, (SELECT concat_ws('' '', ok, error, kind, status) FROM enrollment.check_token(CASE WHEN g IN (3, 4) THEN %L ELSE ''x'' || g END)) FROM generate_series(1, 4) g', tok),
        format('SELECT g, (SELECT concat_ws('' '', ok, error, http_status, scopes) FROM enrollment.verify_request(''GET'', ''/r/'' || g, enrollment.sign_request(''GET'', ''/r/'' || g, %L, %L), NULL, CASE WHEN g = 2 THEN ''alerts:write'' ELSE ''events:read'' END)) FROM generate_series(1, 3) g', kid, sec),
        format('SELECT g, (SELECT concat_ws('' '', ok, error, http_status, owner IS NOT NULL, cardinality(permissions)) FROM enrollment.verify_api_token(CASE WHEN g = 2 THEN %L ELSE ''x'' END)) FROM generate_series(1, 3) g', atok),
        -- a function returning record (OUT parameters, as up to 0.2.0), same symbol
        format('SELECT ok, kind, uses_left FROM pg_temp.check_token_record(%L)', tok),
        'SELECT ok, error FROM pg_temp.check_token_record(''not a token'')',
        'SELECT ok, error FROM pg_temp.check_token_strict(NULL)',
        -- kept as a function scan: the whole row, LATERAL, WITH ORDINALITY, ROWS FROM of two
        format('SELECT c FROM enrollment.check_token(%L) c', tok),
        format('SELECT g, c.ok FROM generate_series(1, 2) g, enrollment.check_token(CASE WHEN g = 1 THEN %L END) c', tok),
        format('SELECT ok, o FROM enrollment.check_token(%L) WITH ORDINALITY AS c(ok, e, i, k, s, x, u, o)', tok),
        format('SELECT c.ok FROM ROWS FROM (enrollment.check_token(%L), generate_series(1, 2)) AS c(ok, e, i, k, s, x, u, g)', tok)
    ];
BEGIN
    FOR i IN 1 .. array_length(q, 1) LOOP
        SELECT i, b.scan, b.off_scan,
               regexp_replace(regexp_replace(b.rows, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g'),
                              '"\{[^}]*\}"', '<scopes>', 'g')
          INTO n, scan, off_scan, rows FROM pg_temp.both_ways(q[i]) b;
        RETURN NEXT;
    END LOOP;
END $$;
SELECT * FROM pg_temp.call_scan_queries(:'tok', :'ctok', :'kid', :'sec', :'atok');

-- A prepared statement: the generic plan keeps the custom scan and takes
-- each execution's parameter.  EXPLAIN names the function and, as for the
-- function scan, shows its arguments only under VERBOSE (auto_explain logs
-- plans: a literal token must not reach the log)
PREPARE check_it(text) AS SELECT ok, error FROM enrollment.check_token($1);
EXPLAIN (COSTS OFF) EXECUTE check_it('x');
EXECUTE check_it(:'tok');
EXECUTE check_it('x');
EXECUTE check_it(:'tok');
EXECUTE check_it(:'tok');
EXECUTE check_it(:'tok');
EXECUTE check_it(:'tok');
EXECUTE check_it('x');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE check_it('x');
DEALLOCATE check_it;
EXPLAIN (VERBOSE, COSTS OFF) SELECT ok FROM enrollment.check_token('x') WHERE uses_left > 0;

-- Called once per statement, as by the function scan: the inner side of a
-- nested loop is rescanned for every outer row without calling the
-- function again, so one signed request is accepted on all three rows (a
-- second call would be a replay); the next statement is the replay.
SELECT enrollment.sign_request('GET', '/once', :'kid', :'sec') AS headers \gset
SET enable_material = off;
SELECT pg_temp.scan_of(format('SELECT g, v.ok FROM generate_series(1, 3) g LEFT JOIN enrollment.verify_request(''GET'', ''/once'', %L::jsonb, NULL, ''events:read'') v ON true', :'headers'));
SELECT g, v.ok, v.error FROM generate_series(1, 3) g
  LEFT JOIN enrollment.verify_request('GET', '/once', :'headers'::jsonb, NULL, 'events:read') v ON true;
SELECT g, v.ok, v.error FROM generate_series(1, 3) g
  LEFT JOIN enrollment.verify_request('GET', '/once', :'headers'::jsonb, NULL, 'events:read') v ON true;
-- The same in a correlated subquery whose qual reads the outer row: the
-- function reads no outer parameter, so a new outer row does not call it
-- again (one call: three times true)
SELECT enrollment.sign_request('GET', '/once', :'kid', :'sec') AS headers \gset
SELECT pg_temp.scan_of(format('SELECT g, (SELECT v.ok FROM enrollment.verify_request(''GET'', ''/once'', %L::jsonb, NULL, ''events:read'') v WHERE v.ok OR g < 0) FROM generate_series(1, 3) g', :'headers'));
SELECT g, (SELECT v.ok FROM enrollment.verify_request('GET', '/once', :'headers'::jsonb, NULL, 'events:read') v
            WHERE v.ok OR g < 0) AS ok
  FROM generate_series(1, 3) g;
RESET enable_material;

-- The verdict functions hand their row to the scan instead of forming a
-- composite value; EXPLAIN ANALYZE shows how the last call's row came.  The
-- same when the JIT compiles (and inlines) the call and when function usage
-- is counted, which compile the call into other steps
CREATE FUNCTION pg_temp.row_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) ' || q INTO plan;
    RETURN coalesce(plan -> 0 -> 'Plan' ->> 'Row', 'no row line');
END $$;
SELECT token AS rtok FROM enrollment.create_token('once', 'call scan row') \gset
SELECT w, pg_temp.row_of(q) FROM (VALUES
    (1, 'check_token', format('SELECT ok FROM enrollment.check_token(%L)', :'tok')),
    (2, 'check_token, refused', 'SELECT error FROM enrollment.check_token(''x'')'),
    (3, 'verify_request', format('SELECT ok FROM enrollment.verify_request(''GET'', ''/row'', %L, extract(epoch FROM now())::bigint::text, ''n-row'', ''sha256='' || repeat(''0'', 64))', :'kid')),
    (4, 'verify_request, headers', format('SELECT ok, scopes FROM enrollment.verify_request(''GET'', ''/row'', enrollment.sign_request(''GET'', ''/row'', %L, %L), NULL)', :'kid', :'sec')),
    (5, 'verify_api_token', format('SELECT ok, permissions FROM enrollment.verify_api_token(%L)', :'atok')),
    (6, 'enroll', format('SELECT status, node_group FROM enrollment.enroll(%L, ''cs-row-node'')', :'rtok')),
    (7, 'record form', 'SELECT ok FROM pg_temp.check_token_record(NULL)'),
    (8, 'strict, NULL', 'SELECT ok FROM pg_temp.check_token_strict(NULL)')
  ) AS t(n, w, q) ORDER BY n;
SET jit = on;
SET jit_above_cost = 0;
SET jit_inline_above_cost = 0;
SET jit_optimize_above_cost = 0;
SELECT pg_temp.row_of(format('SELECT ok, kind FROM enrollment.check_token(%L)', :'tok')) AS jit;
RESET jit;
RESET jit_above_cost;
RESET jit_inline_above_cost;
RESET jit_optimize_above_cost;
SET track_functions = 'all';
SELECT pg_temp.row_of(format('SELECT ok, kind FROM enrollment.check_token(%L)', :'tok')) AS track_functions;
RESET track_functions;
SET enrollment.call_scan = off;
SELECT pg_temp.row_of(format('SELECT ok FROM enrollment.check_token(%L)', :'tok')) AS function_scan;
RESET enrollment.call_scan;

-- A cursor moves over the one row both ways, as over a function scan's
BEGIN;
DECLARE c CURSOR FOR SELECT ok, kind FROM enrollment.check_token(:'tok');
FETCH NEXT c;
FETCH NEXT c;
FETCH PRIOR c;
FETCH PRIOR c;
FETCH NEXT c;
COMMIT;

-- enroll as a FROM item of its own takes the custom scan too, once
SELECT token AS otok FROM enrollment.create_token('once', 'call scan enroll') \gset
SELECT pg_temp.scan_of(format('SELECT status FROM enrollment.enroll(%L, ''cs-node'')', :'otok'));
SELECT status, reenrolled, node_secret IS NOT NULL AS has_secret FROM enrollment.enroll(:'otok', 'cs-node');
SELECT ok, error FROM enrollment.check_token(:'otok');

-- A function of the same name that is not the extension's keeps the
-- function scan
CREATE FUNCTION pg_temp.check_token(token text, cluster_id text DEFAULT NULL)
    RETURNS enrollment.token_check LANGUAGE sql
    AS $$ SELECT false, 'not ours', NULL::uuid, NULL, NULL, NULL::timestamptz, NULL::int $$;
SELECT pg_temp.scan_of('SELECT ok, error FROM pg_temp.check_token(''x'')');
SELECT ok, error FROM pg_temp.check_token('x');

-- A plan made before the result type changed refuses to run with it
BEGIN;
PREPARE typed AS SELECT ok, uses_left FROM enrollment.check_token('x');
EXECUTE typed;
SAVEPOINT s;
-- (what an upgrade script could do to the result type; rolled back)
ALTER TYPE enrollment.token_check DROP ATTRIBUTE uses_left;
EXECUTE typed;
ROLLBACK TO SAVEPOINT s;
EXECUTE typed;
ROLLBACK;
