-- enrollment 0.5.0 -> 0.5.1
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.5.1'" to load this file. \quit

-- 0.5.1 changes only the library: enroll through a reusable or cluster token
-- writes its rows without SQL too (src/direct_write.c).  No SQL object
-- changes; the update only records the new version.
