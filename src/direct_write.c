/*-------------------------------------------------------------------------
 *
 * direct_write.c
 *	  Rows of the extension's own tables written without SQL: the heap
 *	  insert or update and its index entries, as the executor's ModifyTable
 *	  node makes them, for an enrollment through a token not bound to a node.
 *
 * That enrollment writes three rows (the token's use, the node, its audit
 * event).  Run as one SQL statement through SPI, about 40 % of its CPU went
 * to starting and ending the executor for three ModifyTable nodes and their
 * CTEs and to evaluating the CHECK constraints from their stored text
 * (bench/README.md).  Here each row is formed in C, checked by the C
 * function its CHECK constraint calls (row_rules.c), written with
 * simple_heap_insert or simple_heap_update, and given its index entries by
 * ExecInsertIndexTuples, unique checks included, in one EState shared by
 * the three tables.
 *
 * Columns the SQL statement leaves to their defaults get them here too: the
 * table's default expressions are planned once per backend and evaluated
 * per row, so an ALTER ... SET DEFAULT is honoured as SQL would honour it.
 *
 * What SQL would do besides is not done here, so a table is written this
 * way only while it has exactly the shape the extension gave it: a plain
 * heap table, no column but those its EnrDirectTable lists and each of the
 * listed type (no domain, no typmod), no CHECK constraint but its rules one,
 * no row security, no rewrite rules, no generated columns, and no trigger
 * that would fire on the write but PostgreSQL's own foreign-key check on
 * update (the token's node_id, which the write never changes, so SQL would
 * skip that check too); and only while no ExecutorCheckPerms_hook is
 * installed (sepgsql, pgaudit's object audit see SQL statements only).  A
 * trigger a DBA adds, a column of a later version, or enrollment.direct_writes
 * off, and the caller writes through SQL.  The shape is looked at again
 * after every change to the table or to a function (relcache and pg_proc
 * invalidations), while the table is locked, so it cannot change between
 * the look and the write.
 *
 * src/direct_write.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/multixact.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "direct_write.h"
#include "probe.h"


/* tables looked at in this backend, for the invalidation callback */
static EnrDirectTable *known[5];
static int	nknown = 0;
static bool callback_registered = false;

/* Look at a table again after it (or every relation, relid 0) changed */
static void
direct_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	for (int i = 0; i < nknown; i++)
		if (relid == InvalidOid || relid == known[i]->relid)
			known[i]->relid = InvalidOid;
}

/* ... and all of them after a function changed (a default may call it) */
static void
direct_proc_callback(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
					 uint32 hashvalue pg_attribute_unused())
{
	for (int i = 0; i < nknown; i++)
		known[i]->relid = InvalidOid;
}

/* Does trigger tg fire on the kind of write t gets, other than as allowed? */
static bool
trigger_in_the_way(const EnrDirectTable *t, const Trigger *tg)
{
	if (t->update ? !TRIGGER_FOR_UPDATE(tg->tgtype) : !TRIGGER_FOR_INSERT(tg->tgtype))
		return false;
	/* the foreign-key check of a referencing column the update leaves alone */
	return !(t->update && tg->tgisinternal && tg->tgfoid == F_RI_FKEY_CHECK_UPD);
}

/*
 * Has the open table rel exactly the shape t describes?  Fills t->attnums
 * and, in t->cxt, the planned defaults of the columns left to them.
 */
