-- retention_from (0.5.0): the time enrollment.token_retention counts from,
-- and counting a use as a HOT update (no new index entries)
\set VERBOSITY terse

-- the clock of a token, as a word: its expiry, its last use, none, or other
CREATE FUNCTION retention_clock(t uuid) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN retention_from IS NULL THEN 'none'
                WHEN retention_from = expires_at THEN 'expiry'
                WHEN retention_from = last_used_at THEN 'last use'
                ELSE 'other' END
      FROM enrollment.enrollment_token WHERE token_id = t
$$;
-- updates of the token table not yet reported to the statistics: all, and
-- how many HOT (within one transaction they only grow, so the difference
-- over a statement is what that statement did)
CREATE FUNCTION token_updates(OUT upd bigint, OUT hot bigint) LANGUAGE sql AS $$
    SELECT n_tup_upd, n_tup_hot_upd
      FROM pg_stat_xact_user_tables WHERE relid = 'enrollment.enrollment_token'::regclass
$$;

SHOW enrollment.token_retention;

-- a once token of 15 minutes: its clock is its expiry, and stays there
-- when it is used (the expiry is nearer than token_retention): a HOT update
SELECT token AS t1, token_id AS t1_id FROM enrollment.create_token() \gset
SELECT retention_clock(:'t1_id');
BEGIN;
SELECT * FROM token_updates() \gset before_
SELECT status FROM enrollment.enroll(:'t1', 'r-01');
SELECT upd - :before_upd AS updated, hot - :before_hot AS hot FROM token_updates();
COMMIT;
SELECT status, retention_clock(:'t1_id') FROM enrollment.enrollment_token WHERE token_id = :'t1_id';

-- a once token that would outlive token_retention: its use starts the clock
SELECT token AS t2, token_id AS t2_id FROM enrollment.create_token(ttl => '2 days') \gset
BEGIN;
SELECT * FROM token_updates() \gset before_
SELECT status FROM enrollment.enroll(:'t2', 'r-02');
SELECT upd - :before_upd AS updated, hot - :before_hot AS hot FROM token_updates();
COMMIT;
SELECT status, retention_clock(:'t2_id') FROM enrollment.enrollment_token WHERE token_id = :'t2_id';

-- a cluster token of 2 nodes: the first use leaves the clock (HOT), the
-- one that exhausts it (365 days before its expiry) starts it
SELECT token AS c, token_id AS c_id FROM enrollment.create_token('cluster', cluster_id => 'rc', max_uses => 2) \gset
BEGIN;
SELECT * FROM token_updates() \gset before_
SELECT status FROM enrollment.enroll(:'c', 'rc-01', 'rc');
SELECT upd - :before_upd AS updated, hot - :before_hot AS hot FROM token_updates();
COMMIT;
SELECT status, retention_clock(:'c_id') FROM enrollment.enrollment_token WHERE token_id = :'c_id';
SELECT status FROM enrollment.enroll(:'c', 'rc-02', 'rc');
SELECT status, retention_clock(:'c_id') FROM enrollment.enrollment_token WHERE token_id = :'c_id';

-- a reusable token without expiry has no clock until it is used up
SELECT token AS r, token_id AS r_id FROM enrollment.create_token('reusable', max_uses => 2) \gset
SELECT retention_clock(:'r_id');
SELECT status FROM enrollment.enroll(:'r', 'rr-01');
SELECT retention_clock(:'r_id');
SELECT status FROM enrollment.enroll(:'r', 'rr-02');
SELECT retention_clock(:'r_id');

-- a re-enrollment token (bound to a node) starts it only when its use is
-- further than token_retention from its expiry
SELECT n.node_id AS bound FROM enrollment.nodes n WHERE n.name = 'r-01' \gset
SELECT token AS b, token_id AS b_id FROM enrollment.create_token(node_id => :'bound') \gset
SELECT reenrolled FROM enrollment.enroll(:'b', 'r-01');
SELECT status, retention_clock(:'b_id') FROM enrollment.enrollment_token WHERE token_id = :'b_id';

-- revoking a token clears its clock: revoked tokens are kept
SELECT token_id AS v_id FROM enrollment.create_token('reusable', ttl => '1 hour') \gset
SELECT retention_clock(:'v_id');
SELECT enrollment.revoke_token(:'v_id');
SELECT status, retention_clock(:'v_id') FROM enrollment.enrollment_token WHERE token_id = :'v_id';

-- the token table has no index on what a use changes
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) ~ '(status|use_count|used_at)' AS on_use_columns
  FROM pg_index WHERE indrelid = 'enrollment.enrollment_token'::regclass ORDER BY 1;
SELECT reloptions FROM pg_class WHERE oid = 'enrollment.enrollment_token'::regclass;

DROP FUNCTION retention_clock(uuid);
DROP FUNCTION token_updates();
