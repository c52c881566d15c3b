/*-------------------------------------------------------------------------
 *
 * node_count.c
 *	  Counting nodes for the limits of 0.7.0 by direct index scans of
 *	  node_record: a tenant's nodes that are not removed (node_limit.c)
 *	  and a token's enrollments since a time (rate_limit.c); and summing
 *	  the changes of a tenant's kept node count (node_limit.c).
 *
 * No SQL runs here.  check_token, which is not SECURITY DEFINER, reports
 * both limits for callers that may only execute it (no SELECT on the
 * tables, whatever their search_path), and enroll and create_token save an
 * executor start-up per count.  The scans read under the snapshot given,
 * which the caller picks (the newest, for a count made under a lock).
 *
 * src/node_count.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "enrollment.h"
#include "probe.h"

/* What scan_through adds up over the rows it finds */
typedef enum
{
	SCAN_COUNT,					/* every row */
	SCAN_COUNT_NOT_REMOVED,		/* rows whose column (status) is not removed */
	SCAN_SUM					/* the int4 column of each row */
} ScanMeasure;

/*
 * Scan the table relid through indexname with the keys, under the
 * snapshot, and add up the rows found (measure, over column colname where
 * it needs one)
 */
static int64
scan_through(Oid relid, const char *indexname, ScanKey keys, int nkeys,
			 Snapshot snapshot, ScanMeasure measure, const char *colname)
{
	Relation	heap = table_open(relid, AccessShareLock);
	Relation	idx = index_open(enr_schema_relid_required(indexname), AccessShareLock);
	AttrNumber	col = colname ? get_attnum(RelationGetRelid(heap), colname) : InvalidAttrNumber;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	IndexScanDesc scan = index_beginscan(heap, idx, snapshot, nkeys, 0);
	int64		n = 0;

	if (measure != SCAN_COUNT && col == InvalidAttrNumber)
		elog(ERROR, "%s has no column %s", RelationGetRelationName(heap), colname ? colname : "(none)");
	/* compare as the index orders (text keys: the column's collation) */
	for (int k = 0; k < nkeys; k++)
		keys[k].sk_collation = idx->rd_indcollation[k];
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull = true;
		Datum		d = measure == SCAN_COUNT ? (Datum) 0 : slot_getattr(slot, col, &isnull);

		if (measure == SCAN_COUNT)
			n++;
		else if (measure == SCAN_SUM)
			n += isnull ? 0 : DatumGetInt32(d);
		else if (isnull || !enr_text_is(DatumGetTextPP(d), "removed"))
			n++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(heap, NoLock);
	return n;
}

/* The tenant's nodes that are not removed (index on tenant, enrolled_at) */
int64
enr_count_tenant_nodes(Datum tenant, Snapshot snapshot)
{
	ScanKeyData key[1];

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_TEXTEQ, tenant);
	return scan_through(enr_node_record_relid(), "node_record_tenant_enrolled_at_idx", key, 1, snapshot,
						SCAN_COUNT_NOT_REMOVED, "status");
}

/*
 * The changes appended to the tenant's kept node count since its last fold
 * (tenant_node_change, node_limit.c), summed: rows visible to the snapshot
 */
int64
enr_sum_node_changes(Datum tenant, Snapshot snapshot)
{
	ScanKeyData key[1];

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_TEXTEQ, tenant);
	return scan_through(enr_schema_relid_required("tenant_node_change"), "tenant_node_change_tenant_idx",
						key, 1, snapshot,
						SCAN_SUM, "delta");
}

/*
 * The nodes the token enrolled after since (index on enrolled_by,
 * enrolled_at: one range of it)
 */
int64
enr_count_token_nodes_since(Datum token_id, TimestampTz since, Snapshot snapshot)
{
	ScanKeyData key[2];

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_UUID_EQ, token_id);
	ScanKeyInit(&key[1], 2, BTGreaterStrategyNumber, F_TIMESTAMPTZ_GT,
				TimestampTzGetDatum(since));
	return scan_through(enr_node_record_relid(), "node_record_enrolled_by_idx", key, 2, snapshot,
						SCAN_COUNT, NULL);
}
