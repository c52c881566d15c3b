-- Lifecycle of one node and one token (0.7.0): remove_node, renew_token,
-- revoke_token_and_nodes
\set VERBOSITY terse
SET enrollment.tenant = 'lifecycle';

---------------------------------------------------------------- remove_node
SELECT token AS t, token_id AS t_id FROM enrollment.create_token('reusable', 'fleet') \gset
SELECT node_id AS a_id, node_secret AS a_sec FROM enrollment.enroll(:'t', 'node-a') \gset
SELECT node_id AS b_id, node_secret AS b_sec FROM enrollment.enroll(:'t', 'node-b') \gset
SELECT enrollment.remove_node(:'a_id') AS removed_now;
SELECT name, status, removed_at IS NOT NULL AS removed_at_set
  FROM enrollment.node_record WHERE enrolled_by = :'t_id' ORDER BY name;
-- the credential stops at once; the other node's does not
SELECT count(*) AS a_authenticates FROM enrollment.authenticate_node(:'a_sec');
SELECT name FROM enrollment.authenticate_node(:'b_sec');
-- removing again changes nothing and records nothing
SELECT enrollment.remove_node(:'a_id') AS removed_again;
SELECT action, node_id = :'a_id' AS this_node, details
  FROM enrollment.audit_log WHERE action = 'sensor_removed' ORDER BY event_id;
-- the token still enrolls new nodes
SELECT status FROM enrollment.enroll(:'t', 'node-c');

-- a re-enrollment token of a removed node is revoked with it (0.7.0):
-- check_token and enroll refuse it alike, the listing says so, and none can
-- be made for the node any more; a used one stays used
SELECT token AS r, token_id AS r_id FROM enrollment.create_token(node_id => :'b_id') \gset
SELECT token AS r_used, token_id AS r_used_id FROM enrollment.create_token(node_id => :'b_id') \gset
SELECT reenrolled FROM enrollment.enroll(:'r_used', 'node-b');
SELECT ok, error FROM enrollment.check_token(:'r');
SELECT enrollment.remove_node(:'b_id');
SELECT ok, error FROM enrollment.check_token(:'r');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'r', 'node-b'));
SELECT token_id = :'r_id' AS unused_one, status, revoked_at IS NOT NULL AS revoked_at_set
  FROM enrollment.tokens WHERE token_id IN (:'r_id', :'r_used_id') ORDER BY token_id = :'r_id';
SELECT node_id = :'b_id' AS names_node, details->>'reason' AS reason, details->>'use_count' AS use_count
  FROM enrollment.audit_log WHERE action = 'sensor_enrollment_token_revoked' AND token_id = :'r_id';
SELECT err(format('SELECT enrollment.create_token(node_id => %L)', :'b_id'));
-- one that escaped (made pending again by hand here) is still refused at use
UPDATE enrollment.enrollment_token SET status = 'pending', revoked_at = NULL, revoked_by = NULL
 WHERE token_id = :'r_id';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'r', 'node-b'));

-- a removed node frees its place under the tenant's node limit
SELECT enrollment.set_node_limit(1) AS nodes_now;
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t', 'node-d'));
SELECT node_id AS c_id FROM enrollment.nodes WHERE name = 'node-c' \gset
SELECT enrollment.remove_node(:'c_id');
SELECT status FROM enrollment.enroll(:'t', 'node-d');
SELECT enrollment.set_node_limit(NULL);

-- bad input, another tenant's node, too weak a role
SELECT err('SELECT enrollment.remove_node(NULL)');
SELECT err('SELECT enrollment.remove_node(''00000000-0000-0000-0000-000000000000'')');
SELECT node_id AS d_id FROM enrollment.nodes WHERE name = 'node-d' \gset
SET enrollment.tenant = 'elsewhere';
SELECT err(format('SELECT enrollment.remove_node(%L)', :'d_id'));
SET enrollment.tenant = 'lifecycle';
SELECT enrollment.add_member('ana@example.com', 'analyst');
SELECT enrollment.add_member('op@example.com', 'operator');
SET enrollment.actor = 'ana@example.com';
SELECT err(format('SELECT enrollment.remove_node(%L)', :'d_id'));
SET enrollment.actor = 'op@example.com';
SELECT enrollment.remove_node(:'d_id') AS removed_by_operator;
RESET enrollment.actor;
SELECT actor FROM enrollment.audit_log WHERE action = 'sensor_removed' AND node_id = :'d_id';

---------------------------------------------------------------- renew_token
-- a successor has the kind, label, cap and rate of the token, a fresh secret
-- and the same lifetime from now, to the second (hours, not calendar days,
-- so that a change of daylight saving time cannot move it); the token itself
-- stays valid
SELECT token AS g, token_id AS g_id
  FROM enrollment.create_token('reusable', 'ci-staging', ttl => '240 hours', max_uses => 5) \gset
