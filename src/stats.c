/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  enrollment.stats(): the counters kept in shared memory since the
 *	  server started (or since enrollment.stats_reset()), one row each.
 *
 * Rows are (area, counter, value, at): area is enroll, verify, nonces,
 * worker or stats; "at" is the time of the last worker run for worker rows
 * and the reset time for the stats row.
 *
 * src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "enrollment.h"

PG_FUNCTION_INFO_V1(enrollment_stats);
PG_FUNCTION_INFO_V1(enrollment_stats_reset);

static const char *const worker_counter_names[WORKER_NUM_COUNTERS] = {
	"runs", "tokens_expired", "tokens_purged", "nonces_forgotten", "stamps_written",
	"uses_folded", "node_changes_folded"
};

static void
put_row(ReturnSetInfo *rsinfo, const char *area, const char *counter, int64 value, TimestampTz at)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, at == 0};

	values[0] = CStringGetTextDatum(area);
	values[1] = CStringGetTextDatum(counter);
	values[2] = Int64GetDatum(value);
	values[3] = TimestampTzGetDatum(at);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* enrollment.stats() RETURNS SETOF (area text, counter text, value bigint, at timestamptz) */
Datum
enrollment_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		enroll[ENROLL_NUM_OUTCOMES];
	uint64		verify[VERIFY_NUM_OUTCOMES];
	uint64		worker[WORKER_NUM_COUNTERS];
	TimestampTz last_run;
	int64		last_us;
	TimestampTz reset_at;

	/* server-wide, across tenants; a tenant's own figures: tenant_stats */
	enr_require_dba("enrollment.stats counts the activity of every tenant; read enrollment.tenant_stats for the current tenant's.");
	enr_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	enr_counters_read(enroll, verify, worker, &last_run, &last_us, &reset_at);

	for (int i = 0; i < ENROLL_NUM_OUTCOMES; i++)
		put_row(rsinfo, "enroll", enroll_outcome_names[i], (int64) enroll[i], 0);
	for (int i = 0; i < VERIFY_NUM_OUTCOMES; i++)
		put_row(rsinfo, "verify", verify_outcome_names[i], (int64) verify[i], 0);
	put_row(rsinfo, "nonces", "held", enr_nonces_held(), 0);
	put_row(rsinfo, "nonces", "capacity", enrollment_max_nonces, 0);
	put_row(rsinfo, "nonces", "partitions", enr_nonce_partitions(), 0);
	for (int i = 0; i < WORKER_NUM_COUNTERS; i++)
		put_row(rsinfo, "worker", worker_counter_names[i], (int64) worker[i], last_run);
	put_row(rsinfo, "worker", "last_run_duration_us", last_us, last_run);
	put_row(rsinfo, "stats", "reset", 0, reset_at);
	return (Datum) 0;
}

/* enrollment.stats_reset() RETURNS void */
Datum
enrollment_stats_reset(PG_FUNCTION_ARGS)
{
	/* server-wide, across tenants; a tenant's own figures: tenant_stats */
	enr_require_dba("enrollment.stats counts the activity of every tenant; read enrollment.tenant_stats for the current tenant's.");
	enr_require_shmem();
	enr_counters_reset();
	PG_RETURN_VOID();
}
