-- a filtered, sorted page of 50 rows from the tokens view (run with the
-- tenant set through PGOPTIONS: the view shows the current tenant's tokens)
SELECT token_id, kind, label, prefix, status, use_count, created_at, expires_at
  FROM enrollment.tokens
 WHERE status = 'pending'
 ORDER BY created_at DESC
 LIMIT 50;
