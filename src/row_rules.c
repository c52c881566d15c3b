/*-------------------------------------------------------------------------
 *
 * row_rules.c
 *	  The integrity rules of the two tables every enrollment writes,
 *	  enrollment_token and node_record, checked by one CHECK constraint
 *	  per table that hands the whole row to a C function.
 *
 * Why not one plain CHECK constraint per rule, as on the other tables:
 * PostgreSQL keeps a CHECK constraint as the text of its expression tree
 * and, on every execution of an INSERT or UPDATE, parses that text again
 * and plans it (ExecRelCheck).  For the seventeen constraints of these two
 * tables that was about 500 k instructions per enrollment, more than every
 * other part of enroll together (bench/README.md).  A single constraint
 * whose expression is one function call on the row costs a few thousand.
 *
 * The rules are the ones the tables had as separate constraints (see the
 * comments at the tables in sql/enrollment.sql), with SQL's meaning for
 * NULL: a rule on a NULL value holds.  A broken rule raises check_violation
 * (23514) with PostgreSQL's own wording, the constraint's name and a detail
 * naming the rule; no value of the row is ever shown.
 *
 * src/row_rules.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/typcache.h"

#include "enrollment.h"

PG_FUNCTION_INFO_V1(enrollment_token_rules);
PG_FUNCTION_INFO_V1(enrollment_node_record_rules);

#define RULES_MAX_COLS 16

/* The columns a table's rules read, found by name in the row's descriptor */
typedef struct RowRules
{
	const char *table;
	const char *constraint;
	int			ncols;
	int			nrequired;		/* the columns after these may be missing (NULL) */
	const char *cols[RULES_MAX_COLS];
	AttrNumber	attnums[RULES_MAX_COLS];	/* last seen positions, 0 = unknown */
} RowRules;

/* One row, deformed, with the rules' columns in the order of RowRules.cols */
typedef struct RuleRow
{
	RowRules   *rules;
	Datum		value[RULES_MAX_COLS];
	bool		isnull[RULES_MAX_COLS];
} RuleRow;

enum
{
	T_KIND, T_STATUS, T_TOKEN_HASH, T_LABEL, T_USE_COUNT, T_MAX_USES,
	T_CLUSTER_ID, T_NODE_ID, T_REVOKED_AT
};

static RowRules token_rules = {
	.table = "enrollment_token",
	.constraint = "enrollment_token_rules",
	.ncols = 9,
	.nrequired = 9,
	.cols = {"kind", "status", "token_hash", "label", "use_count", "max_uses",
	"cluster_id", "node_id", "revoked_at"}
};

enum
{
	N_NAME, N_ROLE, N_CLUSTER_ID, N_STATUS, N_SECRET_HASH, N_ENROLL_COUNT, N_NODE_GROUP,
	N_OS, N_PRIVATE_IP
};

static RowRules node_rules = {
	.table = "node_record",
	.constraint = "node_record_rules",
	.ncols = 9,
	.nrequired = 6,				/* the placement of 0.7.0 may not be there yet */
	.cols = {"name", "role", "cluster_id", "status", "secret_hash", "enroll_count",
	"node_group", "os", "private_ip"}
};

/*
 * Position of column "name" in tupdesc: the remembered one when it still
 * names that column (attribute numbers survive every ALTER TABLE but a drop
 * and re-add), else found by a search; InvalidAttrNumber for an optional
 * column the table does not have.
 */
static AttrNumber
rule_column(TupleDesc tupdesc, RowRules *rules, int i)
{
	AttrNumber	a = rules->attnums[i];
	Form_pg_attribute att;

	if (a > 0 && a <= tupdesc->natts)
	{
		att = TupleDescAttr(tupdesc, a - 1);
		if (!att->attisdropped && strcmp(NameStr(att->attname), rules->cols[i]) == 0)
			return a;
	}
	for (a = 1; a <= tupdesc->natts; a++)
	{
		att = TupleDescAttr(tupdesc, a - 1);
		if (!att->attisdropped && strcmp(NameStr(att->attname), rules->cols[i]) == 0)
			return rules->attnums[i] = a;
	}
	if (i >= rules->nrequired)
		return InvalidAttrNumber;
	elog(ERROR, "column \"%s\" of %s is missing", rules->cols[i], rules->table);
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/* Deform the row argument and pick out the columns the rules read */
static void
rule_row(FunctionCallInfo fcinfo, RowRules *rules, RuleRow *row)
{
	HeapTupleHeader th = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc	tupdesc;
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;

	tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th), HeapTupleHeaderGetTypMod(th));
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;

	values = palloc(tupdesc->natts * sizeof(Datum));
	nulls = palloc(tupdesc->natts * sizeof(bool));
	heap_deform_tuple(&tuple, tupdesc, values, nulls);

	row->rules = rules;
	for (int i = 0; i < rules->ncols; i++)
	{
		AttrNumber	a = rule_column(tupdesc, rules, i);

		row->value[i] = a == InvalidAttrNumber ? (Datum) 0 : values[a - 1];
		row->isnull[i] = a == InvalidAttrNumber || nulls[a - 1];
	}
	ReleaseTupleDesc(tupdesc);
}

static void
broken(RuleRow *row, const char *rule)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
					row->rules->table, row->rules->constraint),
			 errdetail("The rule broken: %s.", rule),
			 errhint("Rows of this table are meant to be written by the extension's functions."),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, "enrollment"),
			 err_generic_string(PG_DIAG_TABLE_NAME, row->rules->table),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, row->rules->constraint)));
}

/* text column i equals s (false when NULL) */
static bool
is(RuleRow *row, int i, const char *s)
{
	text	   *t;

	if (row->isnull[i])
		return false;
	t = DatumGetTextPP(row->value[i]);
	return enr_text_is(t, s);
}

