-- the audit log: creation, enrollment and revocation, with actor and token;
-- append-only; the actor comes from enrollment.actor or the session user
\set VERBOSITY terse

-- identities that act below need a role in the tenant (a DBA in psql does not)
SELECT enrollment.add_member('bob@example.com', 'operator');
SELECT enrollment.add_member('audit_app', 'operator');

SELECT max(event_id) AS last_event FROM enrollment.audit_log \gset

SELECT token AS t, token_id AS t_id FROM enrollment.create_token('once', 'audited') \gset
SET enrollment.actor = 'alice@example.com';
SELECT node_id AS n FROM enrollment.enroll(:'t', 'audited-node', node_role => 'edge') \gset
BEGIN;
SELECT set_config('enrollment.actor', 'bob@example.com', true);
SELECT token_id AS r_id FROM enrollment.create_token('reusable') \gset
SELECT enrollment.revoke_token(:'r_id');
COMMIT;
SHOW enrollment.actor;          -- the transaction-local actor is gone again
RESET enrollment.actor;

SELECT action, actor, token_id = :'t_id' AS this_token, node_id = :'n' AS this_node,
       details - 'prefix' - 'token_prefix' - 'expires_at' AS details,
       (details ? 'prefix' OR details ? 'token_prefix') AS names_public_part
  FROM enrollment.audit_log WHERE event_id > :last_event ORDER BY event_id;

-- the actor is the session user when enrollment.actor is not set, even
-- though the functions run as their owner
CREATE ROLE audit_app LOGIN;
GRANT USAGE ON SCHEMA enrollment TO audit_app;
GRANT EXECUTE ON FUNCTION enrollment.create_token(text, text, interval, integer, text, uuid, integer) TO audit_app;
SET SESSION AUTHORIZATION audit_app;
SELECT kind FROM enrollment.create_token();
RESET SESSION AUTHORIZATION;
SELECT actor, created_by FROM enrollment.audit_log a JOIN enrollment.tokens t USING (token_id)
 WHERE a.event_id = (SELECT max(event_id) FROM enrollment.audit_log);

-- append-only, even for the superuser
SELECT err($$UPDATE enrollment.audit_event SET actor = 'mallory'$$);
SELECT err($$DELETE FROM enrollment.audit_event$$);
SELECT err($$TRUNCATE enrollment.audit_event$$);

-- bad actor and tenant settings are refused
SELECT err($$SET enrollment.actor = E'evil\nline'$$);
SELECT err($$SET enrollment.tenant = 'Not A Tenant'$$);
SELECT err($$SET enrollment.tenant = ''$$);

DROP OWNED BY audit_app;
DROP ROLE audit_app;
