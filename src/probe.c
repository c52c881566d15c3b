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
 * For tables keyed by one bigint, the backend also keeps a hint of where
 * each recently read row was: the heap TID the index gave and the shared
 * buffer that held its block.  The next read of that key goes straight to
 * the heap page and skips the index.  A hint is never trusted for the
 * answer: the buffer must still hold that block of that relation file, the
 * heap finds the row version and judges it visible under the statement's
 * snapshot exactly as it does for an index scan, and the key of what it
 * found must be the one asked for; otherwise the B-tree is probed as
 * before.  An update, revocation or delete is therefore seen at the next
 * call however it was written (by a query, WAL replay on a standby,
 * logical apply, with triggers disabled): nothing of the row is cached.
 *
 * src/probe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "probe.h"


/* Where a row of a bigint-keyed table was last found (see the header) */
typedef struct EnrProbeHint
{
	int64		key;
	ItemPointerData tid;		/* the index's TID: root of the HOT chain */
	Buffer		buffer;			/* InvalidBuffer: empty slot */
} EnrProbeHint;

#define PROBE_HINTS 1024		/* slots per table, a power of two (24 kB) */

/*
 * tables resolved in this backend, for the invalidation callback: every
 * EnrProbeTable of the library fits (17 in 0.7.0), with room to grow
 */
static EnrProbeTable *resolved[32];
static int	nresolved = 0;
static bool callback_registered = false;

/* does enrollment_token have retention_from (0.5.0)?  -1: not known yet */
static int	has_retention_from = -1;
static Oid	retention_relid = InvalidOid;

/* enrollment.token_use (0.6.0), once found; InvalidOid: look again */
static Oid	token_use_relid = InvalidOid;

/* has node_record the placement columns (0.7.0)?  -1: not known yet */
static int	has_node_placement = -1;
static Oid	placement_relid = InvalidOid;

/* Forget resolved OIDs when a relation changes (or all of them, relid 0) */
static void
probe_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == retention_relid)
		has_retention_from = -1;
	if (relid == InvalidOid || relid == token_use_relid)
		token_use_relid = InvalidOid;
	if (relid == InvalidOid || relid == placement_relid)
		has_node_placement = -1;
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

/*
 * The OID of a table or index of the extension's schema, or InvalidOid when
 * the database has none of that name (the extension not created there, or
 * not updated yet to the release that made it)
 */
Oid
enr_schema_relid(const char *relname)
{
	Oid			nsp = get_namespace_oid(ENR_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
}

/* The same, for one that must be there: a missing one is an error */
Oid
enr_schema_relid_required(const char *relname)
{
	Oid			relid = enr_schema_relid(relname);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the tables of extension \"enrollment\" are missing"),
				 errdetail("Schema \"%s\" has no table or index \"%s\".", ENR_SCHEMA, relname),
				 errhint("Run CREATE EXTENSION enrollment CASCADE in this database, or ALTER EXTENSION enrollment UPDATE.")));
	return relid;
}

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
		Oid			relid = enr_schema_relid("enrollment_token");

		if (!OidIsValid(relid))
			schema_missing();
		register_callback();
		retention_relid = relid;
		has_retention_from = get_attnum(relid, "retention_from") != InvalidAttrNumber;
	}
	return has_retention_from == 1;
}

/*
 * Has this database the token_use table of 0.6.0?  Only a table that exists
 * is remembered, so a backend sees it as soon as ALTER EXTENSION UPDATE has
 * made it; until then enroll counts every use in the token row, as before.
 */
bool
enr_has_token_use(void)
{
	if (!OidIsValid(token_use_relid))
	{
		register_callback();
		token_use_relid = enr_schema_relid("token_use");
	}
	return OidIsValid(token_use_relid);
}

/*
 * Has this database's node_record the columns of a node's placement
 * (node_group, os, private_ip: 0.7.0)?  Before ALTER EXTENSION UPDATE,
 * enroll writes nodes without them.  Known once per backend until the
 * table changes.
 */