/* text column i is one of the NULL-terminated list (true when NULL) */
static bool
one_of(RuleRow *row, int i, const char *const *list)
{
	if (row->isnull[i])
		return true;
	for (; *list; list++)
		if (is(row, i, *list))
			return true;
	return false;
}

/* char_length of text column i lies in [lo, hi] (true when NULL) */
static bool
length_between(RuleRow *row, int i, int lo, int hi)
{
	text	   *t;
	int			n;

	if (row->isnull[i])
		return true;
	t = DatumGetTextPP(row->value[i]);
	n = pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	return n >= lo && n <= hi;
}

/* bytea column i is a SHA-256 digest (true when NULL) */
static bool
is_digest(RuleRow *row, int i)
{
	return row->isnull[i] ||
		VARSIZE_ANY_EXHDR(DatumGetByteaPP(row->value[i])) == ENR_DIGEST_LEN;
}

/* an inet with a full mask: one host's address */
static bool
is_host_address(Datum inet)
{
	int32		bits = DatumGetInt32(DirectFunctionCall1(network_masklen, inet));
	int32		family = DatumGetInt32(DirectFunctionCall1(network_family, inet));

	return bits == (family == 4 ? 32 : 128);
}

static const char *const token_kinds[] = {"once", "cluster", "reusable", NULL};
static const char *const token_statuses[] = {"pending", "active", "used", "exhausted",
"expired", "revoked", NULL};
static const char *const node_statuses[] = {"active", "pending_approval", "removed", NULL};

/*
 * enrollment.enrollment_token_rules(enrollment.enrollment_token) RETURNS boolean
 *
 * True, or an error naming the first rule the row breaks.
 */
Datum
enrollment_token_rules(PG_FUNCTION_ARGS)
{
	RuleRow		r;
	bool		has_max;
	int32		max_uses = 0;
	int32		use_count = 0;

	rule_row(fcinfo, &token_rules, &r);
	has_max = !r.isnull[T_MAX_USES];
	if (has_max)
		max_uses = DatumGetInt32(r.value[T_MAX_USES]);
	if (!r.isnull[T_USE_COUNT])
		use_count = DatumGetInt32(r.value[T_USE_COUNT]);

	if (!one_of(&r, T_KIND, token_kinds))
		broken(&r, "kind is once, cluster or reusable");
	if (!one_of(&r, T_STATUS, token_statuses))
		broken(&r, "status is pending, active, used, exhausted, expired or revoked");
	if (!is_digest(&r, T_TOKEN_HASH))
		broken(&r, "token_hash is a 32-byte digest");
	if (!length_between(&r, T_LABEL, 0, 128))
		broken(&r, "label has at most 128 characters");
	if (!r.isnull[T_USE_COUNT] && use_count < 0)
		broken(&r, "use_count is not negative");
	if (has_max && max_uses <= 0)
		broken(&r, "max_uses is positive");
	if (!length_between(&r, T_CLUSTER_ID, 1, 128))
		broken(&r, "cluster_id has 1 to 128 characters");
	if (is(&r, T_KIND, "cluster") && r.isnull[T_CLUSTER_ID])
		broken(&r, "a cluster token has a cluster_id");
	if (!r.isnull[T_KIND] && !is(&r, T_KIND, "cluster") && !r.isnull[T_CLUSTER_ID])
		broken(&r, "only a cluster token has a cluster_id");
	if (!r.isnull[T_KIND] && !is(&r, T_KIND, "once") && !r.isnull[T_NODE_ID])
		broken(&r, "only a once token is bound to a node");
	if (is(&r, T_KIND, "once") && has_max && max_uses != 1)
		broken(&r, "a once token has max_uses = 1");
	if (has_max && !r.isnull[T_USE_COUNT] && use_count > max_uses)
		broken(&r, "use_count does not exceed max_uses");
	if (!r.isnull[T_STATUS] && is(&r, T_STATUS, "revoked") == r.isnull[T_REVOKED_AT])
		broken(&r, "revoked_at is set exactly when status is revoked");

	PG_RETURN_BOOL(true);
}

/*
 * enrollment.node_record_rules(enrollment.node_record) RETURNS boolean
 */
Datum
enrollment_node_record_rules(PG_FUNCTION_ARGS)
{
	RuleRow		r;

	rule_row(fcinfo, &node_rules, &r);

	if (!length_between(&r, N_NAME, 1, 128))
		broken(&r, "name has 1 to 128 characters");
	if (!length_between(&r, N_ROLE, 1, 64))
		broken(&r, "role has 1 to 64 characters");
	if (!length_between(&r, N_CLUSTER_ID, 1, 128))
		broken(&r, "cluster_id has 1 to 128 characters");
	if (!one_of(&r, N_STATUS, node_statuses))
		broken(&r, "status is active, pending_approval or removed");
	if (!is_digest(&r, N_SECRET_HASH))
		broken(&r, "secret_hash is a 32-byte digest");
	if (!r.isnull[N_ENROLL_COUNT] && DatumGetInt32(r.value[N_ENROLL_COUNT]) < 1)
		broken(&r, "enroll_count is at least 1");
	if (!length_between(&r, N_NODE_GROUP, 1, 64))
		broken(&r, "node_group has 1 to 64 characters");
	if (!length_between(&r, N_OS, 1, 64))
		broken(&r, "os has 1 to 64 characters");
	if (!r.isnull[N_PRIVATE_IP] && !is_host_address(r.value[N_PRIVATE_IP]))
		broken(&r, "private_ip is one host's address (/32 or /128)");

	PG_RETURN_BOOL(true);
}
