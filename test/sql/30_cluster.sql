-- cluster tokens: the cluster binding and the max_nodes cap (max_uses)
\set VERBOSITY terse

SELECT token AS tk, token_id AS tk_id
  FROM enrollment.create_token('cluster', 'daemonset', cluster_id => 'ran-zone-a', max_uses => 3) \gset
SELECT status, use_count, max_uses FROM enrollment.tokens WHERE token_id = :'tk_id';

-- another cluster, or none, is rejected and counts nothing
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'tk', 'n-1', 'ran-zone-b'));
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'tk', 'n-1'));
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'tk', 'n-1', 'RAN-ZONE-A'));
SELECT ok, error FROM enrollment.check_token(:'tk', 'ran-zone-b');
SELECT ok, error FROM enrollment.check_token(:'tk');   -- none given: what enroll says
SELECT ok, error FROM enrollment.check_token(:'tk', 'ran-zone-a');
SELECT use_count FROM enrollment.tokens WHERE token_id = :'tk_id';

-- the right cluster: each node is a new node; the cap closes the token
SELECT status, reenrolled FROM enrollment.enroll(:'tk', 'n-1', 'ran-zone-a', 'worker');
SELECT status FROM enrollment.enroll(:'tk', 'n-2', 'ran-zone-a');
SELECT status, use_count FROM enrollment.tokens WHERE token_id = :'tk_id';
-- the same node name again is a separate node (re-enrollment needs a re-enrollment token)
SELECT status FROM enrollment.enroll(:'tk', 'n-1', 'ran-zone-a');
SELECT status, use_count FROM enrollment.tokens WHERE token_id = :'tk_id';
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'tk', 'n-4', 'ran-zone-a'));
SELECT name, cluster_id, role FROM enrollment.nodes WHERE token_id = :'tk_id' ORDER BY enrolled_at, name, role;
SELECT ok, error, status, uses_left FROM enrollment.check_token(:'tk', 'ran-zone-a');

-- without max_uses a cluster token has no cap
SELECT token AS tn, token_id AS tn_id FROM enrollment.create_token('cluster', cluster_id => 'edge') \gset
SELECT count(*) FROM generate_series(1, 10) i, LATERAL enrollment.enroll(:'tn', 'e-' || i, 'edge');
SELECT status, use_count, max_uses FROM enrollment.tokens WHERE token_id = :'tn_id';

-- an expired cluster token
SELECT token AS tx, token_id AS tx_id FROM enrollment.create_token('cluster', cluster_id => 'old') \gset
UPDATE enrollment.enrollment_token SET expires_at = now() - interval '1 minute'  -- let time pass
 WHERE token_id = :'tx_id';
SELECT status FROM enrollment.tokens WHERE token_id = :'tx_id';
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'tx', 'o-1', 'old'));
