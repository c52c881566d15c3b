-- enroll on one shared cluster token (every client serialises on its row)
SELECT status FROM enrollment.enroll(:ctok, 'bench-node', 'bench');
