/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  Saved SPI plans, argument checks and result row descriptors shared
 *	  by the SQL entry points.
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

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "enrollment.h"

/* A saved plan, prepared on first use and kept for the backend's life */
SPIPlanPtr
enr_prepare(EnrPlan *p)
{
	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(p->sql, p->nargs, p->argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		p->plan = plan;
	}
	return p->plan;
}

/*
 * Execute a saved plan, preparing it on first use.  Returns SPI's result
 * code; the caller checks it against the expected one.  Must be called
 * between SPI_connect and SPI_finish.
 */
int
enr_execute(EnrPlan *p, Datum *values, const char *nulls, bool read_only, long count)
{
	int			rc;

	rc = SPI_execute_plan(enr_prepare(p), values, nulls, read_only, count);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * The row descriptor of a function's composite result, blessed, so that
 * heap_form_tuple results are valid record datums.
 *
 * Asking the catalog for it (get_call_result_type) cost about 1.4 k
 * instructions, and a function called in FROM gets a new FmgrInfo at every
 * execution of the statement, so a cache in fn_extra saved nothing on the
 * per-request paths.  So the backend keeps a copy per result type instead,
 * found through the call expression's result type and checked against the
 * type cache's identifier of the type's current row shape
 * (tupDesc_identifier), which changes whenever the type is altered: no
 * invalidation callback of our own is needed, and a changed type is seen at
 * the next call.  A replaced copy is not freed, since a caller further up
 * the stack may still hold it; that leaks a few hundred bytes each time one
 * of the extension's result types is altered (ALTER EXTENSION UPDATE).
 * Otherwise (no call expression, OUT parameters) the catalog is asked once
 * per execution, the descriptor kept in fn_extra.
 */
typedef struct ResultTypeCache
{
	Oid			typid;
	uint64		identifier;		/* the type cache's tupDesc_identifier */
	TupleDesc	tupdesc;		/* copy in CacheMemoryContext */
} ResultTypeCache;

static ResultTypeCache result_types[16];
static int	nresult_types = 0;

TupleDesc
enr_result_tupdesc(FunctionCallInfo fcinfo)
{
	Oid			typid = get_fn_expr_rettype(fcinfo->flinfo);
	TypeCacheEntry *te = NULL;
	ResultTypeCache *slot = NULL;
	TupleDesc	built;

	if (OidIsValid(typid))
	{
		te = lookup_type_cache(typid, TYPECACHE_TUPDESC);
		if (te->typtype != TYPTYPE_COMPOSITE || te->tupDesc == NULL)
			te = NULL;
	}
	if (te != NULL)
	{
		for (int i = 0; i < nresult_types; i++)
		{
			if (result_types[i].typid == typid)
			{
				if (result_types[i].identifier == te->tupDesc_identifier)
					return result_types[i].tupdesc;
				slot = &result_types[i];
				break;
			}
		}
		if (slot == NULL && nresult_types < (int) lengthof(result_types))
			slot = &result_types[nresult_types++];
		if (slot != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(CacheMemoryContext);

			built = BlessTupleDesc(CreateTupleDescCopy(te->tupDesc));
			MemoryContextSwitchTo(old);
			slot->typid = typid;
			slot->identifier = te->tupDesc_identifier;
			slot->tupdesc = built;
			return built;
		}
	}

	/*
	 * No call expression, a record type (OUT parameters) or the cache is
	 * full: ask the catalog, once per execution of the calling statement.
	 */
	if (fcinfo->flinfo->fn_extra == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &built) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		fcinfo->flinfo->fn_extra = BlessTupleDesc(built);	/* already a copy, in fn_mcxt */
		MemoryContextSwitchTo(old);
	}
	return (TupleDesc) fcinfo->flinfo->fn_extra;
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