static bool
has_expected_shape(Relation rel, EnrDirectTable *t)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	int			nchecks = constr ? constr->num_check : 0;
	MemoryContext old;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition ||
		rel->rd_rel->relam != HEAP_TABLE_AM_OID ||
		rel->rd_rel->relrowsecurity || rel->rd_rel->relhasrules ||
		(constr && constr->has_generated_stored))
		return false;

	for (int c = 0; c < t->ncols; c++)
		t->attnums[c] = InvalidAttrNumber;
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		bool		listed = false;

		if (att->attisdropped)
			continue;
		for (int c = 0; c < t->ncols && !listed; c++)
			if (strcmp(NameStr(att->attname), t->cols[c].name) == 0)
			{
				if (att->atttypid != t->cols[c].type || att->atttypmod != -1)
					return false;	/* retyped, or a domain */
				t->attnums[c] = att->attnum;
				listed = true;
			}
		if (!listed)
			return false;		/* a column this library does not know */
	}
	for (int c = 0; c < (t->nrequired > 0 ? t->nrequired : t->ncols); c++)
		if (t->attnums[c] == InvalidAttrNumber)
			return false;

	if (t->check == NULL ? nchecks != 0
		: nchecks != 1 || strcmp(constr->check[0].ccname, t->check) != 0)
		return false;

	if (rel->trigdesc)
		for (int i = 0; i < rel->trigdesc->numtriggers; i++)
			if (trigger_in_the_way(t, &rel->trigdesc->triggers[i]))
				return false;

	/* the defaults, planned as the planner plans an INSERT's */
	if (t->cxt == NULL)
		t->cxt = AllocSetContextCreate(CacheMemoryContext, "enrollment direct writes",
									   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(t->cxt);
	old = MemoryContextSwitchTo(t->cxt);
	for (int c = 0; c < t->ncols; c++)
	{
		Node	   *def = t->cols[c].from_default && t->attnums[c] != InvalidAttrNumber
			? build_column_default(rel, t->attnums[c]) : NULL;

		t->defaults[c] = def ? ExecInitExpr(expression_planner((Expr *) def), NULL) : NULL;
	}
	MemoryContextSwitchTo(old);
	return true;
}

/* Start a set of writes (in the current memory context) */
void
enr_direct_begin(EnrDirectWrite *w)
{
	w->estate = CreateExecutorState();
	w->econtext = CreateStandaloneExprContext();
	w->nrels = 0;
}

/*
 * Open t for writing (RowExclusiveLock, its indexes too), or return NULL
 * when it may not be written directly; then the caller ends the set and
 * writes through SQL.
 */
ResultRelInfo *
enr_direct_open(EnrDirectWrite *w, EnrDirectTable *t)
{
	Relation	rel;
	ResultRelInfo *rri;
	MemoryContext old;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(direct_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, direct_proc_callback, (Datum) 0);
		callback_registered = true;
	}
	if (ExecutorCheckPerms_hook != NULL)
		return NULL;			/* a permission or audit hook expects SQL */
	if (!OidIsValid(t->relid))
	{
		Oid			relid = enr_schema_relid(t->relname);
		bool		seen = false;

		if (!OidIsValid(relid))
			return NULL;
		rel = table_open(relid, RowExclusiveLock);
		/* taking the lock may have processed invalidations: look now */
		t->usable = has_expected_shape(rel, t);
		t->relid = relid;
		for (int i = 0; i < nknown; i++)
			seen |= known[i] == t;
		if (!seen && nknown < (int) lengthof(known))
			known[nknown++] = t;
	}
	else
		rel = table_open(t->relid, RowExclusiveLock);

	/* an invalidation delivered while locking forgets what was seen */
	if (!OidIsValid(t->relid) || !t->usable)
	{
		table_close(rel, RowExclusiveLock);
		return NULL;
	}
	/* an UPDATE of a published table needs a replica identity, as for SQL */
	if (t->update)
		CheckCmdReplicaIdentity(rel, CMD_UPDATE);

	old = MemoryContextSwitchTo(w->estate->es_query_cxt);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 0, NULL, 0);
	/* an update opens the indexes only if it turns out not to be HOT */
	if (!t->update)
		ExecOpenIndices(rri, false);
	MemoryContextSwitchTo(old);
	Assert(w->nrels < (int) lengthof(w->rels));
	w->rels[w->nrels++] = rri;
	return rri;
}

/*
 * End a set of writes: close indexes and tables.  Their locks are kept to
 * the end of the transaction, the indexes' too (ExecCloseIndices would
 * release those: a SQL statement holds them from planning, so that release
 * is only a count for it, but here it is the lock manager's whole round
 * trip, once per index per enrollment).
 */
void
enr_direct_end(EnrDirectWrite *w)
{
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	for (int i = 0; i < w->nrels; i++)
	{
		ResultRelInfo *rri = w->rels[i];

		for (int j = 0; j < rri->ri_NumIndices; j++)
			if (rri->ri_IndexRelationDescs[j] != NULL)
				index_close(rri->ri_IndexRelationDescs[j], NoLock);
		table_close(rri->ri_RelationDesc, NoLock);
	}
	FreeExprContext(w->econtext, true);
	FreeExecutorState(w->estate);
	w->estate = NULL;
	w->econtext = NULL;
	w->nrels = 0;
}

