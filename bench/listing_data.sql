-- The listing's own tenant: 100 k tokens in the mix of a tenant that has
-- been enrolling for a while (inserted directly, fake digests): 60 % pending,
-- made over 30 days; 25 % used, 10 % past their expiry and 5 % revoked, all
-- within the last 20 hours, so that the worker (token_retention 1 day) keeps
-- every one of them listed while the page is measured.
\set ON_ERROR_STOP on
INSERT INTO enrollment.enrollment_token (tenant, public_id, prefix, token_hash, kind, status, use_count, max_uses,
                                         created_by, created_at, expires_at, used_at, last_used_at,
                                         revoked_at, revoked_by, retention_from)
SELECT 'listing', (random() * 9e18)::bigint, 'enr_', sha256(('listing' || i)::bytea), 'once',
       CASE WHEN r < 0.60 THEN 'pending' WHEN r < 0.85 THEN 'used' WHEN r < 0.95 THEN 'pending' ELSE 'revoked' END,
       CASE WHEN r >= 0.60 AND r < 0.85 THEN 1 ELSE 0 END, 1, 'bench', c,
       CASE WHEN r >= 0.85 AND r < 0.95 THEN c + interval '1 hour' ELSE now() + interval '1 day' END,
       CASE WHEN r >= 0.60 AND r < 0.85 THEN c + interval '1 minute' END,
       CASE WHEN r >= 0.60 AND r < 0.85 THEN c + interval '1 minute' END,
       CASE WHEN r >= 0.95 THEN c + interval '1 minute' END,
       CASE WHEN r >= 0.95 THEN 'bench' END,
       CASE WHEN r >= 0.60 AND r < 0.85 THEN c + interval '1 minute'    -- used: the use starts the clock
            WHEN r >= 0.85 AND r < 0.95 THEN c + interval '1 hour'      -- expired: the expiry
            WHEN r < 0.60 THEN now() + interval '1 day' END             -- pending: the expiry; revoked: none
  FROM (SELECT i, r, now() - random() * CASE WHEN r < 0.60 THEN interval '30 days' ELSE interval '20 hours' END AS c
          FROM (SELECT i, random() AS r FROM generate_series(1, 100000) i) g) s
ON CONFLICT DO NOTHING;
VACUUM ANALYZE enrollment.enrollment_token;