bool
enr_has_node_placement(void)
{
	if (has_node_placement < 0)
	{
		Oid			relid = enr_schema_relid("node_record");

		if (!OidIsValid(relid))
			schema_missing();
		register_callback();
		placement_relid = relid;
		has_node_placement = get_attnum(relid, "private_ip") != InvalidAttrNumber;
	}
	return has_node_placement == 1;
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
	Oid			relid;
	Oid			indexid;
	Relation	rel;
	Relation	idx;
	bool		found;
	bool		is_heap;
	bool		known;

	register_callback();
	relid = enr_schema_relid(t->relname);
	indexid = enr_schema_relid(t->indexname);
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
	is_heap = rel->rd_rel->relam == HEAP_TABLE_AM_OID;
	table_close(rel, NoLock);

	/*
	 * Immediate uniqueness: both the index path and the row hint return the
	 * one visible version of a key, which a deferrable index does not promise.
	 */
	idx = index_open(indexid, AccessShareLock);
	found = idx->rd_index->indrelid == relid &&
		(t->scan ||
		 (idx->rd_index->indisunique && idx->rd_index->indimmediate &&
		  idx->rd_index->indnkeyatts == nkeys(t))) &&
		idx->rd_index->indnkeyatts >= nkeys(t) &&
		idx->rd_rel->relam == BTREE_AM_OID && RelationGetIndexPredicate(idx) == NIL;
	for (int k = 0; found && k < nkeys(t); k++)
		found = idx->rd_index->indkey.values[k] == t->attnums[k];
	index_close(idx, NoLock);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index \"%s\" of extension \"enrollment\" cannot be used", t->indexname),
				 errdetail(t->scan ? "The scans of %s need a B-tree index beginning with their key, without a predicate."
						   : "The lookups of %s need a unique B-tree index on its key, not deferrable, without a predicate.",
						   t->relname),
				 errhint("Re-create the index as the extension's script does, or the extension.")));

	/* hints only where the key is one bigint and the table is heap */
	if (!t->scan && nkeys(t) == 1 && t->eqproc == F_INT8EQ && is_heap)
	{
		if (t->hints == NULL)
			t->hints = MemoryContextAlloc(TopMemoryContext, PROBE_HINTS * sizeof(EnrProbeHint));
		memset(t->hints, 0, PROBE_HINTS * sizeof(EnrProbeHint));
	}
	else if (t->hints != NULL)
	{
		pfree(t->hints);
		t->hints = NULL;
	}

	/* known to the invalidation callback before it is marked resolved */
	known = false;
	for (int i = 0; i < nresolved; i++)
		known |= resolved[i] == t;
	if (!known)
	{
		/* (only an Assert guarded this once, with room for 8 of what became 10) */
		if (nresolved >= (int) lengthof(resolved))
			elog(ERROR, "too many probe tables: %s would be table %d of %d", t->relname,
				 nresolved + 1, (int) lengthof(resolved));
		resolved[nresolved++] = t;
	}
	t->indexid = indexid;
	t->relid = relid;
}

/* Fetch the row whose key column (cols[0]) equals key: see probe() */
bool
enr_probe(EnrProbeTable *t, Datum key, Datum *values, bool *nulls)
{
	Assert(nkeys(t) == 1);
	return probe(t, key, (Datum) 0, values, nulls, NULL);
}

/*
 * Resolve a table's OIDs and attribute numbers now, if not yet (or since an
 * invalidation): for callers that scan it themselves (node_count.c)
 */
void
enr_probe_resolve(EnrProbeTable *t)
{
	if (!OidIsValid(t->relid))
		resolve(t);
}

/* Fetch the row whose two key columns equal key1 and key2: see probe() */
bool
enr_probe2(EnrProbeTable *t, Datum key1, Datum key2, Datum *values, bool *nulls)
{
	Assert(nkeys(t) == 2);
	return probe(t, key1, key2, values, nulls, NULL);
}

/* The hint slot of a bigint key */
static inline EnrProbeHint *
hint_slot(EnrProbeTable *t, Datum key)
{
	uint64		k = (uint64) DatumGetInt64(key);

	return &t->hints[murmurhash32((uint32) k ^ (uint32) (k >> 32)) & (PROBE_HINTS - 1)];
}

/*
 * Try the row's hinted place (see the file header).  Returns a copy of the
 * row version visible under snapshot if the hint led to it, else NULL: then
 * the caller probes the index, whose answer is the same when the hint was
 * right.  Not under SERIALIZABLE, where the index scan's predicate lock on
 * the key's leaf page is part of the answer.
 */
