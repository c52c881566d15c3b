-- a filtered, sorted page of 50 rows from the tokens view
SELECT token_id, kind, label, prefix, status, use_count, created_at, expires_at
  FROM enrollment.tokens
 WHERE tenant = 'default' AND status = 'pending'
 ORDER BY created_at DESC
 LIMIT 50;
