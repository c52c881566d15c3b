-- verify_request with a fresh nonce and a valid signature; the request is
-- signed in the same statement (sign_request: one HMAC more than a real call).
-- (pgbench reads ":word" as a variable even inside literals: the scope is -D scope=...)
SELECT ok FROM enrollment.verify_request('GET', '/api/v2/events',
       enrollment.sign_request('GET', '/api/v2/events', :kid, :sec), NULL, :scope);
