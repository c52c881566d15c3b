-- A signed request with a wrong secret takes the same path as one with the
-- right secret up to the (constant-time) comparison: the same key lookup, the
-- same row read.  (That the comparison and the HMAC never branch on the
-- secret is checked by scripts/valgrind, with the secret marked undefined.)
SELECT key_id AS kid, hmac_secret AS sec FROM enrollment.create_api_key('same path', ARRAY['events:read']) \gset
SELECT hmac_secret AS wrong FROM enrollment.create_api_key('another key', ARRAY['events:read']) \gset
-- rows read through the index or at the place the backend noted (probe.c)
\set counts 'SELECT pg_stat_get_xact_numscans(''enrollment.api_key_pkey''::regclass) AS scans, pg_stat_get_xact_tuples_fetched(''enrollment.api_key_pkey''::regclass) + pg_stat_get_xact_tuples_fetched(''enrollment.api_key''::regclass) AS fetched'

-- the first call finds the key through the index, later ones at its place
SELECT ok FROM enrollment.verify_request('GET', '/same', enrollment.sign_request('GET', '/same', :'kid', :'sec'), NULL, 'events:read');
BEGIN;
:counts \gset before_
SELECT ok, error FROM enrollment.verify_request('GET', '/same', enrollment.sign_request('GET', '/same', :'kid', :'sec'), NULL, 'events:read');
:counts \gset right_
SELECT ok, error FROM enrollment.verify_request('GET', '/same', enrollment.sign_request('GET', '/same', :'kid', :'wrong'), NULL, 'events:read');
:counts \gset wrong_
SELECT :right_scans - :before_scans AS right_scans, :wrong_scans - :right_scans AS wrong_scans,
       :right_fetched - :before_fetched AS right_rows, :wrong_fetched - :right_fetched AS wrong_rows;
COMMIT;
