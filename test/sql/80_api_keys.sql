-- API keys and verify_request.  Signatures are computed independently with
-- pgcrypto's hmac() and digest(), never only with the code under test.
\set VERBOSITY terse

-- independent signer: the seed's signing string, HMAC-SHA256 via pgcrypto
CREATE FUNCTION oracle_sig(secret_hex text, method text, path text, ts text, nonce text, body bytea)
RETURNS text LANGUAGE sql AS $$
    SELECT 'sha256=' || encode(hmac(convert_to(method || E'\n' || path || E'\n' || ts || E'\n' ||
                                               nonce || E'\n' || encode(digest(body, 'sha256'), 'hex'), 'UTF8'),
                                    decode(secret_hex, 'hex'), 'sha256'), 'hex')
$$;
CREATE FUNCTION now_ts() RETURNS text LANGUAGE sql AS $$SELECT floor(extract(epoch FROM clock_timestamp()))::bigint::text$$;

-- creation: the secret is returned once, as 64 hex digits; aliases resolve
SELECT key_id AS kid, hmac_secret AS sec FROM enrollment.create_api_key('CI event monitoring',
       ARRAY['events:read', 'alerts:read', 'analytics:read', 'alerts:read']) \gset
SELECT :'kid' ~ '^[0-9a-f]{16}$' AS key_id_shape, :'sec' ~ '^[0-9a-f]{64}$' AS secret_shape;
SELECT label, scopes, expires_at, revoked, last_used_at FROM enrollment.api_keys WHERE key_id = :'kid';
SELECT expires_at - statement_timestamp() AS ttl FROM enrollment.create_api_key('short', ARRAY['sbom:read'], 30);

-- bad arguments: each an error, none creates a key
SELECT count(*) AS keys_before FROM enrollment.api_key \gset
SELECT err($$SELECT enrollment.create_api_key(NULL, ARRAY['events:read'])$$);
SELECT err($$SELECT enrollment.create_api_key('', ARRAY['events:read'])$$);
SELECT err($$SELECT enrollment.create_api_key(repeat('l', 129), ARRAY['events:read'])$$);
SELECT err($$SELECT enrollment.create_api_key('x', NULL)$$);
SELECT err($$SELECT enrollment.create_api_key('x', ARRAY[]::text[])$$);
SELECT err($$SELECT enrollment.create_api_key('x', ARRAY['events:read', NULL])$$);
SELECT err($$SELECT enrollment.create_api_key('x', ARRAY['root:all'])$$);
SELECT err($$SELECT enrollment.create_api_key('x', ARRAY['Events:Read'])$$);
SELECT err($$SELECT enrollment.create_api_key('x', ARRAY[['events:read'], ['alerts:read']])$$);
SELECT err($$SELECT enrollment.create_api_key('x', ARRAY['events:read'], 0)$$);
SELECT err($$SELECT enrollment.create_api_key('x', ARRAY['events:read'], 100000)$$);
SELECT count(*) = :keys_before AS no_key_created FROM enrollment.api_key;

-- a request signed by the independent oracle verifies
SELECT now_ts() AS ts \gset
SELECT ok, error, http_status, key_id = :'kid' AS same_key, scopes, tenant
  FROM enrollment.verify_request('GET', '/api/v2/events', :'kid', :'ts', 'n-1',
       oracle_sig(:'sec', 'GET', '/api/v2/events', :'ts', 'n-1', ''), required_scope => 'events:read');
-- sign_request agrees with the oracle (known answer: fixed ts and nonce)
SELECT enrollment.sign_request('POST', '/api/v2/alerts?x=1', :'kid', :'sec', '{"a":1}', 1700000000, 'fixed')
       ->> 'X-Telovix-Signature' = oracle_sig(:'sec', 'POST', '/api/v2/alerts?x=1', '1700000000', 'fixed', '{"a":1}')
       AS signer_matches_oracle;
SELECT enrollment.sign_request('GET', '/api/v2/events', :'kid', :'sec', NULL, 1700000000, 'fixed')
       ->> 'X-Telovix-Signature' = oracle_sig(:'sec', 'GET', '/api/v2/events', '1700000000', 'fixed', '')
       AS signer_matches_oracle_no_body;
-- the other three headers, as strings
SELECT enrollment.sign_request('GET', '/', :'kid', :'sec', NULL, 1700000000, 'fixed') - 'X-Telovix-Signature'
       = jsonb_build_object('X-Telovix-Key-ID', :'kid', 'X-Telovix-Timestamp', '1700000000',
                            'X-Telovix-Nonce', 'fixed') AS signer_headers;
