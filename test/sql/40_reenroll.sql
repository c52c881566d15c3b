-- re-enrollment: a once token bound to a node updates that node and issues
-- a new credential; it never creates a second node
\set VERBOSITY terse

SELECT node_id AS n, node_secret AS old_secret
  FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'sensor-7', 'ran-zone-a', 'probe') \gset
SELECT token AS rt, token_id AS rt_id, node_id = :'n' AS bound FROM enrollment.create_token(node_id => :'n') \gset
SELECT :'bound';
SELECT kind, node_id = :'n' AS bound, status FROM enrollment.tokens WHERE token_id = :'rt_id';

-- only the node it is bound to
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'sensor-8'));

SELECT (SELECT count(*) FROM enrollment.nodes) AS nodes_before \gset
SELECT node_id = :'n' AS same_node, node_secret <> :'old_secret' AS new_secret, status, reenrolled,
       node_secret AS new_secret_text
  FROM enrollment.enroll(:'rt', 'sensor-7') \gset
SELECT :'same_node', :'new_secret', :'status', :'reenrolled';
SELECT count(*) = :nodes_before AS no_second_node FROM enrollment.nodes;
SELECT name, cluster_id, role, enroll_count, reenrolled_at IS NOT NULL AS reenrolled
  FROM enrollment.nodes WHERE node_id = :'n';
SELECT status, use_count FROM enrollment.tokens WHERE token_id = :'rt_id';

-- the old credential stops working, the new one works
SELECT count(*) AS old_works FROM enrollment.authenticate_node(:'old_secret');
SELECT node_id = :'n' AS new_works FROM enrollment.authenticate_node(:'new_secret_text');

-- a re-enrollment token is single use like any once token
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'sensor-7'));

-- role and cluster given at re-enrollment replace the recorded ones
SELECT status FROM enrollment.enroll((SELECT token FROM enrollment.create_token(node_id => :'n')),
                                     'sensor-7', 'ran-zone-b', 'collector');
SELECT cluster_id, role, enroll_count FROM enrollment.nodes WHERE node_id = :'n';

-- a removed node cannot be re-enrolled, nor get a new re-enrollment token
SELECT token AS rt2 FROM enrollment.create_token(node_id => :'n') \gset
UPDATE enrollment.node_record SET status = 'removed', removed_at = now() WHERE node_id = :'n';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt2', 'sensor-7'));
SELECT err(format('SELECT enrollment.create_token(node_id => %L)', :'n'));
SELECT count(*) AS removed_cannot_authenticate FROM enrollment.authenticate_node(:'new_secret_text');

-- a node of another tenant is not visible for binding
SELECT node_id AS n2 FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'other') \gset
SET enrollment.tenant = 'acme';
SELECT err(format('SELECT enrollment.create_token(node_id => %L)', :'n2'));
RESET enrollment.tenant;
