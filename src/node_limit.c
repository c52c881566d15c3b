/*-------------------------------------------------------------------------
 *
 * node_limit.c
 *	  A tenant's license node limit (enrollment.set_node_limit, 0.7.0):
 *	  an enrollment that would create a node beyond it is refused with
 *	  node_limit_exceeded.
 *
 * The limit counts the tenant's nodes that are not removed (active and
 * pending_approval).  A re-enrollment creates no node and is not limited.
 *
 * Exactness.  Enrollments that create a node in a tenant with a limit lock
 * the tenant's tenant_setting row (FOR UPDATE) and then count its nodes
 * under the newest snapshot, not the transaction's: the lock is held until
 * the commit, so whoever counts next sees the node the previous holder
 * wrote, at any isolation level.  N concurrent enrollments against a limit
 * leaving K free slots therefore succeed exactly min(N, K) times.  Those
 * enrollments queue for each other, from the count to the commit; that is
 * the price of an exact limit, and only a tenant that sets one pays it.
 *
 * Whether the tenant has a limit is read under the newest snapshot too,
 * without a lock: where some tenant has a limit, by a probe of
 * tenant_setting by its primary key; where none has, not even that
 * (limits_cache.c).  An enrollment takes its lock on node_record (the one
 * its insert takes anyway) before it asks, and set_node_limit locks
 * node_record in SHARE mode before it writes: so a limit waits for the
 * enrollments that asked before it, they are counted by the enrollments
 * that ask after it, and those ask only once it has committed.
 *
 * The count.  Counting a tenant's nodes at each call grows with its fleet
 * (at 80 000 nodes, 11 ms an enrollment and 7 ms a check_token; README),
 * so set_node_limit counts them once, while it holds node_record in SHARE
 * mode (no node can be written), and keeps the count in tenant_node_count.
 * A node removed, reinstated, moved to another tenant or deleted appends a
 * change of one to tenant_node_change (trigger node_count_changed, where
 * the tenant has a limit), in its own transaction and without a lock: an
 * INSERT waits for nobody, and a bulk removal appends one row per node.  An
 * enrollment of a new node, holding the tenant's setting row, folds the
 * committed changes into the count in one statement under the newest
 * snapshot (deleting them) and adds its own node.  The worker folds them
 * too, every round, in the same way (fold_node_changes) but only where it
 * gets the row and its table locks at once, so that changes do not pile up
 * where no enrollment succeeds.  Those two are the only writers of the
 * count apart from set_node_limit and what drops it (trigger
 * forget_node_count: hand changes of the setting row, TRUNCATEs), and all
 * of those wait for the row lock, for the ROW EXCLUSIVE lock on
 * node_record or, for a TRUNCATE, for any lock at all, so nothing else
 * changes those rows meanwhile and no 40001 comes of it at READ COMMITTED
 * or REPEATABLE READ (SERIALIZABLE's predicate locks may fail an
 * overlapping removal or enrollment, as they see each read what the other
 * writes).  A change under way is not folded and not counted: as before,
 * the limit counts what has committed.
 * check_token reads the count and sums the changes not folded yet.  Where
 * no count is kept (a limit written by hand, a TRUNCATE), the nodes are
 * counted as before, until set_node_limit, which first drops whatever was
 * kept or appended before (recount_tenant_nodes).
 *
 * Creating a token that would enroll new nodes warns (capacity_warning)
 * when the tenant is at 90 % of its limit or above; the token is created
 * all the same, as a license may be raised before it is used.
 *
 * Before ALTER EXTENSION UPDATE to 0.7.0 the table has no node_limit
 * column and nothing is checked.
 *
 * src/node_limit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "enrollment.h"
#include "probe.h"

static EnrProbeTable setting_by_tenant = {
	.relname = "tenant_setting",
	.indexname = "tenant_setting_pkey",
	.eqproc = F_TEXTEQ,
	.ncols = 2,
	.cols = {"tenant", "node_limit"}
};

/* the kept count of the tenant's nodes (check_token reads it without SQL) */
static EnrProbeTable count_by_tenant = {
	.relname = "tenant_node_count",
	.indexname = "tenant_node_count_pkey",
	.eqproc = F_TEXTEQ,
	.ncols = 2,
	.cols = {"tenant", "nodes"}
};

