-- enroll on one shared cluster token without a cap: after its first use,
-- each use is appended to token_use under a shared lock of the token row
SELECT status FROM enrollment.enroll(:ctok, 'bench-node', 'bench');
