-- Approval of new nodes (0.7.0): set_node_approval, auto-approve rules,
-- approve_node
\set VERBOSITY terse
SET enrollment.tenant = 'approval';
SELECT token AS t, token_id AS t_id FROM enrollment.create_token('reusable', 'fleet') \gset
SELECT token AS c, token_id AS c_id
  FROM enrollment.create_token('cluster', 'zone a', cluster_id => 'zone-a') \gset
SELECT token AS cb FROM enrollment.create_token('cluster', 'zone b', cluster_id => 'zone-b') \gset

------------------------------------------------------- automatic (the default)
-- nodes are active at once, and their event says nothing of approval
SELECT status FROM enrollment.enroll(:'t', 'auto-1');
SELECT details ? 'approval' AS approval_noted
  FROM enrollment.audit_log WHERE action = 'sensor_enrolled' AND details->>'node_name' = 'auto-1';

------------------------------------------------------------- manual, no rule
SELECT enrollment.set_node_approval('manual') AS previous_mode;
SELECT node_id AS p_id, node_secret AS p_sec, status FROM enrollment.enroll(:'t', 'wait-1') \gset
SELECT :'status' AS status;
-- a node that waits does not authenticate; one enrolled before still does
SELECT count(*) AS waiting_authenticates FROM enrollment.authenticate_node(:'p_sec');
SELECT name, status FROM enrollment.nodes WHERE name IN ('auto-1', 'wait-1') ORDER BY name;
SELECT details->>'approval' AS approval, details ? 'rule_id' AS rule_noted
  FROM enrollment.audit_log WHERE action = 'sensor_enrolled' AND node_id = :'p_id';
-- an operator approves it: it authenticates from then on
SELECT enrollment.add_member('op@example.com', 'operator');
SELECT enrollment.add_member('ana@example.com', 'analyst');
SET enrollment.actor = 'ana@example.com';
SELECT err(format('SELECT enrollment.approve_node(%L)', :'p_id'));
SET enrollment.actor = 'op@example.com';
SELECT enrollment.approve_node(:'p_id') AS approved_now;
SELECT enrollment.approve_node(:'p_id') AS approved_again;
RESET enrollment.actor;
SELECT name, status FROM enrollment.authenticate_node(:'p_sec');
SELECT actor, token_id = :'t_id' AS names_token, details
  FROM enrollment.audit_log WHERE action = 'sensor_approved' AND node_id = :'p_id';
-- re-enrolling a node that waits leaves it waiting, with the new credential
SELECT node_id AS q_id FROM enrollment.enroll(:'t', 'wait-2') \gset
SELECT token AS rq FROM enrollment.create_token(node_id => :'q_id') \gset
SELECT status, reenrolled FROM enrollment.enroll(:'rq', 'wait-2');
-- a waiting node counts against the node limit, and can be removed (rejected)
SELECT enrollment.set_node_limit(3) AS nodes_now;
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t', 'wait-3'));
SELECT enrollment.remove_node(:'q_id') AS rejected;
SELECT err(format('SELECT enrollment.approve_node(%L)', :'q_id'));
SELECT enrollment.set_node_limit(NULL);

---------------------------------------------------------------- rules
SELECT enrollment.create_auto_approve_rule('zone-a', 'zone a sensors', ARRAY['sensor', 'probe'], 2) AS rule_a \gset
SELECT cluster_id, label, allowed_roles, max_nodes, approved_count, created_by
  FROM enrollment.auto_approve_rules;
-- a role the rule allows is active at once, and counted; another role waits
SELECT status FROM enrollment.enroll(:'c', 'a-1', 'zone-a', 'sensor');
SELECT status FROM enrollment.enroll(:'c', 'a-2', 'zone-a', 'collector');
SELECT status FROM enrollment.enroll(:'c', 'a-3', 'zone-a');
SELECT details->>'approval' AS approval, details->>'rule_id' = :'rule_a' AS names_rule
  FROM enrollment.audit_log WHERE action = 'sensor_enrolled' AND details->>'node_name' = 'a-1';
-- the cluster_id given with any other token than a cluster token is the
-- caller's own claim: no rule vouches for it, and nothing is counted
SELECT token AS o FROM enrollment.create_token('once') \gset
SELECT status FROM enrollment.enroll(:'o', 'a-0', 'zone-a', 'sensor');
SELECT status FROM enrollment.enroll(:'t', 'a-00', 'zone-a', 'sensor');
-- through SQL instead of the direct path: the same answers, the same events
SET enrollment.direct_writes = off;
SELECT status FROM enrollment.enroll(:'c', 'a-4', 'zone-a', 'probe');
-- the cap is reached: the next allowed role waits too
SELECT status FROM enrollment.enroll(:'c', 'a-5', 'zone-a', 'sensor');
SELECT token AS o FROM enrollment.create_token('once') \gset
SELECT status FROM enrollment.enroll(:'o', 'a-000', 'zone-a', 'sensor');
RESET enrollment.direct_writes;
SELECT status FROM enrollment.enroll(:'c', 'a-6', 'zone-a', 'sensor');
SELECT name, status FROM enrollment.nodes WHERE name LIKE 'a-%' ORDER BY name;
SELECT details->>'node_name' AS node, details->>'approval' AS approval,
       details->>'rule_id' = :'rule_a' AS names_rule
  FROM enrollment.audit_log WHERE action = 'sensor_enrolled' AND details->>'cluster_id' = 'zone-a'
 ORDER BY event_id;
