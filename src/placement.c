/*-------------------------------------------------------------------------
 *
 * placement.c
 *	  Where a new node is placed (0.7.0): the group an enrollment names,
 *	  created on first use, and a private address from the tenant's pool.
 *
 * Groups.  A node is in the group enroll's node_group names, or in
 * 'default', which every tenant has without a row.  The first enrollment
 * that names a group the tenant does not have creates it (audited
 * group_created), under a lock of the group's name; later ones find its
 * row by a probe and lock and write nothing (enr_ensure_group).
 *
 * Addresses.  Where the tenant has an address pool (tenant_setting.ip_pool,
 * enrollment.set_ip_pool), every new node gets one host address of it: not
 * the network's first or last, and stored with a full mask (/32, /128).
 * The addresses held are rows of node_address (removed nodes keep theirs),
 * whose primary key is (tenant, address); the node row has a copy.  The
 * address is the one after the highest held in the pool, so an address is
 * not handed out again soon after its node went.  When the pool's last
 * address is taken, it is the lowest one none holds; when every one is
 * held, the address of the node removed longest ago is handed on (that
 * node's row and its node_address row lose it); when none is left, the
 * enrollment fails with ip_pool_exhausted.  A tenant without a pool writes
 * nothing there, and its enrollments open no index for addresses.
 *
 * Exactness.  An enrollment that takes an address locks the tenant's
 * tenant_setting row (FOR UPDATE, as the node limit does: node_limit.c) and
 * looks for the address under the newest snapshot: the lock is held until
 * the commit, so whoever looks next sees the address the previous holder
 * took, at any isolation level, and no two nodes get one address.  The
 * primary key of node_address holds that too.  The enrollments of a
 * tenant with a pool queue for each other from there to the commit; a
 * tenant without one pays nothing, and where no tenant has one nothing is
 * read (limits_cache.c).  Whether the tenant has a pool is asked again
 * under the newest snapshot once the enrollment holds a share of the
 * tenant's pool lock, which set_ip_pool takes exclusively before it writes
 * (enr_await_pool_change): a pool set while an enrollment of the tenant is
 * under way waits for its commit, and one that committed before is seen,
 * so no node committed after a tenant's pool is left without an address.
 * The one window left is the database's first pool: where no tenant had
 * one, the enrollments take no lock (the hot path stays as it was), and one
 * past that question when the first pool is set may commit after it
 * without an address.  Closing that too would hold up every enrollment of
 * every tenant on a lock, which a tenant admin's call must not cause.
 *
 * Cost.  While the pool has addresses above the highest held, an address
 * is one index probe.  After that (the pool's last address handed out),
 * each new node reads the held addresses in order up to the first gap,
 * and with none, all of them joined to their nodes for the one removed
 * longest ago: a pool much larger than the fleet keeps to the first case.
 *
 * src/placement.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"

#include "enrollment.h"
#include "probe.h"

static EnrProbeTable group_by_name = {
	.relname = "node_group",
	.indexname = "node_group_pkey",
	.eqproc = F_TEXTEQ,
	.eqproc2 = F_TEXTEQ,
	.nkeys = 2,
	.ncols = 2,
	.cols = {"tenant", "name"}
};

/* Create the group $2 of tenant $1 for actor $3, and audit it */
static EnrPlan create_group_plan = {
	.sql = "WITH g AS ("
	"  INSERT INTO enrollment.node_group (tenant, name, created_by) VALUES ($1, $2, $3)"
	"  RETURNING name)"
	" INSERT INTO enrollment.audit_event (tenant, actor, action, details, object_type, object_id)"
	" SELECT $1, $3, 'group_created', '{}'::jsonb, 'group', g.name FROM g",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID}
};

/*
 * The lock an enrollment that would create a group holds to its commit, on
 * the group's (tenant, name): a lock tag of the advisory kind in a space of
 * the extension's own, which pg_advisory_lock() cannot reach (its spaces
 * are 1 and 2)
 */
