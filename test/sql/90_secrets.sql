-- secrets at rest: tables hold SHA-256 digests, never a plaintext token,
-- secret or node credential.  pgcrypto is the independent oracle.
\set VERBOSITY terse

CREATE TEMP TABLE plaintexts (what text, secret text);
INSERT INTO plaintexts
SELECT 'token ' || kind, token
  FROM (VALUES ('once', NULL), ('cluster', 'c1'), ('reusable', NULL)) v(k, c),
       LATERAL enrollment.create_token(v.k, cluster_id => v.c);
INSERT INTO plaintexts
SELECT 'node credential', node_secret
  FROM enrollment.enroll((SELECT secret FROM plaintexts WHERE what = 'token reusable'), 'secret-check');

INSERT INTO plaintexts
SELECT 'hmac secret', hmac_secret FROM enrollment.create_api_key('secret check', ARRAY['audit:read']);

-- the stored digest is SHA-256 of the whole string (checked with pgcrypto)
SELECT p.what, t.token_hash = digest(p.secret, 'sha256') AS digest_matches
  FROM plaintexts p JOIN enrollment.enrollment_token t
    ON t.prefix || lpad(to_hex(t.public_id), 16, '0') = split_part(p.secret, '.', 1)
 ORDER BY 1;
SELECT n.secret_hash = digest(p.secret, 'sha256') AS node_digest_matches
  FROM plaintexts p JOIN enrollment.node_record n
    ON n.secret_prefix || lpad(to_hex(n.secret_public_id), 16, '0') = split_part(p.secret, '.', 1);

-- no row of any extension table, in any column, contains a plaintext or
-- its secret part (text form of every row, bytea shown as hex and escaped)
SELECT p.what, count(r.*) AS rows_containing_secret
  FROM plaintexts p
  LEFT JOIN (
        SELECT t::text AS txt FROM enrollment.enrollment_token t
        UNION ALL SELECT n::text FROM enrollment.node_record n
        UNION ALL SELECT a::text FROM enrollment.audit_event a
        UNION ALL SELECT encode(t.token_hash, 'escape') FROM enrollment.enrollment_token t
        UNION ALL SELECT encode(n.secret_hash, 'escape') FROM enrollment.node_record n
        UNION ALL SELECT k::text FROM enrollment.api_key k
        UNION ALL SELECT encode(k.secret_sealed, 'escape') FROM enrollment.api_key k) r
    ON strpos(r.txt, coalesce(nullif(split_part(p.secret, '.', 2), ''), p.secret)) > 0
       OR strpos(r.txt, p.secret) > 0
       OR strpos(r.txt, encode(convert_to(p.secret, 'UTF8'), 'hex')) > 0
 GROUP BY p.what ORDER BY 1;

-- nor the views
SELECT count(*) AS view_rows_containing_secret
  FROM plaintexts p,
       (SELECT t::text AS txt FROM enrollment.tokens t
        UNION ALL SELECT n::text FROM enrollment.nodes n
        UNION ALL SELECT a::text FROM enrollment.audit_log a
        UNION ALL SELECT k::text FROM enrollment.api_keys k) r
 WHERE strpos(r.txt, coalesce(nullif(split_part(p.secret, '.', 2), ''), p.secret)) > 0;

-- the sealed secret is not the secret: opening it takes the server key
SELECT octet_length(k.secret_sealed) AS sealed_bytes,
       strpos(encode(k.secret_sealed, 'hex'), p.secret) = 0 AS not_plain
  FROM enrollment.api_key k, plaintexts p
 WHERE p.what = 'hmac secret' AND k.label = 'secret check';