/*
 * Whether this transaction (or a live subtransaction of it) wrote or locks
 * the row version at tid: its inserter, its updater or one of its lockers.
 * Like heap_lock_tuple, the header is read under the buffer lock and the
 * members of a MultiXact are looked up after it is released.
 */
static bool
row_version_is_ours(Relation rel, ItemPointer tid)
{
	Buffer		buf = ReadBuffer(rel, ItemPointerGetBlockNumber(tid));
	Page		page;
	OffsetNumber off = ItemPointerGetOffsetNumber(tid);
	TransactionId xmax = InvalidTransactionId;
	uint16		infomask = HEAP_XMAX_INVALID;
	bool		ours = false;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (off <= PageGetMaxOffsetNumber(page) && ItemIdIsNormal(PageGetItemId(page, off)))
	{
		HeapTupleHeader htup = (HeapTupleHeader) PageGetItem(page, PageGetItemId(page, off));

		ours = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(htup));
		xmax = HeapTupleHeaderGetRawXmax(htup);
		infomask = htup->t_infomask;
	}
	UnlockReleaseBuffer(buf);

	if (ours || (infomask & HEAP_XMAX_INVALID))
		return ours;
	if (infomask & HEAP_XMAX_IS_MULTI)
	{
		MultiXactMember *members;
		int			n = GetMultiXactIdMembers(xmax, &members, false,
											  HEAP_XMAX_IS_LOCKED_ONLY(infomask));

		for (int i = 0; i < n && !ours; i++)
			ours = TransactionIdIsCurrentTransactionId(members[i].xid);
		if (n > 0)
			pfree(members);
		return ours;
	}
	return TransactionIdIsCurrentTransactionId(xmax);
}

/*
 * Before a share lock of the row at tid: wait for a transaction that is
 * waiting to update the row or lock it exclusively, so that it goes first.
 *
 * heap_lock_tuple lets a share locker join the lockers a row already has
 * without a look at the heavyweight tuple lock that a waiting updater
 * holds, so a steady stream of enrollments through one shared token could
 * keep a revocation (or the worker's fold) waiting for as long as the
 * stream lasts.  Taking that tuple lock in the mode heap_lock_tuple takes
 * for a share lock when it has to wait (RowShareLock), and dropping it at
 * once, queues this call behind such a waiter; when nobody waits it costs
 * one lock-manager round and nothing else.  Only when the lock is not free
 * is the row looked at: if this transaction wrote or locks it already, the
 * waiter waits for us, and waiting for it would be a deadlock.  (Other
 * cycles through the waiter can still form, as they can for any row lock
 * PostgreSQL queues; the deadlock detector ends them.)
 */
void
enr_queue_behind_row_writer(Relation rel, ItemPointer tid)
{
	if (!ConditionalLockTuple(rel, tid, RowShareLock))
	{
		if (row_version_is_ours(rel, tid))
			return;
		LockTuple(rel, tid, RowShareLock);
	}
	UnlockTuple(rel, tid, RowShareLock);
}

/*
 * Lock the row at tid in the given mode (LockTupleNoKeyExclusive for an
 * update, LockTupleShare as SELECT … FOR SHARE) and return it in a slot, as
 * UPDATE does under READ COMMITTED: when another transaction updated it meanwhile, wait
 * for that one and lock its newest version (whose tid the slot carries);
 * NULL when the row has been deleted.  Under REPEATABLE READ and
 * SERIALIZABLE a concurrent update or delete is a serialization failure,
 * as for UPDATE.
 *
 * tid must be that of a row version an MVCC snapshot of this transaction
 * saw while an outer snapshot (the calling statement's) stays active: that
 * outer snapshot keeps this backend's xmin, and so the pruning horizon, at
 * or below the xid of whoever updated or deleted the version since, so the
 * version stays on its page — however many newer versions other
 * enrollments have committed — and its line pointer still leads along the
 * update chain to the newest.  (heap_lock_tuple does not check that the
 * line pointer is still a tuple.)
 */
