-- Tokens and nodes are keyed by time-ordered (version 7) UUIDs.
SELECT token_id AS tid, token FROM enrollment.create_token('once', 'keys') \gset
SELECT node_id AS nid FROM enrollment.enroll(:'token', 'keys-node') \gset

-- version 7, RFC variant, for the function and for new rows
SELECT substr(u::text, 15, 1) AS version, substr(u::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant
  FROM (VALUES (enrollment.uuid_v7()), (:'tid'::uuid), (:'nid'::uuid)) AS v(u);

-- the first 48 bits are the time in milliseconds
SELECT abs(('x' || substr(replace(u::text, '-', ''), 1, 12))::bit(48)::bigint
           - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 5000 AS close_to_now
  FROM (VALUES (enrollment.uuid_v7())) AS v(u);

-- later ids sort after earlier ones (to the millisecond), and none repeats
CREATE TEMP TABLE ids AS
  SELECT i, enrollment.uuid_v7() AS u FROM generate_series(1, 2000) i;
SELECT (SELECT count(DISTINCT u) FROM ids) AS distinct_ids,
       bool_and(substr(a.u::text, 1, 13) <= substr(b.u::text, 1, 13)) AS time_ordered
  FROM ids a JOIN ids b ON b.i = a.i + 1;
