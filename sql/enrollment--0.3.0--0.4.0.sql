-- enrollment 0.3.0 -> 0.4.0
\echo Use "ALTER EXTENSION enrollment UPDATE TO '0.4.0'" to load this file. \quit

--------------------------------------------------------------------------
-- The replay horizon of this database, for failover (0.4.0).  verify_request
-- keeps accepted nonces in shared memory and, before it accepts a request
-- dated later than anything accepted so far, raises a horizon that covers
-- it (src/shmem.c).  The server keeps its horizon in a file of its own; this
-- one row is a copy that travels with the WAL to standbys.  It is written in
-- place, by C code only, never by UPDATE (src/replay_horizon.c): the write
-- needs no transaction id, is not undone when the verifying transaction
-- rolls back, and is replayed on a standby like any heap change.  After a
-- promotion, verification in this database refuses every request dated at
-- or before the horizon the old primary stored here.
--------------------------------------------------------------------------

CREATE TABLE enrollment.replay_horizon (
    instance  bigint NOT NULL,      -- random id of the server start that wrote the row
    horizon   bigint NOT NULL       -- every request accepted in this database is dated <= horizon (Unix seconds)
);
CREATE UNIQUE INDEX replay_horizon_one_row ON enrollment.replay_horizon ((true));
INSERT INTO enrollment.replay_horizon VALUES (0, 0);
COMMENT ON TABLE enrollment.replay_horizon IS
    'One row, written in place by verify_request: the replay horizon of this database, replicated to standbys';
REVOKE ALL ON enrollment.replay_horizon FROM PUBLIC;
