-- Data for the benchmark.  :scale tokens and keys exist besides the ones the
-- workloads use, inserted directly (fake digests and sealed secrets: they are
-- only there to make the tables and indexes big).  The tokens look like ones
-- create_token issued over the last :scale seconds, one a second, in the
-- order of issue: their public ids start with that second (credential.c).
\set ON_ERROR_STOP on
CREATE EXTENSION IF NOT EXISTS enrollment CASCADE;
CREATE SCHEMA IF NOT EXISTS bench;

INSERT INTO enrollment.enrollment_token (tenant, public_id, prefix, token_hash, kind, status, max_uses,
                                         created_by, created_at, expires_at, retention_from)
SELECT 'default', ((extract(epoch FROM now())::bigint - i) << 32) | (random() * 4294967295)::bigint, 'enr_', sha256(i::text::bytea), 'once', 'pending', 1,
       'bench', now() - (i || ' seconds')::interval, now() + interval '1 day', now() + interval '1 day'
  FROM generate_series(:scale, 1, -1) i
ON CONFLICT DO NOTHING;

INSERT INTO enrollment.api_key (key_id, label, scopes, scope_mask, secret_sealed, key_version, created_by)
SELECT (random() * 9e18)::bigint, 'filler', ARRAY['events:read'], 4, decode(repeat('00', 60), 'hex'), 1, 'bench'
  FROM generate_series(1, :scale) i
ON CONFLICT DO NOTHING;

-- the workloads' own objects
CREATE TABLE bench.key AS SELECT key_id, hmac_secret FROM enrollment.create_api_key('bench', ARRAY['events:read']);
CREATE TABLE bench.check_tok AS SELECT token FROM enrollment.create_token('reusable', 'bench check');
-- the same token with one character of its secret changed: its checksum
-- no longer matches (check_floor.sql)
CREATE TABLE bench.bad_tok AS
SELECT overlay(token PLACING CASE WHEN substr(token, strpos(token, '.') + 4, 1) = 'A' THEN 'B' ELSE 'A' END
                FROM strpos(token, '.') + 4 FOR 1) AS token
  FROM bench.check_tok;
CREATE TABLE bench.cluster_tok AS SELECT token FROM enrollment.create_token('cluster', 'bench cluster', cluster_id => 'bench');
-- the same with a cap (never reached), counted in its row at every use
CREATE TABLE bench.capped_tok AS SELECT token FROM enrollment.create_token('cluster', 'bench capped', cluster_id => 'bench', max_uses => 2000000000);
-- one fresh once token per enroll transaction; bench/run fills the pool
-- before each run that enrolls (refill)
CREATE SEQUENCE bench.pool_seq;
CREATE TABLE bench.pool (id bigint PRIMARY KEY, token text NOT NULL);
-- the baseline's table: a uuid key and 6 columns
CREATE TABLE bench.plain (id uuid PRIMARY KEY, a text, b text, c text, d timestamptz, e integer, f bigint);
CREATE SEQUENCE bench.plain_seq;
-- the reference for the shared token: a single row every client updates
CREATE TABLE bench.counter (id integer PRIMARY KEY, n bigint NOT NULL);
INSERT INTO bench.counter VALUES (1, 0);
VACUUM ANALYZE;
