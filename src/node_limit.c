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
 * The count.  The nodes of a tenant with a limit are counted once, by
 * set_node_limit while it holds off every write of a node (or, where the
 * count is missing, as after a restore, by an enrollment under the row
 * lock); the result is kept in tenant_node_count, which each enrollment of
 * a new node moves by one under the row lock, and which the trigger
 * node_count_changed moves when a node is removed, reinstated, moved to
 * another tenant or deleted.  So an enrollment and a check_token
 * read one row instead of the tenant's fleet (at 80 000 nodes, 11 ms and
 * 7 ms a call before; README).  The trigger takes a share lock of the
 * tenant's setting row before it moves the count, and holds it to its
 * commit, so a removal and an enrollment of the tenant follow each other
 * in one order: a count made while a removal is under way waits for it,
 * and a removal under way while a count is made waits for the count's
 * commit and moves the row it wrote.  A change of the limit drops the row
 * (trigger forget_node_count) and the next enrollment counts again.
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

/* an enrollment keeps the count with its new node in it */
static EnrPlan keep_count_plan = {
	.sql = "INSERT INTO enrollment.tenant_node_count AS c (tenant, nodes) VALUES ($1, $2)"
	" ON CONFLICT (tenant) DO UPDATE SET nodes = excluded.nodes",
	.nargs = 2,
	.argtypes = {TEXTOID, INT8OID}
};

/* a removal first takes its share of the row lock enrollments take */
static EnrPlan share_setting_plan = {
	.sql = "SELECT 1 FROM enrollment.tenant_setting AS s"
	" WHERE s.tenant OPERATOR(pg_catalog.=) $1 AND s.node_limit IS NOT NULL FOR SHARE",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/* and then moves the count, if one is kept */
static EnrPlan move_count_plan = {
	.sql = "UPDATE enrollment.tenant_node_count AS c SET nodes = c.nodes OPERATOR(pg_catalog.+) $2"
	" WHERE c.tenant OPERATOR(pg_catalog.=) $1",
	.nargs = 2,
	.argtypes = {TEXTOID, INT8OID}
};

/* the limit again, under the row lock */
static EnrPlan lock_setting_plan = {
	.sql = "SELECT s.node_limit FROM enrollment.tenant_setting AS s"
	" WHERE s.tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE",
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

	CommandCounterIncrement();	/* this transaction's own changes too */
	if (enr_probe_newest(&count_by_tenant, tenant, v, n) && !n[1])
		return DatumGetInt64(v[1]);
	return count_nodes_now(tenant);
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
	Datum		a[2] = {tenant, (Datum) 0};
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
	 * the committed nodes of whoever held the lock before, at any isolation;
	 * no removal of the tenant's is under way (see the header)
	 */
	nodes = tenant_nodes_now(tenant);

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

	/* the count with this enrollment's node, rolled back with it if it fails */
	a[1] = Int64GetDatum(nodes + 1);
	if (SPI_execute_snapshot(enr_prepare(&keep_count_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not keep the node count of the tenant");
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
 * enrollment.count_tenant_nodes(tenant text): set_node_limit's count, made
 * under the newest snapshot while it holds node_record in SHARE mode, so it
 * is exact at any isolation level.  Revoked from PUBLIC.
 */
PG_FUNCTION_INFO_V1(enrollment_count_tenant_nodes);
Datum
enrollment_count_tenant_nodes(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(count_nodes_now(PG_GETARG_DATUM(0)));
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
 * Move the kept node count of the tenant by delta, if it has a limit and a
 * count is kept, after a share lock of its setting row (see the header)
 */
static void
move_count(Datum tenant, int64 delta)
{
	Datum		a[2] = {tenant, Int64GetDatum(delta)};

	SPI_connect();
	/* the newest versions, whatever the isolation level, as enrollments */
	if (SPI_execute_snapshot(enr_prepare(&share_setting_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the setting row of the tenant");
	if (SPI_processed == 1 &&
		SPI_execute_snapshot(enr_prepare(&move_count_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not move the node count of the tenant");
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
		move_count(old_tenant, -1);
	if (is && !(was && same))
		move_count(new_tenant, 1);
	return PointerGetDatum(NULL);
}