TupleTableSlot *
enr_direct_lock(EnrDirectWrite *w, ResultRelInfo *rri, ItemPointer tid, LockTupleMode mode)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleTableSlot *slot = table_slot_create(rel, &w->estate->es_tupleTable);
	ItemPointerData at = *tid;
	TM_FailureData tmfd;
	TM_Result	res;
	bool		xact_snapshot = IsolationUsesXactSnapshot();

	Assert(ActiveSnapshotSet());
	if (mode == LockTupleShare)
		enr_queue_behind_row_writer(rel, &at);
	res = table_tuple_lock(rel, &at, GetActiveSnapshot(), slot, GetCurrentCommandId(false),
						   mode, LockWaitBlock,
						   xact_snapshot ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	switch (res)
	{
		case TM_Ok:
			return slot;
		case TM_Updated:		/* only without FIND_LAST_VERSION */
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
			break;
		case TM_Deleted:
			if (xact_snapshot)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent delete")));
			return NULL;
		default:
			elog(ERROR, "unexpected result %d locking a row of %s", (int) res,
				 RelationGetRelationName(rel));
	}
	return NULL;				/* keep the compiler quiet */
}

/*
 * The columns of a (locked) row, in the order t lists them, copied into the
 * current memory context: the slot's buffer pin ends with the set of writes.
 */
void
enr_direct_values(EnrDirectTable *t, TupleTableSlot *slot, Datum *values, bool *nulls)
{
	HeapTuple	copy = ExecCopySlotHeapTuple(slot);
	TupleDesc	desc = slot->tts_tupleDescriptor;
	Datum	   *v = palloc(desc->natts * sizeof(Datum));
	bool	   *n = palloc(desc->natts * sizeof(bool));

	heap_deform_tuple(copy, desc, v, n);
	for (int c = 0; c < t->ncols; c++)
	{
		bool		missing = t->attnums[c] == InvalidAttrNumber;

		values[c] = missing ? (Datum) 0 : v[t->attnums[c] - 1];
		nulls[c] = missing || n[t->attnums[c] - 1];
	}
}

/*
 * The values of the columns the SQL statement leaves to their defaults,
 * evaluated now (volatile ones, such as nextval, once per call).  They live
 * until enr_direct_end: copy what is needed after it.
 */
void
enr_direct_defaults(EnrDirectWrite *w, EnrDirectTable *t, Datum *values, bool *nulls)
{
	for (int c = 0; c < t->ncols; c++)
	{
		if (!t->cols[c].from_default)
			continue;
		if (t->defaults[c] == NULL)
		{
			values[c] = (Datum) 0;
			nulls[c] = true;
		}
		else
			values[c] = ExecEvalExpr(t->defaults[c], w->econtext, &nulls[c]);
	}
}

/*
 * A heap tuple of rel from values in t's column order (dropped columns
 * NULL), checked against the table's NOT NULL columns and its rules.
 */
static HeapTuple
form_row(ResultRelInfo *rri, EnrDirectTable *t, Datum *values, bool *nulls)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *v = palloc0(desc->natts * sizeof(Datum));
	bool	   *n = palloc(desc->natts * sizeof(bool));
	HeapTuple	tup;

	memset(n, true, desc->natts * sizeof(bool));
	for (int c = 0; c < t->ncols; c++)
	{
		Form_pg_attribute att;

		if (t->attnums[c] == InvalidAttrNumber)
		{
			if (!nulls[c])
				elog(ERROR, "column \"%s\" of relation \"%s\" is missing", t->cols[c].name,
					 t->relname);
			continue;
		}
		att = TupleDescAttr(desc, t->attnums[c] - 1);

		if (nulls[c] && att->attnotnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
							t->cols[c].name, t->relname),
					 errtablecol(rel, t->attnums[c])));
		v[t->attnums[c] - 1] = values[c];
		n[t->attnums[c] - 1] = nulls[c];
	}
	tup = heap_form_tuple(desc, v, n);
	if (t->rules)
		DirectFunctionCall1(t->rules, heap_copy_tuple_as_datum(tup, desc));
	return tup;
}

