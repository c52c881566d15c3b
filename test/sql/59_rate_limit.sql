-- enrollments per hour of a reusable token (0.7.0): an enrollment beyond the
-- token's rate is refused with rate_limited, and changes no row
\set VERBOSITY terse
SET enrollment.tenant = 'rated';
SELECT value AS refused_before FROM enrollment.stats
 WHERE area = 'enroll' AND counter = 'rate_limited' \gset
-- an error's message, detail and hint, the token's public part masked
CREATE FUNCTION pg_temp.refusal(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
    h text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ' ' || SQLERRM || E'\n' || regexp_replace(d, 'enr_[0-9a-f]{16}', 'enr_<public id>')
           || E'\n' || h;
END
$$;

SELECT token AS rt, token_id AS rt_id FROM enrollment.create_token('reusable', label => 'rated') \gset
SELECT max_per_hour FROM enrollment.tokens WHERE token_id = :'rt_id';
SELECT enrollment.set_token_rate(:'rt_id', 2) AS last_hour;
SELECT max_per_hour FROM enrollment.tokens WHERE token_id = :'rt_id';

-- two enrollments in the hour, by the direct path and by SQL
SELECT status FROM enrollment.enroll(:'rt', 'r-1');
SET enrollment.direct_writes = off;
SELECT status FROM enrollment.enroll(:'rt', 'r-2');
RESET enrollment.direct_writes;
SELECT ok, error, uses_left FROM enrollment.check_token(:'rt');

-- the third is refused by both, and writes nothing
SELECT (SELECT count(*) FROM enrollment.node_record) AS nodes_before,
       (SELECT count(*) FROM enrollment.audit_event) AS events_before \gset
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'r-3'));
SET enrollment.direct_writes = off;
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'r-3'));
RESET enrollment.direct_writes;
SELECT (SELECT count(*) FROM enrollment.node_record) = :nodes_before AS no_node,
       (SELECT count(*) FROM enrollment.audit_event) = :events_before AS no_event,
       (SELECT use_count FROM enrollment.enrollment_token WHERE token_id = :'rt_id') AS use_count,
       (SELECT count(*) FROM enrollment.token_use WHERE token_id = :'rt_id') AS appended;
SELECT value - :refused_before AS refused FROM enrollment.stats
 WHERE area = 'enroll' AND counter = 'rate_limited';
SELECT pg_temp.refusal(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'r-3'));

-- the hour slides: an enrollment of 61 minutes ago no longer counts, one of
-- 59 minutes ago does
UPDATE enrollment.node_record SET enrolled_at = enrolled_at - interval '61 minutes'
 WHERE tenant = 'rated' AND name = 'r-1';
SELECT ok, error FROM enrollment.check_token(:'rt');
SELECT status FROM enrollment.enroll(:'rt', 'r-3');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'r-4'));
UPDATE enrollment.node_record SET enrolled_at = enrolled_at - interval '59 minutes'
 WHERE tenant = 'rated' AND name = 'r-2';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'r-4'));

-- raised: set_token_rate returns the last hour's enrollments
SELECT enrollment.set_token_rate(:'rt_id', 3) AS last_hour;
SELECT status FROM enrollment.enroll(:'rt', 'r-4');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'r-5'));

-- 0 switches the token off without revoking it; NULL lifts the rate
SELECT enrollment.set_token_rate(:'rt_id', 0) AS last_hour;
SELECT ok, error FROM enrollment.check_token(:'rt');
SELECT pg_temp.refusal(format('SELECT enrollment.enroll(%L, %L)', :'rt', 'r-5'));
SELECT status FROM enrollment.tokens WHERE token_id = :'rt_id';
SELECT enrollment.set_token_rate(:'rt_id', NULL) AS last_hour;
SELECT max_per_hour FROM enrollment.tokens WHERE token_id = :'rt_id';
SELECT status FROM enrollment.enroll(:'rt', 'r-5');
SELECT ok, error FROM enrollment.check_token(:'rt');

-- a rate and a cap together: whichever is reached first refuses
SELECT token AS ct, token_id AS ct_id FROM enrollment.create_token('reusable', max_uses => 2) \gset
SELECT enrollment.set_token_rate(:'ct_id', 5) AS last_hour;
SELECT status FROM enrollment.enroll(:'ct', 'c-1');
SELECT status FROM enrollment.enroll(:'ct', 'c-2');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'ct', 'c-3'));

-- only reusable tokens have a rate; bad input; another tenant's token
SELECT token_id AS once_id FROM enrollment.create_token() \gset
SELECT token_id AS cluster_id FROM enrollment.create_token('cluster', cluster_id => 'z') \gset
SELECT err(format('SELECT enrollment.set_token_rate(%L, 5)', :'once_id'));
SELECT err(format('SELECT enrollment.set_token_rate(%L, 5)', :'cluster_id'));
SELECT err(format('SELECT enrollment.set_token_rate(%L, -1)', :'rt_id'));
SELECT err('SELECT enrollment.set_token_rate(NULL, 5)');
SELECT err('SELECT enrollment.set_token_rate(''00000000-0000-0000-0000-000000000000'', 5)');
SET enrollment.tenant = 'elsewhere';
SELECT err(format('SELECT enrollment.set_token_rate(%L, 5)', :'rt_id'));
SET enrollment.tenant = 'rated';
SET enrollment.actor = 'stranger';
SELECT err(format('SELECT enrollment.set_token_rate(%L, 5)', :'rt_id'));
RESET enrollment.actor;
SELECT count(*) AS rates FROM enrollment.token_rate;

-- every change is audited, with the token's public part, never its secret
SELECT action, object_type, details - 'prefix' AS details,
       details->>'prefix' = (SELECT prefix FROM enrollment.tokens WHERE token_id = e.token_id) AS prefix_ok
  FROM enrollment.audit_event AS e
 WHERE tenant = 'rated' AND action = 'enrollment_token_rate_set' ORDER BY event_id;

DELETE FROM enrollment.node_record WHERE tenant = 'rated';
DELETE FROM enrollment.enrollment_token WHERE tenant = 'rated';
DELETE FROM enrollment.token_rate;
RESET enrollment.tenant;
