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

#include "catalog/pg_type.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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

	/* the committed nodes of whoever held the lock before, at any isolation */
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
	nodes = count_nodes_now(tenant);
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

	return tenant_limit(tenant, &limit) && count_nodes_now(tenant) >= limit;
}
