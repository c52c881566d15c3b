-- pgTAP: a catalogue of hostile inputs for the public functions.  Each case
-- gives its documented error (a SQLSTATE, or the error key of a function
-- that reports instead of raising), and one that reports changes no row of
-- any table (one that raises is rolled back by PostgreSQL: checking its
-- rows could not fail).
BEGIN;
SELECT plan(204);

-- what every table of the extension holds, as one value
CREATE FUNCTION pg_temp.fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(t::text, ',' ORDER BY t.token_id) FROM enrollment.enrollment_token t),
        (SELECT string_agg(n::text, ',' ORDER BY n.node_id) FROM enrollment.node_record n),
        (SELECT string_agg(k::text, ',' ORDER BY k.key_id) FROM enrollment.api_key k),
        (SELECT string_agg(a::text, ',' ORDER BY a.token_id) FROM enrollment.api_token a),
        (SELECT string_agg(m::text, ',' ORDER BY m.tenant, m.identity) FROM enrollment.member m),
        (SELECT string_agg(e::text, ',' ORDER BY e.event_id) FROM enrollment.audit_event e),
        (SELECT string_agg(c::text, ',' ORDER BY c.seq) FROM enrollment.audit_chain c),
        (SELECT string_agg(u::text, ',' ORDER BY u::text) FROM enrollment.token_use u),
        (SELECT string_agg(s::text, ',' ORDER BY s::text) FROM enrollment.tenant_setting s),
        (SELECT string_agg(r::text, ',' ORDER BY r::text) FROM enrollment.token_rate r),
        (SELECT string_agg(q::text, ',' ORDER BY q.rule_id) FROM enrollment.auto_approve_rule q),
        (SELECT string_agg(g::text, ',' ORDER BY g::text) FROM enrollment.node_group g),
        (SELECT string_agg(d::text, ',' ORDER BY d::text) FROM enrollment.node_address d)))
$$;

