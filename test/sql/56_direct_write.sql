-- enroll through a once token writes its three rows without SQL (0.5.0,
-- src/direct_write.c) while the tables have the shape the extension gave
-- them, and through SQL otherwise; both write the same rows
\set VERBOSITY terse

CREATE FUNCTION direct_writes() RETURNS bigint LANGUAGE sql AS $$
    SELECT value FROM enrollment.stats WHERE area = 'enroll' AND counter = 'written_directly'
$$;
-- the rows one enrollment wrote, without what differs by nature (ids, times)
CREATE FUNCTION enrollment_rows(node uuid) RETURNS TABLE (what text, row_text text) LANGUAGE sql AS $$
    SELECT 'token', format('status=%s use_count=%s used=%s last_used=%s retention=%s',
                           t.status, t.use_count, t.used_at = n.enrolled_at, t.last_used_at = n.enrolled_at,
                           CASE WHEN t.retention_from = t.expires_at THEN 'expiry'
                                WHEN t.retention_from = t.last_used_at THEN 'last use' END)
      FROM enrollment.node_record n JOIN enrollment.enrollment_token t ON t.token_id = n.enrolled_by
     WHERE n.node_id = node
    UNION ALL
    SELECT 'node', format('tenant=%s name=%s role=%s cluster=%s status=%s count=%s reenrolled=%s seen=%s removed=%s prefix=%s hash=%s',
                          n.tenant, n.name, n.role, n.cluster_id, n.status, n.enroll_count,
                          n.reenrolled_at, n.last_seen_at, n.removed_at, n.secret_prefix, octet_length(n.secret_hash))
      FROM enrollment.node_record n WHERE n.node_id = node
    UNION ALL
    SELECT 'event', format('tenant=%s actor=%s action=%s token=%s at_xact_start=%s details=%s type=%s id=%s',
                           e.tenant, e.actor, e.action, e.token_id = n.enrolled_by, e.occurred_at = now(),
                           e.details - 'token_prefix', e.object_type, e.object_id)
      FROM enrollment.audit_event e JOIN enrollment.node_record n ON n.node_id = e.node_id
     WHERE e.node_id = node
    ORDER BY 1
$$;

-- direct: the counter moves, and the rows are those below
SELECT direct_writes() AS before_count \gset
BEGIN;
SELECT token AS t1 FROM enrollment.create_token() \gset
SELECT node_id AS n1, node_secret AS s1 FROM enrollment.enroll(:'t1', 'dw-01', node_role => 'sensor') \gset
SELECT what, row_text FROM enrollment_rows(:'n1');
COMMIT;
SELECT direct_writes() - :before_count AS written_directly;
SELECT details->>'token_prefix' = (SELECT prefix FROM enrollment.tokens WHERE token_id = e.token_id) AS prefix_logged
  FROM enrollment.audit_event e WHERE e.node_id = :'n1';
-- the node credential works, the token is used up
SELECT name FROM enrollment.authenticate_node(:'s1');
SELECT err(format('SELECT enrollment.enroll(%L, %L)', :'t1', 'dw-01b'));