SELECT enrollment.set_token_rate(:'g_id', 7);
SELECT status FROM enrollment.enroll(:'g', 'g-1');
SELECT successor_id AS s_id, token AS s FROM enrollment.renew_token(:'g_id') \gset
SELECT token_id = :'s_id' AS successor_checks_out, :'s_id' <> :'g_id' AS new_id
  FROM enrollment.check_token(:'s');
SELECT kind, label, status, use_count, max_uses, max_per_hour,
       extract(epoch FROM expires_at - created_at) = 864000 AS ten_days
  FROM enrollment.tokens WHERE token_id IN (:'g_id', :'s_id') ORDER BY created_at;
SELECT status FROM enrollment.enroll(:'s', 's-1');
SELECT ok FROM enrollment.check_token(:'g');
SELECT action, token_id = :'g_id' AS on_old,
       details->>'successor_id' = :'s_id' AS names_successor,
       details->>'successor_prefix' = (SELECT prefix FROM enrollment.tokens WHERE token_id = :'s_id') AS successor_prefix,
       details->'max_per_hour' AS max_per_hour
  FROM enrollment.audit_log WHERE action = 'enrollment_token_renewed';
SELECT count(*) AS successor_created FROM enrollment.audit_log
 WHERE action = 'sensor_enrollment_token_created' AND token_id = :'s_id';

-- every kind: a cluster token keeps its cluster and cap, a token without
-- expiry gets none, a re-enrollment token stays bound to its node, and a
-- revoked token can be followed by a successor
SELECT token_id AS k_id FROM enrollment.create_token('cluster', 'k8s', cluster_id => 'zone-a', max_uses => 3) \gset
SELECT kind, cluster_id, max_uses, expires_at - now() > interval '364 days' AS full_lifetime
  FROM enrollment.renew_token(:'k_id');
SELECT token_id AS f_id FROM enrollment.create_token('reusable', 'forever') \gset
SELECT kind, expires_at FROM enrollment.renew_token(:'f_id');
SELECT token AS e FROM enrollment.create_token() \gset
SELECT node_id AS e_node FROM enrollment.enroll(:'e', 'node-e') \gset
SELECT token_id AS re_id FROM enrollment.create_token(node_id => :'e_node') \gset
SELECT kind, node_id = :'e_node' AS bound_to_same, max_uses,
       expires_at - now() BETWEEN interval '14 minutes' AND interval '15 minutes' AS fifteen_minutes
  FROM enrollment.renew_token(:'re_id');
SELECT enrollment.revoke_token(:'k_id');
SELECT successor_id AS ks_id FROM enrollment.renew_token(:'k_id') \gset
SELECT token_id = :'k_id' AS revoked_one, status FROM enrollment.tokens WHERE token_id IN (:'k_id', :'ks_id')
 ORDER BY token_id = :'k_id' DESC;

SELECT err('SELECT enrollment.renew_token(NULL)');
SELECT err('SELECT * FROM enrollment.renew_token(''00000000-0000-0000-0000-000000000000'')');
SET enrollment.actor = 'ana@example.com';
SELECT err(format('SELECT * FROM enrollment.renew_token(%L)', :'g_id'));
RESET enrollment.actor;

---------------------------------------------------- revoke_token_and_nodes
-- the token is revoked and every node it enrolled removed, re-enrolled
-- nodes included; nodes of other tokens stay
SELECT token AS c, token_id AS c_id FROM enrollment.create_token('cluster', 'doomed', cluster_id => 'zone-b') \gset
SELECT node_id AS c1 FROM enrollment.enroll(:'c', 'c-1', 'zone-b') \gset
SELECT status FROM enrollment.enroll(:'c', 'c-2', 'zone-b');
SELECT status FROM enrollment.enroll(:'c', 'c-3', 'zone-b');
SELECT token AS cr FROM enrollment.create_token(node_id => :'c1') \gset
SELECT reenrolled FROM enrollment.enroll(:'cr', 'c-1');
SELECT enrollment.revoke_token_and_nodes(:'c_id');
SELECT name, status FROM enrollment.nodes WHERE token_id = :'c_id' ORDER BY name;
SELECT status FROM enrollment.tokens WHERE token_id = :'c_id';
SELECT count(*) AS other_nodes_active FROM enrollment.nodes
 WHERE token_id <> :'c_id' AND status = 'active';
SELECT action, details->>'reason' AS reason, details->>'name' AS name
  FROM enrollment.audit_log WHERE token_id = :'c_id' AND action IN ('sensor_removed', 'sensor_enrollment_token_revoked')
 ORDER BY event_id;
SELECT enrollment.revoke_token_and_nodes(:'c_id') AS again;

