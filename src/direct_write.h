/*-------------------------------------------------------------------------
 *
 * direct_write.h
 *	  Rows of the extension's own tables written without SQL (direct_write.c).
 *
 * src/direct_write.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENROLLMENT_DIRECT_WRITE_H
#define ENROLLMENT_DIRECT_WRITE_H

#include "postgres.h"

#include "access/htup.h"
#include "nodes/lockoptions.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/execnodes.h"

#define ENR_DW_MAXCOLS 24

/*
 * A column of a table written directly: its name and type, and whether the
 * SQL statement the direct write stands for leaves it to its default (the
 * default is then evaluated as that statement would evaluate it).
 */
typedef struct EnrDirectColumn
{
	const char *name;
	Oid			type;
	bool		from_default;
} EnrDirectColumn;

/*
 * A table written directly: every column it has (a table with any other
 * column, or one of another type, is not written directly), the name and C
 * function of the one CHECK constraint it may have, and whether it is
 * written by UPDATE or by INSERT.  The columns after the first nrequired
 * (0: all are required) may be missing, in a database not updated yet to
 * the release that added them: such a column is read as NULL, and a value
 * for it other than NULL is an error.  The last fields are a per-backend
 * cache.
 */
typedef struct EnrDirectTable
{
	const char *relname;
	const char *check;			/* its one CHECK constraint, or NULL for none */
	PGFunction	rules;			/* the C function that constraint calls */
	bool		update;
	int			ncols;
	int			nrequired;
	EnrDirectColumn cols[ENR_DW_MAXCOLS];
	Oid			relid;			/* InvalidOid: not looked at yet */
	bool		usable;
	MemoryContext cxt;			/* holds the default expressions */
	AttrNumber	attnums[ENR_DW_MAXCOLS];	/* InvalidAttrNumber: a column missing */
	ExprState  *defaults[ENR_DW_MAXCOLS];	/* NULL: no default (NULL value) */
} EnrDirectTable;

/* The tables opened for one set of writes, and the executor state they share */
typedef struct EnrDirectWrite
{
	EState	   *estate;
	ExprContext *econtext;		/* defaults are evaluated here; freed at the end */
	int			nrels;
	ResultRelInfo *rels[4];
} EnrDirectWrite;

extern void enr_direct_begin(EnrDirectWrite *w);
extern ResultRelInfo *enr_direct_open(EnrDirectWrite *w, EnrDirectTable *t);
extern void enr_direct_end(EnrDirectWrite *w);
extern TupleTableSlot *enr_direct_lock(EnrDirectWrite *w, ResultRelInfo *rel, ItemPointer tid,
										LockTupleMode mode);
extern void enr_queue_behind_row_writer(Relation rel, ItemPointer tid);
extern void enr_direct_values(EnrDirectTable *t, TupleTableSlot *slot, Datum *values, bool *nulls);
extern void enr_direct_defaults(EnrDirectWrite *w, EnrDirectTable *t, Datum *values, bool *nulls);
extern HeapTuple enr_direct_insert(EnrDirectWrite *w, ResultRelInfo *rel, EnrDirectTable *t,
								   Datum *values, bool *nulls);
extern HeapTuple enr_direct_update(EnrDirectWrite *w, ResultRelInfo *rel, EnrDirectTable *t,
								   ItemPointer otid, Datum *values, bool *nulls);
extern TupleTableSlot *enr_direct_fetch(EnrDirectWrite *w, ResultRelInfo *rel, ItemPointer tid);
extern bool enr_direct_update_if_newest(EnrDirectWrite *w, ResultRelInfo *rel, EnrDirectTable *t,
										ItemPointer otid, Datum *values, bool *nulls);

#endif							/* ENROLLMENT_DIRECT_WRITE_H */