-- a reusable and a cluster token: direct too, with the use counted last;
-- each kind through both paths, two uses of a cap of 2 and a third refused,
-- gives the same rows
CREATE TABLE shared_rows (path text, kind text, use int, what text, row_text text);
CREATE FUNCTION shared_enrollments(path text, kind text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tok text;
    node uuid;
BEGIN
    SELECT token INTO tok FROM enrollment.create_token(kind, max_uses => 2,
        cluster_id => CASE WHEN kind = 'cluster' THEN 'c-dw' END);
    FOR use IN 1..2 LOOP
        SELECT node_id INTO node FROM enrollment.enroll(tok, format('dw-%s-%s-%s', path, kind, use),
            CASE WHEN kind = 'cluster' THEN 'c-dw' END, 'sensor');
        INSERT INTO shared_rows SELECT path, kind, use, r.what, replace(r.row_text, path, '*')
          FROM enrollment_rows(node) r;
    END LOOP;
    BEGIN
        PERFORM enrollment.enroll(tok, 'dw-third', CASE WHEN kind = 'cluster' THEN 'c-dw' END);
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO shared_rows VALUES (path, kind, 3, 'refused', SQLERRM);
    END;
END $$;
SELECT direct_writes() AS before_count \gset
SELECT shared_enrollments('direct', 'reusable'), shared_enrollments('direct', 'cluster');
SELECT direct_writes() - :before_count AS written_directly;
SET enrollment.direct_writes = off;
SELECT shared_enrollments('sql', 'reusable'), shared_enrollments('sql', 'cluster');
RESET enrollment.direct_writes;
SELECT direct_writes() - :before_count AS written_directly;
SELECT kind, use, what, row_text FROM shared_rows WHERE path = 'direct' ORDER BY kind, use, what;
-- the same on both paths: no row of one path lacks its twin on the other
SELECT count(*) AS differing FROM (
    (SELECT kind, use, what, row_text FROM shared_rows WHERE path = 'direct'
     EXCEPT ALL SELECT kind, use, what, row_text FROM shared_rows WHERE path = 'sql')
    UNION ALL
    (SELECT kind, use, what, row_text FROM shared_rows WHERE path = 'sql'
     EXCEPT ALL SELECT kind, use, what, row_text FROM shared_rows WHERE path = 'direct')) d;
SELECT count(*) AS rows_per_path FROM shared_rows GROUP BY path;
-- the refused third use left no node behind on either path
SELECT count(*) AS third_nodes FROM enrollment.node_record WHERE name = 'dw-third';

-- a trigger of the DBA's on node_record: enroll goes through SQL, which fires it
CREATE TABLE seen_by_trigger (name text);
CREATE FUNCTION note_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen_by_trigger VALUES (NEW.name);
    RETURN NEW;
END $$;
CREATE TRIGGER note_node BEFORE INSERT ON enrollment.node_record FOR EACH ROW EXECUTE FUNCTION note_node();
SELECT direct_writes() AS before_count \gset
BEGIN;
SELECT token AS t2 FROM enrollment.create_token() \gset
SELECT node_id AS n2 FROM enrollment.enroll(:'t2', 'dw-02', node_role => 'sensor') \gset
SELECT what, row_text FROM enrollment_rows(:'n2');
COMMIT;
SELECT direct_writes() - :before_count AS written_directly, (SELECT string_agg(name, ',') FROM seen_by_trigger) AS trigger_saw;
DROP TRIGGER note_node ON enrollment.node_record;

-- the same for a trigger on the token table's updates, and for a column
-- this library does not know
CREATE FUNCTION touch_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen_by_trigger VALUES ('token ' || NEW.status);
    RETURN NEW;
END $$;
CREATE TRIGGER touch_token AFTER UPDATE ON enrollment.enrollment_token FOR EACH ROW EXECUTE FUNCTION touch_token();
SELECT direct_writes() AS before_count \gset
SELECT token AS t3 FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'t3', 'dw-03');
SELECT direct_writes() - :before_count AS written_directly,
       (SELECT count(*) FROM seen_by_trigger WHERE name = 'token used') AS token_trigger_fired;
DROP TRIGGER touch_token ON enrollment.enrollment_token;
ALTER TABLE enrollment.audit_event ADD COLUMN note text;
SELECT direct_writes() AS before_count \gset
SELECT token AS t4 FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'t4', 'dw-04');
SELECT direct_writes() - :before_count AS written_directly;
ALTER TABLE enrollment.audit_event DROP COLUMN note;
-- back to the extension's shape (a dropped column does not count): direct again
SELECT direct_writes() AS before_count \gset
SELECT token AS t5 FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'t5', 'dw-05');
SELECT direct_writes() - :before_count AS written_directly;

-- column defaults are the table's: a changed default is honoured on the
-- direct path too (a DBA who wants new nodes approved first)
ALTER TABLE enrollment.node_record ALTER COLUMN status SET DEFAULT 'pending_approval';
SELECT direct_writes() AS before_count \gset
SELECT token AS t8 FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'t8', 'dw-08');
SELECT direct_writes() - :before_count AS written_directly;
ALTER TABLE enrollment.node_record ALTER COLUMN status SET DEFAULT 'active';