-- run sql; its outcome is the SQLSTATE it raised, or for a reporting function
-- (one returning a row with an "error" column) 'report:' and the error key
CREATE FUNCTION pg_temp.outcome(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    EXECUTE sql INTO r;
    RETURN 'report:' || coalesce(to_jsonb(r)->>'error', 'none');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- fixtures: a token, a node credential, an API key, an API token
CREATE TEMP TABLE fx AS
SELECT t.token, e.node_secret, NULL::text AS kid, NULL::text AS sec, NULL::text AS api
  FROM enrollment.create_token('reusable', 'hostile') t,
       LATERAL enrollment.enroll(t.token, 'fixture-node') e;
UPDATE fx SET (kid, sec) = (SELECT key_id, hmac_secret FROM enrollment.create_api_key('hostile', ARRAY['events:read']));
SELECT enrollment.add_member('tester', 'owner');
SELECT set_config('enrollment.actor', 'tester', true);
UPDATE fx SET api = (SELECT token FROM enrollment.create_api_token('hostile'));
SELECT set_config('enrollment.actor', '', true);
SELECT set_config('h.token', token, true), set_config('h.node', node_secret, true),
       set_config('h.kid', kid, true), set_config('h.sec', sec, true), set_config('h.api', api, true)
  FROM fx;
-- a well-formed token (checksum included) whose row is gone: it passes the
-- parser and is unknown to the lookup
SELECT set_config('h.gone', token, true) FROM enrollment.create_token('once', 'hostile gone');
DELETE FROM enrollment.enrollment_token WHERE label = 'hostile gone';

CREATE TEMP TABLE hostile (what text, sql text, expect text);
INSERT INTO hostile VALUES
-- create_token
  ('create_token: NULL kind', $$SELECT enrollment.create_token(NULL)$$, '22004'),
  ('create_token: unknown kind', $$SELECT enrollment.create_token('forever')$$, '22023'),
  ('create_token: empty kind', $$SELECT enrollment.create_token('')$$, '22023'),
  ('create_token: empty label', $$SELECT enrollment.create_token('once', '')$$, '22023'),
  ('create_token: 1 MB label', $$SELECT enrollment.create_token('once', repeat('x', 1048576))$$, '22001'),
  ('create_token: control character in label', $$SELECT enrollment.create_token('once', E'a\nb')$$, '22023'),
  ('create_token: negative ttl', $$SELECT enrollment.create_token('once', ttl => '-1 hour')$$, '22023'),
  ('create_token: zero ttl', $$SELECT enrollment.create_token('once', ttl => '0')$$, '22023'),
  ('create_token: huge ttl', $$SELECT enrollment.create_token('once', ttl => '1000000 years')$$, '22023'),
  ('create_token: ttl and expires_days', $$SELECT enrollment.create_token('reusable', ttl => '1 hour', expires_days => 1)$$, '22023'),
  ('create_token: negative expires_days', $$SELECT enrollment.create_token('reusable', expires_days => -1)$$, '22023'),
  ('create_token: huge expires_days', $$SELECT enrollment.create_token('reusable', expires_days => 2147483647)$$, '22023'),
  ('create_token: max_uses 0', $$SELECT enrollment.create_token('reusable', max_uses => 0)$$, '22023'),
  ('create_token: negative max_uses', $$SELECT enrollment.create_token('reusable', max_uses => -5)$$, '22023'),
  ('create_token: once with max_uses 2', $$SELECT enrollment.create_token('once', max_uses => 2)$$, '22023'),
  ('create_token: cluster without cluster_id', $$SELECT enrollment.create_token('cluster')$$, '22004'),
  ('create_token: 1 MB cluster_id', $$SELECT enrollment.create_token('cluster', cluster_id => repeat('c', 1048576))$$, '22001'),
  ('create_token: unknown node_id', $$SELECT enrollment.create_token('once', node_id => gen_random_uuid())$$, '22023'),
-- enroll
  ('enroll: NULL token', $$SELECT enrollment.enroll(NULL, 'n')$$, '22004'),
  ('enroll: NULL node_name', $$SELECT enrollment.enroll(current_setting('h.token'), NULL)$$, '22004'),
  ('enroll: empty token', $$SELECT enrollment.enroll('', 'n')$$, 'NR001'),
  ('enroll: 1 MB token', $$SELECT enrollment.enroll(repeat('a', 1048576), 'n')$$, 'NR001'),
  ('enroll: truncated token', $$SELECT enrollment.enroll(left(current_setting('h.token'), 30), 'n')$$, 'NR001'),
  ('enroll: token minus its last character', $$SELECT enrollment.enroll(left(current_setting('h.token'), -1), 'n')$$, 'NR001'),
  ('enroll: wrong checksum', $$SELECT enrollment.enroll(left(current_setting('h.token'), -1) || CASE WHEN right(current_setting('h.token'), 1) = 'A' THEN 'B' ELSE 'A' END, 'n')$$, 'NR001'),
  ('enroll: wrong prefix', $$SELECT enrollment.enroll('xyz_' || substr(current_setting('h.token'), 5), 'n')$$, 'NR001'),
  ('enroll: uppercase public id', $$SELECT enrollment.enroll(upper(current_setting('h.token')), 'n')$$, 'NR001'),
  ('enroll: valid shape, unknown id', $$SELECT enrollment.enroll(current_setting('h.gone'), 'n')$$, 'NR001'),
  ('enroll: node credential as token', $$SELECT enrollment.enroll(current_setting('h.node'), 'n')$$, 'NR001'),
  ('enroll: empty node_name', $$SELECT enrollment.enroll(current_setting('h.token'), '')$$, '22023'),
  ('enroll: 1 MB node_name', $$SELECT enrollment.enroll(current_setting('h.token'), repeat('n', 1048576))$$, '22001'),
  ('enroll: newline in node_name', $$SELECT enrollment.enroll(current_setting('h.token'), E'n\nforged log line')$$, '22023'),
  ('enroll: 1 MB node_role', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_role => repeat('r', 1048576))$$, '22001'),
