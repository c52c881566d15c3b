-- a tenant's license node limit (0.7.0): an enrollment that would create a
-- node beyond it is refused with node_limit_exceeded, and changes no row
\set VERBOSITY terse
SET enrollment.tenant = 'licensed';
SELECT value AS refused_before FROM enrollment.stats
 WHERE area = 'enroll' AND counter = 'node_limit_exceeded' \gset

-- set_node_limit returns the tenant's nodes now (none yet)
SELECT enrollment.set_node_limit(2) AS nodes_now;
SELECT node_limit FROM enrollment.tenant_setting WHERE tenant = 'licensed';
SELECT status FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'lic-1');
SET enrollment.direct_writes = off;
SELECT node_id AS n2, status FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'lic-2') \gset
RESET enrollment.direct_writes;
SELECT :'status';

-- the third is refused, by the direct path and by SQL alike, and writes nothing
SELECT token AS t3, token_id AS t3_id FROM enrollment.create_token() \gset
SELECT (SELECT count(*) FROM enrollment.node_record) AS nodes_before,
       (SELECT count(*) FROM enrollment.audit_event) AS events_before \gset
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t3', 'lic-3'));
SET enrollment.direct_writes = off;
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t3', 'lic-3'));
RESET enrollment.direct_writes;
SELECT (SELECT count(*) FROM enrollment.node_record) = :nodes_before AS no_node,
       (SELECT count(*) FROM enrollment.audit_event) = :events_before AS no_event,
       (SELECT status || ' ' || use_count FROM enrollment.tokens WHERE token_id = :'t3_id') AS token_left;
SELECT value - :refused_before AS refused FROM enrollment.stats
 WHERE area = 'enroll' AND counter = 'node_limit_exceeded';
-- check_token gives enroll's verdict
SELECT ok, error FROM enrollment.check_token(:'t3');

-- a shared token too, before and after its first use (its uses are appended)
SELECT token AS ct FROM enrollment.create_token('cluster', cluster_id => 'zone-l') \gset
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'ct', 'lic-c1', 'zone-l'));

-- a re-enrollment creates no node: it works at the limit
SELECT reenrolled, status FROM enrollment.enroll((SELECT token FROM enrollment.create_token(node_id => :'n2')), 'lic-2');

-- a removed node frees its slot; pending_approval nodes count like active ones
UPDATE enrollment.node_record SET status = 'removed', removed_at = now() WHERE node_id = :'n2';
SELECT ok, error FROM enrollment.check_token(:'t3');
SELECT status FROM enrollment.enroll(:'t3', 'lic-3');
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'ct', 'lic-c1', 'zone-l'));
UPDATE enrollment.node_record SET status = 'pending_approval' WHERE tenant = 'licensed' AND name = 'lic-3';
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'ct', 'lic-c1', 'zone-l'));

-- raised, the shared token enrolls; its second use (appended) is limited too
SELECT enrollment.set_node_limit(3) AS nodes_now;
SELECT status FROM enrollment.enroll(:'ct', 'lic-c1', 'zone-l');
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'ct', 'lic-c2', 'zone-l'));
SELECT enrollment.set_node_limit(4) AS nodes_now;
SELECT status FROM enrollment.enroll(:'ct', 'lic-c2', 'zone-l');
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'ct', 'lic-c3', 'zone-l'));

-- lowered below what the tenant has: nothing is removed, nothing new enrolls
SELECT enrollment.set_node_limit(1) AS nodes_now;
SELECT count(*) AS still_there FROM enrollment.nodes WHERE status <> 'removed';
SELECT err('SELECT enrollment.enroll((SELECT token FROM enrollment.create_token()), ''lic-5'')');
-- 0: no node at all
SELECT enrollment.set_node_limit(0) AS nodes_now;
SELECT err('SELECT enrollment.enroll((SELECT token FROM enrollment.create_token()), ''lic-5'')');

-- another tenant is not held to it
SET enrollment.tenant = 'unlicensed';
SELECT status FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'free-1');
SET enrollment.tenant = 'licensed';

-- NULL lifts it
SELECT enrollment.set_node_limit(NULL) AS nodes_now;
SELECT status FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'lic-5');

-- creating a token for new nodes warns from 90 % of the limit on
-- (capacity_warning), and is created all the same
SELECT token AS rt FROM enrollment.create_token('reusable') \gset
SELECT count(*) AS enrolled FROM generate_series(6, 9) AS i, enrollment.enroll(:'rt', 'lic-' || i);
SELECT enrollment.set_node_limit(11) AS nodes_now;
SELECT kind FROM enrollment.create_token();
SELECT enrollment.set_node_limit(10) AS nodes_now;
\set VERBOSITY default
SELECT kind FROM enrollment.create_token('reusable');
SELECT enrollment.set_node_limit(9) AS nodes_now;
SELECT kind FROM enrollment.create_token('cluster', cluster_id => 'zone-l');
\set VERBOSITY terse
-- a re-enrollment token creates no node: no warning
SELECT kind FROM enrollment.create_token(node_id => (SELECT node_id FROM enrollment.nodes WHERE name = 'lic-5'));
SELECT enrollment.set_node_limit(NULL) AS nodes_now;