-- a column of another type sends enroll through SQL
ALTER TABLE enrollment.node_record ALTER COLUMN removed_at TYPE timestamp;
SELECT direct_writes() AS before_count \gset
SELECT token AS t9 FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'t9', 'dw-09', node_role => 'sensor');
SELECT direct_writes() - :before_count AS written_directly;
ALTER TABLE enrollment.node_record ALTER COLUMN removed_at TYPE timestamptz;

-- and so does enrollment.direct_writes = off
SET enrollment.direct_writes = off;
SELECT direct_writes() AS before_count \gset
SELECT token AS t10 FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'t10', 'dw-10');
SELECT direct_writes() - :before_count AS written_directly;
RESET enrollment.direct_writes;
SELECT direct_writes() AS before_count \gset
SELECT token AS t11 FROM enrollment.create_token() \gset
SELECT status FROM enrollment.enroll(:'t11', 'dw-11');
SELECT direct_writes() - :before_count AS written_directly;

-- a rolled-back enrollment leaves nothing behind
SELECT token AS t6, token_id AS t6_id FROM enrollment.create_token() \gset
SELECT count(*) AS nodes_before FROM enrollment.node_record \gset
BEGIN;
SELECT status FROM enrollment.enroll(:'t6', 'dw-06');
ROLLBACK;
SELECT status, use_count FROM enrollment.enrollment_token WHERE token_id = :'t6_id';
SELECT count(*) = :nodes_before AS no_node FROM enrollment.node_record;
SELECT status FROM enrollment.enroll(:'t6', 'dw-06');

-- a once token's use is written as UPDATE writes it, at the version the
-- probe read and without locking that first (0.6.0): the enrollment's WAL
-- holds no heap LOCK record.  A token with a cap, whose row concurrent
-- enrollments share, is locked first, then updated (once_race.spec covers
-- a once token that another enrollment updates meanwhile).
CREATE EXTENSION pg_walinspect;
SELECT token AS t_once FROM enrollment.create_token() \gset
SELECT token AS t_capped FROM enrollment.create_token('reusable', max_uses => 3) \gset
SELECT pg_current_wal_insert_lsn() AS lsn0, direct_writes() AS dw0 \gset
BEGIN;
SELECT status FROM enrollment.enroll(:'t_once', 'dw-walk-1');
SELECT pg_current_xact_id() AS x_once \gset
COMMIT;
BEGIN;
SELECT status FROM enrollment.enroll(:'t_capped', 'dw-walk-2');
SELECT pg_current_xact_id() AS x_capped \gset
COMMIT;
SELECT CASE WHEN xid = xid(:'x_once'::xid8) THEN 'once' ELSE 'capped' END AS token,
       count(*) FILTER (WHERE record_type LIKE 'LOCK%') AS row_locks,
       count(*) FILTER (WHERE record_type LIKE '%UPDATE%') AS updates
  FROM pg_get_wal_records_info(:'lsn0', pg_current_wal_flush_lsn())
 WHERE resource_manager = 'Heap' AND xid IN (xid(:'x_once'::xid8), xid(:'x_capped'::xid8))
 GROUP BY 1 ORDER BY 1;
SELECT direct_writes() - :dw0 AS written_directly;
SELECT what, row_text FROM enrollment_rows((SELECT node_id FROM enrollment.node_record WHERE name = 'dw-walk-1'));
DROP EXTENSION pg_walinspect;

-- every row version either path wrote is in every index of its table
-- (amcheck with heapallindexed): the direct path's HOT updates need no new
-- entries, its other updates (a use that moves retention_from) and inserts do
CREATE EXTENSION amcheck;
SELECT c.relname AS table_name, count(*) AS indexes_checked
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid,
       LATERAL bt_index_check(i.indexrelid, true) AS chk
 WHERE c.relnamespace = 'enrollment'::regnamespace
   AND c.relname IN ('enrollment_token', 'node_record', 'audit_event')
 GROUP BY c.relname ORDER BY c.relname;
DROP EXTENSION amcheck;

DROP TABLE seen_by_trigger, shared_rows;
DROP FUNCTION shared_enrollments(text, text);
DROP FUNCTION note_node();
DROP FUNCTION touch_token();
DROP FUNCTION enrollment_rows(uuid);
DROP FUNCTION direct_writes();

