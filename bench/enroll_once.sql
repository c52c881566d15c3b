-- enroll with a fresh once token per call, taken from a pre-made pool by
-- primary key in the same statement.  The token is a scalar subquery's
-- result, so the call is a FROM item of its own, as a backend's
-- SELECT ... FROM enrollment.enroll($1, $2) is, and runs as the extension's
-- custom scan (until run 22 the pool was joined LATERAL, which kept
-- PostgreSQL's function scan).  A pool run dry passes NULL: an error.
SELECT status FROM enrollment.enroll((SELECT token FROM bench.pool WHERE id = (SELECT nextval('bench.pool_seq'))), 'bench-node');
