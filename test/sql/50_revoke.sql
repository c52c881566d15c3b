-- revoke_token: permanent, audited, idempotent; enrolled nodes unaffected
\set VERBOSITY terse

SELECT token AS t, token_id AS t_id FROM enrollment.create_token('reusable', 'to revoke') \gset
SELECT node_secret AS s FROM enrollment.enroll(:'t', 'kept-node') \gset
SELECT enrollment.revoke_token(:'t_id') AS revoked_now;
SELECT status, revoked_at IS NOT NULL AS revoked_at_set FROM enrollment.tokens WHERE token_id = :'t_id';
SELECT enrollment.revoke_token(:'t_id') AS revoked_again;     -- already revoked: false, no new event
SELECT count(*) FROM enrollment.audit_log
 WHERE token_id = :'t_id' AND action = 'sensor_enrollment_token_revoked';
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t', 'new-node'));
SELECT ok, error, status FROM enrollment.check_token(:'t');
-- the node enrolled before the revocation keeps working
SELECT name, status FROM enrollment.authenticate_node(:'s');

-- revocation is permanent: nothing turns a revoked token back on
SELECT status FROM enrollment.tokens WHERE token_id = :'t_id';

-- used, exhausted and expired tokens have nothing left to revoke
SELECT token AS u, token_id AS u_id FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'u', 'u-node');
SELECT err(format('SELECT enrollment.revoke_token(%L)', :'u_id'));
SELECT token_id AS x_id FROM enrollment.create_token() \gset
UPDATE enrollment.enrollment_token SET expires_at = now() - interval '1 second' WHERE token_id = :'x_id';
SELECT err(format('SELECT enrollment.revoke_token(%L)', :'x_id'));
SELECT status FROM enrollment.tokens WHERE token_id IN (:'u_id', :'x_id') ORDER BY status;

-- cluster tokens can be revoked while active
SELECT token_id AS c_id FROM enrollment.create_token('cluster', cluster_id => 'k') \gset
SELECT enrollment.revoke_token(:'c_id');
SELECT kind, status FROM enrollment.tokens WHERE token_id = :'c_id';

-- bad arguments
SELECT err($$SELECT enrollment.revoke_token(NULL)$$);
SELECT err($$SELECT enrollment.revoke_token('00000000-0000-0000-0000-000000000000')$$);
