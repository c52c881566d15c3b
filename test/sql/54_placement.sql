-- Where a node is placed (0.7.0): its group, the OS it reports, and a
-- private address from the tenant's pool
\set VERBOSITY terse
SET enrollment.tenant = 'placement';
SELECT token AS t, token_id AS t_id FROM enrollment.create_token('reusable', 'fleet') \gset

---------------------------------------------------------------- groups
-- without a group a node is in 'default', which needs no row
SELECT node_group, private_ip FROM enrollment.enroll(:'t', 'plain');
-- naming a group the tenant does not have creates it, once
SELECT node_group FROM enrollment.enroll(:'t', 'web-1', node_group => 'servers', node_os => 'linux');
SELECT node_group FROM enrollment.enroll(:'t', 'web-2', node_group => 'servers', node_os => 'freebsd');
SELECT node_group FROM enrollment.enroll(:'t', 'lap-1', node_group => 'default', node_os => 'macos');
SELECT name, created_by FROM enrollment.node_group WHERE tenant = 'placement' ORDER BY name;
SELECT count(*) AS group_created_events, min(object_id) AS group_named
  FROM enrollment.audit_log WHERE action = 'group_created';
SELECT name, created_by IS NOT NULL AS has_creator, nodes FROM enrollment.node_groups ORDER BY name;
SELECT name, node_group, os, private_ip FROM enrollment.nodes ORDER BY name;
-- the event records what was named
SELECT details->>'node_name' AS node, details->>'node_group' AS node_group, details->>'os' AS os
  FROM enrollment.audit_log WHERE action = 'sensor_enrolled' ORDER BY event_id;
-- bad names are refused before anything is written
SELECT err(format('SELECT enrollment.enroll(%L, %L, node_group => %L)', :'t', 'x', ''));
SELECT err(format('SELECT enrollment.enroll(%L, %L, node_group => %L)', :'t', 'x', repeat('g', 65)));
SELECT err(format('SELECT enrollment.enroll(%L, %L, node_group => %L)', :'t', 'x', E'a\nb'));
SELECT err(format('SELECT enrollment.enroll(%L, %L, node_os => %L)', :'t', 'x', repeat('o', 65)));
SELECT err(format('SELECT enrollment.enroll(%L, %L, node_os => %L)', :'t', 'x', ''));
SELECT use_count FROM enrollment.tokens WHERE token_id = :'t_id';
-- a group is a tenant's: another tenant naming it gets its own
SET enrollment.tenant = 'placement-other';
SELECT token AS t2 FROM enrollment.create_token('reusable') \gset
SELECT node_group FROM enrollment.enroll(:'t2', 'other-1', node_group => 'servers');
SELECT name, nodes FROM enrollment.node_groups ORDER BY name;
SET enrollment.tenant = 'placement';

---------------------------------------------------------------- addresses
SELECT * FROM enrollment.ip_pools;
-- a network with fewer than two host addresses is refused
SELECT err('SELECT enrollment.set_ip_pool(''10.0.0.0/31'')');
SELECT err('SELECT enrollment.set_ip_pool(''fd00::/127'')');
SELECT enrollment.set_ip_pool('100.64.0.0/29') AS previous_pool;
SELECT action, details FROM enrollment.audit_log WHERE action = 'ip_pool_set';
-- new nodes get the pool's host addresses in turn, on both write paths;
-- nodes enrolled before keep none
SELECT node_id AS a1_id, private_ip FROM enrollment.enroll(:'t', 'a-1') \gset
SELECT :'private_ip' AS a1_ip;
SET enrollment.direct_writes = off;
SELECT node_secret AS a2_secret, private_ip FROM enrollment.enroll(:'t', 'a-2', node_group => 'servers',
                                                                     node_os => 'linux') \gset
SELECT :'private_ip' AS a2_ip;
RESET enrollment.direct_writes;
SELECT node_id AS a3_id, private_ip FROM enrollment.enroll(:'t', 'a-3') \gset
SELECT private_ip FROM enrollment.enroll(:'t', 'a-4');
SELECT pool, addresses, in_use, held_by_removed FROM enrollment.ip_pools;
SELECT details->>'private_ip' AS event_ip
  FROM enrollment.audit_log WHERE action = 'sensor_enrolled' AND node_id = :'a1_id';
-- a re-enrolled node keeps its address; a group or OS named replaces its own
SELECT token AS r1 FROM enrollment.create_token(node_id => :'a1_id') \gset
SELECT reenrolled, node_group, private_ip FROM enrollment.enroll(:'r1', 'a-1', node_group => 'moved', node_os => 'linux');
SELECT token AS r2 FROM enrollment.create_token(node_id => :'a1_id') \gset
SELECT reenrolled, node_group, private_ip FROM enrollment.enroll(:'r2', 'a-1');
SELECT name, node_group, os, private_ip, enroll_count FROM enrollment.nodes WHERE name = 'a-1';
-- the node's credential answers where it is
SELECT name, node_group, os, private_ip FROM enrollment.authenticate_node(:'a2_secret');
-- the pool runs out: the enrollment fails and writes nothing
SELECT private_ip FROM enrollment.enroll(:'t', 'a-5');
SELECT private_ip FROM enrollment.enroll(:'t', 'a-6');
SELECT (SELECT count(*) FROM enrollment.nodes) AS nodes_before,
       (SELECT use_count FROM enrollment.tokens WHERE token_id = :'t_id') AS uses_before \gset
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t', 'a-7'));
SELECT token AS o1, token_id AS o1_id FROM enrollment.create_token('once') \gset
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'o1', 'a-7'));
SELECT count(*) = :nodes_before AS no_node_written,
       (SELECT use_count FROM enrollment.tokens WHERE token_id = :'t_id') = :uses_before AS no_use_counted,
       (SELECT status FROM enrollment.tokens WHERE token_id = :'o1_id') AS once_status
  FROM enrollment.nodes;
