-- baseline: a one-row INSERT into a plain table with a uuid key and 6 columns
INSERT INTO bench.plain VALUES (gen_random_uuid(), 'bench-node', 'role', 'cluster', now(), 1,
                                nextval('bench.plain_seq'));
