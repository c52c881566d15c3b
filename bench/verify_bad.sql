-- verify_request rejected for bad_signature (well-formed, fresh timestamp)
SELECT ok FROM enrollment.verify_request('GET', '/api/v2/events', :kid, :ts, 'bench-nonce',
       'sha256=0000000000000000000000000000000000000000000000000000000000000000');
