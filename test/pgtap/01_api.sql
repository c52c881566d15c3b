-- pgTAP: the public API of enrollment, its privileges and its error codes
BEGIN;
SELECT plan(79);

SELECT has_schema('enrollment');
SELECT has_extension('enrollment');
SELECT functions_are('enrollment', ARRAY[
    'audit_event_immutable', 'authenticate_node', 'check_token', 'create_token',
    'current_actor', 'current_tenant', 'enroll', 'revoke_token',
    'create_api_key', 'verify_request', 'sign_request', 'revoke_api_key',
    'rotate_server_key', 'key_last_used', 'stats', 'stats_reset',
    'current_member_role', 'require_role', 'role_permissions', 'audit', 'add_member',
    'set_member_role', 'remove_member', 'create_self_enrollment_token', 'create_api_token', 'set_node_limit', 'set_token_rate', 'limits_changed',
    'remove_node', 'renew_token', 'revoke_token_and_nodes',
    'set_node_approval', 'create_auto_approve_rule', 'delete_auto_approve_rule', 'approve_node',
    'set_ip_pool', 'lock_pool_setting', 'revoke_bound_tokens',
    'verify_api_token', 'set_api_token_prefix', 'api_token_for_management', 'revoke_api_token',
    'delete_api_token', 'reassign_api_token', 'audit_canonical', 'seal_audit',
    'verify_audit_chain', 'purge_audit', 'may_read_audit', 'require_dba', 'enrollment_token_rules', 'node_record_rules', 'uuid_v7',
    'fold_token_uses', 'recount_tenant_nodes', 'fold_node_changes', 'node_count_changed', 'forget_node_count']);
SELECT views_are('enrollment', ARRAY['tokens', 'nodes', 'audit_log', 'api_keys', 'stats', 'members', 'api_tokens', 'tenant_stats',
    'auto_approve_rules', 'node_groups', 'ip_pools']);
SELECT tables_are('enrollment', ARRAY['enrollment_token', 'node_record', 'audit_event', 'api_key',
    'member', 'tenant_setting', 'api_token', 'audit_chain', 'replay_horizon', 'token_use', 'token_rate',
    'auto_approve_rule', 'node_group', 'node_address', 'tenant_node_count', 'tenant_node_change']);

SELECT has_function('enrollment', 'create_token',
    ARRAY['text', 'text', 'interval', 'integer', 'text', 'uuid', 'integer']);
SELECT has_function('enrollment', 'enroll', ARRAY['text', 'text', 'text', 'text', 'text', 'text']);
SELECT has_function('enrollment', 'check_token', ARRAY['text', 'text']);
SELECT has_function('enrollment', 'authenticate_node', ARRAY['text']);
SELECT has_function('enrollment', 'revoke_token', ARRAY['uuid']);
SELECT is_definer('enrollment', 'enroll', ARRAY['text', 'text', 'text', 'text', 'text', 'text']);
SELECT is_definer('enrollment', 'create_token',
    ARRAY['text', 'text', 'interval', 'integer', 'text', 'uuid', 'integer']);