/* Index entries for a new row version (not for a HOT update) */
static void
insert_index_entries(EnrDirectWrite *w, ResultRelInfo *rri, HeapTuple tup)
{
	TupleTableSlot *slot;

	if (rri->ri_NumIndices == 0)
		return;
	slot = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(rri->ri_RelationDesc),
								  &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tup, slot, false);	/* its tts_tid is where tup went */
	/*
	 * update = false even after an UPDATE: that flag only hints B-tree
	 * bottom-up deletion, and it needs a range table this write has not.
	 */
	list_free(ExecInsertIndexTuples(rri, slot, w->estate, false, false, NULL, NIL));
	ExecClearTuple(slot);
	ResetPerTupleExprContext(w->estate);
}

/* Insert a row of t (values in t's column order); returns the tuple written */
HeapTuple
enr_direct_insert(EnrDirectWrite *w, ResultRelInfo *rri, EnrDirectTable *t,
				  Datum *values, bool *nulls)
{
	HeapTuple	tup = form_row(rri, t, values, nulls);

	simple_heap_insert(rri->ri_RelationDesc, tup);
	insert_index_entries(w, rri, tup);
	return tup;
}

/* Index entries for the new version of an update that could not be HOT */
static void
index_updated_row(EnrDirectWrite *w, ResultRelInfo *rri, HeapTuple tup)
{
	MemoryContext old;

	if (HeapTupleIsHeapOnly(tup))
		return;
	old = MemoryContextSwitchTo(w->estate->es_query_cxt);
	if (rri->ri_IndexRelationDescs == NULL)
		ExecOpenIndices(rri, false);
	MemoryContextSwitchTo(old);
	insert_index_entries(w, rri, tup);
}

/*
 * Replace the row at otid, which this transaction has locked (see
 * enr_direct_lock), by one of the given values; index entries only when the
 * update could not be HOT.  The indexes are opened (and locked) only then:
 * a HOT update touches none of them, and which columns they cover — what
 * decides HOT — comes from the relcache under the table's own lock.
 */
HeapTuple
enr_direct_update(EnrDirectWrite *w, ResultRelInfo *rri, EnrDirectTable *t,
				  ItemPointer otid, Datum *values, bool *nulls)
{
	HeapTuple	tup = form_row(rri, t, values, nulls);

	simple_heap_update(rri->ri_RelationDesc, otid, tup);
	index_updated_row(w, rri, tup);
	return tup;
}

/*
 * The row version at tid in a slot, if the active snapshot sees it; NULL if
 * it does not (it was updated or deleted since the caller's snapshot saw
 * it).  No lock is taken: this is the version an UPDATE would try to replace
 * (enr_direct_update_if_newest).  tid must be one a snapshot of this
 * transaction saw, as for enr_direct_lock.
 */
TupleTableSlot *
enr_direct_fetch(EnrDirectWrite *w, ResultRelInfo *rri, ItemPointer tid)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleTableSlot *slot = table_slot_create(rel, &w->estate->es_tupleTable);

	Assert(ActiveSnapshotSet());
	if (!table_tuple_fetch_row_version(rel, tid, GetActiveSnapshot(), slot))
		return NULL;
	return slot;
}

/*
 * Replace the row version at otid, which this transaction has not locked,
 * as UPDATE does: heap_update waits for a transaction that is updating or
 * locking the row, and replaces the version only if it is still the newest
 * then.  Returns false, having written nothing, if it is not (another
 * transaction updated or deleted the row and committed, or this one did in
 * a later command); the caller then locks the newest version
 * (enr_direct_lock), checks it again, and updates that, where UPDATE would
 * re-evaluate its WHERE clause.  Saves the lock's WAL record and buffer
 * write when nobody else uses the row, as for a once token.
 */
bool
enr_direct_update_if_newest(EnrDirectWrite *w, ResultRelInfo *rri, EnrDirectTable *t,
							ItemPointer otid, Datum *values, bool *nulls)
{
	HeapTuple	tup = form_row(rri, t, values, nulls);
	TM_FailureData tmfd;
	LockTupleMode lockmode;

	if (heap_update(rri->ri_RelationDesc, otid, tup, GetCurrentCommandId(true),
					InvalidSnapshot, true, &tmfd, &lockmode) != TM_Ok)
	{
		heap_freetuple(tup);
		return false;
	}
	index_updated_row(w, rri, tup);
	return true;
}
