/*-------------------------------------------------------------------------
 *
 * probe.c
 *	  Direct unique-index lookups of the extension's own tables.
 *
 * The per-request read paths (check_token, authenticate_node,
 * verify_request) each fetch at most one row by a unique key.  Going
 * through SPI and the executor for that costs more than the rest of the
 * call; here the row is fetched with one B-tree probe and one heap fetch
 * under the statement's snapshot, the way the executor's own index scan
 * does, without parse analysis, plan cache or portal.  No SQL text is run,
 * so the caller's search_path cannot influence what is read, and the
 * functions need not be SECURITY DEFINER (the access methods do not check
 * table privileges; the callers decide what they reveal).
 *
 * Relation and index OIDs and attribute numbers are resolved by name once
 * per backend and forgotten by a relcache invalidation callback, so DROP
 * and CREATE EXTENSION in a running session is seen at the next call.
 *
 * src/probe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "executor/tuptable.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "probe.h"

#define ENR_SCHEMA	"enrollment"

/* tables resolved in this backend, for the invalidation callback */
static EnrProbeTable *resolved[8];
static int	nresolved = 0;
static bool callback_registered = false;

/* does enrollment_token have retention_from (0.5.0)?  -1: not known yet */
static int	has_retention_from = -1;
static Oid	retention_relid = InvalidOid;

/* Forget resolved OIDs when a relation changes (or all of them, relid 0) */
static void
probe_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == retention_relid)
		has_retention_from = -1;
	for (int i = 0; i < nresolved; i++)
	{
		EnrProbeTable *t = resolved[i];

		if (relid == InvalidOid || relid == t->relid || relid == t->indexid)
			t->relid = InvalidOid;
	}
}

static void
schema_missing(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("the tables of extension \"enrollment\" are missing"),
			 errdetail("Schema \"%s\" has no usable table or index of that name.", ENR_SCHEMA),
			 errhint("Run CREATE EXTENSION enrollment CASCADE in this database.")));
}

static bool probe(EnrProbeTable *t, Datum key1, Datum key2, Datum *values, bool *nulls,
				  ItemPointer tid);

static void
register_callback(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(probe_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
}

/*
 * Has this database's enrollment_token the retention_from column of 0.5.0?
 * A library newer than the extension's SQL objects (before ALTER EXTENSION
 * UPDATE has run) keeps writing tokens the way their version expects.
 * Known once per backend until the table changes.
 */
bool
enr_has_retention_from(void)
{
	if (has_retention_from < 0)
	{
		Oid			nsp = get_namespace_oid(ENR_SCHEMA, true);
		Oid			relid = OidIsValid(nsp) ? get_relname_relid("enrollment_token", nsp) : InvalidOid;

		if (!OidIsValid(relid))
			schema_missing();
		register_callback();
		retention_relid = relid;
		has_retention_from = get_attnum(relid, "retention_from") != InvalidAttrNumber;
	}
	return has_retention_from == 1;
}

static inline int
nkeys(const EnrProbeTable *t)
{
	return t->nkeys == 2 ? 2 : 1;
}

/*
 * Resolve a table's OIDs and the attribute numbers of its columns by name,
 * and check that the index is a unique single-column B-tree on the key.
 */
static void
resolve(EnrProbeTable *t)
{
	Oid			nsp = get_namespace_oid(ENR_SCHEMA, true);
	Oid			relid;
	Oid			indexid;
	Relation	rel;
	Relation	idx;
	bool		found;

	register_callback();
	if (!OidIsValid(nsp))
		schema_missing();
	relid = get_relname_relid(t->relname, nsp);
	indexid = get_relname_relid(t->indexname, nsp);
	if (!OidIsValid(relid) || !OidIsValid(indexid) ||
		get_rel_relkind(relid) != RELKIND_RELATION ||
		get_rel_relkind(indexid) != RELKIND_INDEX)
		schema_missing();

	rel = table_open(relid, AccessShareLock);
	for (int c = 0; c < t->ncols; c++)
	{
		t->attnums[c] = InvalidAttrNumber;
		for (int a = 0; a < RelationGetDescr(rel)->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), t->cols[c]) == 0)
				t->attnums[c] = att->attnum;
		}
		if (t->attnums[c] == InvalidAttrNumber)
			schema_missing();
	}
	table_close(rel, NoLock);

	idx = index_open(indexid, AccessShareLock);
	found = idx->rd_index->indrelid == relid && idx->rd_index->indisunique &&
		idx->rd_index->indnkeyatts == nkeys(t) &&
		idx->rd_rel->relam == BTREE_AM_OID && RelationGetIndexPredicate(idx) == NIL;
	for (int k = 0; found && k < nkeys(t); k++)
		found = idx->rd_index->indkey.values[k] == t->attnums[k];
	index_close(idx, NoLock);
	if (!found)
		schema_missing();

	t->indexid = indexid;
	t->relid = relid;
	for (int i = 0; i < nresolved; i++)
		if (resolved[i] == t)
			return;
	Assert(nresolved < lengthof(resolved));
	resolved[nresolved++] = t;
}

