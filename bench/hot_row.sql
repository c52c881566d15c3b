-- reference: one UPDATE of a single shared row per transaction, the least
-- any exact, transactional cap on a shared token has to do
UPDATE bench.counter SET n = n + 1 WHERE id = 1;
