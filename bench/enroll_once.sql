-- enroll with a fresh once token per call (taken from a pre-made pool)
SELECT e.status FROM bench.pool p, LATERAL enrollment.enroll(p.token, 'bench-node') e
 WHERE p.id = (SELECT nextval('bench.pool_seq'));