-- check_token and authenticate_node report, never raise
  ('check_token: NULL', $$SELECT * FROM enrollment.check_token(NULL)$$, 'report:invalid_token'),
  ('check_token: empty', $$SELECT * FROM enrollment.check_token('')$$, 'report:invalid_token'),
  ('check_token: 1 MB', $$SELECT * FROM enrollment.check_token(repeat('z', 1048576))$$, 'report:invalid_token'),
  ('check_token: truncated', $$SELECT * FROM enrollment.check_token(left(current_setting('h.token'), 40))$$, 'report:invalid_token'),
  ('check_token: wrong checksum', $$SELECT * FROM enrollment.check_token(left(current_setting('h.token'), -1) || CASE WHEN right(current_setting('h.token'), 1) = 'A' THEN 'B' ELSE 'A' END)$$, 'report:invalid_token'),
  ('check_token: API token as enrollment token', $$SELECT * FROM enrollment.check_token(current_setting('h.api'))$$, 'report:invalid_token'),
  ('authenticate_node: NULL', $$SELECT CASE WHEN count(*) > 0 THEN 'authenticated' END AS error FROM enrollment.authenticate_node(NULL)$$, 'report:none'),
  ('authenticate_node: 1 MB', $$SELECT CASE WHEN count(*) > 0 THEN 'authenticated' END AS error FROM enrollment.authenticate_node(repeat('q', 1048576))$$, 'report:none'),
  ('authenticate_node: enrollment token as credential', $$SELECT CASE WHEN count(*) > 0 THEN 'authenticated' END AS error FROM enrollment.authenticate_node(current_setting('h.token'))$$, 'report:none'),
-- revoke_token
  ('revoke_token: NULL', $$SELECT enrollment.revoke_token(NULL)$$, '22004'),
  ('revoke_token: unknown id', $$SELECT enrollment.revoke_token(gen_random_uuid())$$, 'NR001'),
-- remove_node, renew_token, revoke_token_and_nodes (0.7.0)
  ('remove_node: NULL', $$SELECT enrollment.remove_node(NULL)$$, '22004'),
  ('remove_node: unknown id', $$SELECT enrollment.remove_node(gen_random_uuid())$$, 'NR021'),
  ('renew_token: NULL', $$SELECT enrollment.renew_token(NULL)$$, '22004'),
  ('renew_token: unknown id', $$SELECT enrollment.renew_token(gen_random_uuid())$$, 'NR001'),
  ('revoke_token_and_nodes: NULL', $$SELECT enrollment.revoke_token_and_nodes(NULL)$$, '22004'),
  ('revoke_token_and_nodes: unknown id', $$SELECT enrollment.revoke_token_and_nodes(gen_random_uuid())$$, 'NR001'),
-- node approval and auto-approve rules (0.7.0)
  ('set_node_approval: NULL', $$SELECT enrollment.set_node_approval(NULL)$$, '22004'),
  ('set_node_approval: unknown mode', $$SELECT enrollment.set_node_approval('MANUAL')$$, '22023'),
  ('set_node_approval: 1 MB', $$SELECT enrollment.set_node_approval(repeat('m', 1048576))$$, '22023'),
  ('create_auto_approve_rule: NULL cluster', $$SELECT enrollment.create_auto_approve_rule(NULL, 'r')$$, '22004'),
  ('create_auto_approve_rule: NULL label', $$SELECT enrollment.create_auto_approve_rule('c', NULL)$$, '22004'),
  ('create_auto_approve_rule: empty cluster', $$SELECT enrollment.create_auto_approve_rule('', 'r')$$, '22023'),
  ('create_auto_approve_rule: 1 MB cluster', $$SELECT enrollment.create_auto_approve_rule(repeat('c', 1048576), 'r')$$, '22001'),
  ('create_auto_approve_rule: 1 MB label', $$SELECT enrollment.create_auto_approve_rule('c', repeat('l', 1048576))$$, '22001'),
  ('create_auto_approve_rule: NULL role', $$SELECT enrollment.create_auto_approve_rule('c', 'r', ARRAY[NULL::text])$$, '22023'),
  ('create_auto_approve_rule: 65-character role', $$SELECT enrollment.create_auto_approve_rule('c', 'r', ARRAY[repeat('r', 65)])$$, '22023'),
  ('create_auto_approve_rule: max_nodes -1', $$SELECT enrollment.create_auto_approve_rule('c', 'r', NULL, -1)$$, '22023'),
  ('delete_auto_approve_rule: NULL', $$SELECT enrollment.delete_auto_approve_rule(NULL)$$, '22004'),
  ('delete_auto_approve_rule: unknown id', $$SELECT enrollment.delete_auto_approve_rule(gen_random_uuid())$$, 'NR022'),
  ('approve_node: unknown id', $$SELECT enrollment.approve_node(gen_random_uuid())$$, 'NR021'),
