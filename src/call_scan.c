/*-------------------------------------------------------------------------
 *
 * call_scan.c
 *	  The verdict functions in FROM, run without PostgreSQL's function scan.
 *
 * A backend asks for a verdict as `SELECT ok, error FROM
 * enrollment.check_token($1)`.  PostgreSQL runs any function in FROM through
 * its function scan, built for set-returning functions: every execution
 * copies the result type's descriptor twice, builds one expression state per
 * argument, and passes the single result row through a tuplestore.  For
 * these calls that is more work than the function's own checks.
 *
 * Where such a call is the whole of its FROM item (one function, no WITH
 * ORDINALITY, no LATERAL reference), the planner hook below offers a custom
 * scan that evaluates the call once as one expression and hands on only the
 * columns the query reads.  The scan is the function's call context
 * (fcinfo->context), and the verdict functions give it those columns
 * directly (enr_return_row) instead of forming a composite value for it to
 * take apart.  It behaves as the function scan does: one row, all NULL if
 * the function returns NULL; a rescan returns the same row without calling
 * the function again (a VOLATILE verify_request is not run twice for one use
 * of it) unless a parameter of the call itself changed; a cursor moves over
 * the row both ways; EXPLAIN shows the call's arguments only under VERBOSE.
 * enrollment.call_scan = off plans the function scan instead.
 *
 * src/call_scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/execExpr.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "enrollment.h"

#define CALL_SCAN_NAME "EnrollmentCall"

/* the C functions whose calls are run this way (all return one composite) */
static const char *const call_scan_functions[] = {
	"enrollment_check_token",
	"enrollment_verify_request",
	"enrollment_verify_request_headers",
	"enrollment_verify_api_token",
	"enrollment_enroll",
};

/* where a scan stands on its one row, as a cursor over it would */
typedef enum CallScanPosition
{
	CALL_BEFORE_ROW,
	CALL_ON_ROW,
	CALL_AFTER_ROW
} CallScanPosition;

typedef struct CallScanState
{
	CustomScanState css;
	ExprState  *call;			/* the function call, one expression */
	bool		params_known;	/* the two below are set (at a first rescan) */
	bool		all_params;		/* the call holds a subplan: any change counts */
	Bitmapset  *call_params;	/* else the PARAM_EXEC ids the call reads */
	int			ncols;			/* columns of the scan tuple */
	AttrNumber *attnos;			/* their column numbers in the result */
	bool		have_result;	/* the columns below are this execution's */
	bool		delivered;		/* the function handed them over (else NULL) */
	Datum	   *values;			/* the columns read, in scan tuple order */
	bool	   *nulls;
	bool	   *copied;			/* values[i] is a copy in per-query memory */
	CallScanPosition position;
} CallScanState;

static set_rel_pathlist_hook_type prev_set_rel_pathlist_hook = NULL;

static Plan *plan_call_path(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
							List *tlist, List *clauses, List *custom_plans);
static Node *create_call_scan_state(CustomScan *cscan);
static void begin_call_scan(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_call_scan(CustomScanState *node);
static void end_call_scan(CustomScanState *node);
static void rescan_call_scan(CustomScanState *node);
static void explain_call_scan(CustomScanState *node, List *ancestors, ExplainState *es);

static const CustomPathMethods call_path_methods = {
	.CustomName = CALL_SCAN_NAME,
	.PlanCustomPath = plan_call_path,
};

static const CustomScanMethods call_scan_methods = {
	.CustomName = CALL_SCAN_NAME,
	.CreateCustomScanState = create_call_scan_state,
};

static const CustomExecMethods call_exec_methods = {
	.CustomName = CALL_SCAN_NAME,
	.BeginCustomScan = begin_call_scan,
	.ExecCustomScan = exec_call_scan,
	.EndCustomScan = end_call_scan,
	.ReScanCustomScan = rescan_call_scan,
	.ExplainCustomScan = explain_call_scan,
};

/*
 * True when expr calls one of this library's verdict functions.  Read from
 * pg_proc (language C, this module, one of the symbols above), so a function
 * of the same name elsewhere is never taken for ours.
 */
static bool
is_verdict_call(Node *expr)
{
	FuncExpr   *call;
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		ours = false;

	if (expr == NULL || !IsA(expr, FuncExpr))
		return false;
	call = (FuncExpr *) expr;
	/* a named composite, or record (OUT parameters, up to 0.2.0) */
	if (call->funcretset ||
		(call->funcresulttype != RECORDOID &&
		 get_typtype(call->funcresulttype) != TYPTYPE_COMPOSITE))
		return false;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(call->funcid));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prolang == ClanguageId)
	{
		bool		null_src;
		bool		null_bin;
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &null_src);
		Datum		bin = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &null_bin);

		if (!null_src && !null_bin &&
			strcmp(TextDatumGetCString(bin), "$libdir/enrollment") == 0)
		{
			char	   *symbol = TextDatumGetCString(src);

			for (size_t i = 0; !ours && i < lengthof(call_scan_functions); i++)
				ours = strcmp(symbol, call_scan_functions[i]) == 0;
		}
	}
	ReleaseSysCache(tup);
	return ours;
}

