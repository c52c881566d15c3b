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
 * The tables' and indexes' OIDs and column numbers are resolved once per
 * backend, as for probe.c's lookups, and forgotten when a table changes.
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
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "enrollment.h"
#include "probe.h"

/* What scan_through adds up over the rows it finds */
typedef enum
{
	SCAN_COUNT,					/* every row */
	SCAN_COUNT_NOT_REMOVED,		/* rows whose measured column (status) is not removed */
	SCAN_SUM					/* the measured int4 column of each row */
} ScanMeasure;

/*
 * The three scans: the key columns (the index's first ones), then the column
 * measured, if any.  probe.c resolves the OIDs and attribute numbers once
 * per backend; each caller builds its own scan keys (operators included).
 */
static EnrProbeTable tenant_nodes = {
	.relname = "node_record",
	.indexname = "node_record_tenant_enrolled_at_idx",
	.nkeys = 1,
	.scan = true,
	.ncols = 2,
	.cols = {"tenant", "status"}
};
static EnrProbeTable token_nodes = {
	.relname = "node_record",
	.indexname = "node_record_enrolled_by_idx",
	.nkeys = 2,
	.scan = true,
	.ncols = 2,
	.cols = {"enrolled_by", "enrolled_at"}
};
static EnrProbeTable tenant_changes = {
	.relname = "tenant_node_change",
	.indexname = "tenant_node_change_tenant_idx",
	.nkeys = 1,
	.scan = true,
	.ncols = 2,
	.cols = {"tenant", "delta"}
};

/*
 * Scan the table through its index with its t->nkeys keys, under the
 * snapshot, and add up the rows found (measure, over the column listed
 * after the keys)
 */
static int64
scan_through(EnrProbeTable *t, ScanKey keys, Snapshot snapshot, ScanMeasure measure)
{
	int			nkeys = t->nkeys;
	Relation	heap;
	Relation	idx;
	AttrNumber	col;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	int64		n = 0;

	enr_probe_resolve(t);
	col = measure == SCAN_COUNT ? InvalidAttrNumber : t->attnums[nkeys];
	heap = table_open(t->relid, AccessShareLock);
	idx = index_open(t->indexid, AccessShareLock);
	slot = table_slot_create(heap, NULL);
	scan = index_beginscan(heap, idx, snapshot, nkeys, 0);
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
	return scan_through(&tenant_nodes, key, snapshot, SCAN_COUNT_NOT_REMOVED);
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
	return scan_through(&tenant_changes, key, snapshot, SCAN_SUM);
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
	return scan_through(&token_nodes, key, snapshot, SCAN_COUNT);
}
