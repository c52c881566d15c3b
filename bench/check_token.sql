-- check an enrollment token without using it (read-only path)
SELECT ok FROM enrollment.check_token(:tok);