-- tables and views: nothing for PUBLIC
SELECT table_privs_are('enrollment', 'enrollment_token', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'node_record', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'audit_event', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'tokens', 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'enroll', ARRAY['text', 'text', 'text', 'text', 'text', 'text'],
                          'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'revoke_token', ARRAY['uuid'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'remove_node', ARRAY['uuid'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'renew_token', ARRAY['uuid'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'revoke_token_and_nodes', ARRAY['uuid'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'set_node_approval', ARRAY['text'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'create_auto_approve_rule', ARRAY['text', 'text', 'text[]', 'integer'],
                          'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'delete_auto_approve_rule', ARRAY['uuid'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'approve_node', ARRAY['uuid'], 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'auto_approve_rule', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'auto_approve_rules', 'public', ARRAY[]::text[]);
SELECT throws_ok($$SELECT enrollment.delete_auto_approve_rule('00000000-0000-0000-0000-000000000000')$$,
                 'NR022', 'rule_not_found');
-- where a node is placed (0.7.0)
SELECT function_privs_are('enrollment', 'set_ip_pool', ARRAY['cidr'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'revoke_bound_tokens', ARRAY['uuid[]'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'lock_pool_setting', ARRAY['text'], 'public', ARRAY[]::text[]);
-- the kept node counts of limited tenants (0.7.0): internal
SELECT table_privs_are('enrollment', 'tenant_node_count', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'tenant_node_change', 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'recount_tenant_nodes', ARRAY['text'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'fold_node_changes', ARRAY['text'], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'node_count_changed', ARRAY[]::text[], 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'forget_node_count', ARRAY[]::text[], 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'node_group', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'node_address', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'node_groups', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'ip_pools', 'public', ARRAY[]::text[]);
SELECT function_returns('enrollment', 'set_ip_pool', ARRAY['cidr'], 'cidr');
SELECT throws_ok($$SELECT enrollment.set_ip_pool('192.168.7.0/31')$$, '22023', 'invalid address pool');
SELECT is((SELECT private_ip FROM enrollment.enroll((SELECT token FROM enrollment.create_token()), 'placed',
                                                    node_group => 'tap', node_os => 'linux')),
          NULL, 'a node of a tenant without a pool has no address');

SELECT has_function('enrollment', 'verify_request',
    ARRAY['text', 'text', 'text', 'text', 'text', 'text', 'bytea', 'text']);
SELECT has_function('enrollment', 'verify_request', ARRAY['text', 'text', 'jsonb', 'bytea', 'text']);
SELECT function_returns('enrollment', 'sign_request',
    ARRAY['text', 'text', 'text', 'text', 'bytea', 'bigint', 'text'], 'jsonb');
SELECT table_privs_are('enrollment', 'api_key', 'public', ARRAY[]::text[]);
SELECT table_privs_are('enrollment', 'api_keys', 'public', ARRAY[]::text[]);
SELECT function_privs_are('enrollment', 'create_api_key', ARRAY['text', 'text[]', 'integer'],
                          'public', ARRAY[]::text[]);
SELECT hasnt_column('enrollment', 'api_keys', 'secret_sealed', 'api_keys view has no secret');
SELECT throws_ok($$SELECT enrollment.create_api_key('x', ARRAY['nope'])$$, '22023', 'unknown scope in scopes');
SELECT throws_ok($$SELECT enrollment.revoke_api_key('ffffffffffffffff')$$, 'NR010', 'invalid_key');
SELECT is((SELECT error FROM enrollment.verify_request('GET', '/', NULL, NULL, NULL, NULL)),
          'missing_headers', 'verify_request reports instead of raising');

-- the view never exposes digests
SELECT hasnt_column('enrollment', 'tokens', 'token_hash', 'tokens view has no digest');
SELECT hasnt_column('enrollment', 'nodes', 'secret_hash', 'nodes view has no digest');
SELECT has_column('enrollment', 'tokens', 'prefix', 'tokens view shows the public prefix');

-- error codes
SELECT throws_ok($$SELECT enrollment.create_token('bogus')$$, '22023', 'invalid token kind');
SELECT throws_ok($$SELECT enrollment.create_token('cluster')$$, '22004', 'a cluster token needs a cluster_id');
SELECT throws_ok($$SELECT enrollment.create_token('once', max_uses => 2)$$, '22023');
SELECT throws_ok($$SELECT enrollment.create_token(ttl => '-1 minute')$$, '22023', 'ttl must be positive');
SELECT throws_ok($$SELECT enrollment.enroll('nope', 'n')$$, 'NR001', 'invalid_token');
SELECT throws_ok($$SELECT enrollment.enroll(NULL, 'n')$$, '22004');

CREATE TEMP TABLE t AS
SELECT 'once'::text AS name, token_id, token FROM enrollment.create_token()
UNION ALL SELECT 'cluster', token_id, token FROM enrollment.create_token('cluster', cluster_id => 'k', max_uses => 1)
UNION ALL SELECT 'revoked', token_id, token FROM enrollment.create_token('reusable');
SELECT enrollment.revoke_token(token_id) FROM t WHERE name = 'revoked';

SELECT lives_ok(format('SELECT enrollment.enroll(%L, %L)', (SELECT token FROM t WHERE name = 'once'), 'a'),
                'a once token enrolls once');
SELECT throws_ok(format('SELECT enrollment.enroll(%L, %L)', (SELECT token FROM t WHERE name = 'once'), 'b'),
                 'NR004', 'token_exhausted', 'and only once');
SELECT throws_ok(format('SELECT enrollment.enroll(%L, %L, %L)', (SELECT token FROM t WHERE name = 'cluster'), 'b', 'x'),
                 'NR005', 'cluster_mismatch');
SELECT lives_ok(format('SELECT enrollment.enroll(%L, %L, %L)', (SELECT token FROM t WHERE name = 'cluster'), 'b', 'k'));
SELECT throws_ok(format('SELECT enrollment.enroll(%L, %L, %L)', (SELECT token FROM t WHERE name = 'cluster'), 'c', 'k'),
                 'NR004', 'token_exhausted', 'max_nodes reached');
SELECT throws_ok(format('SELECT enrollment.enroll(%L, %L)', (SELECT token FROM t WHERE name = 'revoked'), 'd'),
                 'NR003', 'token_revoked');

SELECT results_eq(
    $$SELECT name, status, use_count FROM enrollment.tokens JOIN t USING (token_id) ORDER BY name$$,
    $$VALUES ('cluster', 'exhausted', 1), ('once', 'used', 1), ('revoked', 'revoked', 0)$$,
    'statuses and use counts after the enrollments');
SELECT results_eq(
    $$SELECT action, count(*)::int FROM enrollment.audit_log JOIN t USING (token_id) GROUP BY action ORDER BY action$$,
    $$VALUES ('sensor_enrolled', 2), ('sensor_enrollment_token_created', 3), ('sensor_enrollment_token_revoked', 1)$$,
    'every change is audited');

-- expiry without any background job
CREATE TEMP TABLE late AS SELECT token_id FROM enrollment.create_token('reusable', 'late', ttl => '1 hour');
UPDATE enrollment.enrollment_token SET expires_at = now() - interval '1 second'
 WHERE token_id = (SELECT token_id FROM late);
SELECT is((SELECT status FROM enrollment.tokens WHERE label = 'late'), 'expired', 'expired as soon as expires_at passes');
SELECT is((SELECT error FROM enrollment.check_token((SELECT token FROM t WHERE name = 'once'))),
          'token_exhausted', 'check_token reports without raising');
SELECT is((SELECT count(*)::int FROM enrollment.authenticate_node('node_0000000000000000.x')), 0,
          'a malformed node credential authenticates nothing');
SELECT is(enrollment.current_actor(), session_user::text, 'actor defaults to the session user');
SELECT columns_are('enrollment', 'stats', ARRAY['area', 'counter', 'value', 'at']);
SELECT ok((SELECT value FROM enrollment.stats WHERE area = 'enroll' AND counter = 'ok') >= 2,
          'enrollments are counted');
SELECT ok((SELECT value FROM enrollment.stats WHERE area = 'enroll' AND counter = 'token_exhausted') >= 2,
          'rejections are counted by reason');
SELECT function_privs_are('enrollment', 'stats_reset', ARRAY[]::text[], 'public', ARRAY[]::text[]);

SELECT * FROM finish();
ROLLBACK;
