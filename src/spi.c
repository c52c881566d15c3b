/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  Saved SPI plans and argument checks shared by the SQL entry points.
 *
 * Every statement the extension runs is a fixed, schema-qualified query
 * text with typed parameters; it is prepared once per backend and kept
 * (SPI_keepplan), so the hot paths pay no parse or plan cost.  The plan
 * cache replans after DDL, e.g. when the extension is dropped and created
 * again.
 *
 * src/spi.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "enrollment.h"

/*
 * Execute a saved plan, preparing it on first use.  Returns SPI's result
 * code; the caller checks it against the expected one.  Must be called
 * between SPI_connect and SPI_finish.
 */
int
enr_execute(EnrPlan *p, Datum *values, const char *nulls, bool read_only, long count)
{
	int			rc;

	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(p->sql, p->nargs, p->argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		p->plan = plan;
	}
	rc = SPI_execute_plan(p->plan, values, nulls, read_only, count);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * The row descriptor of a function's composite result.  Working it out
 * reads the function's catalog entry, so it is kept in fn_extra (blessed,
 * so heap_form_tuple results are valid record datums) for the calls of one
 * execution of the calling statement.
 */
TupleDesc
enr_result_tupdesc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;

	if (tupdesc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		TupleDesc	built;

		if (get_call_result_type(fcinfo, NULL, &built) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		tupdesc = BlessTupleDesc(built);	/* already a copy, in fn_mcxt */
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = tupdesc;
	}
	return tupdesc;
}

/* Column col (1-based) of result row row */
Datum
enr_getattr(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* A text result column as text *, or NULL */
text *
enr_text_or_null(Datum d, bool isnull)
{
	return isnull ? NULL : DatumGetTextPP(d);
}

/* Byte-wise equality of two text values (identifiers, not natural language) */
bool
enr_text_equal(text *a, text *b)
{
	size_t		len = VARSIZE_ANY_EXHDR(a);

	return len == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), len) == 0;
}

/* Raise null_value_not_allowed when a required argument is NULL */
void
enr_require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name),
				 errhint("Pass a value for %s.", name)));
}

/*
 * Check a free-text argument: at most maxchars characters, optionally not
 * empty, and no control characters (they would forge lines in logs and
 * listings).  The value itself is never echoed.
 */
void
enr_check_text_arg(text *t, const char *name, int maxchars, bool allow_empty)
{
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len == 0)
	{
		if (allow_empty)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name),
				 errhint("Pass a non-empty %s, or NULL where it is optional.", name)));
	}
	if (len > maxchars * pg_database_encoding_max_length() ||
		pg_mbstrlen_with_len(s, len) > maxchars)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", name),
				 errdetail("%s may have at most %d characters.", name, maxchars)));
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain control characters", name)));
	}
}
