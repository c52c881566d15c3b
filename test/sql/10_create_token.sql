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

-- the public id starts with the time of issue in Unix seconds (upper 32 bits,
-- the first 8 hex digits), so recent tokens sit together in its index; the
-- lower 32 bits are random
SELECT floor(extract(epoch FROM clock_timestamp()))::bigint AS t0 \gset
SELECT token_id AS ord_id, ('x' || substr(prefix, 5, 8))::bit(32)::bigint AS id_secs,
       ('x' || substr(prefix, 13, 8))::bit(32)::bigint AS id_low
  FROM enrollment.create_token(label => 'time-ordered') \gset
SELECT :id_secs BETWEEN :t0 AND floor(extract(epoch FROM clock_timestamp()))::bigint AS id_starts_with_issue_time;
SELECT public_id >> 32 = :id_secs AND (public_id & x'FFFFFFFF'::bigint) = :id_low AS stored_id_matches
  FROM enrollment.enrollment_token WHERE token_id = :'ord_id';
-- the 200 ids made above: the time part lies between the start of their
-- transaction (created_at) and now, the random part differs (two of 200
-- alike: odds of about 1e-11)
SELECT bool_and(public_id >> 32 BETWEEN floor(extract(epoch FROM created_at))
                                    AND floor(extract(epoch FROM clock_timestamp()))) AS issued_when_created,
       count(DISTINCT public_id & x'FFFFFFFF'::bigint) >= 199 AS low_bits_random
  FROM enrollment.enrollment_token WHERE label ~ '^[0-9]+$';

-- a public id that is already taken: the insert adds nothing, a new id is
-- drawn, and the token that comes back is the one stored (with one audit
-- event).  A trigger stands in for the collision, which is too rare to wait
-- for: while the sequence "attempt" stays within t.collide, it gives the
-- insert the public id of an existing token.  (A sequence, as the error
-- below rolls back settings but not nextval.)
CREATE SEQUENCE attempt;
CREATE FUNCTION collide() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('public.attempt') <= current_setting('t.collide')::bigint THEN
        NEW.public_id := (SELECT public_id FROM enrollment.enrollment_token
                           WHERE token_id = current_setting('t.victim')::uuid);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER collide BEFORE INSERT ON enrollment.enrollment_token FOR EACH ROW EXECUTE FUNCTION collide();
SELECT set_config('t.victim', :'ord_id', false) IS NOT NULL AND set_config('t.collide', '1', false) IS NOT NULL AS first_attempt_collides;
SELECT count(*) AS events_before FROM enrollment.audit_event WHERE action = 'sensor_enrollment_token_created' \gset
SELECT token_id AS retry_id, token AS retry_token, prefix AS retry_prefix
  FROM enrollment.create_token(label => 'after a collision') \gset
SELECT currval('attempt') AS attempts,
       (SELECT prefix || lpad(to_hex(public_id), 16, '0') FROM enrollment.enrollment_token
         WHERE token_id = :'retry_id') = :'retry_prefix' AS stored_prefix_is_returned,
       (SELECT count(*) FROM enrollment.enrollment_token WHERE label = 'after a collision') AS rows,
       (SELECT count(*) FROM enrollment.audit_event WHERE action = 'sensor_enrollment_token_created') - :events_before AS events,
       (SELECT ok FROM enrollment.check_token(:'retry_token')) AS token_checks;
-- every attempt collides: an error with a SQLSTATE after four, no row, no event
SELECT setval('attempt', 1, false) = 1 AND set_config('t.collide', '1000', false) IS NOT NULL AS always_collide;
SELECT err($$SELECT enrollment.create_token(label => 'never stored')$$);
SELECT currval('attempt') AS attempts,
       (SELECT count(*) FROM enrollment.enrollment_token WHERE label = 'never stored') AS rows,
       (SELECT count(*) FROM enrollment.audit_event WHERE action = 'sensor_enrollment_token_created') - :events_before AS events;
DROP TRIGGER collide ON enrollment.enrollment_token;
DROP FUNCTION collide();
DROP SEQUENCE attempt;
