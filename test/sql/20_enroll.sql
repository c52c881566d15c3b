-- enroll: once tokens, status transitions, every error with its SQLSTATE,
-- node credentials and authenticate_node
\set VERBOSITY terse

-- once: pending -> used
SELECT token AS t1, token_id AS t1_id FROM enrollment.create_token('once', 'web') \gset
SELECT status FROM enrollment.tokens WHERE token_id = :'t1_id';
SELECT node_id AS n1, node_secret AS s1, status, token_id = :'t1_id' AS via_token, reenrolled,
       node_secret ~ '^node_[0-9a-f]{16}\.[A-Za-z0-9_-]{49}$' AS secret_shape
  FROM enrollment.enroll(:'t1', 'web-01', node_role => 'sensor') \gset
SELECT :'status', :'via_token', :'reenrolled', :'secret_shape';
SELECT status, use_count, used_at IS NOT NULL AS used_at_set, last_used_at = used_at AS last_used
  FROM enrollment.tokens WHERE token_id = :'t1_id';
SELECT name, role, cluster_id, status, token_id = :'t1_id' AS enrolled_by, enroll_count,
       credential_prefix = substr(:'s1', 1, 21) AS credential_prefix
  FROM enrollment.nodes WHERE node_id = :'n1';

-- used once: the second attempt is rejected, and nothing changes
SELECT (SELECT count(*) FROM enrollment.nodes) AS nodes_before \gset
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t1', 'web-02'));
SELECT count(*) = :nodes_before AS no_node_created FROM enrollment.nodes;
SELECT use_count FROM enrollment.tokens WHERE token_id = :'t1_id';

-- authenticate_node: the credential identifies its node; anything else gives no row
SELECT node_id = :'n1' AS same_node, name, role, status FROM enrollment.authenticate_node(:'s1');
SELECT count(*) FROM enrollment.authenticate_node(NULL);
SELECT count(*) FROM enrollment.authenticate_node('');
SELECT count(*) FROM enrollment.authenticate_node(:'t1');          -- a token is not a node credential
SELECT count(*) FROM enrollment.authenticate_node(substr(:'s1', 1, 60));
-- one changed character: the checksum rejects it
SELECT count(*) FROM enrollment.authenticate_node(overlay(:'s1' placing
       CASE WHEN substr(:'s1', 30, 1) = 'A' THEN 'B' ELSE 'A' END from 30 for 1));

-- malformed tokens never reach a table
SELECT err($$SELECT enrollment.enroll(NULL, 'x')$$);
SELECT err(format('SELECT enrollment.enroll(%L, NULL)', :'t1'));
SELECT err($$SELECT enrollment.enroll('', 'x')$$);
SELECT err($$SELECT enrollment.enroll('enr_', 'x')$$);
SELECT err(format('SELECT enrollment.enroll(%L, %L)', substr(:'t1', 1, 69), 'x'));    -- truncated
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t1' || 'x', 'x'));              -- too long
SELECT err(format('SELECT enrollment.enroll(%L, %L)', upper(:'t1'), 'x'));              -- wrong case
SELECT err(format('SELECT enrollment.enroll(%L, %L)', replace(:'t1', '.', '-'), 'x'));  -- separator
SELECT err(format('SELECT enrollment.enroll(%L, %L)', 'xyz_' || substr(:'t1', 5), 'x')); -- prefix
SELECT err(format('SELECT enrollment.enroll(%L, %L)', overlay(:'t1' placing '!' from 40 for 1), 'x'));
SELECT err(format('SELECT enrollment.enroll(%L, %L)', overlay(:'t1' placing
       CASE WHEN substr(:'t1', 40, 1) = 'A' THEN 'B' ELSE 'A' END from 40 for 1), 'x'));  -- checksum
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t1', ''));
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t1', repeat('n', 129)));
SELECT err(format('SELECT enrollment.enroll(%L, %L, node_role => %L)', :'t1', 'x', repeat('r', 65)));