/*
 * Fold the committed changes of tenant $1 into its kept count and add $2
 * nodes (an enrollment's own node: 1; the worker's fold: 0), in one
 * statement under one snapshot (the newest), deleting the changes.  One
 * row: the count after it and the changes folded.  Where no count is kept,
 * NULL, and the changes stay: a count restored after them (pg_restore
 * loads tenant_node_change first) needs them, and set_node_limit drops
 * what it does not.
 */
static EnrPlan fold_count_plan = {
	.sql = "WITH d AS (DELETE FROM enrollment.tenant_node_change AS c"
	"  WHERE c.tenant OPERATOR(pg_catalog.=) $1 AND EXISTS (SELECT FROM enrollment.tenant_node_count AS n"
	"    WHERE n.tenant OPERATOR(pg_catalog.=) $1) RETURNING c.delta),"
	" k AS (UPDATE enrollment.tenant_node_count AS k"
	"    SET nodes = k.nodes OPERATOR(pg_catalog.+) $2 OPERATOR(pg_catalog.+)"
	"        (SELECT COALESCE(pg_catalog.sum(d.delta), 0) FROM d)"
	"  WHERE k.tenant OPERATOR(pg_catalog.=) $1 RETURNING k.nodes)"
	" SELECT (SELECT k.nodes FROM k), (SELECT pg_catalog.count(*) FROM d)",
	.nargs = 2,
	.argtypes = {TEXTOID, INT8OID}
};

/* a node removed, reinstated, moved or deleted: a change of the count */
static EnrPlan append_change_plan = {
	.sql = "INSERT INTO enrollment.tenant_node_change (tenant, delta) VALUES ($1, $2)",
	.nargs = 2,
	.argtypes = {TEXTOID, INT4OID}
};

/* what forget_node_count drops: one tenant's count and changes, or all */
static EnrPlan forget_count_plan = {
	.sql = "WITH d AS (DELETE FROM enrollment.tenant_node_change AS c"
	"  WHERE c.tenant OPERATOR(pg_catalog.=) $1)"
	" DELETE FROM enrollment.tenant_node_count AS k WHERE k.tenant OPERATOR(pg_catalog.=) $1",
	.nargs = 1,
	.argtypes = {TEXTOID}
};
static EnrPlan forget_counts_plan = {
	.sql = "WITH d AS (DELETE FROM enrollment.tenant_node_change)"
	" DELETE FROM enrollment.tenant_node_count",
	.nargs = 0
};

