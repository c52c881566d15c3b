-- enroll on one shared cluster token with a cap: every client queues for
-- its row, where each use is counted under the row lock
SELECT status FROM enrollment.enroll(:captok, 'bench-node', 'bench');