-- where a node is placed (0.7.0)
  ('enroll: empty node_group', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_group => '')$$, '22023'),
  ('enroll: 65-character node_group', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_group => repeat('g', 65))$$, '22001'),
  ('enroll: 1 MB node_group', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_group => repeat('g', 1048576))$$, '22001'),
  ('enroll: newline in node_group', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_group => E'a\nb')$$, '22023'),
  ('enroll: empty node_os', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_os => '')$$, '22023'),
  ('enroll: 1 MB node_os', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_os => repeat('o', 1048576))$$, '22001'),
  ('enroll: escape in node_os', $$SELECT enrollment.enroll(current_setting('h.token'), 'n', node_os => E'linux\x1b[2J')$$, '22023'),
  ('set_ip_pool: IPv4 /31', $$SELECT enrollment.set_ip_pool('10.0.0.0/31')$$, '22023'),
  ('set_ip_pool: IPv4 /32', $$SELECT enrollment.set_ip_pool('10.0.0.1/32')$$, '22023'),
  ('set_ip_pool: IPv6 /127', $$SELECT enrollment.set_ip_pool('fd00::/127')$$, '22023'),
  ('set_ip_pool: host bits set', $$SELECT enrollment.set_ip_pool('10.0.0.1/24')$$, '22P02'),
-- set_token_rate, set_node_limit (0.7.0)
  ('set_token_rate: NULL token_id', $$SELECT enrollment.set_token_rate(NULL, 5)$$, '22004'),
  ('set_token_rate: unknown id', $$SELECT enrollment.set_token_rate(gen_random_uuid(), 5)$$, 'NR001'),
  ('set_token_rate: negative', $$SELECT enrollment.set_token_rate((SELECT token_id FROM enrollment.check_token(current_setting('h.token'))), -1)$$, '22023'),
  ('set_token_rate: a once token', $$SELECT enrollment.set_token_rate((SELECT token_id FROM enrollment.create_token()), 5)$$, '22023'),
  ('set_node_limit: negative', $$SELECT enrollment.set_node_limit(-1)$$, '22023'),
  ('set_node_limit: smallest integer', $$SELECT enrollment.set_node_limit(-2147483648)$$, '22023'),
-- create_api_key
  ('create_api_key: NULL label', $$SELECT enrollment.create_api_key(NULL, ARRAY['events:read'])$$, '22004'),
  ('create_api_key: NULL scopes', $$SELECT enrollment.create_api_key('k', NULL)$$, '22004'),
  ('create_api_key: empty scopes', $$SELECT enrollment.create_api_key('k', ARRAY[]::text[])$$, '22023'),
  ('create_api_key: unknown scope', $$SELECT enrollment.create_api_key('k', ARRAY['root:all'])$$, '22023'),
  ('create_api_key: NULL scope element', $$SELECT enrollment.create_api_key('k', ARRAY[NULL])$$, '22004'),
  ('create_api_key: 1 MB label', $$SELECT enrollment.create_api_key(repeat('k', 1048576), ARRAY['events:read'])$$, '22001'),
  ('create_api_key: negative expires_days', $$SELECT enrollment.create_api_key('k', ARRAY['events:read'], -1)$$, '22023'),
  ('create_api_key: huge expires_days', $$SELECT enrollment.create_api_key('k', ARRAY['events:read'], 2147483647)$$, '22023'),
