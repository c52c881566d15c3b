-- The per-request reads use a unique index only if it is immediate, as the
-- schema declares it: a deferrable one may hold two visible versions of a
-- key within a transaction, and both the B-tree path and the row hint return
-- one (probe.c).  A constraint made deferrable (PostgreSQL 15 alters only
-- foreign keys, so it is made anew under the same name) is seen at the next
-- call, since the relcache invalidation drops the resolved index and the
-- hints; the read refuses it, and undoing the change restores the read.
SELECT token AS tok FROM enrollment.create_token('reusable', 'probe index') \gset
SELECT ok, error FROM enrollment.check_token(:'tok');
SELECT ok, error FROM enrollment.check_token(:'tok');   -- now at the noted place
-- control: the same constraint made anew, immediate, is used at once
BEGIN;
ALTER TABLE enrollment.enrollment_token DROP CONSTRAINT enrollment_token_public_id_key,
    ADD CONSTRAINT enrollment_token_public_id_key UNIQUE (public_id);
SELECT ok, error FROM enrollment.check_token(:'tok');
ROLLBACK;
-- deferrable: refused, naming the index
BEGIN;
ALTER TABLE enrollment.enrollment_token DROP CONSTRAINT enrollment_token_public_id_key,
    ADD CONSTRAINT enrollment_token_public_id_key UNIQUE (public_id) DEFERRABLE INITIALLY IMMEDIATE;
SELECT err(format('SELECT ok FROM enrollment.check_token(%L)', :'tok'));
ROLLBACK;
SELECT ok, error FROM enrollment.check_token(:'tok');