SELECT value > 0 AS exhaustion_counted FROM enrollment.stats() WHERE area = 'enroll' AND counter = 'ip_pool_exhausted';
-- removed nodes hold their addresses until nothing else is free; then the
-- address of the node removed longest ago is handed on
SELECT enrollment.remove_node(:'a3_id') AS removed_a3;
SELECT enrollment.remove_node(:'a1_id') AS removed_a1;
SELECT pool, in_use, held_by_removed FROM enrollment.ip_pools;
SELECT private_ip AS handed_on FROM enrollment.enroll(:'t', 'b-1');
SELECT name, status, private_ip FROM enrollment.nodes WHERE name IN ('a-1', 'a-3', 'b-1') ORDER BY name;
SELECT private_ip AS handed_on FROM enrollment.enroll(:'o1', 'b-2');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t', 'b-3'));
-- another pool: new addresses from it, and the nodes keep theirs
SELECT enrollment.set_ip_pool('fd00:ab::/120') AS previous_pool;
SELECT private_ip FROM enrollment.enroll(:'t', 'v6-1');
SELECT count(*) FILTER (WHERE private_ip << '100.64.0.0/29') AS in_old_pool,
       count(*) FILTER (WHERE private_ip << 'fd00:ab::/120') AS in_new_pool
  FROM enrollment.nodes;
SELECT pool, addresses, in_use FROM enrollment.ip_pools;
-- no pool: no address
SELECT enrollment.set_ip_pool(NULL) AS previous_pool;
SELECT private_ip FROM enrollment.enroll(:'t', 'none-1');
SELECT count(*) AS pools FROM enrollment.ip_pools;
-- a pool is a tenant's: the other tenant has none, and may give the same
-- addresses to its own nodes
SET enrollment.tenant = 'placement-other';
SELECT private_ip FROM enrollment.enroll(:'t2', 'other-2');
SELECT enrollment.set_ip_pool('100.64.0.0/29') AS previous_pool;
SELECT private_ip FROM enrollment.enroll(:'t2', 'other-3');
SELECT pool, in_use FROM enrollment.ip_pools;
SET enrollment.tenant = 'placement';

---------------------------------------------------------------- online
-- a node is online when it is active and was seen within online_window
-- (the worker writes last_seen_at; here it is written by hand)
UPDATE enrollment.node_record SET last_seen_at = now() - interval '2 minutes'
 WHERE tenant = 'placement' AND name IN ('a-2', 'a-1');
SELECT name, status, online FROM enrollment.nodes WHERE name IN ('a-1', 'a-2', 'a-4') ORDER BY name;
SET enrollment.online_window = '1min';
SELECT name, online FROM enrollment.nodes WHERE name = 'a-2';
RESET enrollment.online_window;

---------------------------------------------------------------- the rules
-- the table's rules hold for rows written by hand too
SELECT err($$UPDATE enrollment.node_record SET private_ip = '100.64.0.9/24' WHERE name = 'b-1'$$);
SELECT err($$UPDATE enrollment.node_record SET node_group = '' WHERE name = 'b-1'$$);
SELECT err($$UPDATE enrollment.node_record SET os = repeat('o', 65) WHERE name = 'b-1'$$);
-- the addresses held are rows of node_address, one per address and tenant,
-- and each node with an address has its row (the removed ones too)
SELECT err($$INSERT INTO enrollment.node_address
             SELECT tenant, '100.64.0.2', node_id FROM enrollment.node_record WHERE name = 'b-2'$$);
SELECT count(*) AS addresses_held,
       count(*) FILTER (WHERE n.private_ip IS DISTINCT FROM a.address) AS out_of_step
  FROM enrollment.node_record AS n FULL JOIN enrollment.node_address AS a ON a.node_id = n.node_id
 WHERE n.private_ip IS NOT NULL OR a.address IS NOT NULL;
-- only an admin sets the pool; a viewer lists groups, an operator the pool
SELECT enrollment.set_ip_pool('10.9.0.0/24') AS previous_pool;
SELECT enrollment.add_member('view@example.com', 'viewer');
SELECT enrollment.add_member('op@example.com', 'operator');
SET enrollment.actor = 'op@example.com';
SELECT err('SELECT enrollment.set_ip_pool(''10.1.0.0/24'')');
SELECT count(*) AS pools_seen FROM enrollment.ip_pools;
SET enrollment.actor = 'view@example.com';
SELECT err('SELECT count(*) FROM enrollment.ip_pools');
SELECT count(*) > 0 AS groups_seen FROM enrollment.node_groups;
RESET enrollment.actor;
RESET enrollment.tenant;
