-- Uses of an uncapped reusable or cluster token appended to token_use (0.6.0)
-- instead of updating the token row, and folded into the row by
-- fold_token_uses (the worker calls it each round).  Everything runs inside
-- transactions, so that the worker, which sees only committed rows, cannot
-- fold them while the test looks; and uses earlier tests appended are
-- folded first, so that each fold below counts only this test's.
\set VERBOSITY terse
SELECT enrollment.fold_token_uses() >= 0 AS folded_earlier_uses;
CREATE FUNCTION direct_writes() RETURNS bigint LANGUAGE sql AS $$
    SELECT value FROM enrollment.stats WHERE area = 'enroll' AND counter = 'written_directly'
$$;
-- the token row, the rows not folded yet, and what the tokens view shows
CREATE FUNCTION uses(tid uuid) RETURNS TABLE (row_count int, appended bigint, listed int,
                                              used_at_set boolean, last_is_latest boolean)
LANGUAGE sql AS $$
    SELECT t.use_count,
           (SELECT count(*) FROM enrollment.token_use u WHERE u.token_id = t.token_id),
           v.use_count, v.used_at IS NOT NULL,
           v.last_used_at = (SELECT max(n.enrolled_at) FROM enrollment.node_record n
                              WHERE n.enrolled_by = t.token_id)
      FROM enrollment.enrollment_token t JOIN enrollment.tokens v USING (token_id)
     WHERE t.token_id = tid
$$;

BEGIN;
SELECT token AS ct, token_id AS ct_id FROM enrollment.create_token('cluster', 'fleet', cluster_id => 'f1') \gset
-- the first use updates the row (it sets used_at); the next ones are appended
SELECT status FROM enrollment.enroll(:'ct', 'f-1', 'f1');
SELECT * FROM uses(:'ct_id');
SELECT direct_writes() AS before_count \gset
SELECT status FROM enrollment.enroll(:'ct', 'f-2', 'f1');
SELECT status FROM enrollment.enroll(:'ct', 'f-3', 'f1');
SELECT direct_writes() - :before_count AS written_directly;
SELECT * FROM uses(:'ct_id');
-- through SQL (direct writes off) the same
SET LOCAL enrollment.direct_writes = off;
SELECT status FROM enrollment.enroll(:'ct', 'f-4', 'f1');
RESET enrollment.direct_writes;
SELECT * FROM uses(:'ct_id');
SELECT count(*) AS nodes FROM enrollment.nodes WHERE token_id = :'ct_id';
-- check_token of an uncapped token reports no cap, whatever the count
SELECT ok, status, uses_left FROM enrollment.check_token(:'ct', 'f1');
-- the fold moves the appended uses into the row; the listing does not change
SELECT enrollment.fold_token_uses();
SELECT * FROM uses(:'ct_id');
SELECT enrollment.fold_token_uses();
-- revoked: refused, nothing appended; the revocation's event counts every use
SELECT status FROM enrollment.enroll(:'ct', 'f-5', 'f1');
SELECT enrollment.revoke_token(:'ct_id');
SELECT details->'use_count' AS revoked_with_uses FROM enrollment.audit_event
 WHERE token_id = :'ct_id' AND action = 'sensor_enrollment_token_revoked';
SELECT err(format('SELECT enrollment.enroll(%L, %L, %L)', :'ct', 'f-6', 'f1'));
SELECT * FROM uses(:'ct_id');
ROLLBACK;

-- a reusable token without a cap appends too; one with a cap never does
BEGIN;
SELECT token AS rt, token_id AS rt_id FROM enrollment.create_token('reusable', 'open') \gset
SELECT token AS kt, token_id AS kt_id FROM enrollment.create_token('reusable', 'capped', max_uses => 3) \gset
SELECT count(*) FROM generate_series(1, 3) i, LATERAL enrollment.enroll(:'rt', 'r-' || i);
SELECT count(*) FROM generate_series(1, 3) i, LATERAL enrollment.enroll(:'kt', 'k-' || i);
SELECT * FROM uses(:'rt_id');
SELECT * FROM uses(:'kt_id');
SELECT status FROM enrollment.tokens WHERE token_id = :'kt_id';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'kt', 'k-4'));
ROLLBACK;

-- a cap written into the table by hand after uses were appended: the fold
-- stops use_count at it (the row rules hold) instead of failing every round
BEGIN;
SELECT token AS ht, token_id AS ht_id FROM enrollment.create_token('reusable', 'hand') \gset
SELECT count(*) FROM generate_series(1, 4) i, LATERAL enrollment.enroll(:'ht', 'h-' || i);
UPDATE enrollment.enrollment_token SET max_uses = 3 WHERE token_id = :'ht_id';
SELECT enrollment.fold_token_uses();
SELECT use_count, max_uses FROM enrollment.enrollment_token WHERE token_id = :'ht_id';
ROLLBACK;

-- rows of a token that is gone are dropped by the fold
BEGIN;
INSERT INTO enrollment.token_use VALUES (enrollment.uuid_v7(), now()), (enrollment.uuid_v7(), now());
SELECT enrollment.fold_token_uses(1);
SELECT enrollment.fold_token_uses();
SELECT count(*) FROM enrollment.token_use;
ROLLBACK;

-- a burst of one token's uses does not make the planner expect them for
-- every token (the tokens view asks per listed token): after ANALYZE, the
-- generic estimate for one token stays at one row
BEGIN;
INSERT INTO enrollment.token_use SELECT enrollment.uuid_v7(), now();
INSERT INTO enrollment.token_use SELECT '00000000-0000-0000-0000-000000000001', now() FROM generate_series(1, 20000);
ANALYZE enrollment.token_use;
SET LOCAL plan_cache_mode = force_generic_plan;
PREPARE one_token(uuid) AS SELECT count(*) FROM enrollment.token_use WHERE token_id = $1;
CREATE FUNCTION pg_temp.estimated_rows() RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE j json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) EXECUTE one_token(enrollment.uuid_v7())' INTO j;
    RETURN (j->0->'Plan'->'Plans'->0->>'Plan Rows')::numeric;
END $$;
SELECT pg_temp.estimated_rows() < 10 AS estimate_stays_small;
ROLLBACK;

-- no one but the extension's owner reads the table or runs the fold
SELECT has_table_privilege('public', 'enrollment.token_use', 'SELECT') AS public_reads,
       has_function_privilege('public', 'enrollment.fold_token_uses(integer)', 'EXECUTE') AS public_folds;
-- the worker's counter of folded uses
SELECT count(*) FROM enrollment.stats WHERE area = 'worker' AND counter = 'uses_folded';