static HeapTuple
probe_hinted(EnrProbeTable *t, Relation rel, Datum key, Snapshot snapshot, ItemPointer tid)
{
	EnrProbeHint *h;
	ItemPointerData at;
	HeapTupleData found;
	HeapTuple	copy = NULL;
	bool		all_dead;
	bool		isnull;
	Datum		k;

	if (t->hints == NULL || !IsMVCCSnapshot(snapshot) || IsolationIsSerializable())
		return NULL;
	h = hint_slot(t, key);
	if (h->buffer == InvalidBuffer || h->key != DatumGetInt64(key) ||
		!ReadRecentBuffer(rel->rd_node, MAIN_FORKNUM, ItemPointerGetBlockNumber(&h->tid),
						  h->buffer))
		return NULL;

	/* what an index scan does on arriving at a heap page */
	heap_page_prune_opt(rel, h->buffer);
	at = h->tid;
	LockBuffer(h->buffer, BUFFER_LOCK_SHARE);
	if (heap_hot_search_buffer(&at, rel, h->buffer, snapshot, &found, &all_dead, true))
		copy = heap_copytuple(&found);
	LockBuffer(h->buffer, BUFFER_LOCK_UNLOCK);
	ReleaseBuffer(h->buffer);
	if (copy == NULL)
		return NULL;

	/* the slot may now hold another row: the key decides */
	k = heap_getattr(copy, t->attnums[0], RelationGetDescr(rel), &isnull);
	if (isnull || DatumGetInt64(k) != DatumGetInt64(key))
	{
		heap_freetuple(copy);
		return NULL;
	}
	pgstat_count_heap_fetch(rel);
	if (tid)
		*tid = at;
	return copy;
}

/*
 * Probe the unique index for the key; returns a copy of the visible row
 * version or NULL, and notes where it was for probe_hinted.
 */
static HeapTuple
probe_index(EnrProbeTable *t, Relation rel, Datum key1, Datum key2, Snapshot snapshot,
			ItemPointer tid)
{
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey[2];
	ItemPointerData root;
	HeapTuple	tuple = NULL;

	idx = index_open(t->indexid, AccessShareLock);
	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, t->eqproc, key1);
	if (nkeys(t) == 2)
		ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, t->eqproc2, key2);
	/* compare as the index orders (text keys: the column's collation) */
	for (int k = 0; k < nkeys(t); k++)
		skey[k].sk_collation = idx->rd_indcollation[k];
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, idx, snapshot, nkeys(t), 0);
	index_rescan(scan, skey, nkeys(t), NULL, 0);

	/* index_getnext_slot, keeping the TID the index gave */
	ItemPointerSetInvalid(&root);
	for (;;)
	{
		if (!scan->xs_heap_continue)
		{
			ItemPointer next = index_getnext_tid(scan, ForwardScanDirection);

			if (next == NULL)
				break;
			root = *next;
		}
		if (index_fetch_heap(scan, slot))
		{
			tuple = ExecCopySlotHeapTuple(slot);
			if (tid)
				*tid = slot->tts_tid;
			break;
		}
	}

	if (t->hints != NULL)
	{
		EnrProbeHint *h = hint_slot(t, key1);
		Buffer		buffer = ((IndexFetchHeapData *) scan->xs_heapfetch)->xs_cbuf;

		if (tuple != NULL && BufferIsValid(buffer) && !BufferIsLocal(buffer))
		{
			h->key = DatumGetInt64(key1);
			h->tid = root;
			h->buffer = buffer;
		}
		else if (h->key == DatumGetInt64(key1))
			h->buffer = InvalidBuffer;	/* gone: keep no hint of it */
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	/* locks are kept to the end of the transaction, as a query keeps them */
	index_close(idx, NoLock);
	return tuple;
}

/*
 * Fetch the row whose key equals the given one.  On success the requested
 * columns are in values/nulls, copied into the current memory context, and
 * true is returned.  Reads under the active snapshot (the statement's),
 * like a query would.  With tid, also where the row version read is.
 */
static bool
probe(EnrProbeTable *t, Datum key1, Datum key2, Datum *values, bool *nulls,
	  ItemPointer tid)
{
	Relation	rel;
	HeapTuple	tuple;
	Snapshot	snapshot;

	if (!OidIsValid(t->relid))
		resolve(t);

	rel = table_open(t->relid, AccessShareLock);
	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();

	tuple = probe_hinted(t, rel, key1, snapshot, tid);
	if (tuple == NULL)
		tuple = probe_index(t, rel, key1, key2, snapshot, tid);

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

	table_close(rel, NoLock);
	return tuple != NULL;
}

/*
 * enr_probe under the newest snapshot, whatever the isolation level: for
 * settings that must hold from their commit on (the limits of 0.7.0)
 */
bool
enr_probe_newest(EnrProbeTable *t, Datum key, Datum *values, bool *nulls)
{
	bool		found;

	PushActiveSnapshot(GetLatestSnapshot());
	/* an error unwinds the snapshot stack with the (sub)transaction */
	found = probe(t, key, (Datum) 0, values, nulls, NULL);
	PopActiveSnapshot();
	return found;
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
