-- pgTAP: tenants, members and roles (the permission matrix), tenant
-- isolation, the cascade of removing a member, API tokens and their
-- permissions after a demotion, and the audit hash chain.
BEGIN;
SELECT plan(264);

-- the SQLSTATE a statement ends with, or 'ok'
CREATE FUNCTION pg_temp.outcome(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- act as identity (no identity: a DBA in psql) in a tenant
CREATE FUNCTION pg_temp.act(identity text, tenant text DEFAULT 'acme') RETURNS void LANGUAGE sql AS $$
    SELECT set_config('enrollment.actor', coalesce(identity, ''), true),
           set_config('enrollment.tenant', tenant, true)
$$;

-- a DBA sets up tenant acme: one member per role
SELECT pg_temp.act(NULL);
SELECT is(enrollment.current_member_role(), 'owner', 'a DBA in psql (no actor) is owner of every tenant');
-- history from long ago, sealed first (purged near the end)
INSERT INTO enrollment.audit_event (tenant, actor, action, occurred_at, details)
SELECT 'acme', 'history', 'sensor_enrolled', now() - interval '40 days', jsonb_build_object('n', i)
  FROM generate_series(1, 3) i;
SELECT enrollment.seal_audit();
SELECT enrollment.add_member(m.identity, m.role)
  FROM (VALUES ('own@acme', 'owner'), ('adm@acme', 'admin'), ('ops@acme', 'operator'),
               ('ana@acme', 'analyst'), ('view@acme', 'viewer')) AS m(identity, role);
SELECT pg_temp.act('nobody@acme');
SELECT is(enrollment.current_member_role(), NULL, 'an identity that is not a member has no role');
SELECT pg_temp.act('ops@acme');
SELECT is(enrollment.current_member_role(), 'operator', 'a member has their role');

-- The permission matrix: every role (and a stranger) against every action.
-- An action above the caller's role fails with 42501 permission_denied;
-- otherwise it succeeds (the revocations of made-up ids: not found).
CREATE TEMP TABLE action (name text, need int, sql text, allowed text[] DEFAULT '{ok}');
INSERT INTO action VALUES
  ('create an enrollment token',  3, $$SELECT enrollment.create_token()$$, '{ok}'),
  ('revoke an enrollment token',  3, $$SELECT enrollment.revoke_token(gen_random_uuid())$$, '{NR001}'),
  ('renew an enrollment token',   3, $$SELECT enrollment.renew_token(gen_random_uuid())$$, '{NR001}'),
  ('revoke a token and its nodes',3, $$SELECT enrollment.revoke_token_and_nodes(gen_random_uuid())$$, '{NR001}'),
  ('remove a node',               3, $$SELECT enrollment.remove_node(gen_random_uuid())$$, '{NR021}'),
  ('approve a node',              3, $$SELECT enrollment.approve_node(gen_random_uuid())$$, '{NR021}'),
  ('list auto-approve rules',     3, $$SELECT count(*) FROM enrollment.auto_approve_rules$$, '{ok}'),
  ('create an auto-approve rule', 4, $$SELECT enrollment.create_auto_approve_rule('c-' || gen_random_uuid(), 'r')$$, '{ok}'),
  ('delete an auto-approve rule', 4, $$SELECT enrollment.delete_auto_approve_rule(gen_random_uuid())$$, '{NR022}'),
  ('set how new nodes are approved', 4, $$SELECT enrollment.set_node_approval('auto')$$, '{ok}'),
  ('set the address pool',        4, $$SELECT enrollment.set_ip_pool(NULL)$$, '{ok}'),
  ('list the address pool',       3, $$SELECT count(*) FROM enrollment.ip_pools$$, '{ok}'),
  ('list node groups',            1, $$SELECT count(*) FROM enrollment.node_groups$$, '{ok}'),
  ('list enrollment tokens',      3, $$SELECT count(*) FROM enrollment.tokens$$, '{ok}'),
  ('create an API key',           4, $$SELECT enrollment.create_api_key('k', ARRAY['events:read'])$$, '{ok}'),
  ('revoke an API key',           4, $$SELECT enrollment.revoke_api_key('0000000000000001')$$, '{NR010}'),
  ('list API keys',               4, $$SELECT count(*) FROM enrollment.api_keys$$, '{ok}'),
  ('mint a self-enrollment token',1, $$SELECT enrollment.create_self_enrollment_token()$$, '{ok}'),
  ('create an API token',         3, $$SELECT enrollment.create_api_token('t')$$, '{ok}'),
  ('list API tokens',             3, $$SELECT count(*) FROM enrollment.api_tokens$$, '{ok}'),
  ('list nodes',                  1, $$SELECT count(*) FROM enrollment.nodes$$, '{ok}'),
  ('read tenant statistics',      2, $$SELECT count(*) FROM enrollment.tenant_stats$$, '{ok}'),
  ('read the audit log',          4, $$SELECT count(*) FROM enrollment.audit_log$$, '{ok}'),
  ('verify the audit chain',      6, $$SELECT enrollment.verify_audit_chain()$$, '{ok}'),
  ('list members',                4, $$SELECT count(*) FROM enrollment.members$$, '{ok}'),
  ('add a member',                4, $$SELECT enrollment.add_member('new-' || gen_random_uuid(), 'viewer')$$, '{ok}'),
  ('set the API token prefix',    4, $$SELECT enrollment.set_api_token_prefix('acme_')$$, '{ok}'),
  ('purge the audit log',         6, $$SELECT enrollment.purge_audit('30 days')$$, '{ok}'),
  ('set a token''s rate',          3, $$SELECT enrollment.set_token_rate(gen_random_uuid(), 5)$$, '{NR001}'),
  ('set the license node limit',  6, $$SELECT enrollment.set_node_limit(NULL)$$, '{ok}'),
  ('change a member''s role',      4, $$SELECT enrollment.set_member_role('nobody@acme', 'viewer')$$, '{NR020}'),
  ('remove a member',             4, $$SELECT enrollment.remove_member('nobody@acme')$$, '{NR020}');
CREATE TEMP TABLE who (identity text, rank int);
INSERT INTO who VALUES ('own@acme', 5), ('adm@acme', 4), ('ops@acme', 3), ('ana@acme', 2),
                       ('view@acme', 1), ('stranger@elsewhere', 0);

CREATE FUNCTION pg_temp.matrix() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    a record;
    w record;
    got text;
BEGIN
    FOR w IN SELECT * FROM who ORDER BY rank DESC LOOP
        FOR a IN SELECT * FROM action ORDER BY name LOOP
            PERFORM pg_temp.act(w.identity);
            got := pg_temp.outcome(a.sql);
            RETURN NEXT ok(CASE WHEN w.rank < a.need THEN got = '42501' ELSE got = ANY (a.allowed) END,
                           format('%s (rank %s) %s: %s (%s)', w.identity, w.rank,
                                  CASE WHEN w.rank < a.need THEN 'may not' ELSE 'may' END, a.name, got));
        END LOOP;
    END LOOP;
END
$$;
SELECT * FROM pg_temp.matrix();              -- 6 x 32 = 192 tests

-- the server-wide counters are for DBAs only: they span all tenants
SELECT pg_temp.act('own@acme');
SELECT is(pg_temp.outcome($$SELECT count(*) FROM enrollment.stats$$), '42501',
          'a tenant owner may not read the server-wide counters');
-- rotating the server key is for DBAs only, not even a tenant owner
SELECT pg_temp.act('own@acme');
SELECT is(pg_temp.outcome($$SELECT enrollment.rotate_server_key()$$), '42501',
          'a tenant owner may not rotate the server key');

-- Tenant isolation: what acme has, globex can neither see nor use
SELECT pg_temp.act('ops@acme');
CREATE TEMP TABLE acme AS
SELECT t.token, t.token_id, e.node_secret, NULL::text AS key_id, NULL::text AS hmac_secret,
       (SELECT token FROM enrollment.create_api_token('acme api')) AS api_token
  FROM enrollment.create_token('reusable', 'acme token') t,
       LATERAL enrollment.enroll(t.token, 'acme-node') e;
SELECT pg_temp.act(NULL);
UPDATE acme SET (key_id, hmac_secret) =
    (SELECT key_id, hmac_secret FROM enrollment.create_api_key('acme key', ARRAY['events:read']));
-- and a group, a pool and an auto-approve rule
SELECT enrollment.set_ip_pool('10.9.0.0/24');
CREATE TEMP TABLE acme_more AS
SELECT (SELECT node_group FROM enrollment.enroll((SELECT token FROM enrollment.create_token('once', 'acme group')),
                                                 'acme-node-2', node_group => 'acme-group')) AS grp,
       enrollment.create_auto_approve_rule('acme-cluster', 'acme rule') AS rule_id,
       (SELECT token_id FROM enrollment.api_tokens WHERE label = 'acme api') AS api_token_id;
SELECT ok((SELECT count(*) FROM enrollment.node_groups WHERE name = 'acme-group') = 1
          AND (SELECT count(*) FROM enrollment.ip_pools) = 1 AND (SELECT count(*) FROM enrollment.members) >= 5,
          'acme sees its group, its pool and its members');
SELECT pg_temp.act(NULL, 'globex');
SELECT is((SELECT count(*) FROM enrollment.node_groups WHERE name <> 'default')
          + (SELECT count(*) FROM enrollment.ip_pools) + (SELECT count(*) FROM enrollment.members), 0::bigint,
          'globex sees none of acme''s groups, pools or members');
SELECT is(pg_temp.outcome($$SELECT enrollment.delete_auto_approve_rule((SELECT rule_id FROM acme_more))$$), 'NR022',
          'another tenant''s auto-approve rule cannot be deleted');
SELECT is(pg_temp.outcome($$SELECT enrollment.reassign_api_token((SELECT api_token_id FROM acme_more), 'ops@acme')$$), 'NR001',
          'another tenant''s API token cannot be reassigned');
SELECT is((SELECT error FROM enrollment.check_token((SELECT token FROM acme))), 'invalid_token',
          'another tenant''s token does not check out');
SELECT is(pg_temp.outcome($$SELECT enrollment.enroll((SELECT token FROM acme), 'intruder')$$), 'NR001',
          'another tenant''s token does not enroll');
SELECT is((SELECT count(*) FROM enrollment.authenticate_node((SELECT node_secret FROM acme))), 0::bigint,
          'another tenant''s node does not authenticate');
SELECT is((SELECT error FROM acme, enrollment.verify_request('GET', '/x',
              enrollment.sign_request('GET', '/x', acme.key_id, acme.hmac_secret))), 'invalid_key',
          'another tenant''s API key does not verify');
SELECT is((SELECT error FROM enrollment.verify_api_token((SELECT api_token FROM acme))), 'invalid_token',
          'another tenant''s API token does not verify');
SELECT is((SELECT count(*) FROM enrollment.tokens) + (SELECT count(*) FROM enrollment.nodes)
          + (SELECT count(*) FROM enrollment.api_keys) + (SELECT count(*) FROM enrollment.api_tokens)
          + (SELECT count(*) FROM enrollment.audit_log) + (SELECT count(*) FROM enrollment.auto_approve_rules), 0::bigint,
          'no view shows another tenant''s rows, not even to a DBA acting in globex');
SELECT is((SELECT sum(value) FROM enrollment.tenant_stats WHERE area IN ('tokens', 'nodes', 'api_tokens')),
          0::numeric, 'another tenant''s statistics count none of acme''s rows');
SELECT is(pg_temp.outcome($$SELECT enrollment.revoke_token((SELECT token_id FROM acme))$$), 'NR001',
          'another tenant''s token cannot be revoked');
SELECT is(pg_temp.outcome($$SELECT enrollment.renew_token((SELECT token_id FROM acme))$$), 'NR001',
          'another tenant''s token cannot be renewed');
SELECT is(pg_temp.outcome($$SELECT enrollment.revoke_token_and_nodes((SELECT token_id FROM acme))$$), 'NR001',
          'another tenant''s token cannot be revoked with its nodes');
SELECT is(pg_temp.outcome($$SELECT enrollment.remove_node(n.node_id) FROM enrollment.node_record n WHERE n.name = 'acme-node'$$), 'NR021',
          'another tenant''s node cannot be removed');
SELECT is(pg_temp.outcome($$SELECT enrollment.approve_node(n.node_id) FROM enrollment.node_record n WHERE n.name = 'acme-node'$$), 'NR021',
          'another tenant''s node cannot be approved');
SELECT pg_temp.act(NULL, 'acme');
SELECT ok((SELECT ok FROM enrollment.check_token((SELECT token FROM acme))), 'in its own tenant the token checks out');
SELECT is((SELECT name FROM enrollment.authenticate_node((SELECT node_secret FROM acme))), 'acme-node',
          'and the node authenticates');

-- Removing a member: their tokens revoked, the nodes enrolled through them
-- removed, their API tokens revoked, all audited
CREATE TEMP TABLE owned AS
SELECT (SELECT count(*) FROM enrollment.enrollment_token
         WHERE tenant = 'acme' AND created_by = 'ops@acme' AND status IN ('pending', 'active')) AS tokens,
       (SELECT count(*) FROM enrollment.api_token
         WHERE tenant = 'acme' AND owner = 'ops@acme' AND status = 'active') AS api_tokens;
SELECT is(enrollment.remove_member('ops@acme'),
          (SELECT jsonb_build_object('tokens_revoked', tokens, 'nodes_removed', 1,
                                     'api_tokens_revoked', api_tokens) FROM owned),
          'remove_member reports the cascade: every live token and API token of the member, the node');
SELECT is((SELECT status FROM enrollment.tokens WHERE token_id = (SELECT token_id FROM acme)), 'revoked',
          'the member''s token is revoked');
SELECT is((SELECT count(*) FROM enrollment.authenticate_node((SELECT node_secret FROM acme))), 0::bigint,
          'the node enrolled through it no longer authenticates');
SELECT is((SELECT error FROM enrollment.verify_api_token((SELECT api_token FROM acme))), 'token_revoked',
          'the member''s API token is revoked');
SELECT is((SELECT jsonb_object_agg(action, n) FROM (
              SELECT action, count(*) AS n FROM enrollment.audit_log
               WHERE details->>'reason' = 'member_removed' OR action = 'member_removed'
               GROUP BY action) c),
          (SELECT jsonb_build_object('sensor_enrollment_token_revoked', tokens, 'sensor_removed', 1,
                                     'api_token_revoked', api_tokens, 'member_removed', 1) FROM owned),
          'each change of the cascade is audited');
SELECT cmp_ok((SELECT tokens + api_tokens FROM owned), '>=', 2::bigint, 'the cascade had work to do');

-- API token permissions: the token's own, within the owner's role now
SELECT pg_temp.act('adm@acme');
CREATE TEMP TABLE tok AS
SELECT (SELECT token FROM enrollment.create_api_token('all of mine')) AS full_token,
       (SELECT token FROM enrollment.create_api_token('read nodes', ARRAY['nodes:read'])) AS narrow;
SELECT is((SELECT ok FROM enrollment.verify_api_token((SELECT full_token FROM tok), 'keys:read')), true,
          'an admin''s token may read keys');
SELECT is((SELECT error FROM enrollment.verify_api_token((SELECT narrow FROM tok), 'keys:read')),
          'insufficient_permission', 'a narrowed token may not');
SELECT is((SELECT http_status FROM enrollment.verify_api_token((SELECT narrow FROM tok), 'keys:read')), 403,
          'which is HTTP 403');
SELECT pg_temp.act(NULL);
SELECT enrollment.set_member_role('adm@acme', 'operator');
SELECT is((SELECT error FROM enrollment.verify_api_token((SELECT full_token FROM tok), 'keys:read')),
          'insufficient_permission', 'after the owner''s demotion the token loses keys:read at once');
SELECT is((SELECT ok FROM enrollment.verify_api_token((SELECT full_token FROM tok), 'tokens:write')), true,
          'and keeps what the new role allows');
SELECT pg_temp.act('adm@acme');
SELECT is(pg_temp.outcome($$SELECT enrollment.create_api_token('too much', ARRAY['keys:write'])$$), '42501',
          'a token cannot be given more than its creator''s role');
SELECT is((SELECT error FROM enrollment.verify_api_token('api_0123456789abcdef.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')),
          'invalid_token', 'a made-up token is invalid, without an error');
SELECT pg_temp.act(NULL);
SELECT enrollment.set_api_token_prefix('tc-apiv1_');
SELECT pg_temp.act('own@acme');
SELECT matches((SELECT token FROM enrollment.create_api_token('branded')), '^tc-apiv1_[0-9a-f]{16}\.',
               'a tenant''s API tokens carry its prefix');

-- The audit log: append-only for everyone, sealed into a hash chain
SELECT pg_temp.act(NULL);
SELECT cmp_ok(enrollment.seal_audit(), '>', 0::bigint, 'seal_audit seals the new events');
SELECT is((SELECT (ok, problem, unsealed) FROM enrollment.verify_audit_chain()),
          (true, NULL::text, 0::bigint), 'the chain verifies');
-- retention: old sealed events go, the rest of the chain still verifies.
-- One chain holds every tenant's events, so purging it (and verifying it)
-- is for a DBA: no member of a tenant may, its owner included (the matrix)
SELECT pg_temp.act(NULL);
SELECT is(enrollment.purge_audit('30 days'), 3::bigint,
          'a DBA''s purge removes exactly the 3 old events, sealed before the rest');
SELECT is(enrollment.purge_audit('30 days'), 0::bigint, 'a second purge finds nothing older');
SELECT is((SELECT count(*) FROM enrollment.audit_event WHERE actor = 'history'), 0::bigint, 'they are gone');
SELECT enrollment.seal_audit();
SELECT is((SELECT (ok, unsealed) FROM enrollment.verify_audit_chain()), (true, 0::bigint),
          'the remaining chain verifies, the purge itself sealed in it');
SELECT is((SELECT actor FROM enrollment.audit_log WHERE action = 'audit_purged' AND details->>'events' = '3'),
          session_user::text, 'the purge is audited');

SELECT is(pg_temp.outcome($$UPDATE enrollment.audit_event SET actor = 'someone else'$$), '42501',
          'the audit log cannot be updated, not even by its owner');
SELECT is(pg_temp.outcome($$DELETE FROM enrollment.audit_event$$), '42501', 'nor deleted from');
ALTER TABLE enrollment.audit_event DISABLE TRIGGER audit_event_no_update_delete;
UPDATE enrollment.audit_event SET details = '{"forged": true}'
 WHERE event_id = (SELECT event_id FROM enrollment.audit_chain ORDER BY seq OFFSET 2 LIMIT 1);
ALTER TABLE enrollment.audit_event ENABLE TRIGGER audit_event_no_update_delete;
SELECT is((SELECT (ok, problem) FROM enrollment.verify_audit_chain()), (false, 'event_altered'::text),
          'an edited event breaks the chain');

-- a request verified for audit:read may read its tenant's audit log in the
-- same transaction, without a member role (last: the grant lasts to the end
-- of this test's one transaction)
SELECT pg_temp.act(NULL);
CREATE TEMP TABLE auditor AS
SELECT key_id, hmac_secret FROM enrollment.create_api_key('siem', ARRAY['audit:read']);
SELECT pg_temp.act('siem-backend');
SELECT is(pg_temp.outcome($$SELECT count(*) FROM enrollment.audit_log$$), '42501',
          'a backend acting as a non-member may not read the audit log');
SELECT ok((SELECT v.ok FROM auditor, enrollment.verify_request('GET', '/api/v2/audit',
              enrollment.sign_request('GET', '/api/v2/audit', auditor.key_id, auditor.hmac_secret),
              required_scope => 'audit:read') v), 'a request signed with an audit:read key verifies');
SELECT is(pg_temp.outcome($$SELECT count(*) FROM enrollment.audit_log WHERE action = 'api_key_created'$$), 'ok',
          'after which the transaction may read the audit log');
SELECT pg_temp.act('siem-backend', 'globex');
SELECT is(pg_temp.outcome($$SELECT count(*) FROM enrollment.audit_log$$), '42501',
          'but only its own tenant''s');

-- Operators manage their own API tokens only; admins every token of the
-- tenant; nobody anything of another tenant; admins make and unmake no owner
SELECT pg_temp.act(NULL);
SELECT enrollment.add_member(m, r)
  FROM (VALUES ('r-op1@acme', 'operator'), ('r-op2@acme', 'operator'), ('r-adm@acme', 'admin'),
               ('r-own@acme', 'owner')) AS v(m, r);
SELECT pg_temp.act(NULL, 'globex');
SELECT enrollment.add_member('r-op@globex', 'admin');
SELECT pg_temp.act('r-op@globex', 'globex');
CREATE TEMP TABLE r_globex AS
SELECT (SELECT token_id FROM enrollment.create_api_token('globex token')) AS api_token,
       (SELECT key_id FROM enrollment.create_api_key('globex key', ARRAY['events:read'])) AS key_id;
SELECT pg_temp.act('r-op1@acme');
CREATE TEMP TABLE r_tok AS
SELECT 1 AS n, token_id FROM enrollment.create_api_token('op1 token');
SELECT pg_temp.act('r-op2@acme');
INSERT INTO r_tok SELECT 2, token_id FROM enrollment.create_api_token('op2 token');
INSERT INTO r_tok SELECT 3, token_id FROM enrollment.create_api_token('op2 second token');
SELECT pg_temp.act('r-op1@acme');
SELECT is(pg_temp.outcome(format('SELECT enrollment.revoke_api_token(%L)', (SELECT token_id FROM r_tok WHERE n = 2))),
          'NR001', 'an operator may not revoke another operator''s API token');
SELECT is(pg_temp.outcome(format('SELECT enrollment.delete_api_token(%L)', (SELECT token_id FROM r_tok WHERE n = 2))),
          'NR001', 'nor delete it');
SELECT is(pg_temp.outcome(format('SELECT enrollment.reassign_api_token(%L, %L)', (SELECT token_id FROM r_tok WHERE n = 2), 'r-op1@acme')),
          '42501', 'nor take it over (reassigning is an admin''s)');
SELECT is((SELECT count(*) FROM enrollment.api_tokens WHERE owner <> 'r-op1@acme'), 0::bigint,
          'an operator lists their own API tokens only');
SELECT is(pg_temp.outcome(format('SELECT enrollment.revoke_api_token(%L)', (SELECT token_id FROM r_tok WHERE n = 1))),
          'ok', 'an operator revokes their own API token');
SELECT pg_temp.act('r-adm@acme');
SELECT is(pg_temp.outcome(format('SELECT enrollment.revoke_api_token(%L)', (SELECT token_id FROM r_tok WHERE n = 2))),
          'ok', 'an admin revokes any API token of the tenant');
SELECT is(pg_temp.outcome(format('SELECT enrollment.reassign_api_token(%L, %L)', (SELECT token_id FROM r_tok WHERE n = 3), 'r-op1@acme')),
          'ok', 'and reassigns one');
SELECT is((SELECT count(DISTINCT owner) FROM enrollment.api_tokens WHERE owner LIKE 'r-op_@acme'), 2::bigint,
          'an admin lists every owner''s API tokens');
SELECT is((SELECT owner FROM enrollment.api_tokens WHERE token_id = (SELECT token_id FROM r_tok WHERE n = 3)),
          'r-op1@acme', 'the reassigned token has its new owner');
-- another tenant's objects, by id or name, from acme's admin
SELECT is(pg_temp.outcome(format('SELECT enrollment.revoke_api_token(%L)', (SELECT api_token FROM r_globex))),
          'NR001', 'another tenant''s API token cannot be revoked');
SELECT is(pg_temp.outcome(format('SELECT enrollment.delete_api_token(%L)', (SELECT api_token FROM r_globex))),
          'NR001', 'nor deleted');
SELECT is(pg_temp.outcome(format('SELECT enrollment.revoke_api_key(%L)', (SELECT key_id FROM r_globex))),
          'NR010', 'another tenant''s API key cannot be revoked');
SELECT is(pg_temp.outcome($$SELECT enrollment.set_member_role('r-op@globex', 'viewer')$$),
          'NR020', 'another tenant''s member''s role cannot be changed');
SELECT is(pg_temp.outcome($$SELECT enrollment.remove_member('r-op@globex')$$),
          'NR020', 'nor the member removed');
SELECT pg_temp.act('r-op@globex', 'globex');
SELECT is((SELECT status FROM enrollment.api_tokens WHERE token_id = (SELECT api_token FROM r_globex)), 'active',
          'the other tenant''s API token is untouched');
-- owners are an owner's business
SELECT pg_temp.act('r-adm@acme');
SELECT is(pg_temp.outcome($$SELECT enrollment.add_member('r-new@acme', 'owner')$$), '42501',
          'an admin may not add an owner');
SELECT is(pg_temp.outcome($$SELECT enrollment.set_member_role('r-op1@acme', 'owner')$$), '42501',
          'nor make a member owner');
SELECT is(pg_temp.outcome($$SELECT enrollment.set_member_role('r-own@acme', 'viewer')$$), '42501',
          'nor demote an owner');
SELECT is(pg_temp.outcome($$SELECT enrollment.remove_member('r-own@acme')$$), '42501',
          'nor remove one');
SELECT pg_temp.act('r-own@acme');
SELECT is(pg_temp.outcome($$SELECT enrollment.set_member_role('r-op1@acme', 'owner')$$), 'ok',
          'an owner makes an owner');

-- a prefix written past the table's CHECK (a superuser dropped it) is refused
-- before it reaches the credential's fixed-size buffer
SAVEPOINT long_prefix;
SELECT pg_temp.act(NULL);
ALTER TABLE enrollment.tenant_setting DROP CONSTRAINT tenant_setting_api_token_prefix_check;
INSERT INTO enrollment.tenant_setting VALUES ('acme', repeat('a', 40) || '_')
    ON CONFLICT (tenant) DO UPDATE SET api_token_prefix = excluded.api_token_prefix;
SELECT enrollment.add_member('prefix@acme', 'operator');
SELECT pg_temp.act('prefix@acme');
-- (the outcome is asserted after the rollback, which would undo pgTAP's count)
SELECT pg_temp.outcome($$SELECT enrollment.create_api_token('long prefix')$$) AS long_prefix_outcome \gset
ROLLBACK TO SAVEPOINT long_prefix;
SELECT is(:'long_prefix_outcome'::text, '22023',
          'a tenant prefix too long for a credential is refused');

SELECT * FROM finish();
ROLLBACK;