#define ENR_GROUP_LOCK_SPACE 3

/*
 * The lock on a tenant's pool setting: every enrollment that creates a node
 * holds a share of it to its commit where any tenant has a pool, and
 * set_ip_pool takes it exclusively (tenant hashed; a collision only makes
 * two tenants wait for each other)
 */
#define ENR_POOL_LOCK_SPACE 4

static EnrProbeTable pool_by_tenant = {
	.relname = "tenant_setting",
	.indexname = "tenant_setting_pkey",
	.eqproc = F_TEXTEQ,
	.ncols = 2,
	.cols = {"tenant", "ip_pool"}
};

/* the pool again, under the row lock */
static EnrPlan lock_pool_plan = {
	.sql = "SELECT s.ip_pool FROM enrollment.tenant_setting AS s"
	" WHERE s.tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/* the pool's first and last host address, with a full mask: $2 the pool */
#define POOL_BOUNDS \
	"WITH m AS (SELECT CASE pg_catalog.family($2) WHEN 4 THEN 32 ELSE 128 END AS bits)," \
	" b AS (SELECT pg_catalog.set_masklen($2::pg_catalog.inet, m.bits) OPERATOR(pg_catalog.+) 1 AS lo," \
	"              pg_catalog.set_masklen(pg_catalog.broadcast($2), m.bits) OPERATOR(pg_catalog.-) 1 AS hi" \
	"         FROM m) "

/*
 * A free address of the pool, or NULL: the one after the highest held
 * (one index probe from the top), else the pool's first if free, else the
 * one after the first held address whose successor is not held (one pass
 * over the held addresses in index order, up to that gap).  $1 tenant,
 * $2 pool.
 */
static EnrPlan free_address_plan = {
	.sql = POOL_BOUNDS
	"SELECT COALESCE("
	"  (SELECT CASE WHEN t.top IS NULL THEN b.lo"
	"               WHEN t.top OPERATOR(pg_catalog.<) b.hi THEN t.top OPERATOR(pg_catalog.+) 1 END"
	"     FROM (SELECT pg_catalog.max(a.address) AS top FROM enrollment.node_address AS a"
	"            WHERE a.tenant OPERATOR(pg_catalog.=) $1"
	"              AND a.address OPERATOR(pg_catalog.>=) b.lo"
	"              AND a.address OPERATOR(pg_catalog.<=) b.hi) AS t),"
	"  (SELECT b.lo WHERE NOT EXISTS (SELECT FROM enrollment.node_address AS h"
	"                                  WHERE h.tenant OPERATOR(pg_catalog.=) $1"
	"                                    AND h.address OPERATOR(pg_catalog.=) b.lo)),"
	"  (SELECT g.address OPERATOR(pg_catalog.+) 1"
	"     FROM (SELECT a.address, pg_catalog.lead(a.address) OVER (ORDER BY a.address) AS next"
	"             FROM enrollment.node_address AS a"
	"            WHERE a.tenant OPERATOR(pg_catalog.=) $1"
	"              AND a.address OPERATOR(pg_catalog.>=) b.lo"
	"              AND a.address OPERATOR(pg_catalog.<=) b.hi"
	"            ORDER BY a.address) AS g"
	"    WHERE g.address OPERATOR(pg_catalog.<) b.hi"
	"      AND (g.next IS NULL OR g.next OPERATOR(pg_catalog.>) (g.address OPERATOR(pg_catalog.+) 1))"
	"    ORDER BY g.address LIMIT 1))"
	"  FROM b",
	.nargs = 2,
	.argtypes = {TEXTOID, CIDROID}
};

/*
 * Take the address of the pool's node removed longest ago: its row in
 * node_address goes, and the node's copy with it
 */
static EnrPlan reclaim_address_plan = {
	.sql = POOL_BOUNDS ","
	" r AS (SELECT a.address, n.node_id FROM b, enrollment.node_address AS a"
	"         JOIN enrollment.node_record AS n ON n.node_id OPERATOR(pg_catalog.=) a.node_id"
	"        WHERE a.tenant OPERATOR(pg_catalog.=) $1"
	"          AND a.address OPERATOR(pg_catalog.>=) b.lo AND a.address OPERATOR(pg_catalog.<=) b.hi"
	"          AND n.status OPERATOR(pg_catalog.=) 'removed'"
	"        ORDER BY n.removed_at, n.node_id LIMIT 1 FOR UPDATE OF a),"
	" d AS (DELETE FROM enrollment.node_address AS a USING r"
	"        WHERE a.tenant OPERATOR(pg_catalog.=) $1 AND a.address OPERATOR(pg_catalog.=) r.address),"
	" u AS (UPDATE enrollment.node_record AS n SET private_ip = NULL FROM r"
	"        WHERE n.node_id OPERATOR(pg_catalog.=) r.node_id)"
	"SELECT r.address FROM r",
	.nargs = 2,
	.argtypes = {TEXTOID, CIDROID}
};

/* The new node's address, held: $1 tenant, $2 address, $3 node_id */
static EnrPlan record_address_plan = {
	.sql = "INSERT INTO enrollment.node_address (tenant, address, node_id) VALUES ($1, $2, $3)",
	.nargs = 3,
	.argtypes = {TEXTOID, INETOID, UUIDOID}
};

/* Has the tenant the group, as of now (this transaction's writes included)? */
static bool
group_exists_now(Datum tenant, text *node_group)
{
	Datum		v[2];
	bool		n[2];
	bool		found;

	CommandCounterIncrement();
	PushActiveSnapshot(GetLatestSnapshot());
	/* an error unwinds the snapshot stack with the (sub)transaction */
	found = enr_probe2(&group_by_name, tenant, PointerGetDatum(node_group), v, n);
	PopActiveSnapshot();
	return found;
}

static uint32
text_hash(Datum t)
{
	text	   *x = DatumGetTextPP(t);

	return hash_bytes((const unsigned char *) VARDATA_ANY(x), VARSIZE_ANY_EXHDR(x));
}

/*
 * Make sure the tenant has the group node_group (not 'default'), creating
 * it if need be.  A group that exists is found by a probe under the newest
 * snapshot, and nothing is locked or written.  One that does not is created
 * under a lock of its name held to the commit, after looking again: so of
 * concurrent enrollments that name a new group one creates it and the
 * others find it once it has committed, at any isolation level (an INSERT
 * ... ON CONFLICT DO NOTHING would raise a serialization failure under
 * REPEATABLE READ for a row committed after the snapshot).  Between
 * SPI_connect and SPI_finish.
 */
void
enr_ensure_group(Datum tenant, text *node_group)
{
	LOCKTAG		tag;
	Datum		a[3];

	if (enr_text_is(node_group, "default") || group_exists_now(tenant, node_group))
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, text_hash(tenant),
						 text_hash(PointerGetDatum(node_group)), ENR_GROUP_LOCK_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	if (group_exists_now(tenant, node_group))
		return;					/* created by the one that held the lock */
	a[0] = tenant;
	a[1] = PointerGetDatum(node_group);
	a[2] = CStringGetTextDatum(enr_current_actor());
	if (enr_execute(&create_group_plan, a, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not create the node group");
}

static void
lock_pool_setting(Datum tenant, LOCKMODE mode)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, text_hash(tenant), 0, ENR_POOL_LOCK_SPACE);
	(void) LockAcquire(&tag, mode, false, false);
}

/*
 * Before an enrollment of a new node locks anything of its tenant (its
 * setting row first of all, for the node limit): where any tenant has a
 * pool, hold a share of the tenant's pool lock to the commit, so that
 * set_ip_pool, which takes it exclusively before it locks that row, waits
 * for this enrollment, and enr_allocate_address, asking later under the
 * newest snapshot, sees a pool set before.  Where no tenant has a pool it
 * costs nothing.
 */
void
enr_await_pool_change(Datum tenant)
{
	if (enr_any_ip_pool())
		lock_pool_setting(tenant, ShareLock);
}

/*
 * enrollment.lock_pool_setting(tenant text): set_ip_pool's first step.
 * Waits for the tenant's enrollments under way and holds new ones back
 * until the commit.  Revoked from PUBLIC; the caller checks the role.
 */
PG_FUNCTION_INFO_V1(enrollment_lock_pool_setting);
Datum
enrollment_lock_pool_setting(PG_FUNCTION_ARGS)
{
	lock_pool_setting(PG_GETARG_DATUM(0), ExclusiveLock);
	PG_RETURN_VOID();
}

/*
 * Run a plan of one inet column under the newest snapshot (with the
 * foreign keys' triggers: reclaim_address_plan updates a node); false if
 * it returns no address
 */
static bool
address_from(EnrPlan *plan, Datum tenant, Datum pool, Datum *address)
{
	Datum		a[2] = {tenant, pool};
	bool		isnull;
	int			rc;

	CommandCounterIncrement();	/* this transaction's own nodes too */
	rc = SPI_execute_snapshot(enr_prepare(plan), a, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, false, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not look for a free address (%d)", rc);
	if (SPI_processed != 1)
		return false;
	*address = enr_getattr(0, 1, &isnull);
	if (isnull)
		return false;
	/* kept past the next statement's results, until SPI_finish */
	*address = datumCopy(*address, false, -1);
	return true;
}

/*
 * The private address of a new node of the tenant, in *address (an inet
 * in the memory of the caller's SPI procedure): false where the tenant has
 * no pool.  Raises ip_pool_exhausted when the pool has no address left.
 * Between SPI_connect and SPI_finish, after enr_await_pool_change and the
 * node limit's check (which may lock the same row) and before the approval
 * rule's and the token's locks; the caller records the address once the
 * node is written (enr_record_address), still under the setting row's
 * lock.
 */
bool
enr_allocate_address(Datum tenant, const char *token_public_part, Datum *address)
{
	Datum		v[2];
	bool		n[2];
	Datum		a[1] = {tenant};
	Datum		pool;
	bool		isnull;
	char	   *pool_text;

	if (!enr_any_ip_pool() || !enr_probe_newest(&pool_by_tenant, tenant, v, n) || n[1])
		return false;

	/* the newest version: under REPEATABLE READ, one newer than the snapshot */
	if (SPI_execute_snapshot(enr_prepare(&lock_pool_plan), a, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the setting row of the tenant");
	if (SPI_processed != 1)
		return false;			/* deleted meanwhile */
	pool = enr_getattr(0, 1, &isnull);
	if (isnull)
		return false;			/* taken away meanwhile */
	pool = datumCopy(pool, false, -1);	/* past the next statements' results */

	if (address_from(&free_address_plan, tenant, pool, address) ||
		address_from(&reclaim_address_plan, tenant, pool, address))
		return true;

	pool_text = DatumGetCString(DirectFunctionCall1(cidr_out, pool));
	enr_count_enroll(ENROLL_IP_POOL_EXHAUSTED);
	ereport(ERROR,
			(errcode(ERRCODE_ENR_IP_POOL_EXHAUSTED),
			 errmsg("ip_pool_exhausted"),
			 errdetail("Every address of the tenant's pool %s is held by a node that is not removed; token %s enrolled nothing.",
					   pool_text, token_public_part),
			 errhint("Remove nodes that are gone (their addresses are handed on), or give the tenant a larger pool (enrollment.set_ip_pool).")));
	return false;				/* keep the compiler quiet */
}

/*
 * Note that the new node node_id holds the address enr_allocate_address
 * gave it.  Between SPI_connect and SPI_finish, in the same transaction.
 */
void
enr_record_address(Datum tenant, Datum address, Datum node_id)
{
	Datum		a[3] = {tenant, address, node_id};

	if (enr_execute(&record_address_plan, a, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the address of the node");
}