SELECT approved_count FROM enrollment.auto_approve_rules;
-- a rule of another cluster, or of no cluster, does not apply
SELECT status FROM enrollment.enroll(:'cb', 'b-1', 'zone-b', 'sensor');
SELECT status FROM enrollment.enroll(:'t', 'b-2', NULL, 'sensor');
-- an empty list admits any role, and a node without one; no cap, so
-- nothing is counted (and the enrollments take no lock on the rule)
SELECT enrollment.create_auto_approve_rule('zone-b', 'anything in b') AS rule_b \gset
SELECT status FROM enrollment.enroll(:'cb', 'b-3', 'zone-b');
SET enrollment.direct_writes = off;
SELECT status FROM enrollment.enroll(:'cb', 'b-4', 'zone-b', 'collector');
RESET enrollment.direct_writes;
SELECT cluster_id, max_nodes, approved_count FROM enrollment.auto_approve_rules ORDER BY cluster_id;
-- deleting a rule leaves its nodes active and approves no more
SELECT enrollment.delete_auto_approve_rule(:'rule_b') AS it_had_approved;
SELECT status FROM enrollment.enroll(:'cb', 'b-5', 'zone-b');
SELECT name, status FROM enrollment.nodes WHERE name LIKE 'b-%' ORDER BY name;
SELECT action, object_id = :'rule_b' AS this_rule, details
  FROM enrollment.audit_log WHERE action LIKE 'auto_approve_rule_%' ORDER BY event_id;

-- a rule of another tenant does not apply here, nor shows, nor is deleted
SET enrollment.tenant = 'elsewhere';
SELECT count(*) AS rules_seen FROM enrollment.auto_approve_rules;
SELECT err(format('SELECT enrollment.delete_auto_approve_rule(%L)', :'rule_a'));
SELECT err(format('SELECT enrollment.approve_node(%L)', :'p_id'));
SELECT enrollment.create_auto_approve_rule('zone-a', 'theirs', NULL, 1) IS NOT NULL AS made;
SET enrollment.tenant = 'approval';
SELECT count(*) AS rules_here FROM enrollment.auto_approve_rules;

-- back to automatic: nodes are active again, whatever the rules
SELECT enrollment.set_node_approval('auto') AS previous_mode;
SELECT status FROM enrollment.enroll(:'c', 'a-7', 'zone-a', 'collector');
SELECT details FROM enrollment.audit_log WHERE action = 'node_approval_set' ORDER BY event_id;

------------------------------------------------------------ bad input, roles
SELECT err('SELECT enrollment.set_node_approval(NULL)');
SELECT err('SELECT enrollment.set_node_approval(''sometimes'')');
SELECT err('SELECT enrollment.create_auto_approve_rule(NULL, ''x'')');
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-c'', NULL)');
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-c'', '''')');
SELECT err(format('SELECT enrollment.create_auto_approve_rule(%L, ''x'')', repeat('c', 129)));
SELECT err(format('SELECT enrollment.create_auto_approve_rule(''zone-c'', %L)', repeat('l', 129)));
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-c'', ''x'', ARRAY[''sensor'', NULL])');
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-c'', ''x'', ARRAY[''''])');
SELECT err(format('SELECT enrollment.create_auto_approve_rule(%L, ''x'')', E'zone\nc'));
SELECT err(format('SELECT enrollment.create_auto_approve_rule(''zone-c'', %L)', E'x\ry'));
SELECT err(format('SELECT enrollment.create_auto_approve_rule(''zone-c'', ''x'', ARRAY[%L])', E'sen\tsor'));
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-c'', ''x'', ARRAY[[''a''], [''b'']])');
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-c'', ''x'', NULL, 0)');
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-a'', ''again'')');
SELECT err('SELECT enrollment.delete_auto_approve_rule(NULL)');
SELECT err('SELECT enrollment.delete_auto_approve_rule(''00000000-0000-0000-0000-000000000000'')');
SELECT err('SELECT enrollment.approve_node(NULL)');
SELECT err('SELECT enrollment.approve_node(''00000000-0000-0000-0000-000000000000'')');
SELECT count(*) AS rules_after_bad_input FROM enrollment.auto_approve_rule WHERE cluster_id = 'zone-c';
-- rules and the mode are an admin's; an operator lists rules and approves
SET enrollment.actor = 'op@example.com';
SELECT err('SELECT enrollment.set_node_approval(''manual'')');
SELECT err('SELECT enrollment.create_auto_approve_rule(''zone-c'', ''x'')');
SELECT err(format('SELECT enrollment.delete_auto_approve_rule(%L)', :'rule_a'));
SELECT count(*) AS operator_sees FROM enrollment.auto_approve_rules;
SET enrollment.actor = 'ana@example.com';
SELECT err('SELECT count(*) FROM enrollment.auto_approve_rules');
RESET enrollment.actor;
-- the rules' integrity holds against direct writes too
SELECT err(format('UPDATE enrollment.auto_approve_rule SET approved_count = 3 WHERE rule_id = %L', :'rule_a'));
SELECT err('UPDATE enrollment.tenant_setting SET node_approval = ''auto''');
RESET enrollment.tenant;
