-- The integrity rules of enrollment_token and node_record (one CHECK per
-- table, checked in C: src/row_rules.c).  Every rule is broken once by a
-- direct write, and each time the row stays as it was.
SELECT token_id AS cid, token FROM enrollment.create_token('cluster', 'rules', cluster_id => 'c1') \gset
SELECT token_id AS oid FROM enrollment.create_token('once', 'rules once') \gset
SELECT node_id AS nid FROM enrollment.enroll(:'token', 'rules-node', 'c1') \gset
-- SQLSTATE and the rule named in the detail; the statement is rolled back
CREATE FUNCTION rule_err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; det text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || det;
END
$$;
\set tok 'UPDATE enrollment.enrollment_token SET '
\set node 'UPDATE enrollment.node_record SET '

-- the constraint and its message (SQLSTATE 23514, PostgreSQL's wording)
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE contype = 'c' AND conrelid IN ('enrollment.enrollment_token'::regclass, 'enrollment.node_record'::regclass)
 ORDER BY 1;

-- every rule of a token, broken once
SELECT rule, rule_err(:'tok' || stmt || ' WHERE token_id = ' || quote_literal(id)) FROM (VALUES
  ('kind',               $$kind = 'twice'$$,                       :'oid'),
  ('status',             $$status = 'gone'$$,                      :'oid'),
  ('token_hash length',  $$token_hash = '\x00'$$,                  :'oid'),
  ('label length',       $$label = repeat('é', 129)$$,             :'oid'),
  ('use_count >= 0',     $$use_count = -1$$,                       :'cid'),
  ('max_uses > 0',       $$max_uses = 0, use_count = 0$$,          :'cid'),
  ('cluster_id empty',   $$cluster_id = ''$$,                      :'cid'),
  ('cluster_id length',  $$cluster_id = repeat('c', 129)$$,        :'cid'),
  ('cluster needs id',   $$cluster_id = NULL$$,                    :'cid'),
  ('only cluster has id',$$cluster_id = 'c1'$$,                    :'oid'),
  ('only once bound',    $$node_id = '$$ || :'nid' || $$'$$,       :'cid'),
  ('once max_uses 1',    $$max_uses = 2$$,                         :'oid'),
  ('use_count <= max',   $$max_uses = 5, use_count = 6$$,          :'cid'),
  ('revoked needs time', $$status = 'revoked'$$,                   :'oid'),
  ('time needs revoked', $$revoked_at = now()$$,                   :'oid')
) AS r(rule, stmt, id);

-- every rule of a node, broken once
SELECT rule, rule_err(:'node' || stmt || ' WHERE node_id = ' || quote_literal(:'nid')) FROM (VALUES
  ('name empty',         $$name = ''$$),
  ('name length',        $$name = repeat('n', 129)$$),
  ('role empty',         $$role = ''$$),
  ('role length',        $$role = repeat('r', 65)$$),
  ('cluster_id empty',   $$cluster_id = ''$$),
  ('cluster_id length',  $$cluster_id = repeat('c', 129)$$),
  ('status',             $$status = 'lost'$$),
  ('secret_hash length', $$secret_hash = sha224('x')$$),
  ('enroll_count >= 1',  $$enroll_count = 0$$),
  ('node_group empty',   $$node_group = ''$$),
  ('node_group length',  $$node_group = repeat('g', 65)$$),
  ('os empty',           $$os = ''$$),
  ('os length',          $$os = repeat('o', 65)$$),
  ('private_ip network', $$private_ip = '10.1.2.0/24'$$),
  ('private_ip v6 net',  $$private_ip = 'fd00::/64'$$)
) AS r(rule, stmt);

-- nothing above changed a row
SELECT kind, status, label, use_count, max_uses, cluster_id, revoked_at IS NULL AS not_revoked
  FROM enrollment.enrollment_token WHERE token_id IN (:'cid', :'oid') ORDER BY kind;
SELECT name, role, cluster_id, status, enroll_count, octet_length(secret_hash), node_group, os, private_ip
  FROM enrollment.node_record WHERE node_id = :'nid';

-- what the rules allow: NULLs where SQL lets them pass, 128 two-byte characters
SELECT err(:'tok' || $$label = repeat('é', 128), max_uses = NULL WHERE token_id = '$$ || :'oid' || $$'$$);
SELECT err(:'tok' || $$status = 'revoked', revoked_at = now() WHERE token_id = '$$ || :'cid' || $$'$$);
SELECT err($$INSERT INTO enrollment.enrollment_token (public_id, prefix, token_hash, kind, status, created_by)
             VALUES (42, 'enr_', sha256('x'), 'reusable', 'pending', 'test')$$);

SELECT err(:'node' || $$role = NULL, cluster_id = NULL, name = repeat('ñ', 128) WHERE node_id = '$$ || :'nid' || $$'$$);
SELECT err(:'node' || $$node_group = repeat('ğ', 64), os = repeat('ö', 64), private_ip = 'fd00::7' WHERE node_id = '$$ || :'nid' || $$'$$);
SELECT char_length(node_group), char_length(os), private_ip FROM enrollment.node_record WHERE node_id = :'nid';
SELECT err(:'node' || $$os = NULL, private_ip = '10.1.2.3' WHERE node_id = '$$ || :'nid' || $$'$$);
SELECT kind, status, label = repeat('é', 128) AS label_128, max_uses FROM enrollment.enrollment_token
 WHERE token_id IN (:'cid', :'oid') ORDER BY kind;
SELECT char_length(name), role, cluster_id FROM enrollment.node_record WHERE node_id = :'nid';

-- the detail names the rule and never a value of the row
UPDATE enrollment.enrollment_token SET label = 'secret-looking-value', status = 'gone' WHERE token_id = :'oid';

-- the functions are for the constraints: not callable by PUBLIC
SELECT has_function_privilege('public', 'enrollment.enrollment_token_rules(enrollment.enrollment_token)', 'EXECUTE'),
       has_function_privilege('public', 'enrollment.node_record_rules(enrollment.node_record)', 'EXECUTE');

-- Oracle: the C rules agree with the separate CHECK constraints of 0.2.0
-- (SQL's meaning: a constraint holds unless it is false) on every
-- combination of the values that matter.
CREATE FUNCTION rules_accept(r enrollment.enrollment_token) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN enrollment.enrollment_token_rules(r);
EXCEPTION WHEN check_violation THEN
    RETURN false;
END
$$;
WITH c AS (
  SELECT k AS kind, s AS status, h AS token_hash, l AS label, u AS use_count, m AS max_uses,
         cl AS cluster_id, n AS node_id, rv AS revoked_at
    FROM unnest(ARRAY['once', 'cluster', 'reusable', 'other']) k,
         unnest(ARRAY['pending', 'active', 'used', 'exhausted', 'expired', 'revoked', 'other']) s,
         unnest(ARRAY[sha256('x'), '\x00'::bytea]) h,
         unnest(ARRAY[NULL, '', repeat('é', 128), repeat('é', 129)]) l,
         unnest(ARRAY[-1, 0, 1, 2]) u,
         unnest(ARRAY[NULL, 0, 1, 2]) m,
         unnest(ARRAY[NULL, '', 'c', repeat('c', 129)]) cl,
         unnest(ARRAY[NULL, gen_random_uuid()]) n,
         unnest(ARRAY[NULL, now()]) rv
), judged AS (
  SELECT (octet_length(token_hash) = 32
          AND kind IN ('once', 'cluster', 'reusable')
          AND char_length(label) <= 128
          AND status IN ('pending', 'active', 'used', 'exhausted', 'expired', 'revoked')
          AND use_count >= 0
          AND max_uses > 0
          AND char_length(cluster_id) BETWEEN 1 AND 128
          AND (kind <> 'cluster' OR cluster_id IS NOT NULL)
          AND (kind = 'cluster' OR cluster_id IS NULL)
          AND (kind = 'once' OR node_id IS NULL)
          AND (kind <> 'once' OR max_uses = 1)
          AND (max_uses IS NULL OR use_count <= max_uses)
          AND ((status = 'revoked') = (revoked_at IS NOT NULL))) IS NOT FALSE AS old_ok,
         rules_accept(ROW(gen_random_uuid(), 'default', 1, 'enr_', token_hash, kind, label, status,
                          use_count, max_uses, cluster_id, node_id, 'test', now(), NULL, NULL, NULL,
                          revoked_at, NULL, NULL)::enrollment.enrollment_token) AS new_ok
    FROM c
)
SELECT count(*) AS combinations, count(*) FILTER (WHERE old_ok) AS accepted,
       count(*) FILTER (WHERE old_ok IS DISTINCT FROM new_ok) AS disagreements
  FROM judged;

CREATE FUNCTION node_rules_accept(r enrollment.node_record) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN enrollment.node_record_rules(r);
EXCEPTION WHEN check_violation THEN
    RETURN false;
END
$$;
WITH c AS (
  SELECT nm AS name, r AS role, cl AS cluster_id, s AS status, h AS secret_hash, e AS enroll_count
    FROM unnest(ARRAY['', 'n', repeat('ñ', 128), repeat('ñ', 129)]) nm,
         unnest(ARRAY[NULL, '', 'r', repeat('r', 64), repeat('r', 65)]) r,
         unnest(ARRAY[NULL, '', 'c', repeat('c', 128), repeat('c', 129)]) cl,
         unnest(ARRAY['active', 'pending_approval', 'removed', 'other']) s,
         unnest(ARRAY[sha256('x'), sha224('x')]) h,
         unnest(ARRAY[0, 1, 2]) e
), judged AS (
  SELECT (char_length(name) BETWEEN 1 AND 128
          AND char_length(role) BETWEEN 1 AND 64
          AND char_length(cluster_id) BETWEEN 1 AND 128
          AND status IN ('active', 'pending_approval', 'removed')
          AND octet_length(secret_hash) = 32
          AND enroll_count >= 1) IS NOT FALSE AS old_ok,
         node_rules_accept(ROW(gen_random_uuid(), 'default', name, role, cluster_id, status,
                               gen_random_uuid(), 'node_', 1, secret_hash, now(), NULL, enroll_count,
                               NULL, NULL, 'default', NULL, NULL)::enrollment.node_record) AS new_ok
    FROM c
)
SELECT count(*) AS combinations, count(*) FILTER (WHERE old_ok) AS accepted,
       count(*) FILTER (WHERE old_ok IS DISTINCT FROM new_ok) AS disagreements
  FROM judged;
-- the placement of 0.7.0, on an otherwise valid row
WITH c AS (
  SELECT g AS node_group, o AS os, ip AS private_ip
    FROM unnest(ARRAY['', 'g', repeat('ñ', 64), repeat('ñ', 65)]) g,
         unnest(ARRAY[NULL, '', 'linux', repeat('o', 64), repeat('o', 65)]) o,
         unnest(ARRAY[NULL, '10.0.0.1', '10.0.0.1/24', 'fd00::1', 'fd00::1/64']::inet[]) ip
), judged AS (
  SELECT (char_length(node_group) BETWEEN 1 AND 64
          AND char_length(os) BETWEEN 1 AND 64
          AND masklen(private_ip) = CASE family(private_ip) WHEN 4 THEN 32 ELSE 128 END) IS NOT FALSE AS old_ok,
         node_rules_accept(ROW(gen_random_uuid(), 'default', 'n', NULL, NULL, 'active',
                               gen_random_uuid(), 'node_', 1, sha256('x'), now(), NULL, 1,
                               NULL, NULL, node_group, os, private_ip)::enrollment.node_record) AS new_ok
    FROM c
)
SELECT count(*) AS combinations, count(*) FILTER (WHERE old_ok) AS accepted,
       count(*) FILTER (WHERE old_ok IS DISTINCT FROM new_ok) AS disagreements
  FROM judged;