/*
 * The columns of rel the plan reads (its target list and its quals), as
 * Vars, first in the target list's order, each once.  *wholerow is set when
 * a whole-row reference appears (the function scan is then kept).
 */
static List *
needed_columns(List *tlist, List *quals, Index relid, bool *wholerow)
{
	List	   *vars = pull_var_clause((Node *) list_concat_copy(tlist, quals),
									   PVC_RECURSE_PLACEHOLDERS);
	List	   *cols = NIL;
	ListCell   *lc;

	*wholerow = false;
	foreach(lc, vars)
	{
		Var		   *var = lfirst_node(Var, lc);
		ListCell   *c;
		bool		seen = false;

		if ((Index) var->varno != relid || var->varlevelsup != 0)
			continue;
		if (var->varattno <= 0)
		{
			*wholerow = true;
			continue;
		}
		foreach(c, cols)
			if (((Var *) lfirst(c))->varattno == var->varattno)
				seen = true;
		if (!seen)
			cols = lappend(cols, var);
	}
	return cols;
}

/*
 * set_rel_pathlist_hook: offer the custom scan for a FROM item that is one
 * verdict call.  Its cost is half the function scan's, so it is chosen
 * wherever the function scan would have been.
 */
static void
call_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti, RangeTblEntry *rte)
{
	RangeTblFunction *rtfunc;
	CustomPath *cpath;
	Path	   *fscan = NULL;
	ListCell   *lc;
	List	   *cols;
	bool		wholerow;

	if (prev_set_rel_pathlist_hook)
		prev_set_rel_pathlist_hook(root, rel, rti, rte);

	if (!enrollment_call_scan || rte->rtekind != RTE_FUNCTION ||
		rel->reloptkind != RELOPT_BASEREL ||
		list_length(rte->functions) != 1 || rte->funcordinality ||
		!bms_is_empty(rel->lateral_relids))
		return;
	rtfunc = linitial_node(RangeTblFunction, rte->functions);
	if (!is_verdict_call(rtfunc->funcexpr))
		return;
	cols = needed_columns(rel->reltarget->exprs,
						  extract_actual_clauses(rel->baserestrictinfo, false),
						  rel->relid, &wholerow);
	if (wholerow)
		return;
	foreach(lc, rel->pathlist)
		if (((Path *) lfirst(lc))->pathtype == T_FunctionScan)
			fscan = (Path *) lfirst(lc);
	if (fscan == NULL)
		return;

	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = rel;
	cpath->path.pathtarget = rel->reltarget;
	cpath->path.param_info = NULL;	/* no LATERAL reference: nothing outer */
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = fscan->parallel_safe;
	cpath->path.parallel_workers = 0;
	cpath->path.rows = fscan->rows;
	cpath->path.startup_cost = fscan->startup_cost / 2;
	cpath->path.total_cost = fscan->total_cost / 2;
	cpath->path.pathkeys = NIL;
	cpath->flags = CUSTOMPATH_SUPPORT_BACKWARD_SCAN;	/* as the function scan */
	cpath->custom_paths = NIL;
	cpath->custom_private = cols;	/* the plan's scan tuple */
	cpath->methods = &call_path_methods;
	add_path(rel, &cpath->path);
}

/*
 * PlanCustomPath: a CustomScan with no relation to open (scanrelid 0); its
 * scan tuple is custom_scan_tlist, the columns the query reads (found by the
 * hook from the same target list and quals: the path is not parameterized),
 * and the call is its one custom expression.  custom_private lists the
 * column numbers.
 */