-- without a nonce, sign_request draws one: version 4 UUIDs, none repeating,
-- also with other draws of the same backend in between (the CSPRNG output is
-- buffered per backend, src/crypto.c, and refilled many times here)
CREATE TEMP TABLE drawn AS
  SELECT i, enrollment.sign_request('GET', '/', :'kid', :'sec') ->> 'X-Telovix-Nonce' AS nonce,
         enrollment.uuid_v7() AS u
    FROM generate_series(1, 3000) i;
SELECT count(DISTINCT nonce) AS distinct_nonces,
       bool_and(nonce ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') AS version_4,
       count(DISTINCT substr(u::text, 15)) AS distinct_uuid_random_parts,
       count(DISTINCT substr(nonce, 1, 8)) > 2900 AS nonce_prefixes_spread
  FROM drawn;
DROP TABLE drawn;
-- a published vector: HMAC-SHA256 with key 0x0b*20 over "Hi There" (RFC 4231 case 1)
SELECT encode(hmac('Hi There', decode(repeat('0b', 20), 'hex'), 'sha256'), 'hex') =
       'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7' AS pgcrypto_oracle_is_sound;

-- every failure, in order of the checks; none raises
SELECT now_ts() AS t3 \gset
CREATE TEMP TABLE cases (n int, what text, method text, path text, key_id text, ts text, nonce text,
                         sig text, body bytea, scope text);
INSERT INTO cases VALUES
 (1, 'replay',            'GET', '/api/v2/events', :'kid', :'ts', 'n-1', oracle_sig(:'sec', 'GET', '/api/v2/events', :'ts', 'n-1', ''), '', NULL),
 (2, 'no key id',         'GET', '/e', NULL, :'t3', 'n-2', 'sha256=00', '', NULL),
 (3, 'empty signature',   'GET', '/e', :'kid', :'t3', 'n-3', '', '', NULL),
 (4, 'no nonce',          'GET', '/e', :'kid', :'t3', NULL, 'sha256=00', '', NULL),
 (5, 'key id not hex',    'GET', '/e', 'zzzzzzzzzzzzzzzz', :'t3', 'n-5', 'sha256=00', '', NULL),
 (6, 'key id too short',  'GET', '/e', substr(:'kid', 1, 15), :'t3', 'n-6', 'sha256=00', '', NULL),
 (7, 'ts not integer',    'GET', '/e', :'kid', '12.5', 'n-7', 'sha256=00', '', NULL),
 (8, 'ts negative',       'GET', '/e', :'kid', '-5', 'n-8', 'sha256=00', '', NULL),
 (9, 'ts huge',           'GET', '/e', :'kid', '99999999999999999999', 'n-9', 'sha256=00', '', NULL),
 (10, 'empty nonce',      'GET', '/e', :'kid', :'t3', '', 'sha256=00', '', NULL),
 (11, '129-char nonce',   'GET', '/e', :'kid', :'t3', repeat('n', 129), 'sha256=00', '', NULL),
 (12, 'nonce newline',    'GET', '/e', :'kid', :'t3', E'a\nb', 'sha256=00', '', NULL),
 (13, 'no sha256=',       'GET', '/e', :'kid', :'t3', 'n-13', repeat('a', 64), '', NULL),
 (14, 'signature not hex','GET', '/e', :'kid', :'t3', 'n-14', 'sha256=' || repeat('g', 64), '', NULL),
 (15, 'stale',            'GET', '/e', :'kid', (:'t3'::bigint - 310)::text, 'n-15',
                            oracle_sig(:'sec', 'GET', '/e', (:'t3'::bigint - 310)::text, 'n-15', ''), '', NULL),
 (16, 'future',           'GET', '/e', :'kid', (:'t3'::bigint + 310)::text, 'n-16',
                            oracle_sig(:'sec', 'GET', '/e', (:'t3'::bigint + 310)::text, 'n-16', ''), '', NULL),
 (17, 'unknown key',      'GET', '/e', '0123456789abcdef', :'t3', 'n-17',
                            oracle_sig(:'sec', 'GET', '/e', :'t3', 'n-17', ''), '', NULL),
 (18, 'wrong secret',     'GET', '/e', :'kid', :'t3', 'n-18',
                            oracle_sig(repeat('ab', 32), 'GET', '/e', :'t3', 'n-18', ''), '', NULL),
 (19, 'wrong body',       'GET', '/e', :'kid', :'t3', 'n-19',
                            oracle_sig(:'sec', 'GET', '/e', :'t3', 'n-19', 'a'), 'b', NULL),
 (20, 'wrong path',       'GET', '/e?x=2', :'kid', :'t3', 'n-20',
                            oracle_sig(:'sec', 'GET', '/e?x=1', :'t3', 'n-20', ''), '', NULL),
 (21, 'wrong method',     'POST', '/e', :'kid', :'t3', 'n-21',
                            oracle_sig(:'sec', 'GET', '/e', :'t3', 'n-21', ''), '', NULL),
 (22, 'uppercase hex sig','GET', '/e', :'kid', :'t3', 'n-22',
                            upper(oracle_sig(:'sec', 'GET', '/e', :'t3', 'n-22', '')), '', NULL),
 (23, 'scope missing',    'GET', '/e', :'kid', :'t3', 'n-23',
                            oracle_sig(:'sec', 'GET', '/e', :'t3', 'n-23', ''), '', 'policies:write'),
 (24, 'alias scope',      'GET', '/e', :'kid', :'t3', 'n-24',
                            oracle_sig(:'sec', 'GET', '/e', :'t3', 'n-24', ''), '', 'analytics:read'),
 (25, '128-char nonce',   'GET', '/e', :'kid', :'t3', repeat('n', 128),
                            oracle_sig(:'sec', 'GET', '/e', :'t3', repeat('n', 128), ''), '', NULL),
 (26, 'body signed',      'PUT', '/e', :'kid', :'t3', 'n-26',
                            oracle_sig(:'sec', 'PUT', '/e', :'t3', 'n-26', '\x00ff'::bytea), '\x00ff', NULL),
 -- the limit counts characters, not bytes; C1 controls are control characters too
 (27, '128 2-byte chars', 'GET', '/e', :'kid', :'t3', repeat('é', 128),
                            oracle_sig(:'sec', 'GET', '/e', :'t3', repeat('é', 128), ''), '', NULL),
 (28, '129 2-byte chars', 'GET', '/e', :'kid', :'t3', repeat('é', 129),
                            oracle_sig(:'sec', 'GET', '/e', :'t3', repeat('é', 129), ''), '', NULL),
 (29, 'nonce with U+0085','GET', '/e', :'kid', :'t3', E'a\u0085b',
                            oracle_sig(:'sec', 'GET', '/e', :'t3', E'a\u0085b', ''), '', NULL);
UPDATE cases SET sig = replace(sig, 'SHA256=', 'sha256=') WHERE n = 22;
SELECT c.n, c.what, v.ok, v.error, v.http_status
  FROM cases c, LATERAL enrollment.verify_request(c.method, c.path, c.key_id, c.ts, c.nonce, c.sig,
                                                  c.body, c.scope) v
 ORDER BY c.n;

-- a rejected signature does not burn the nonce: the genuine request still passes
SELECT now_ts() AS ts2 \gset
SELECT ok, error FROM enrollment.verify_request('GET', '/e', :'kid', :'ts2', 'burn?',
       oracle_sig(repeat('ab', 32), 'GET', '/e', :'ts2', 'burn?', ''));
SELECT ok, error FROM enrollment.verify_request('GET', '/e', :'kid', :'ts2', 'burn?',
       oracle_sig(:'sec', 'GET', '/e', :'ts2', 'burn?', ''));
-- the same nonce is fine for another key
SELECT key_id AS kid2, hmac_secret AS sec2 FROM enrollment.create_api_key('other', ARRAY['chat:read']) \gset
SELECT ok, error FROM enrollment.verify_request('GET', '/e', :'kid2', :'ts2', 'burn?',
       oracle_sig(:'sec2', 'GET', '/e', :'ts2', 'burn?', ''));

-- headers as jsonb: names are case-insensitive; duplicates and non-objects are refused
SELECT ok, error FROM enrollment.verify_request('GET', '/j', jsonb_build_object(
       'x-telovix-key-id', :'kid', 'X-TELOVIX-TIMESTAMP', :'ts2', 'x-Telovix-Nonce', 'j-1',
       'X-Telovix-Signature', oracle_sig(:'sec', 'GET', '/j', :'ts2', 'j-1', ''), 'Content-Type', 'application/json'));
SELECT ok, error FROM enrollment.verify_request('GET', '/j', jsonb_build_object(
       'X-Telovix-Key-ID', :'kid', 'x-telovix-key-id', :'kid', 'X-Telovix-Timestamp', :'ts2',
       'X-Telovix-Nonce', 'j-2', 'X-Telovix-Signature', oracle_sig(:'sec', 'GET', '/j', :'ts2', 'j-2', '')));
SELECT ok, error FROM enrollment.verify_request('GET', '/j', '[]'::jsonb);
SELECT ok, error FROM enrollment.verify_request('GET', '/j', NULL::jsonb);
SELECT ok, error FROM enrollment.verify_request('GET', '/j', jsonb_build_object(
       'X-Telovix-Key-ID', :'kid', 'X-Telovix-Timestamp', :'ts2'::bigint, 'X-Telovix-Nonce', 'j-3',
       'X-Telovix-Signature', oracle_sig(:'sec', 'GET', '/j', :'ts2', 'j-3', '')));   -- numeric timestamp
-- header names are settings
SET enrollment.header_key_id = 'X-Acme-Key';
SELECT ok, error FROM enrollment.verify_request('GET', '/j', jsonb_build_object(
       'X-Acme-Key', :'kid', 'X-Telovix-Timestamp', :'ts2', 'X-Telovix-Nonce', 'j-4',
       'X-Telovix-Signature', oracle_sig(:'sec', 'GET', '/j', :'ts2', 'j-4', '')));
SELECT enrollment.sign_request('GET', '/', :'kid', :'sec') ? 'X-Acme-Key' AS signer_uses_setting;
RESET enrollment.header_key_id;
SELECT err($$SET enrollment.header_nonce = 'bad header'$$);

-- caller bugs raise: NULL method or path, unknown required scope
SELECT err(format('SELECT enrollment.verify_request(NULL, %L, %L, %L, %L, %L)', '/', :'kid', :'ts2', 'x', 'sha256=00'));
SELECT err(format('SELECT enrollment.verify_request(%L, NULL, %L, %L, %L, %L)', 'GET', :'kid', :'ts2', 'x', 'sha256=00'));
SELECT err(format('SELECT enrollment.verify_request(%L, %L, %L, %L, %L, %L, %L, %L)', 'GET', '/', :'kid', :'ts2', 'x', 'sha256=00', '', 'root:all'));
SELECT err(format('SELECT enrollment.sign_request(%L, %L, %L, %L)', 'GET', '/', :'kid', 'nothex'));
SELECT err(format('SELECT enrollment.sign_request(%L, %L, %L, %L)', 'GET', '/', 'KEY', :'sec'));

-- last_used_at is noted without writing the row
SELECT last_used_at IS NOT NULL AS listed_as_used FROM enrollment.api_keys WHERE key_id = :'kid';
SELECT last_used_at IS NULL AS row_not_written FROM enrollment.api_key
 WHERE key_id = ('x' || :'kid')::bit(64)::bigint;

-- expiry and revocation take effect at the next request
SELECT key_id AS kx, hmac_secret AS sx FROM enrollment.create_api_key('expiring', ARRAY['events:read'], 1) \gset
UPDATE enrollment.api_key SET expires_at = now() - interval '1 second'
 WHERE key_id = ('x' || :'kx')::bit(64)::bigint;                          -- let a day pass
SELECT ok, error FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', :'kx', :'sx'));
SELECT count(*) AS expired_listed FROM enrollment.api_keys WHERE key_id = :'kx';
SELECT enrollment.revoke_api_key(:'kid') AS revoked, enrollment.revoke_api_key(:'kid') AS revoked_again;
SELECT ok, error, http_status FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', :'kid', :'sec'));
SELECT count(*) AS revoked_listed FROM enrollment.api_keys WHERE key_id = :'kid';
SELECT err($$SELECT enrollment.revoke_api_key('0123456789abcdef')$$);
SELECT err($$SELECT enrollment.revoke_api_key('not-a-key')$$);
SELECT err($$SELECT enrollment.revoke_api_key(NULL)$$);
SELECT action, details ? 'key_id' AS names_key FROM enrollment.audit_log
 WHERE action LIKE 'api_key%' ORDER BY event_id;

-- server key rotation re-seals every secret; keys keep verifying
SELECT key_id AS kr, hmac_secret AS sr FROM enrollment.create_api_key('rotating', ARRAY['events:read']) \gset
SELECT max(key_version) AS v_before FROM enrollment.api_key \gset
SELECT version = :v_before + 1 AS next_version, resealed = (SELECT count(*) FROM enrollment.api_key) AS all_resealed
  FROM enrollment.rotate_server_key();
SELECT count(DISTINCT key_version) AS versions_in_use FROM enrollment.api_key;
SELECT ok, error FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', :'kr', :'sr'));
-- a sealed secret moved to another key does not open
SELECT secret_sealed AS sealed_kr FROM enrollment.api_key WHERE key_id = ('x' || :'kr')::bit(64)::bigint \gset
UPDATE enrollment.api_key SET secret_sealed = (SELECT secret_sealed FROM enrollment.api_key
       WHERE key_id = ('x' || :'kid2')::bit(64)::bigint)
 WHERE key_id = ('x' || :'kr')::bit(64)::bigint;
SELECT ok, error FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', :'kr', :'sr'));
SELECT ok, error FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', :'kr', :'sec2'));
-- put back (a secret that does not open would stop the next rotation), it verifies again
UPDATE enrollment.api_key SET secret_sealed = :'sealed_kr' WHERE key_id = ('x' || :'kr')::bit(64)::bigint;
SELECT ok, error FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', :'kr', :'sr'));