/* Fetch the row whose key column (cols[0]) equals key: see probe() */
bool
enr_probe(EnrProbeTable *t, Datum key, Datum *values, bool *nulls)
{
	Assert(nkeys(t) == 1);
	return probe(t, key, (Datum) 0, values, nulls, NULL);
}

/* Fetch the row whose two key columns equal key1 and key2: see probe() */
bool
enr_probe2(EnrProbeTable *t, Datum key1, Datum key2, Datum *values, bool *nulls)
{
	Assert(nkeys(t) == 2);
	return probe(t, key1, key2, values, nulls, NULL);
}

/*
 * Fetch the row whose key equals the given one.  On success the requested
 * columns are in values/nulls, copied into the current memory context, and
 * true is returned.  Reads under the active snapshot (the statement's),
 * like a query would.
 */
static bool
probe(EnrProbeTable *t, Datum key1, Datum key2, Datum *values, bool *nulls,
	  ItemPointer tid)
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey[2];
	HeapTuple	tuple = NULL;
	Snapshot	snapshot;

	if (!OidIsValid(t->relid))
		resolve(t);

	rel = table_open(t->relid, AccessShareLock);
	idx = index_open(t->indexid, AccessShareLock);
	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();

	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, t->eqproc, key1);
	if (nkeys(t) == 2)
		ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, t->eqproc2, key2);
	/* compare as the index orders (text keys: the column's collation) */
	for (int k = 0; k < nkeys(t); k++)
		skey[k].sk_collation = idx->rd_indcollation[k];
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, idx, snapshot, nkeys(t), 0);
	index_rescan(scan, skey, nkeys(t), NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		tuple = ExecCopySlotHeapTuple(slot);
		if (tid)
			*tid = slot->tts_tid;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	if (tuple != NULL)
	{
		/* one pass over the tuple; heap_getattr per column would rescan it */
		TupleDesc	desc = RelationGetDescr(rel);
		Datum	   *all = palloc(desc->natts * sizeof(Datum));
		bool	   *allnulls = palloc(desc->natts * sizeof(bool));

		heap_deform_tuple(tuple, desc, all, allnulls);
		for (int c = 0; c < t->ncols; c++)
		{
			values[c] = all[t->attnums[c] - 1];
			nulls[c] = allnulls[t->attnums[c] - 1];
		}
	}

	/* locks are kept to the end of the transaction, as a query keeps them */
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return tuple != NULL;
}

/*
 * enr_probe under a new snapshot that also sees what this transaction has
 * written so far, in the same statement too (the way a statement run through
 * SPI by a volatile function reads): for paths that go on to write.  With
 * tid, also where the row version read is (for enr_direct_lock).
 */
bool
enr_probe_latest(EnrProbeTable *t, Datum key, Datum *values, bool *nulls, ItemPointer tid)
{
	bool		found;

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	/* an error unwinds the snapshot stack with the (sub)transaction */
	found = probe(t, key, (Datum) 0, values, nulls, tid);
	PopActiveSnapshot();
	return found;
}