static Plan *
plan_call_path(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
			   List *tlist, List *clauses, List *custom_plans pg_attribute_unused())
{
	RangeTblEntry *rte = planner_rt_fetch(rel->relid, root);
	RangeTblFunction *rtfunc = linitial_node(RangeTblFunction, rte->functions);
	CustomScan *cscan = makeNode(CustomScan);
	List	   *quals = extract_actual_clauses(clauses, false);
	List	   *scan_tlist = NIL;
	List	   *attnos = NIL;
	ListCell   *lc;

	foreach(lc, best_path->custom_private)
	{
		Var		   *var = (Var *) copyObject(lfirst(lc));

		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) var, list_length(scan_tlist) + 1,
											 NULL, false));
		attnos = lappend_int(attnos, var->varattno);
	}

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = quals;
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = NIL;
	cscan->custom_exprs = list_make1(copyObject(rtfunc->funcexpr));
	cscan->custom_private = list_make1(attnos);
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_relids = bms_make_singleton(rel->relid);
	cscan->methods = &call_scan_methods;
	return &cscan->scan.plan;
}

static Node *
create_call_scan_state(CustomScan *cscan pg_attribute_unused())
{
	CallScanState *state = (CallScanState *) newNode(sizeof(CallScanState), T_CustomScanState);

	state->css.methods = &call_exec_methods;
	return (Node *) state;
}

/*
 * Make this scan the call context of the function (fcinfo->context), so
 * that the function hands the columns read straight to the scan
 * (enr_return_row) instead of forming a composite datum that the scan would
 * look up the type of and take apart again.  The function's step is the
 * last one calling a function: its arguments are evaluated before it.
 */
static void
offer_row_sink(CallScanState *state, Expr *call)
{
	ExprState  *es = state->call;

	/* from the step before the last (EEOP_DONE) backwards */
	for (int i = es->steps_len - 2; i >= 0; i--)
	{
		ExprEvalStep *step = &es->steps[i];
		ExprEvalOp	op = ExecEvalStepOp(es, step);

		if (op == EEOP_FUNCEXPR || op == EEOP_FUNCEXPR_STRICT ||
			op == EEOP_FUNCEXPR_FUSAGE || op == EEOP_FUNCEXPR_STRICT_FUSAGE)
		{
			if (step->d.func.finfo->fn_expr == (Node *) call &&
				step->d.func.fcinfo_data->context == NULL)
			{
				step->d.func.fcinfo_data->context = (Node *) state;
				return;
			}
			break;
		}
	}
	elog(ERROR, "the call of function %u has no step to hand its row to the scan",
		 ((FuncExpr *) call)->funcid);
}

/* BeginCustomScan: compile the call as one expression */
static void
begin_call_scan(CustomScanState *node, EState *estate pg_attribute_unused(),
				int eflags pg_attribute_unused())
{
	CallScanState *state = (CallScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	Expr	   *call = (Expr *) linitial(cscan->custom_exprs);
	List	   *attnos = (List *) linitial(cscan->custom_private);
	int			n = Max(list_length(attnos), 1);
	char	   *mem;
	ListCell   *lc;
	int			i = 0;

	state->call = ExecInitExpr(call, &node->ss.ps);
	offer_row_sink(state, call);
	state->params_known = false;
	state->ncols = list_length(attnos);
	/* the column numbers, the kept columns and their flags, in one piece */
	mem = palloc(MAXALIGN(sizeof(Datum) * n) + MAXALIGN(sizeof(AttrNumber) * n) +
				 2 * MAXALIGN(sizeof(bool) * n));
	state->values = (Datum *) mem;
	mem += MAXALIGN(sizeof(Datum) * n);
	state->attnos = (AttrNumber *) mem;
	mem += MAXALIGN(sizeof(AttrNumber) * n);
	state->nulls = (bool *) mem;
	mem += MAXALIGN(sizeof(bool) * n);
	state->copied = (bool *) mem;
	memset(state->copied, 0, sizeof(bool) * n);
	foreach(lc, attnos)
		state->attnos[i++] = (AttrNumber) lfirst_int(lc);
	state->have_result = false;
	state->position = CALL_BEFORE_ROW;
}

/*
 * Error out if the result row no longer has the columns the plan was made
 * for (their number and types), as the function scan does.  Checked on
 * every call: a function picks up a changed type at its next call.
 */
static void
check_result_type(CallScanState *state, TupleDesc resdesc)
{
	TupleDesc	scandesc = state->css.ss.ss_ScanTupleSlot->tts_tupleDescriptor;

	for (int i = 0; i < state->ncols; i++)
	{
		AttrNumber	attno = state->attnos[i];

		if (attno > resdesc->natts ||
			TupleDescAttr(resdesc, attno - 1)->attisdropped ||
			TupleDescAttr(resdesc, attno - 1)->atttypid != TupleDescAttr(scandesc, i)->atttypid)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("function return row and query-specified return row do not match"),
					 errdetail("The result type of the function has changed since the statement was planned."),
					 errhint("Prepare the statement again.")));
	}
}

