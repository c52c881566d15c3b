-- The replicated replay horizon (enrollment.replay_horizon): one row,
-- written in place by verify_request before it accepts a request dated
-- beyond what the row covers; the write survives a rollback and makes no
-- new row version.  (Failover itself: test/t/007_standby.pl.)
SELECT key_id AS kid, hmac_secret AS sec FROM enrollment.create_api_key('horizon', ARRAY['events:read']) \gset
SELECT count(*) AS rows FROM enrollment.replay_horizon;
SELECT ctid AS ctid_before FROM enrollment.replay_horizon \gset

-- a request dated 100 s ahead, accepted in a transaction that rolls back
BEGIN;
SELECT extract(epoch FROM now())::bigint + 100 AS ahead \gset
SELECT ok FROM enrollment.verify_request('GET', '/h', enrollment.sign_request('GET', '/h', :'kid', :'sec', ts => :ahead));
ROLLBACK;
SELECT horizon >= :ahead AS covers_it, horizon = :ahead + 5 AS one_step_ahead, instance <> 0 AS written,
       ctid = :'ctid_before' AS in_place
  FROM enrollment.replay_horizon;
SELECT horizon AS h FROM enrollment.replay_horizon \gset

-- requests inside what the row covers do not write it again
SELECT ok FROM enrollment.verify_request('GET', '/h2', enrollment.sign_request('GET', '/h2', :'kid', :'sec'));
SELECT horizon = :h AS unchanged FROM enrollment.replay_horizon;

-- one row only
INSERT INTO enrollment.replay_horizon VALUES (1, 1);

-- without its row, a new session's first verification fails closed
DELETE FROM enrollment.replay_horizon;
\c
SELECT ok FROM enrollment.verify_request('GET', '/h3', enrollment.sign_request('GET', '/h3', :'kid', :'sec'));
INSERT INTO enrollment.replay_horizon VALUES (0, 0);
\c
-- a row of another server start raises the floor above its horizon: here
-- 0, so nothing changes, and the next request beyond it writes the row
SELECT ok FROM enrollment.verify_request('GET', '/h4', enrollment.sign_request('GET', '/h4', :'kid', :'sec'));
SELECT horizon >= extract(epoch FROM now())::bigint AS rewritten FROM enrollment.replay_horizon;

-- a re-created extension has a new row from (0, 0): this session forgets
-- what it had covered in the old one and writes the new row again
SELECT extract(epoch FROM now())::bigint AS t0 \gset
SELECT ok FROM enrollment.verify_request('GET', '/h5', enrollment.sign_request('GET', '/h5', :'kid', :'sec', ts => :t0 + 60));
SET client_min_messages = warning;  -- CASCADE: helpers of earlier tests use the row types
DROP EXTENSION enrollment CASCADE;
RESET client_min_messages;
CREATE EXTENSION enrollment;
SELECT key_id AS kid, hmac_secret AS sec FROM enrollment.create_api_key('horizon again', ARRAY['events:read']) \gset
SELECT ok FROM enrollment.verify_request('GET', '/h6', enrollment.sign_request('GET', '/h6', :'kid', :'sec', ts => :t0 + 30));
SELECT horizon >= :t0 + 30 AS covers_it, instance <> 0 AS written FROM enrollment.replay_horizon;
