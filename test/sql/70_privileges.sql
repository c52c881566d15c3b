-- least privilege: PUBLIC gets nothing; granted roles go through the
-- functions and views only
\set VERBOSITY terse

CREATE ROLE nobody LOGIN;
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA enrollment TO nobody, app;
GRANT EXECUTE ON FUNCTION enrollment.enroll(text, text, text, text, text, text),
                          enrollment.check_token(text, text),
                          enrollment.authenticate_node(text) TO app;

SELECT token AS t FROM enrollment.create_token() \gset

SET SESSION AUTHORIZATION nobody;
SELECT err($$SELECT * FROM enrollment.enrollment_token$$);
SELECT err($$SELECT * FROM enrollment.node_record$$);
SELECT err($$SELECT * FROM enrollment.audit_event$$);
SELECT err($$SELECT * FROM enrollment.tokens$$);
SELECT err($$SELECT * FROM enrollment.nodes$$);
SELECT err($$SELECT * FROM enrollment.audit_log$$);
SELECT err($$SELECT enrollment.create_token()$$);
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t', 'x'));
SELECT err($$SELECT enrollment.revoke_token(gen_random_uuid())$$);
RESET SESSION AUTHORIZATION;

-- the application role can enroll and authenticate, nothing more
SET SESSION AUTHORIZATION app;
SELECT ok FROM enrollment.check_token(:'t');
SELECT node_secret AS s, status FROM enrollment.enroll(:'t', 'app-node') \gset
SELECT :'status';
SELECT name FROM enrollment.authenticate_node(:'s');
SELECT err($$SELECT enrollment.create_token()$$);
SELECT err($$SELECT * FROM enrollment.tokens$$);
SELECT err($$UPDATE enrollment.enrollment_token SET status = 'pending'$$);
RESET SESSION AUTHORIZATION;

-- security definer functions cannot be steered through search_path
CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$;
GRANT USAGE ON SCHEMA evil TO app;
SELECT token AS t2 FROM enrollment.create_token() \gset
SET SESSION AUTHORIZATION app;
SET search_path = evil, pg_catalog;
SELECT now() < '2001-01-01' AS evil_now_active_for_caller;
SELECT status FROM enrollment.enroll(:'t2', 'steered');
RESET search_path;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS steered_timestamps FROM enrollment.audit_log WHERE occurred_at < '2001-01-01';
SELECT enrolled_at > '2001-01-01' AS real_time FROM enrollment.nodes WHERE name = 'steered';

-- a hostile operator first on the search path of a fresh session (so the
-- extension's statements are prepared now): it must not be picked up
CREATE FUNCTION evil.never(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.never);
CREATE FUNCTION evil.never_text(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.never_text);
SELECT token AS t3 FROM enrollment.create_token() \gset
\c
SET search_path = evil, pg_catalog;
SELECT 1::bigint = 1::bigint AS hostile_operator_active;
SELECT ok, error FROM enrollment.check_token(:'t3');
SELECT status FROM enrollment.enroll(:'t3', 'not-steered');
RESET search_path;

DROP SCHEMA evil CASCADE;
DROP OWNED BY nobody, app;
DROP ROLE nobody, app;
