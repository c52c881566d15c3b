/*-------------------------------------------------------------------------
 *
 * limits_cache.c
 *	  Whether any tenant has a node limit, approves new nodes by hand or
 *	  has an address pool, and any token a rate (0.7.0), remembered per
 *	  backend, so that the per-request paths read tenant_setting and
 *	  token_rate only where a limit, a manual approval or a pool exists.
 *
 * Most databases set neither limit.  Without this, every enrollment of a
 * new node would probe tenant_setting, and every check_token of a reusable
 * token would also probe token_rate: two relation and index openings,
 * about 7 k instructions each (bench/README.md).
 *
 * What is remembered is cleared by a relcache invalidation of either
 * table.  Every row written to them, however, and a TRUNCATE fire the
 * trigger enrollment.limits_changed() (ENABLE ALWAYS: also with
 * session_replication_role = replica and in logical apply), which queues
 * such an invalidation (one per table and transaction, however many rows).  PostgreSQL sends it to every backend of the
 * database when the writing transaction commits (at COMMIT PREPARED for a
 * prepared one), after the commit became visible, and a hot standby
 * replays it with the commit record.  Each question first takes the
 * invalidations sent so far; a backend that has to look again reads the
 * tables under a snapshot taken after that, so it sees every commit whose
 * invalidation it took, and one it did not take yet clears what it learns
 * at its next question.
 *
 * Before ALTER EXTENSION UPDATE to 0.7.0 there is no node_limit,
 * node_approval or ip_pool column and no token_rate table: nothing is remembered, and
 * every answer is no.
 *
 * src/limits_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "enrollment.h"
#include "probe.h"

PG_FUNCTION_INFO_V1(enrollment_limits_changed);

typedef struct LimitsCache
{
	bool		valid;			/* the answers below hold */
	bool		any_node_limit;
	bool		any_manual_approval;
	bool		any_token_rate;
	bool		any_ip_pool;
	Oid			setting_relid;
	Oid			rate_relid;
} LimitsCache;

static LimitsCache cache;
static bool callback_registered = false;
static uint64 invalidations = 0;	/* of either table, taken so far */
static Oid	node_record_relid = InvalidOid;	/* InvalidOid: look it up */

static void
limits_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == cache.setting_relid || relid == cache.rate_relid)
	{
		cache.valid = false;
		invalidations++;
	}
	if (relid == InvalidOid || relid == node_record_relid)
		node_record_relid = InvalidOid;
}

static void
register_callback(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(limits_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
}

/*
 * The OID of node_record, which every enrollment of a new node locks
 * before it asks for its tenant's limit (node_limit.c): looked up once,
 * until the table changes.
 */
Oid
enr_node_record_relid(void)
{
	if (!OidIsValid(node_record_relid))
	{
		Oid			relid = enr_schema_relid_required("node_record");

		register_callback();
		node_record_relid = relid;
	}
	return node_record_relid;
}

/*
 * Does the table hold a row (with a non-null attnum, unless it is
 * InvalidAttrNumber) visible to the snapshot?
 */
static bool
has_row(Relation rel, AttrNumber attnum, Snapshot snapshot)
{
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	HeapTuple	tuple;
	bool		found = false;

	while (!found && (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		found = attnum == InvalidAttrNumber ||
			!heap_attisnull(tuple, attnum, RelationGetDescr(rel));
	table_endscan(scan);
	return found;
}

/*
 * Answer both questions again from the tables.  A table the database does
 * not have yet is looked for again at the next question (ALTER EXTENSION
 * UPDATE sends no invalidation that says it was made).
 */
static void
fill(void)
{
	Oid			setting = enr_schema_relid("tenant_setting");
	Oid			rate = enr_schema_relid("token_rate");
	AttrNumber	limit_att = OidIsValid(setting) ? get_attnum(setting, "node_limit") : InvalidAttrNumber;
	AttrNumber	approval_att = OidIsValid(setting) ? get_attnum(setting, "node_approval") : InvalidAttrNumber;
	AttrNumber	pool_att = OidIsValid(setting) ? get_attnum(setting, "ip_pool") : InvalidAttrNumber;
	Relation	setting_rel = NULL;
	Relation	rate_rel = NULL;
	Snapshot	snapshot;
	uint64		seen;

	register_callback();
	cache.setting_relid = setting;
	cache.rate_relid = rate;

	/*
	 * Lock the tables first (taking a lock takes the invalidations sent so
	 * far), then the snapshot: it sees every commit whose invalidation was
	 * taken.  One taken later, during the reading, leaves the answers
	 * unremembered, to be read again at the next question.
	 */
	if (limit_att != InvalidAttrNumber)
		setting_rel = table_open(setting, AccessShareLock);
	if (OidIsValid(rate))
		rate_rel = table_open(rate, AccessShareLock);
	AcceptInvalidationMessages();
	seen = invalidations;
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	cache.any_node_limit = setting_rel != NULL && has_row(setting_rel, limit_att, snapshot);
	cache.any_manual_approval = setting_rel != NULL && approval_att != InvalidAttrNumber &&
		has_row(setting_rel, approval_att, snapshot);
	cache.any_ip_pool = setting_rel != NULL && pool_att != InvalidAttrNumber &&
		has_row(setting_rel, pool_att, snapshot);
	cache.any_token_rate = rate_rel != NULL && has_row(rate_rel, InvalidAttrNumber, snapshot);
	UnregisterSnapshot(snapshot);
	if (setting_rel)
		table_close(setting_rel, NoLock);
	if (rate_rel)
		table_close(rate_rel, NoLock);
	cache.valid = setting_rel != NULL && rate_rel != NULL && invalidations == seen;
}

static void
refresh(void)
{
	AcceptInvalidationMessages();
	if (!cache.valid)
		fill();
}

/* May some tenant have a node limit?  (No: no tenant has one.) */
bool
enr_any_node_limit(void)
{
	refresh();
	return cache.any_node_limit;
}

/* May some tenant approve new nodes by hand?  (No: none does.) */
bool
enr_any_manual_approval(void)
{
	refresh();
	return cache.any_manual_approval;
}

/* May some token have a rate?  (No: no token has one.) */
bool
enr_any_token_rate(void)
{
	refresh();
	return cache.any_token_rate;
}

/* May some tenant have an address pool?  (No: none has.) */
bool
enr_any_ip_pool(void)
{
	refresh();
	return cache.any_ip_pool;
}

/*
 * enrollment.limits_changed(): the row (and TRUNCATE) trigger of
 * tenant_setting and token_rate.  Queues a relcache invalidation of the
 * table, which every backend of the database receives when this
 * transaction commits; PostgreSQL queues one per table and transaction.
 */
Datum
enrollment_limits_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrollment.limits_changed() is a trigger function"),
				 errdetail("It was called outside a trigger."),
				 errhint("Leave it to the triggers of enrollment.tenant_setting and enrollment.token_rate.")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