-- well formed, right checksum, but the stored digest differs (as for a guessed
-- secret): invalid_token, and the token is not used
SELECT token AS tw, token_id AS tw_id FROM enrollment.create_token() \gset
UPDATE enrollment.enrollment_token SET token_hash = digest('not the token', 'sha256')
 WHERE token_id = :'tw_id';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'tw', 'x'));
SELECT ok, error FROM enrollment.check_token(:'tw');
SELECT status, use_count FROM enrollment.tokens WHERE token_id = :'tw_id';
-- the same for a node credential
UPDATE enrollment.node_record SET secret_hash = digest('not the secret', 'sha256') WHERE node_id = :'n1';
SELECT count(*) FROM enrollment.authenticate_node(:'s1');

-- expiry is enforced at call time, without any background job
SELECT token AS te, token_id AS te_id FROM enrollment.create_token(ttl => '1 second') \gset
SELECT pg_sleep(1.1);
SELECT status FROM enrollment.tokens WHERE token_id = :'te_id';
-- (no worker runs in this database: the stored status is still the old one)
SELECT status AS stored_status FROM enrollment.enrollment_token WHERE token_id = :'te_id';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'te', 'late'));

-- revoked: token_revoked (revoke_token itself is tested in 40_revoke)
SELECT token AS tr, token_id AS tr_id FROM enrollment.create_token() \gset
SELECT enrollment.revoke_token(:'tr_id');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'tr', 'x'));

-- reusable: active until max_uses, then exhausted
SELECT token AS tu, token_id AS tu_id FROM enrollment.create_token('reusable', 'lab', max_uses => 2) \gset
SELECT status, reenrolled FROM enrollment.enroll(:'tu', 'lab-1');
SELECT status, use_count FROM enrollment.tokens WHERE token_id = :'tu_id';
SELECT status FROM enrollment.enroll(:'tu', 'lab-2');
SELECT status, use_count FROM enrollment.tokens WHERE token_id = :'tu_id';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'tu', 'lab-3'));
SELECT count(*) FROM enrollment.nodes WHERE token_id = :'tu_id';

-- reusable without limits stays active; cluster_id given by the node is recorded
SELECT token AS tz, token_id AS tz_id FROM enrollment.create_token('reusable') \gset
SELECT count(*) FROM generate_series(1, 5) i, LATERAL enrollment.enroll(:'tz', 'bulk-' || i, 'dc-1');
SELECT status, use_count, max_uses, expires_at FROM enrollment.tokens WHERE token_id = :'tz_id';
SELECT DISTINCT cluster_id FROM enrollment.nodes WHERE token_id = :'tz_id';

-- check_token: the same verdicts without using the token or raising
SELECT token AS tc, token_id AS tc_id FROM enrollment.create_token() \gset
SELECT ok, error, token_id = :'tc_id' AS same, kind, status, uses_left FROM enrollment.check_token(:'tc');
SELECT use_count FROM enrollment.tokens WHERE token_id = :'tc_id';
SELECT ok, error, status, uses_left FROM enrollment.check_token(:'t1');
SELECT ok, error, status FROM enrollment.check_token(:'te');
SELECT ok, error, status FROM enrollment.check_token(:'tr');
SELECT ok, error, status, uses_left FROM enrollment.check_token(:'tu');
SELECT ok, error, token_id FROM enrollment.check_token('garbage');
SELECT ok, error FROM enrollment.check_token(NULL);

-- the result row follows a change of the result type within the session:
-- the backend's copy of the row descriptor is checked against the type
-- cache (a copy kept regardless fails here with "row type of datum tuple
-- was altered")
SELECT token AS tk FROM enrollment.create_token('reusable', max_uses => 3) \gset
SELECT ok, uses_left, pg_typeof(uses_left) FROM enrollment.check_token(:'tk');
BEGIN;
ALTER TYPE enrollment.token_check ALTER ATTRIBUTE uses_left TYPE bigint;
SELECT ok, uses_left, pg_typeof(uses_left) FROM enrollment.check_token(:'tk');
ROLLBACK;
SELECT ok, uses_left, pg_typeof(uses_left) FROM enrollment.check_token(:'tk');