/*
 * Keep column i of the result, past the tuple memory it was made in: a
 * rescan returns the row again without calling the function.  The copy of
 * the column kept before, if any, is freed.
 */
static void
keep_column(CallScanState *state, int i, Datum value, bool isnull)
{
	Form_pg_attribute att = TupleDescAttr(state->css.ss.ss_ScanTupleSlot->tts_tupleDescriptor, i);
	bool		copy = !isnull && !att->attbyval;

	if (isnull)
		value = (Datum) 0;
	else if (copy)
	{
		MemoryContext old;

		/*
		 * A column passed on from a table row could point to a value stored
		 * out of line (or be expanded); it is fetched here, in the call's
		 * memory, as HeapTupleGetDatum fetches it for a row datum.  (The
		 * columns of today's verdicts are short.)
		 */
		if (att->attlen == -1 && VARATT_IS_EXTERNAL(DatumGetPointer(value)))
			value = PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(value)));
		old = MemoryContextSwitchTo(state->css.ss.ps.state->es_query_cxt);
		value = datumCopy(value, false, att->attlen);
		MemoryContextSwitchTo(old);
	}
	/* the copy kept before goes only once the new one is made */
	if (state->copied[i])
		pfree(DatumGetPointer(state->values[i]));
	state->values[i] = value;
	state->nulls[i] = isnull;
	state->copied[i] = copy;
}

/*
 * How a verdict function returns its row: to this scan, when the scan is
 * its caller (fcinfo->context, set by offer_row_sink), the columns the
 * query reads and nothing else; to any other caller, as a composite datum.
 * tupdesc is the function's result type now (enr_result_tupdesc), values
 * and nulls its columns in that type's order.  Never inlined: the JIT's
 * inliner, copying a verdict function from its bitcode, would compare with a
 * copy of call_exec_methods and never find the scan.
 */
pg_noinline Datum
enr_return_row(FunctionCallInfo fcinfo, TupleDesc tupdesc, Datum *values, bool *nulls)
{
	CallScanState *state = (CallScanState *) fcinfo->context;

	if (state == NULL || !IsA(state, CustomScanState) ||
		state->css.methods != &call_exec_methods)
		return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));

	check_result_type(state, tupdesc);
	for (int i = 0; i < state->ncols; i++)
		keep_column(state, i, values[state->attnos[i] - 1], nulls[state->attnos[i] - 1]);
	state->delivered = true;
	fcinfo->isnull = false;
	return (Datum) 0;			/* not read: the scan has the columns */
}

/*
 * Call the function (unless this execution has its result already) and put
 * the columns the plan reads into the scan slot.  Called through ExecScan,
 * which applies the quals and the projection.  The one row is returned
 * moving onto it from either side, as a cursor moves over a function
 * scan's one row: forward from before it, backward from after it.
 */
