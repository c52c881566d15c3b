-- The floor of check_token.sql's call: the same statement with a token of
-- the same length whose checksum does not match (one character of its
-- secret changed), so check_token answers invalid_token after parsing it,
-- before the digest and the lookup.  What this costs is PostgreSQL running
-- the call, the token's parse and the result row; what check_token.sql costs
-- beyond it is the digest and the row's lookup.
SELECT ok FROM enrollment.check_token(:badtok);