-- verify_request reports; only caller bugs (NULL method/path, unknown required scope) raise
  ('verify_request: NULL method', $$SELECT * FROM enrollment.verify_request(NULL, '/', current_setting('h.kid'), '1', 'n', 'sha256=00')$$, '22004'),
  ('verify_request: NULL path', $$SELECT * FROM enrollment.verify_request('GET', NULL, current_setting('h.kid'), '1', 'n', 'sha256=00')$$, '22004'),
  ('verify_request: unknown required scope', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), '1', 'n', 'sha256=00', '', 'root:all')$$, '22023'),
  ('verify_request: all headers NULL', $$SELECT * FROM enrollment.verify_request('GET', '/', NULL, NULL, NULL, NULL)$$, 'report:missing_headers'),
  ('verify_request: NULL key id', $$SELECT * FROM enrollment.verify_request('GET', '/', NULL, '1', 'n', 'sha256=00')$$, 'report:missing_headers'),
  ('verify_request: empty key id', $$SELECT * FROM enrollment.verify_request('GET', '/', '', '1', 'n', 'sha256=00')$$, 'report:missing_headers'),
  ('verify_request: key id not hex', $$SELECT * FROM enrollment.verify_request('GET', '/', 'zzzzzzzzzzzzzzzz', '1', 'n', 'sha256=00')$$, 'report:invalid_key'),
  ('verify_request: key id uppercase', $$SELECT * FROM enrollment.verify_request('GET', '/', upper(current_setting('h.kid')), extract(epoch from now())::bigint::text, 'n', 'sha256=' || repeat('0', 64))$$, 'report:invalid_key'),
  ('verify_request: 1 MB key id', $$SELECT * FROM enrollment.verify_request('GET', '/', repeat('a', 1048576), '1', 'n', 'sha256=00')$$, 'report:invalid_key'),
  ('verify_request: negative timestamp', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), '-1', 'n', 'sha256=' || repeat('0', 64))$$, 'report:invalid_timestamp'),
  ('verify_request: huge timestamp', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), repeat('9', 40), 'n', 'sha256=' || repeat('0', 64))$$, 'report:invalid_timestamp'),
  ('verify_request: timestamp far in the future', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), '999999999999999', 'n', 'sha256=' || repeat('0', 64))$$, 'report:stale_timestamp'),
  ('verify_request: timestamp 0', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), '0', 'n', 'sha256=' || repeat('0', 64))$$, 'report:stale_timestamp'),
  ('verify_request: timestamp with spaces', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), ' 1700000000', 'n', 'sha256=' || repeat('0', 64))$$, 'report:invalid_timestamp'),
  ('verify_request: empty nonce', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, '', 'sha256=' || repeat('0', 64))$$, 'report:invalid_nonce'),
  ('verify_request: 129-character nonce', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, repeat('n', 129), 'sha256=' || repeat('0', 64))$$, 'report:invalid_nonce'),
  ('verify_request: 1 MB nonce', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, repeat('n', 1048576), 'sha256=' || repeat('0', 64))$$, 'report:invalid_nonce'),
  ('verify_request: newline in nonce', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, E'a\nb', 'sha256=' || repeat('0', 64))$$, 'report:invalid_nonce'),
  ('verify_request: signature not hex', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, 'n', 'sha256=' || repeat('g', 64))$$, 'report:malformed_signature'),
  ('verify_request: signature without scheme', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, 'n', repeat('0', 64))$$, 'report:malformed_signature'),
  ('verify_request: truncated signature', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, 'n', 'sha256=' || repeat('0', 63))$$, 'report:malformed_signature'),
  ('verify_request: 1 MB signature', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, 'n', repeat('s', 1048576))$$, 'report:malformed_signature'),
  ('verify_request: unknown key', $$SELECT * FROM enrollment.verify_request('GET', '/', '0123456789abcdef', extract(epoch from now())::bigint::text, 'n', 'sha256=' || repeat('0', 64))$$, 'report:invalid_key'),
  ('verify_request: wrong signature', $$SELECT * FROM enrollment.verify_request('GET', '/', current_setting('h.kid'), extract(epoch from now())::bigint::text, 'n', 'sha256=' || repeat('0', 64))$$, 'report:bad_signature'),
  ('verify_request: body with NUL bytes, signed for another', $$SELECT * FROM enrollment.verify_request('POST', '/', (enrollment.sign_request('POST', '/', current_setting('h.kid'), current_setting('h.sec'), '\x00ff00'::bytea)), '\x00fe00'::bytea)$$, 'report:bad_signature'),
  ('verify_request: 1 MB body, signed for another', $$SELECT * FROM enrollment.verify_request('POST', '/', enrollment.sign_request('POST', '/', current_setting('h.kid'), current_setting('h.sec'), 'x'::bytea), convert_to(repeat('x', 1048576), 'UTF8'))$$, 'report:bad_signature'),
  ('verify_request: headers not an object', $$SELECT * FROM enrollment.verify_request('GET', '/', '[1, 2, 3]'::jsonb)$$, 'report:missing_headers'),
  ('verify_request: headers NULL', $$SELECT * FROM enrollment.verify_request('GET', '/', NULL::jsonb)$$, 'report:missing_headers'),
  ('verify_request: header values not strings', $$SELECT * FROM enrollment.verify_request('GET', '/', '{"X-Telovix-Key-ID": {"a": 1}, "X-Telovix-Timestamp": [1], "X-Telovix-Nonce": null, "X-Telovix-Signature": true}'::jsonb)$$, 'report:missing_headers'),
  ('verify_request: header given twice', $$SELECT * FROM enrollment.verify_request('GET', '/', jsonb_build_object('X-Telovix-Key-ID', current_setting('h.kid'), 'x-telovix-key-id', current_setting('h.kid'), 'X-Telovix-Timestamp', '1', 'X-Telovix-Nonce', 'n', 'X-Telovix-Signature', 'sha256=00'))$$, 'report:missing_headers'),
