-- The floor of verify_ok.sql's call: the same statement, the request signed
-- by sign_request in it, but without the signature header, so verify_request
-- answers missing_headers before reading the key, the HMAC or the nonce
-- cache.  What this costs is PostgreSQL running the call and the signing;
-- what verify_ok.sql costs beyond it is the verification itself.
SELECT ok FROM enrollment.verify_request('GET', '/api/v2/events',
       enrollment.sign_request('GET', '/api/v2/events', :kid, :sec) - 'X-Telovix-Signature', NULL, :scope);