/* the limit again, under the row lock */
static EnrPlan lock_setting_plan = {
	.sql = "SELECT s.node_limit FROM enrollment.tenant_setting AS s"
	" WHERE s.tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/* the same for the worker's fold, which leaves a held row to its holder */
static EnrPlan try_lock_setting_plan = {
	.sql = "SELECT FROM enrollment.tenant_setting AS s"
	" WHERE s.tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE SKIP LOCKED",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/*
 * The tenant's limit, if it has one, read without a lock under the newest
 * snapshot (and no at once where no tenant has a limit: limits_cache.c)
 */
static bool
tenant_limit(Datum tenant, int32 *limit)
{
	Datum		v[2];
	bool		n[2];

	if (!enr_any_node_limit() || !enr_probe_newest(&setting_by_tenant, tenant, v, n) || n[1])
		return false;
	*limit = DatumGetInt32(v[1]);
	return true;
}

/* The tenant's nodes that are not removed, under the newest snapshot */
static int64
count_nodes_now(Datum tenant)
{
	Snapshot	snapshot;
	int64		n;

	CommandCounterIncrement();	/* this transaction's own nodes too */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	n = enr_count_tenant_nodes(tenant, snapshot);
	UnregisterSnapshot(snapshot);
	return n;
}

/*
 * The tenant's nodes that are not removed, as committed now: its kept count
 * where there is one, else a count of them
 */
static int64
tenant_nodes_now(Datum tenant)
{
	Datum		v[2];
	bool		n[2];
	Snapshot	snapshot;
	bool		kept;
	int64		nodes = 0;

	CommandCounterIncrement();	/* this transaction's own changes too */
	/* the count and the changes not folded into it, under one snapshot */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	PushActiveSnapshot(snapshot);
	/* an error unwinds the snapshot stack with the (sub)transaction */
	kept = enr_probe(&count_by_tenant, tenant, v, n) && !n[1];
	if (kept)
		nodes = DatumGetInt64(v[1]) + enr_sum_node_changes(tenant, snapshot);
	PopActiveSnapshot();
	UnregisterSnapshot(snapshot);
	return kept ? nodes : count_nodes_now(tenant);
}

/*
 * Run fold_count_plan for the tenant under the newest snapshot (this
 * transaction's own changes included).  Returns whether a count is kept,
 * and then puts it (after the fold) in *nodes; *folded, if given, gets the
 * changes folded.  The caller holds the tenant's setting row.
 */
static bool
fold_count(Datum tenant, int64 add, int64 *nodes, int64 *folded)
{
	Datum		a[2] = {tenant, Int64GetDatum(add)};
	bool		isnull;
	Datum		d;

	CommandCounterIncrement();
	if (SPI_execute_snapshot(enr_prepare(&fold_count_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not fold the node count of the tenant");
	if (folded != NULL)
		*folded = DatumGetInt64(enr_getattr(0, 2, &isnull));
	d = enr_getattr(0, 1, &isnull);
	if (!isnull)
		*nodes = DatumGetInt64(d);
	return !isnull;
}

/*
 * Before an enrollment writes a new node of the tenant: if the tenant has
 * a node limit, lock its setting row, count its nodes and raise
 * node_limit_exceeded when no slot is free.  Must be called between
 * SPI_connect and SPI_finish, before anything of the enrollment is written.
 */
void
enr_check_node_limit(Datum tenant, const char *token_public_part)
{
	Datum		a[1] = {tenant};
	bool		isnull;
	int32		limit;
	int64		nodes;

	/* before asking: what set_node_limit waits for (see the header) */
	LockRelationOid(enr_node_record_relid(), RowExclusiveLock);
	if (!tenant_limit(tenant, &limit))
		return;

	/* the newest version: under REPEATABLE READ, one newer than the snapshot */
	if (SPI_execute_snapshot(enr_prepare(&lock_setting_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the setting row of the tenant");
	if (SPI_processed != 1)
		return;					/* deleted meanwhile */
	limit = DatumGetInt32(enr_getattr(0, 1, &isnull));
	if (isnull)
		return;					/* lifted meanwhile */

	/*
	 * the committed nodes of whoever held the lock before, at any isolation:
	 * the kept count, with the changes appended since folded in and this
	 * enrollment's node added (undone with it if it fails), or a count
	 */
	if (fold_count(tenant, 1, &nodes, NULL))
		nodes--;
	else
		nodes = count_nodes_now(tenant);

	if (nodes >= limit)
	{
		enr_count_enroll(ENROLL_NODE_LIMIT_EXCEEDED);
		ereport(ERROR,
				(errcode(ERRCODE_ENR_NODE_LIMIT_EXCEEDED),
				 errmsg("node_limit_exceeded"),
				 errdetail("The tenant's license node limit is %d, and it has " INT64_FORMAT
						   " nodes that are not removed; token %s enrolled nothing.",
						   limit, nodes, token_public_part),
				 errhint("Remove nodes that are gone, or ask for a larger license (enrollment.set_node_limit).")));
	}
}

/*
 * After a token that enrolls new nodes was created: warn when the tenant
 * has 90 % of its node limit or more.
 */
void
enr_warn_node_capacity(Datum tenant)
{
	int32		limit;
	int64		nodes;

	if (!tenant_limit(tenant, &limit))
		return;
	nodes = tenant_nodes_now(tenant);
	if (nodes * 10 < (int64) limit * 9)
		return;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("capacity_warning"),
			 nodes >= limit
			 ? errdetail("The tenant has " INT64_FORMAT " nodes, and its license node limit is %d: "
						 "enrollments through this token will fail with node_limit_exceeded.",
						 nodes, limit)
			 : errdetail("The tenant has " INT64_FORMAT " nodes, and its license node limit is %d: "
						 INT64_FORMAT " more may enroll.",
						 nodes, limit, (int64) limit - nodes),
			 errhint("Remove nodes that are gone, or ask for a larger license (enrollment.set_node_limit).")));
}

/*
 * For check_token: has the tenant a node limit that leaves no slot free
 * now?  Read without a lock, so a concurrent enrollment may take the last
 * slot after the answer.
 */
bool
enr_node_limit_reached(Datum tenant)
{
	int32		limit;

	return tenant_limit(tenant, &limit) && tenant_nodes_now(tenant) >= limit;
}

/*
 * enrollment.recount_tenant_nodes(tenant text): set_node_limit's count.
 * It holds node_record in SHARE mode, so no node is being written and no
 * removal is under way: the tenant's kept count and every change appended
 * to it (one a removal left behind after a hand change of the setting row
 * dropped the count, say) are dropped, and the nodes counted, under the
 * newest snapshot, so exactly at any isolation level.  Revoked from PUBLIC.
 */
PG_FUNCTION_INFO_V1(enrollment_recount_tenant_nodes);
Datum
enrollment_recount_tenant_nodes(PG_FUNCTION_ARGS)
{
	Datum		a[1] = {PG_GETARG_DATUM(0)};

	/* set_node_limit holds it already; called alone, it takes it */
	LockRelationOid(enr_node_record_relid(), ShareLock);
	SPI_connect();
	if (SPI_execute_snapshot(enr_prepare(&forget_count_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 0) < 0)
		elog(ERROR, "could not drop the kept node count of the tenant");
	SPI_finish();
	PG_RETURN_INT64(count_nodes_now(a[0]));
}

/*
 * What the worker's fold locks, each only if it can at once: node_record
 * as an enrollment does (set_node_limit holds it in SHARE mode while it
 * counts), and the three tables it reads and writes, so that it waits for
 * no TRUNCATE, VACUUM FULL, CLUSTER, REINDEX or index build either: ROW
 * EXCLUSIVE for tenant_setting too, though it only locks a row there, as
 * that is what conflicts with the SHARE lock of a REINDEX, which would
 * hold the primary key the row lock goes through.
 */
static const struct
{
	const char *relname;
	LOCKMODE	mode;
}			fold_locks[] = {
	{"node_record", RowExclusiveLock},
	{"tenant_setting", RowExclusiveLock},
	{"tenant_node_count", RowExclusiveLock},
	{"tenant_node_change", RowExclusiveLock}
};

/*
 * enrollment.fold_node_changes(tenant text): the worker's fold of the
 * changes appended to the tenant's kept count, so that they do not pile up
 * where no enrollment folds them (a tenant at its limit that only removes
 * and reinstates nodes: a refused enrollment's fold is undone with it) and
 * check_token sums few.  Returns the changes folded.
 *
 * It waits for no table lock: where one of its tables (fold_locks) or the
 * tenant's setting row (SKIP LOCKED) is held, by an enrollment folding the
 * same changes, set_node_limit or anything else, it returns 0, and the next
 * round tries again.  Holding the row and node_record, it is the only one
 * writing the count and the changes (see the header).  Where no count is
 * kept, nothing is folded (fold_count_plan).  Revoked from PUBLIC.
 */
PG_FUNCTION_INFO_V1(enrollment_fold_node_changes);
Datum
enrollment_fold_node_changes(PG_FUNCTION_ARGS)
{
	Datum		a[1] = {PG_GETARG_DATUM(0)};
	int64		nodes,
				folded = 0;

	for (size_t i = 0; i < lengthof(fold_locks); i++)
	{
		Oid			relid = i == 0 ? enr_node_record_relid()
			: enr_schema_relid_required(fold_locks[i].relname);

		if (!ConditionalLockRelationOid(relid, fold_locks[i].mode))
			PG_RETURN_INT64(0);
	}
	SPI_connect();
	if (SPI_execute_snapshot(enr_prepare(&try_lock_setting_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the setting row of the tenant");
	if (SPI_processed == 1)
		(void) fold_count(a[0], 0, &nodes, &folded);
	SPI_finish();
	PG_RETURN_INT64(folded);
}

/* Is this node_record row one the limit counts (not removed)? */
static bool
counted(HeapTuple tuple, TupleDesc desc, AttrNumber status)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, status, desc, &isnull);

	return isnull || !enr_text_is(DatumGetTextPP(d), "removed");
}

/*
 * Append a change of delta to the tenant's kept node count, if the tenant
 * has a limit and a count is kept (a count made later is made with this
 * change committed: set_node_limit waits for it).  Where none is kept (a
 * limit written by hand, a subscriber's applied limit) nothing is
 * appended, so nothing piles up that no enrollment would fold.
 */
static void
append_change(Datum tenant, int32 delta)
{
	Datum		a[2] = {tenant, Int32GetDatum(delta)};
	Datum		v[2];
	bool		n[2];
	int32		limit;

	if (!tenant_limit(tenant, &limit) || !enr_probe_newest(&count_by_tenant, tenant, v, n))
		return;
	SPI_connect();
	if (SPI_execute_snapshot(enr_prepare(&append_change_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not append a change of the node count of the tenant");
	SPI_finish();
}

/*
 * enrollment.node_count_changed(): the row trigger of node_record for
 * updates of status or tenant and for deletions.  Where no tenant has a
 * limit it does nothing (limits_cache.c).
 */
PG_FUNCTION_INFO_V1(enrollment_node_count_changed);
Datum
enrollment_node_count_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	AttrNumber	status,
				tenant;
	HeapTuple	old,
				new;
	bool		was,
				is,
				same = false,
				isnull;
	Datum		old_tenant,
				new_tenant = (Datum) 0;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrollment.node_count_changed() is a trigger function"),
				 errdetail("It was called outside a trigger."),
				 errhint("Leave it to the trigger of enrollment.node_record.")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_UPDATE(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrollment.node_count_changed() must fire after each row updated or deleted"),
				 errdetail("It was attached to another kind of trigger."),
				 errhint("Leave it to the trigger of enrollment.node_record.")));
	if (!enr_any_node_limit())
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(td->tg_relation);
	status = SPI_fnumber(desc, "status");
	tenant = SPI_fnumber(desc, "tenant");
	if (status <= 0 || tenant <= 0)
		elog(ERROR, "node_record has no column status or tenant");
	old = td->tg_trigtuple;
	new = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : NULL;

	was = counted(old, desc, status);
	is = new != NULL && counted(new, desc, status);
	old_tenant = heap_getattr(old, tenant, desc, &isnull);
	if (new != NULL)
	{
		new_tenant = heap_getattr(new, tenant, desc, &isnull);
		same = enr_text_equal(DatumGetTextPP(old_tenant), DatumGetTextPP(new_tenant));
	}
	if (was && !(is && same))
		append_change(old_tenant, -1);
	if (is && !(was && same))
		append_change(new_tenant, 1);
	return PointerGetDatum(NULL);
}

/*
 * enrollment.forget_node_count(): the trigger of tenant_setting (a row's
 * limit or tenant changed, or the row deleted: that tenant's kept count and
 * changes go) and of a TRUNCATE of tenant_setting, node_record or
 * tenant_node_change (all of them go).  Under the newest snapshot, so that
 * at REPEATABLE READ too it drops what an enrollment committed after the
 * snapshot; no enrollment is under way, as the row's change or the
 * TRUNCATE waited for its lock.  A removal may be: a change it appended
 * before is left without a count, which readers ignore and set_node_limit
 * drops (recount_tenant_nodes); one it appends after finds no count and is
 * not written (append_change).
 */
PG_FUNCTION_INFO_V1(enrollment_forget_node_count);
Datum
enrollment_forget_node_count(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Datum		a[1];
	int			rc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrollment.forget_node_count() must fire as an AFTER trigger"),
				 errdetail("It was called otherwise."),
				 errhint("Leave it to the triggers of enrollment.tenant_setting, enrollment.node_record and enrollment.tenant_node_change.")));
	SPI_connect();
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		rc = SPI_execute_snapshot(enr_prepare(&forget_counts_plan), NULL, NULL, GetLatestSnapshot(),
								  InvalidSnapshot, false, false, 0);
	else
	{
		TupleDesc	desc = RelationGetDescr(td->tg_relation);
		AttrNumber	tenant = SPI_fnumber(desc, "tenant");
		bool		isnull;

		if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) || tenant <= 0)
			elog(ERROR, "forget_node_count: not a row trigger of a table with a tenant");
		a[0] = heap_getattr(td->tg_trigtuple, tenant, desc, &isnull);
		rc = isnull ? SPI_OK_DELETE :
			SPI_execute_snapshot(enr_prepare(&forget_count_plan), a, NULL, GetLatestSnapshot(),
								 InvalidSnapshot, false, false, 0);
	}
	if (rc < 0)
		elog(ERROR, "could not drop kept node counts (%d)", rc);
	SPI_finish();
	return PointerGetDatum(NULL);
}