static TupleTableSlot *
next_call_row(ScanState *ss)
{
	CallScanState *state = (CallScanState *) ss;
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;
	bool		forward = ScanDirectionIsForward(ss->ps.state->es_direction);

	CallScanPosition from = state->position;
	CallScanPosition start = forward ? CALL_BEFORE_ROW : CALL_AFTER_ROW;

	ExecClearTuple(slot);
	/* from the side the scan starts on, onto the row; from anywhere else, off the far end */
	state->position = (from == start) ? CALL_ON_ROW : (forward ? CALL_AFTER_ROW : CALL_BEFORE_ROW);
	if (from != start)
		return slot;

	if (!state->have_result)
	{
		bool		isnull;

		state->delivered = false;
		(void) ExecEvalExprSwitchContext(state->call, ss->ps.ps_ExprContext, &isnull);
		if (!state->delivered)
		{
			/* every verdict function returns its row through enr_return_row */
			if (!isnull)
				elog(ERROR, "function %u did not hand its row to the scan",
					 ((FuncExpr *) linitial(((CustomScan *) ss->ps.plan)->custom_exprs))->funcid);
			/* a function returning NULL in FROM gives one row of NULLs */
			for (int i = 0; i < state->ncols; i++)
				keep_column(state, i, (Datum) 0, true);
		}
		state->have_result = true;
	}

	for (int i = 0; i < state->ncols; i++)
	{
		slot->tts_values[i] = state->values[i];
		slot->tts_isnull[i] = state->nulls[i];
	}
	return ExecStoreVirtualTuple(slot);
}

/*
 * EvalPlanQual recheck.  With no relation (scanrelid 0) the executor asks
 * this for the row itself, so it produces it.  (Under UPDATE, DELETE or FOR
 * UPDATE a function in FROM gets a whole-row mark, and the hook keeps the
 * function scan there; this serves a scan in a subquery of such a query.)
 */
static bool
recheck_call_row(ScanState *ss, TupleTableSlot *slot pg_attribute_unused())
{
	return !TupIsNull(next_call_row(ss));
}

static TupleTableSlot *
exec_call_scan(CustomScanState *node)
{
	return ExecScan(&node->ss, next_call_row, recheck_call_row);
}

static void
end_call_scan(CustomScanState *node)
{
	CallScanState *state = (CallScanState *) node;

	for (int i = 0; i < state->ncols; i++)
	{
		if (state->copied[i])
			pfree(DatumGetPointer(state->values[i]));
		state->copied[i] = false;
	}
}

/*
 * ReScanCustomScan: the row again.  The function is called again only when
 * a parameter of the call itself has changed, not one of the scan's quals
 * or target list (as the function scan rereads its tuplestore unless its
 * function's parameters changed).
 */
static void
rescan_call_scan(CustomScanState *node)
{
	CallScanState *state = (CallScanState *) node;
	Bitmapset  *changed = node->ss.ps.chgParam;

	if (changed != NULL && !state->params_known)
	{
		/* found on the first rescan that needs them: most scans have none */
		Expr	   *call = (Expr *) linitial(((CustomScan *) node->ss.ps.plan)->custom_exprs);
		MemoryContext old = MemoryContextSwitchTo(node->ss.ps.state->es_query_cxt);

		state->all_params = contain_subplans((Node *) call);
		state->call_params = state->all_params ? NULL : pull_paramids(call);
		state->params_known = true;
		MemoryContextSwitchTo(old);
	}
	if (changed != NULL &&
		(state->all_params || bms_overlap(changed, state->call_params)))
		state->have_result = false;
	state->position = CALL_BEFORE_ROW;
	ExecScanReScan(&node->ss);
}

/*
 * EXPLAIN: the function's name; under VERBOSE the whole call, as the
 * function scan shows it.  Without VERBOSE no argument is shown, as by the
 * function scan: a plan logged by auto_explain must not carry a token or
 * key given as a literal.  Under ANALYZE, how the call's row came to the
 * scan: "handed over" (enr_return_row) or "null" (a strict function given
 * a NULL).
 */
static void
explain_call_scan(CustomScanState *node, List *ancestors, ExplainState *es)
{
	CallScanState *state = (CallScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	Node	   *call = (Node *) linitial(cscan->custom_exprs);

	if (es->verbose)
	{
		List	   *context = set_deparse_context_plan(es->deparse_cxt, (Plan *) cscan,
													   ancestors);

		ExplainPropertyText("Function Call",
							deparse_expression(call, context, true, false), es);
	}
	else if (IsA(call, FuncExpr))
		ExplainPropertyText("Function", get_func_name(((FuncExpr *) call)->funcid), es);
	/* what the last call did */
	if (es->analyze && state->have_result)
		ExplainPropertyText("Row", state->delivered ? "handed over" : "null", es);
}

/* Register the scan and the planner hook; called from _PG_init */
void
enrollment_call_scan_init(void)
{
	RegisterCustomScanMethods(&call_scan_methods);
	prev_set_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = call_set_rel_pathlist;
}
