/*-------------------------------------------------------------------------
 *
 * replay_horizon.c
 *	  The replay horizon of a database, carried to standbys by the WAL.
 *
 * shmem.c keeps a server's replay horizon H (every accepted request is dated
 * at or before H) in a file of the data directory, which is enough across a
 * restart or a crash of that server.  A standby has its own file, so after
 * a failover the new primary would not know how far into the future the
 * old one had accepted requests (a client whose clock runs ahead, inside
 * the window).  Here each database keeps a copy of the horizon in the one
 * row of enrollment.replay_horizon:
 *
 *	- cover: before a request dated ts is accepted on a primary, the row must
 *	  hold a horizon >= ts.  When it does not, the row is overwritten in
 *	  place (no transaction id, not undone by a rollback, no new row
 *	  version), with the same step ahead as the file, and the WAL record is
 *	  flushed (and, under synchronous replication, waited for like a commit)
 *	  before the request is accepted.  A backend remembers what it has
 *	  covered, so the row is read at most once per step per backend.
 *	- absorb: the first verification of a backend on a server that is not in
 *	  recovery reads the row.  If another server start wrote it (the old
 *	  primary, or this server before a crash), the replay floor is raised
 *	  above it: nothing that start may have accepted is accepted again.
 *	  Rows written by this start are covered by its own nonce cache.
 *
 * A standby writes nothing (it cannot); its own acceptances stay covered by
 * its file.  A database whose extension predates the table is skipped.
 *
 * src/replay_horizon.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "replication/syncrep.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "enrollment.h"
#include "probe.h"

/* the row, as stored: two non-null bigint columns */
typedef struct FormData_replay_horizon
{
	int64		instance;
	int64		horizon;
} FormData_replay_horizon;

/* per backend (a backend serves one database) */
static bool absorbed = false;	/* the row was read out of recovery */
static int64 covered = 0;		/* the row holds at least this, written by us */
static Oid	horizon_relid = InvalidOid; /* the table those two describe */
static bool callback_registered = false;

/*
 * A relcache invalidation of the table (DROP and CREATE EXTENSION in this
 * session, say) makes what this backend knows of its row worthless: a new
 * table starts from (0, 0).  In-place writes send no invalidation.
 */
static void
horizon_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == horizon_relid)
	{
		absorbed = false;
		covered = 0;
		horizon_relid = InvalidOid;
	}
}

/*
 * Open enrollment.replay_horizon, or return NULL when this database's
 * extension has no such table (installed before 0.4.0, not yet updated).
 * A table of any other shape is an error: it is read as raw int64 fields.
 */
static Relation
open_horizon_table(LOCKMODE mode)
{
	Oid			relid = enr_schema_relid("replay_horizon");
	Relation	rel;
	TupleDesc	desc;

	if (!OidIsValid(relid))
		return NULL;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(horizon_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	rel = table_open(relid, mode);
	/* after the lock: taking it may deliver an invalidation of the table */
	horizon_relid = relid;
	desc = RelationGetDescr(rel);
	if (rel->rd_rel->relkind != RELKIND_RELATION || desc->natts != 2 ||
		TupleDescAttr(desc, 0)->atttypid != INT8OID || !TupleDescAttr(desc, 0)->attnotnull ||
		TupleDescAttr(desc, 1)->atttypid != INT8OID || !TupleDescAttr(desc, 1)->attnotnull)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table \"enrollment.replay_horizon\" does not have the expected columns"),
				 errdetail("Replay protection across failover reads it as (instance bigint NOT NULL, horizon bigint NOT NULL)."),
				 errhint("Recreate the extension's objects with ALTER EXTENSION enrollment UPDATE or from a dump.")));
	return rel;
}

static void
row_missing(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("table \"enrollment.replay_horizon\" has no row"),
			 errdetail("Replay protection across failover needs its one row."),
			 errhint("INSERT INTO enrollment.replay_horizon VALUES (0, 0) restores it.")));
}

/*
 * Once per backend out of recovery, before the floor is consulted: raise
 * the floor above a horizon stored by another server start.
 */
void
enr_replay_horizon_absorb(void)
{
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	FormData_replay_horizon row;

	if (absorbed || RecoveryInProgress())
		return;
	rel = open_horizon_table(AccessShareLock);
	if (rel == NULL)
	{
		absorbed = true;
		return;
	}
	/* a fresh catalog-style MVCC snapshot: the latest committed row */
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		row_missing();
	memcpy(&row, GETSTRUCT(tup), sizeof(row));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if ((uint64) row.instance != enr_server_instance())
		enr_replay_floor_raise(row.horizon + 1);
	else
		covered = Max(covered, row.horizon);
	absorbed = true;
}

/*
 * Before a request dated ts is accepted on a primary: make this database's
 * row cover ts, durably (and on a synchronous standby, when one is
 * configured) before returning.
 *
 * Returns false when ts may no longer be accepted: the row was written by
 * another server start that this backend had not absorbed (a verification
 * that began before a promotion and reaches this step after it, when the
 * absorb step was skipped in recovery).  The floor is raised above that
 * start's horizon here, as the absorb step would have done, and a request
 * dated at or before it could be one that start accepted.
 */
bool
enr_replay_horizon_cover(int64 ts, int64 now)
{
	Relation	rel;
	HeapTuple	tup;
	void	   *state;
	FormData_replay_horizon *row;
	int64		h;
	bool		acceptable = true;

	if (ts <= covered || RecoveryInProgress())
		return true;
	rel = open_horizon_table(RowExclusiveLock);
	if (rel == NULL)
		return true;

	/* finds the row and locks it against concurrent in-place writers */
	systable_inplace_update_begin(rel, InvalidOid, false, NULL, 0, NULL, &tup, &state);
	if (!HeapTupleIsValid(tup))
		row_missing();
	row = (FormData_replay_horizon *) GETSTRUCT(tup);
	if ((uint64) row->instance == enr_server_instance() && row->horizon >= ts)
	{
		/* another backend of this start covered it already */
		h = row->horizon;
		systable_inplace_update_cancel(state);
	}
	else
	{
		if ((uint64) row->instance != enr_server_instance())
		{
			enr_replay_floor_raise(row->horizon + 1);
			absorbed = true;
			acceptable = ts > row->horizon;
		}
		/* never lower it: an earlier start may have gone further ahead */
		h = Max(row->horizon, Max(ts, now) + ENR_REPLAY_HORIZON_STEP);
		row->instance = (int64) enr_server_instance();
		row->horizon = h;
		systable_inplace_update_finish(state, tup);
		/* the in-place write's WAL record is the last this backend made */
		XLogFlush(XactLastRecEnd);
		SyncRepWaitForLSN(XactLastRecEnd, false);
	}
	heap_freetuple(tup);
	table_close(rel, NoLock);
	covered = h;
	return acceptable;
}
