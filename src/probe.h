/*-------------------------------------------------------------------------
 *
 * probe.h
 *	  Direct unique-index lookups of the extension's own tables (probe.c).
 *
 * src/probe.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENROLLMENT_PROBE_H
#define ENROLLMENT_PROBE_H

#include "postgres.h"

#include "access/attnum.h"
#include "storage/itemptr.h"

/* The schema of the extension's tables (enrollment.control) */
#define ENR_SCHEMA	"enrollment"

/* a table or index of that schema by name (InvalidOid / an error if missing) */
extern Oid	enr_schema_relid(const char *relname);
extern Oid	enr_schema_relid_required(const char *relname);

#define ENR_PROBE_MAXCOLS 12

struct EnrProbeHint;

/*
 * A table read by its unique key.  The first nkeys columns listed are the
 * key (nkeys 0 means 1); the index must be a unique, non-partial B-tree on
 * exactly those columns, in that order.  With scan set, a table scanned
 * through an index by the caller (enr_probe_resolve): the index need only
 * be a non-partial B-tree whose first columns are the key, and eqproc is
 * not used (the caller's scan keys carry their operators).  The last four
 * fields are a per-backend cache filled on first use.
 */
typedef struct EnrProbeTable
{
	const char *relname;
	const char *indexname;
	RegProcedure eqproc;		/* equality function of the (first) key column */
	RegProcedure eqproc2;		/* and of the second, if nkeys is 2 */
	int			nkeys;
	bool		scan;
	int			ncols;
	const char *cols[ENR_PROBE_MAXCOLS];
	Oid			relid;
	Oid			indexid;
	AttrNumber	attnums[ENR_PROBE_MAXCOLS];
	struct EnrProbeHint *hints; /* where recent rows were (bigint keys) */
} EnrProbeTable;

extern bool enr_probe(EnrProbeTable *t, Datum key, Datum *values, bool *nulls);
extern bool enr_probe_latest(EnrProbeTable *t, Datum key, Datum *values, bool *nulls,
							 ItemPointer tid);
extern bool enr_probe_newest(EnrProbeTable *t, Datum key, Datum *values, bool *nulls);
extern bool enr_has_retention_from(void);
extern bool enr_has_token_use(void);
extern bool enr_has_node_placement(void);
extern bool enr_probe2(EnrProbeTable *t, Datum key1, Datum key2, Datum *values, bool *nulls);
extern void enr_probe_resolve(EnrProbeTable *t);

#endif							/* ENROLLMENT_PROBE_H */
