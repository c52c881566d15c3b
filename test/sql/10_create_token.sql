-- create_token: kinds, defaults, settings, and every contradictory argument
\set VERBOSITY terse

-- once: default TTL 15 minutes, single use, pending
SELECT kind, expires_at - statement_timestamp() AS ttl, max_uses, cluster_id, node_id,
       token ~ '^enr_[0-9a-f]{16}\.[A-Za-z0-9_-]{49}$' AS token_shape,
       prefix = substr(token, 1, 20) AS prefix_is_public_part,
       length(token)
  FROM enrollment.create_token();
SELECT kind, status, use_count, max_uses, label FROM enrollment.tokens;

-- cluster: default TTL 365 days, expires_days up to 730
SELECT kind, expires_at - statement_timestamp() AS ttl, max_uses, cluster_id
  FROM enrollment.create_token('cluster', 'k8s prod', cluster_id => 'ran-zone-a');
SELECT kind, expires_at - statement_timestamp() AS ttl, max_uses
  FROM enrollment.create_token('cluster', cluster_id => 'ran-zone-a', max_uses => 50, expires_days => 730);
SELECT err($$SELECT enrollment.create_token('cluster', cluster_id => 'a', expires_days => 731)$$);

-- reusable: no expiry and no cap unless asked
SELECT kind, expires_at, max_uses FROM enrollment.create_token('reusable', 'dev-laptops');
SELECT kind, expires_at - statement_timestamp() AS ttl, max_uses
  FROM enrollment.create_token('reusable', 'ci', ttl => '30 days', max_uses => 10);
SELECT kind, status FROM enrollment.tokens WHERE kind = 'reusable' ORDER BY label;

-- an explicit ttl and a once token with max_uses 1 are fine
SELECT expires_at - statement_timestamp() AS ttl, max_uses
  FROM enrollment.create_token('once', ttl => '1 hour', max_uses => 1);

-- defaults are settings
SET enrollment.once_token_ttl = '5min';
SET enrollment.cluster_token_ttl = '30d';
SELECT expires_at - statement_timestamp() AS ttl FROM enrollment.create_token();
SELECT expires_at - statement_timestamp() AS ttl FROM enrollment.create_token('cluster', cluster_id => 'c');
SET enrollment.max_token_ttl = '2h';
SELECT err($$SELECT enrollment.create_token(ttl => '3 hours')$$);
SELECT err($$SELECT enrollment.create_token('cluster', cluster_id => 'c')$$);
RESET ALL;
SET enrollment.token_prefix = 'tse_';
SELECT substr(token, 1, 4), substr(prefix, 1, 4) FROM enrollment.create_token();
SET enrollment.token_prefix = 'Bad';
RESET enrollment.token_prefix;

-- contradictions and bad values: each an error, none creates a row
SELECT count(*) AS before FROM enrollment.tokens \gset
SELECT err($$SELECT enrollment.create_token(NULL)$$);
SELECT err($$SELECT enrollment.create_token('forever')$$);
SELECT err($$SELECT enrollment.create_token('once', max_uses => 5)$$);
SELECT err($$SELECT enrollment.create_token('once', cluster_id => 'a')$$);
SELECT err($$SELECT enrollment.create_token('cluster')$$);
SELECT err($$SELECT enrollment.create_token('cluster', cluster_id => '')$$);
SELECT err($$SELECT enrollment.create_token('cluster', cluster_id => 'a', node_id => gen_random_uuid())$$);
SELECT err($$SELECT enrollment.create_token('reusable', cluster_id => 'a')$$);
SELECT err($$SELECT enrollment.create_token('reusable', node_id => gen_random_uuid())$$);
SELECT err($$SELECT enrollment.create_token('once', node_id => gen_random_uuid())$$);
SELECT err($$SELECT enrollment.create_token(ttl => '-5 minutes')$$);
SELECT err($$SELECT enrollment.create_token(ttl => '0')$$);
SELECT err($$SELECT enrollment.create_token(ttl => '1 hour', expires_days => 1)$$);
SELECT err($$SELECT enrollment.create_token(expires_days => 0)$$);
SELECT err($$SELECT enrollment.create_token(expires_days => -3)$$);
SELECT err($$SELECT enrollment.create_token('reusable', max_uses => 0)$$);
SELECT err($$SELECT enrollment.create_token('cluster', cluster_id => 'a', max_uses => -1)$$);
SELECT err($$SELECT enrollment.create_token('reusable', ttl => '1000000 years')$$);
SELECT err($$SELECT enrollment.create_token('reusable', ttl => '-1000000 years')$$);
SELECT err($$SELECT enrollment.create_token('reusable', ttl => '731 days')$$);
SELECT err($$SELECT enrollment.create_token('reusable', expires_days => 2147483647)$$);
SELECT err($$SELECT enrollment.create_token(label => repeat('x', 129))$$);
SELECT err($$SELECT enrollment.create_token(label => '')$$);
SELECT err($$SELECT enrollment.create_token(label => E'line\nbreak')$$);
SELECT err($$SELECT enrollment.create_token('cluster', cluster_id => repeat('c', 129))$$);
SELECT count(*) = :before AS no_row_created FROM enrollment.tokens;

-- exactly the maximum lifetime is allowed
SELECT expires_at - statement_timestamp() AS ttl FROM enrollment.create_token('reusable', ttl => '730 days');

-- 128 characters is the limit, counted in characters not bytes
SELECT token_id AS long_id FROM enrollment.create_token(label => repeat('é', 128)) \gset
SELECT length(label), octet_length(label) FROM enrollment.tokens WHERE token_id = :'long_id';

-- tokens are unique; the public part identifies them
SELECT count(DISTINCT token) = 200 AND count(DISTINCT prefix) = 200 AS all_distinct
  FROM generate_series(1, 200) g, LATERAL enrollment.create_token(label => g::text) c;