-- a used once token has nothing to revoke; its node goes all the same
SELECT token AS o, token_id AS o_id FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'o', 'o-1');
SELECT enrollment.revoke_token_and_nodes(:'o_id');

-- a token past its expiry that nobody has marked yet is marked expired
-- (the row changes, so an enrollment waiting for it sees the change), and
-- its nodes go
SELECT token AS x, token_id AS x_id FROM enrollment.create_token('reusable', 'lapsed') \gset
SELECT status FROM enrollment.enroll(:'x', 'x-1');
UPDATE enrollment.enrollment_token SET expires_at = now() - interval '1 minute' WHERE token_id = :'x_id';
SELECT enrollment.revoke_token_and_nodes(:'x_id');
SELECT status FROM enrollment.enrollment_token WHERE token_id = :'x_id';
SELECT action, details->>'kind' AS kind FROM enrollment.audit_log
 WHERE token_id = :'x_id' AND action IN ('sensor_enrollment_token_expired', 'sensor_enrollment_token_revoked');

-- only under READ COMMITTED (READ UNCOMMITTED is the same in PostgreSQL);
-- bad input; too weak a role
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT err(format('SELECT enrollment.revoke_token_and_nodes(%L)', :'t_id'));
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT err(format('SELECT enrollment.revoke_token_and_nodes(%L)', :'t_id'));
ROLLBACK;
BEGIN ISOLATION LEVEL READ UNCOMMITTED;
SELECT err(format('SELECT enrollment.revoke_token_and_nodes(%L)', :'o_id'));
ROLLBACK;
SELECT err('SELECT enrollment.revoke_token_and_nodes(NULL)');
SELECT err('SELECT enrollment.revoke_token_and_nodes(''00000000-0000-0000-0000-000000000000'')');
SET enrollment.actor = 'ana@example.com';
SELECT err(format('SELECT enrollment.revoke_token_and_nodes(%L)', :'t_id'));
RESET enrollment.actor;
SELECT status FROM enrollment.tokens WHERE token_id = :'t_id';

-- revoke_token_and_nodes and remove_member revoke the removed nodes'
-- unused re-enrollment tokens too, whoever made them (0.7.0)
SELECT token AS v, token_id AS v_id FROM enrollment.create_token('reusable', 'v') \gset
SELECT node_id AS v_node FROM enrollment.enroll(:'v', 'node-v') \gset
SELECT token_id AS vr_id FROM enrollment.create_token(node_id => :'v_node') \gset
SELECT enrollment.revoke_token_and_nodes(:'v_id');
SELECT status FROM enrollment.tokens WHERE token_id = :'vr_id';
SET enrollment.actor = 'op@example.com';
SELECT token AS w FROM enrollment.create_token('reusable', 'w') \gset
RESET enrollment.actor;
SELECT node_id AS w_node FROM enrollment.enroll(:'w', 'node-w') \gset
SELECT token_id AS wr_id FROM enrollment.create_token(node_id => :'w_node') \gset
SELECT enrollment.remove_member('op@example.com');
SELECT (SELECT status FROM enrollment.tokens WHERE token_id = :'wr_id') AS bound_token,
       (SELECT status FROM enrollment.nodes WHERE node_id = :'w_node') AS node;
SELECT count(*) AS node_removed_revocations FROM enrollment.audit_log
 WHERE action = 'sensor_enrollment_token_revoked' AND details->>'reason' = 'node_removed'
   AND token_id IN (:'vr_id', :'wr_id');

-- a re-enrollment token whose node is removed without the functions (by
-- hand, triggers off, as a logical apply would): check_token answers
-- node_mismatch, as enroll refuses it
SELECT token AS x FROM enrollment.create_token('reusable', 'x') \gset
SELECT node_id AS x_node FROM enrollment.enroll(:'x', 'node-x') \gset
SELECT token AS xr FROM enrollment.create_token(node_id => :'x_node') \gset
SELECT ok, error FROM enrollment.check_token(:'xr');
SET session_replication_role = replica;
UPDATE enrollment.node_record SET status = 'removed', removed_at = now() WHERE node_id = :'x_node';
RESET session_replication_role;
SELECT ok, error FROM enrollment.check_token(:'xr');
SELECT err(format('SELECT enrollment.enroll(%L, ''node-x'')', :'xr'));

DELETE FROM enrollment.node_record WHERE tenant = 'lifecycle';
DELETE FROM enrollment.enrollment_token WHERE tenant = 'lifecycle';
DELETE FROM enrollment.token_rate;
DELETE FROM enrollment.member WHERE tenant = 'lifecycle';
DELETE FROM enrollment.tenant_setting WHERE tenant = 'lifecycle';
RESET enrollment.tenant;