-- sign_request (client helper) raises on caller bugs
  ('sign_request: secret not hex', $$SELECT enrollment.sign_request('GET', '/', current_setting('h.kid'), 'nothex')$$, '22023'),
  ('sign_request: key id not hex', $$SELECT enrollment.sign_request('GET', '/', 'KEY', current_setting('h.sec'))$$, '22023'),
  ('sign_request: NULL secret', $$SELECT enrollment.sign_request('GET', '/', current_setting('h.kid'), NULL)$$, '22004'),
-- revoke_api_key
  ('revoke_api_key: NULL', $$SELECT enrollment.revoke_api_key(NULL)$$, '22004'),
  ('revoke_api_key: not hex', $$SELECT enrollment.revoke_api_key('not a key id')$$, 'NR010'),
  ('revoke_api_key: 1 MB', $$SELECT enrollment.revoke_api_key(repeat('a', 1048576))$$, 'NR010'),
  ('revoke_api_key: unknown', $$SELECT enrollment.revoke_api_key('0123456789abcdef')$$, 'NR010'),
-- members
  ('add_member: NULL identity', $$SELECT enrollment.add_member(NULL, 'viewer')$$, '22004'),
  ('add_member: NULL role', $$SELECT enrollment.add_member('x', NULL)$$, '22004'),
  ('add_member: unknown role', $$SELECT enrollment.add_member('x', 'god')$$, '22023'),
  ('add_member: empty identity', $$SELECT enrollment.add_member('', 'viewer')$$, '22023'),
  ('add_member: 1 MB identity', $$SELECT enrollment.add_member(repeat('i', 1048576), 'viewer')$$, '22023'),
  ('add_member: existing member', $$SELECT enrollment.add_member('tester', 'viewer')$$, '23505'),
  ('set_member_role: unknown member', $$SELECT enrollment.set_member_role('nobody', 'viewer')$$, 'NR020'),
  ('set_member_role: unknown role', $$SELECT enrollment.set_member_role('tester', 'root')$$, '22023'),
  ('remove_member: NULL', $$SELECT enrollment.remove_member(NULL)$$, 'NR020'),
  ('remove_member: unknown', $$SELECT enrollment.remove_member('nobody')$$, 'NR020'),