-- bad input and callers who are not DBAs
SELECT err('SELECT enrollment.set_node_limit(-1)');
SET enrollment.actor = 'someone';
SELECT err('SELECT enrollment.set_node_limit(100)');
RESET enrollment.actor;
SELECT node_limit IS NULL AS unchanged FROM enrollment.tenant_setting WHERE tenant = 'licensed';

-- every change is audited
SELECT action, object_type, object_id, details FROM enrollment.audit_event
 WHERE tenant = 'licensed' AND action = 'node_limit_set' ORDER BY event_id;

-- The count is kept: set_node_limit writes it, every removal,
-- reinstatement, move or deletion of a node appends a change, every
-- enrollment of a new node folds the changes in and adds its node, and it
-- stays equal to a count of the nodes (shown as kept + changes not folded
-- yet / counted)
SET enrollment.tenant = 'counted';
CREATE FUNCTION pg_temp.kept() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce((SELECT nodes FROM enrollment.tenant_node_count WHERE tenant = 'counted')::text, 'none')
      || ' + ' || (SELECT coalesce(sum(delta), 0) FROM enrollment.tenant_node_change WHERE tenant = 'counted')
      || ' / ' || (SELECT count(*) FROM enrollment.node_record WHERE tenant = 'counted' AND status <> 'removed')
$$;
SELECT token AS kt FROM enrollment.create_token('reusable') \gset
SELECT count(*) AS enrolled FROM generate_series(1, 5) AS i, enrollment.enroll(:'kt', 'k-' || i);
SELECT pg_temp.kept() AS without_a_limit;
SELECT enrollment.set_node_limit(8) AS nodes_now;
SELECT pg_temp.kept() AS set;
SELECT status FROM enrollment.enroll(:'kt', 'k-6');
SET enrollment.direct_writes = off;
SELECT status FROM enrollment.enroll(:'kt', 'k-7');
RESET enrollment.direct_writes;
SELECT status FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'k-8');
SELECT pg_temp.kept() AS three_enrolled;
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'kt', 'k-9'));
SELECT pg_temp.kept() AS refused_one;
SELECT enrollment.remove_node(node_id) FROM enrollment.node_record WHERE tenant = 'counted' AND name = 'k-1';
SELECT pg_temp.kept() AS removed_by_the_api;
UPDATE enrollment.node_record SET status = 'removed', removed_at = now() WHERE tenant = 'counted' AND name = 'k-2';
SELECT pg_temp.kept() AS removed_by_hand;
DELETE FROM enrollment.node_record WHERE tenant = 'counted' AND name IN ('k-3', 'k-1');
SELECT pg_temp.kept() AS one_deleted;
UPDATE enrollment.node_record SET status = 'active', removed_at = NULL WHERE tenant = 'counted' AND name = 'k-2';
SELECT pg_temp.kept() AS reinstated;
UPDATE enrollment.node_record SET status = 'pending_approval' WHERE tenant = 'counted' AND name = 'k-2';
SELECT pg_temp.kept() AS pending_counts_too;
UPDATE enrollment.node_record SET tenant = 'elsewhere' WHERE tenant = 'counted' AND name = 'k-4';
SELECT pg_temp.kept() AS moved_away;
UPDATE enrollment.node_record SET tenant = 'counted' WHERE tenant = 'elsewhere' AND name = 'k-4';
SELECT pg_temp.kept() AS moved_back;
-- the triggers run as the owner: a role granted UPDATE on node_record alone
-- removes a node by hand, and the count follows
CREATE ROLE regress_node_editor;
GRANT USAGE ON SCHEMA enrollment TO regress_node_editor;
GRANT SELECT, UPDATE ON enrollment.node_record TO regress_node_editor;
GRANT EXECUTE ON FUNCTION enrollment.node_record_rules(enrollment.node_record) TO regress_node_editor;
SET ROLE regress_node_editor;
UPDATE enrollment.node_record SET status = 'removed', removed_at = now() WHERE tenant = 'counted' AND name = 'k-4';
RESET ROLE;
SELECT pg_temp.kept() AS removed_by_a_granted_role;
REVOKE ALL ON enrollment.node_record FROM regress_node_editor;
REVOKE ALL ON FUNCTION enrollment.node_record_rules(enrollment.node_record) FROM regress_node_editor;
REVOKE ALL ON SCHEMA enrollment FROM regress_node_editor;
DROP ROLE regress_node_editor;
-- with the count kept, neither check_token nor enroll reads the fleet
BEGIN;
SELECT pg_stat_get_xact_numscans('enrollment.node_record_tenant_enrolled_at_idx'::regclass) AS scans \gset
SELECT ok FROM enrollment.check_token(:'kt');
SELECT status FROM enrollment.enroll(:'kt', 'k-10');
SELECT pg_stat_get_xact_numscans('enrollment.node_record_tenant_enrolled_at_idx'::regclass) - :scans AS fleet_scans;
COMMIT;
SELECT pg_temp.kept() AS one_more;
-- a limit written by hand drops it; the fleet is counted (and the limit
-- holds) until set_node_limit keeps it again
UPDATE enrollment.tenant_setting SET node_limit = 7 WHERE tenant = 'counted';
SELECT pg_temp.kept() AS limit_by_hand;
SELECT ok FROM enrollment.check_token(:'kt');
SELECT status FROM enrollment.enroll(:'kt', 'k-11');
SELECT pg_temp.kept() AS still_counted;
SELECT ok, error FROM enrollment.check_token(:'kt');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'kt', 'k-12'));
SELECT enrollment.set_node_limit(9) AS nodes_now;
SELECT pg_temp.kept() AS kept_again;
-- the worker's fold (one call per tenant each round) moves the changes
-- into the count, which stays exact
UPDATE enrollment.node_record SET status = 'removed', removed_at = now()
 WHERE tenant = 'counted' AND name IN ('k-5', 'k-6');
