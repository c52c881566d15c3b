-- verify_request keeps, per backend, the keyed HMAC state of the keys it
-- verified (src/hmac_key_cache.c).  Everything here runs in one session, so
-- each verification after a key's first is served from that cache: every
-- change to the key's row must still be seen at the next call.
\set verify 'SELECT ok, error FROM enrollment.verify_request(''GET'', ''/kc'', enrollment.sign_request(''GET'', ''/kc'', :''kid'', :''sec''))'
\set verify_wrong 'SELECT ok, error FROM enrollment.verify_request(''GET'', ''/kc'', enrollment.sign_request(''GET'', ''/kc'', :''kid'', :''other_sec''))'
SELECT key_id AS kid, hmac_secret AS sec FROM enrollment.create_api_key('cached', ARRAY['events:read']) \gset
SELECT key_id AS other_kid, hmac_secret AS other_sec FROM enrollment.create_api_key('other', ARRAY['events:read']) \gset
CREATE TEMP TABLE saved AS
SELECT secret_sealed, key_version FROM enrollment.api_key WHERE key_id = ('x' || :'kid')::bit(64)::bigint;

-- primed: the right secret is accepted again, a wrong one refused
:verify;
:verify;
:verify_wrong;

-- a stored secret altered after it was cached is not trusted: one byte of
-- its tag flipped, then another key's sealed secret (bound to that key)
-- (one bit flipped: it changes whatever the byte was; a byte set to 0xff
-- when it was 0xff already would change nothing, once in 256 runs)
UPDATE enrollment.api_key SET secret_sealed = set_byte(secret_sealed, 59, get_byte(secret_sealed, 59) # 1)
 WHERE key_id = ('x' || :'kid')::bit(64)::bigint;
:verify;
UPDATE enrollment.api_key SET secret_sealed = (SELECT secret_sealed FROM enrollment.api_key
       WHERE key_id = ('x' || :'other_kid')::bit(64)::bigint)
 WHERE key_id = ('x' || :'kid')::bit(64)::bigint;
:verify;
:verify_wrong;
-- restored: accepted again
UPDATE enrollment.api_key k SET secret_sealed = s.secret_sealed FROM saved s
 WHERE k.key_id = ('x' || :'kid')::bit(64)::bigint;
:verify;

-- re-sealed under a rotated server key: new sealed bytes, same secret
SELECT version > 0 AS rotated FROM enrollment.rotate_server_key();
SELECT k.secret_sealed <> s.secret_sealed AS resealed FROM enrollment.api_key k, saved s
 WHERE k.key_id = ('x' || :'kid')::bit(64)::bigint;
:verify;
:verify;

-- expiry and revocation of a cached key take effect at the next call
UPDATE enrollment.api_key SET expires_at = now() - interval '1 second'
 WHERE key_id = ('x' || :'kid')::bit(64)::bigint;
:verify;
UPDATE enrollment.api_key SET expires_at = NULL
 WHERE key_id = ('x' || :'kid')::bit(64)::bigint;
:verify;
SELECT enrollment.revoke_api_key(:'kid') AS revoked;
:verify;

-- more keys than the cache holds (64), each verified twice in turn:
-- entries are evicted and re-made, every request gets the right answer
CREATE TEMP TABLE many AS
SELECT i, k.key_id, k.hmac_secret FROM generate_series(1, 80) i,
       LATERAL enrollment.create_api_key('many-' || i, ARRAY['events:read']) k;
SELECT count(*) FILTER (WHERE v.ok) AS accepted, count(*) FILTER (WHERE NOT v.ok) AS refused
  FROM generate_series(1, 2) round, many m,
       LATERAL enrollment.verify_request('GET', '/kc', enrollment.sign_request('GET', '/kc', m.key_id, m.hmac_secret)) v;
-- and a wrong secret for each (the next key's) is refused, cached or not
SELECT count(*) FILTER (WHERE v.ok) AS accepted, count(*) FILTER (WHERE v.error = 'bad_signature') AS bad_signature
  FROM many m JOIN many n ON n.i = m.i % 80 + 1,
       LATERAL enrollment.verify_request('GET', '/kc', enrollment.sign_request('GET', '/kc', m.key_id, n.hmac_secret)) v;