-- API tokens
  ('create_api_token: NULL label', $$SELECT enrollment.create_api_token(NULL)$$, '22004'),
  ('create_api_token: unknown permission', $$SELECT enrollment.create_api_token('t', ARRAY['root:all'])$$, '22023'),
  ('create_api_token: NULL permission', $$SELECT enrollment.create_api_token('t', ARRAY[NULL])$$, '22004'),
  ('create_api_token: empty permissions', $$SELECT enrollment.create_api_token('t', ARRAY[]::text[])$$, '22023'),
  ('create_api_token: 1 MB label', $$SELECT enrollment.create_api_token(repeat('t', 1048576))$$, '22001'),
  ('create_api_token: by a DBA who is no member', $$SELECT enrollment.create_api_token('t')$$, '55000'),
  ('verify_api_token: NULL', $$SELECT * FROM enrollment.verify_api_token(NULL)$$, 'report:invalid_token'),
  ('verify_api_token: empty', $$SELECT * FROM enrollment.verify_api_token('')$$, 'report:invalid_token'),
  ('verify_api_token: 1 MB', $$SELECT * FROM enrollment.verify_api_token(repeat('a', 1048576))$$, 'report:invalid_token'),
  ('verify_api_token: truncated', $$SELECT * FROM enrollment.verify_api_token(left(current_setting('h.api'), 30))$$, 'report:invalid_token'),
  ('verify_api_token: enrollment token', $$SELECT * FROM enrollment.verify_api_token(current_setting('h.token'))$$, 'report:invalid_token'),
  ('verify_api_token: unknown permission', $$SELECT * FROM enrollment.verify_api_token(current_setting('h.api'), 'root:all')$$, '22023'),
  ('revoke_api_token: NULL', $$SELECT enrollment.revoke_api_token(NULL)$$, 'NR001'),
  ('revoke_api_token: unknown', $$SELECT enrollment.revoke_api_token(gen_random_uuid())$$, 'NR001'),
  ('delete_api_token: unknown', $$SELECT enrollment.delete_api_token(gen_random_uuid())$$, 'NR001'),
  ('reassign_api_token: unknown token', $$SELECT enrollment.reassign_api_token(gen_random_uuid(), 'tester')$$, 'NR001'),
  ('set_api_token_prefix: uppercase', $$SELECT enrollment.set_api_token_prefix('API_')$$, '22023'),
  ('set_api_token_prefix: no underscore', $$SELECT enrollment.set_api_token_prefix('api')$$, '22023'),
  ('set_api_token_prefix: 1 MB', $$SELECT enrollment.set_api_token_prefix(repeat('a', 1048576) || '_')$$, '22023'),
  ('set_api_token_prefix: NULL', $$SELECT enrollment.set_api_token_prefix(NULL)$$, '22023'),
  ('create_self_enrollment_token: 2 hours', $$SELECT enrollment.create_self_enrollment_token('2 hours')$$, '22023'),
  ('create_self_enrollment_token: NULL ttl', $$SELECT enrollment.create_self_enrollment_token(NULL)$$, '22004'),
  ('create_self_enrollment_token: 1 day', $$SELECT enrollment.create_self_enrollment_token('1 day')$$, '22023'),
  ('purge_audit: NULL', $$SELECT enrollment.purge_audit(NULL)$$, '22023'),
  ('purge_audit: one hour', $$SELECT enrollment.purge_audit('1 hour')$$, '22023'),
  ('require_role: unknown role', $$SELECT enrollment.require_role('god', 'x')$$, '22023'),
  ('role_permissions: unknown role', $$SELECT enrollment.role_permissions('god')$$, '22023');

CREATE FUNCTION pg_temp.catalogue() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    h record;
    before text;
    got text;
BEGIN
    FOR h IN SELECT * FROM hostile LOOP
        before := pg_temp.fingerprint();
        got := pg_temp.outcome(h.sql);
        RETURN NEXT is(got, h.expect, h.what);
        IF h.expect LIKE 'report:%' THEN
            RETURN NEXT is(pg_temp.fingerprint(), before, h.what || ': no row changed');
        END IF;
    END LOOP;
END
$$;
SELECT * FROM pg_temp.catalogue();

SELECT * FROM finish();
ROLLBACK;