SELECT pg_temp.kept() AS two_removed;
SELECT enrollment.fold_node_changes('counted') AS folded;
SELECT pg_temp.kept() AS after_the_fold;
SELECT enrollment.fold_node_changes('counted') AS nothing_left;
UPDATE enrollment.node_record SET status = 'active', removed_at = NULL
 WHERE tenant = 'counted' AND name IN ('k-5', 'k-6');
SELECT enrollment.fold_node_changes('counted') AS folded;
SELECT pg_temp.kept() AS reinstated_and_folded;
-- without a count row nothing is folded, and the changes stay: a restore
-- loads tenant_node_change before tenant_node_count, and a fold in between
-- must not drop what the count restored next needs
UPDATE enrollment.node_record SET status = 'removed', removed_at = now()
 WHERE tenant = 'counted' AND name = 'k-5';
CREATE TEMP TABLE restored AS SELECT * FROM enrollment.tenant_node_count WHERE tenant = 'counted';
DELETE FROM enrollment.tenant_node_count WHERE tenant = 'counted';
SELECT enrollment.fold_node_changes('counted') AS before_the_count_is_back;
-- nor does an enrollment meanwhile (it counts the nodes); the node is not
-- in the restored count, and is deleted again (which appends nothing)
SELECT status FROM enrollment.enroll(:'kt', 'k-13');
SELECT count(*) AS changes_kept FROM enrollment.tenant_node_change WHERE tenant = 'counted';
DELETE FROM enrollment.node_record WHERE tenant = 'counted' AND name = 'k-13';
INSERT INTO enrollment.tenant_node_count SELECT * FROM restored;
SELECT pg_temp.kept() AS restored;
SELECT enrollment.fold_node_changes('counted') AS folded;
UPDATE enrollment.node_record SET status = 'active', removed_at = NULL
 WHERE tenant = 'counted' AND name = 'k-5';
SELECT enrollment.fold_node_changes('counted') AS folded;
-- and changes left without a count are dropped by set_node_limit
INSERT INTO enrollment.tenant_node_change (tenant, delta) VALUES ('gone', -1), ('gone', -1);
SELECT enrollment.fold_node_changes('gone') AS nothing_to_fold_into;
SET enrollment.tenant = 'gone';
SELECT enrollment.set_node_limit(NULL) AS nodes_now;
SELECT count(*) AS left_over FROM enrollment.tenant_node_change WHERE tenant = 'gone';
DELETE FROM enrollment.tenant_setting WHERE tenant = 'gone';
SET enrollment.tenant = 'counted';
-- a TRUNCATE of the nodes, of the settings or of the changes drops it
-- too, and so does a rename of the tenant's setting row
BEGIN;
SET LOCAL client_min_messages = warning;
TRUNCATE enrollment.node_record CASCADE;
SELECT pg_temp.kept() AS nodes_truncated;
ROLLBACK;
BEGIN;
TRUNCATE enrollment.tenant_setting;
SELECT pg_temp.kept() AS settings_truncated;
ROLLBACK;
BEGIN;
TRUNCATE enrollment.tenant_node_change;
SELECT pg_temp.kept() AS changes_truncated;
ROLLBACK;
BEGIN;
UPDATE enrollment.tenant_setting SET tenant = 'renamed' WHERE tenant = 'counted';
SELECT pg_temp.kept() AS renamed;
ROLLBACK;
-- lifted, it is dropped
SELECT enrollment.set_node_limit(NULL) AS nodes_now;
SELECT pg_temp.kept() AS lifted;
SET enrollment.tenant = 'licensed';

DELETE FROM enrollment.node_record WHERE tenant IN ('licensed', 'unlicensed', 'counted', 'elsewhere');
DELETE FROM enrollment.tenant_setting WHERE tenant = 'counted';
DELETE FROM enrollment.tenant_setting WHERE tenant = 'licensed';
RESET enrollment.tenant;
