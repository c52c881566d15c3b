/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The maintenance workers: a launcher, started with the server when the
 *	  library is preloaded, and one worker per database named in
 *	  enrollment.database_names.
 *
 * The launcher connects to no database.  Every interval it looks the names
 * up in pg_database (a shared catalog), says once about each database that
 * does not exist (yet), and starts a worker for each one that does and has
 * none running; a worker that stopped (error, termination) is started
 * again at the launcher's next round.  No FATAL restart loop for a missing
 * database, and databases created later are picked up.
 *
 * Every enrollment.worker_interval a database worker
 *	  - marks tokens whose expires_at has passed as expired (and audits and
 *		announces it with NOTIFY enrollment_events),
 *	  - deletes used, exhausted and expired tokens enrollment.token_retention
 *		after their retention_from (their audit events stay; see
 *		enrollment.sql for that column),
 *	  - forgets nonces that have left the acceptance window,
 *	  - writes the last-used stamps noted in shared memory to the API keys,
 *		and the last-seen stamps to the nodes (0.7.0).
 * Correctness never depends on it: expiry and revocation are enforced when
 * a token or key is used.  Each batch is its own short transaction that
 * skips rows a session has locked, so the worker never holds up an
 * enrollment for longer than one batch, and every step is idempotent.  On
 * a standby it only forgets nonces.  When the extension is not installed in
 * its database it says so once and waits.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "enrollment.h"
#include "probe.h"

PGDLLEXPORT void enrollment_worker_main(Datum main_arg);
PGDLLEXPORT void enrollment_launcher_main(Datum main_arg);

#define WORKER_ACTOR		"enrollment worker"
#define WORKER_LOCK_KEY		INT64CONST(0x656e726f6c6c776b)	/* advisory lock id */

char	   *enrollment_database_names = NULL;
int			enrollment_worker_interval = 10;	/* seconds */
int			enrollment_token_retention = 86400; /* seconds */
int			enrollment_worker_batch = 500;

/*
 * Expiry, from 0.5.0 on: the tokens due are found through the index on
 * retention_from, which holds the expiry of every token not done yet
 * (enrollment.sql).  That index also holds the tokens already done, so a
 * round looks only at retention_from >= $2, the lower bound below which
 * earlier rounds left nothing to expire (see expire_tokens); the rows come
 * back with their retention_from, so the bound advances as batches go.
 */
#define EXPIRE_SQL(due_where, due_order, extra_out) \
	"WITH due AS (" \
	"  SELECT token_id FROM enrollment.enrollment_token" \
	"   WHERE " due_where \
	"   ORDER BY " due_order " LIMIT $1 FOR UPDATE SKIP LOCKED)," \
	" upd AS (" \
	"  UPDATE enrollment.enrollment_token AS t SET status = 'expired'" \
	"    FROM due WHERE t.token_id = due.token_id" \
	"  RETURNING t.token_id, t.tenant, t.kind" extra_out "," \
	"            t.prefix || pg_catalog.lpad(pg_catalog.to_hex(t.public_id), 16, '0') AS public_part)," \
	" aud AS (" \
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, details)" \
	"  SELECT tenant, '" WORKER_ACTOR "', 'sensor_enrollment_token_expired', token_id," \
	"         pg_catalog.jsonb_build_object('kind', kind, 'prefix', public_part)" \
	"    FROM upd)" \
	"SELECT pg_catalog.pg_notify('" ENR_NOTIFY_CHANNEL "', pg_catalog.json_build_object(" \
	"         'event', 'expired', 'tenant', tenant, 'token_id', token_id, 'prefix', public_part)::text)" \
	extra_out \
	"  FROM upd"

static EnrPlan expire_plan = {
	.sql = EXPIRE_SQL("retention_from >= $2 AND retention_from <= pg_catalog.now()"
					  "     AND status IN ('pending', 'active') AND expires_at <= pg_catalog.now()",
					  "retention_from", ", retention_from"),
	.nargs = 2,
	.argtypes = {INT4OID, TIMESTAMPTZOID}
};

/*
 * Tokens written without retention_from (by a 0.4.0 library still running
 * after the update, or restored from a 0.4.0 dump) get the clock 0.4.0 gave
 * them, as the upgrade did; once an hour, with the full expiry scan.
 */
static EnrPlan repair_clocks_plan = {
	.sql = "UPDATE enrollment.enrollment_token"
	"   SET retention_from = CASE WHEN status IN ('used', 'exhausted') THEN last_used_at"
	"                             ELSE expires_at END"
	" WHERE retention_from IS NULL AND status <> 'revoked'"
	"   AND (expires_at IS NOT NULL OR status IN ('used', 'exhausted'))",
	.nargs = 0
};

/* does a prepared transaction of this database exist? */
static EnrPlan prepared_plan = {
	.sql = "SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_xacts"
	" WHERE database = pg_catalog.current_database()",
	.nargs = 0
};

/* a token due but not expired by this round (locked by a session) */
static EnrPlan still_due_plan = {
	.sql = "SELECT pg_catalog.min(retention_from) FROM enrollment.enrollment_token"
	" WHERE retention_from >= $1 AND retention_from <= $2"
	"   AND status IN ('pending', 'active') AND expires_at <= $2",
	.nargs = 2,
	.argtypes = {TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/*
 * purge: a token of retention_from < now - token_retention is done; one
 * still pending or active there is expired by the expiry pass first (with
 * its audit event), then purged
 */
static EnrPlan purge_plan = {
	.sql = "WITH old AS ("
	"  SELECT token_id FROM enrollment.enrollment_token"
	"   WHERE retention_from < pg_catalog.now() - pg_catalog.make_interval(secs => $2)"
	"     AND status IN ('used', 'exhausted', 'expired')"
	"   LIMIT $1 FOR UPDATE SKIP LOCKED)"
	"DELETE FROM enrollment.enrollment_token AS t USING old WHERE t.token_id = old.token_id",
	.nargs = 2,
	.argtypes = {INT4OID, FLOAT8OID}
};

/* the same two passes in a database still at 0.4.0 */
static EnrPlan expire_plan_v4 = {
	.sql = EXPIRE_SQL("status IN ('pending', 'active') AND expires_at <= pg_catalog.now()",
					  "expires_at", ""),
	.nargs = 1,
	.argtypes = {INT4OID}
};

static EnrPlan purge_plan_v4 = {
	.sql = "WITH old AS ("
	"  SELECT token_id FROM enrollment.enrollment_token"
	"   WHERE status IN ('used', 'exhausted', 'expired')"
	"     AND (CASE WHEN status = 'expired' THEN expires_at ELSE last_used_at END)"
	"         < pg_catalog.now() - pg_catalog.make_interval(secs => $2)"
	"   LIMIT $1 FOR UPDATE SKIP LOCKED)"
	"DELETE FROM enrollment.enrollment_token AS t USING old WHERE t.token_id = old.token_id",
	.nargs = 2,
	.argtypes = {INT4OID, FLOAT8OID}
};

/*
 * Write stamps noted in shared memory to their rows (0.7.0 for the nodes;
 * the API keys' since 0.1.0): $1 the ids, $2 their stamps.  The rows are
 * locked FOR NO KEY UPDATE (the lock the UPDATE takes anyway) SKIP LOCKED,
 * so a round waits neither for a change of one row (a re-enrollment, a
 * revocation) nor, in another order, for a bulk removal.  One row per
 * stamp, in the order of $1: whether it was written, and whether its row
 * is there (a stamp written nowhere whose row is not there belongs to a
 * credential replaced by a re-enrollment, or to a deleted row).
 */
#define STAMPS_SQL(table, idcol, stampcol) \
	"WITH u AS (" \
	"  SELECT * FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::timestamptz[]))" \
	"       WITH ORDINALITY AS u(id, stamp, i))," \
	" l AS (" \
	"  SELECT u.id, u.stamp FROM " table " AS t JOIN u ON t." idcol " = u.id" \
	"   FOR NO KEY UPDATE OF t SKIP LOCKED)," \
	" w AS (" \
	"  UPDATE " table " AS t SET " stampcol " = GREATEST(t." stampcol ", l.stamp)" \
	"    FROM l WHERE t." idcol " = l.id" \
	"  RETURNING l.id)" \
	"SELECT w.id IS NOT NULL," \
	"       EXISTS (SELECT FROM " table " AS t WHERE t." idcol " = u.id)" \
	"  FROM u LEFT JOIN w ON w.id = u.id" \
	" ORDER BY u.i"

static EnrPlan stamps_plans[ENR_STAMP_KINDS] = {
	[ENR_STAMP_API_KEY] = {
		.sql = STAMPS_SQL("enrollment.api_key", "key_id", "last_used_at"),
		.nargs = 2,
		.argtypes = {INT8ARRAYOID, TIMESTAMPTZARRAYOID}
	},
	[ENR_STAMP_NODE] = {
		.sql = STAMPS_SQL("enrollment.node_record", "secret_public_id", "last_seen_at"),
		.nargs = 2,
		.argtypes = {INT8ARRAYOID, TIMESTAMPTZARRAYOID}
	}
};

static const char *const stamps_activity[ENR_STAMP_KINDS] = {
	"enrollment: writing last-used stamps", "enrollment: writing last-seen stamps"
};

/*
 * Enrollments are announced by the worker, from the audit log, rather than
 * by enroll itself: a NOTIFY in the enrolling transaction would hold the
 * server-wide notify lock through its commit and serialize all concurrent
 * enrollments.  Each round reads the events after the last one seen (and
 * the "holes" left below it, see announce_enrollments) and notifies the
 * enrollments among them.
 */
static EnrPlan announce_plan = {
	.sql = "SELECT a.event_id,"
	"       CASE WHEN a.action = 'sensor_enrolled' THEN"
	"         pg_catalog.pg_notify('" ENR_NOTIFY_CHANNEL "', pg_catalog.json_build_object("
	"           'event', 'enrolled', 'tenant', a.tenant, 'token_id', a.token_id,"
	"           'node_id', a.node_id,"
	"           'reenrolled', a.details OPERATOR(pg_catalog.?) 'reenrollment',"
	"           'approval', a.details OPERATOR(pg_catalog.->>) 'approval',"
	"           'private_ip', a.details OPERATOR(pg_catalog.->>) 'private_ip')::text) END"
	"  FROM enrollment.audit_event AS a"
	" WHERE a.event_id > $1 OR a.event_id OPERATOR(pg_catalog.=) ANY ($2)"
	" ORDER BY a.event_id LIMIT $3",
	.nargs = 3,
	.argtypes = {INT8OID, INT8ARRAYOID, INT4OID}
};

/*
 * Audit events are sealed into the hash chain every round (from 0.2.0 on:
 * until ALTER EXTENSION UPDATE has run, the function is not there).
 */
static EnrPlan seal_plan = {
	.sql = "SELECT enrollment.seal_audit()",
	.nargs = 0
};

/*
 * Uses appended to token_use are counted in their tokens every round (from
 * 0.6.0 on; see enroll.c), a batch per transaction.
 */
static EnrPlan fold_plan = {
	.sql = "SELECT enrollment.fold_token_uses($1)",
	.nargs = 1,
	.argtypes = {INT4OID}
};

/*
 * Changes appended to kept node counts (0.7.0, node_limit.c): up to a batch
 * of the tenants that keep a count and have changes, in order after the
 * last one of the round before (so that tenants skipped for their locks do
 * not keep the others out), then each tenant's folded in a transaction of
 * its own, so that its setting row is held for one fold only
 */
static EnrPlan changed_tenants_plan = {
	.sql = "SELECT k.tenant FROM enrollment.tenant_node_count AS k"
	" WHERE k.tenant OPERATOR(pg_catalog.>) $2 AND EXISTS (SELECT FROM enrollment.tenant_node_change AS c"
	"   WHERE c.tenant OPERATOR(pg_catalog.=) k.tenant)"
	" ORDER BY k.tenant LIMIT $1",
	.nargs = 2,
	.argtypes = {INT4OID, TEXTOID}
};
static EnrPlan fold_node_changes_plan = {
	.sql = "SELECT enrollment.fold_node_changes($1)",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/*
 * Rates of tokens that are gone (0.7.0): token_rate has no foreign key,
 * which would put triggers on enrollment_token (enrollment.sql)
 */
static EnrPlan rate_orphans_plan = {
	.sql = "DELETE FROM enrollment.token_rate AS r WHERE NOT EXISTS ("
	" SELECT FROM enrollment.enrollment_token AS t WHERE t.token_id = r.token_id)",
	.nargs = 0
};

static EnrPlan last_event_plan = {
	.sql = "SELECT COALESCE(pg_catalog.max(event_id), 0) FROM enrollment.audit_event",
	.nargs = 0
};

/* Fill in the parts common to the launcher and the database workers */
static void
init_worker_struct(BackgroundWorker *w, const char *function, const char *type)
{
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_ConsistentState;
	snprintf(w->bgw_library_name, BGW_MAXLEN, "enrollment");
	snprintf(w->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(w->bgw_type, BGW_MAXLEN, "%s", type);
}

/* Register the launcher; called from _PG_init while preloading */
void
enrollment_worker_register(void)
{
	BackgroundWorker worker;

	if (enrollment_database_names == NULL || enrollment_database_names[0] == '\0')
		return;					/* no database to maintain: no worker */
	init_worker_struct(&worker, "enrollment_launcher_main", "enrollment launcher");
	snprintf(worker.bgw_name, BGW_MAXLEN, "enrollment launcher");
	worker.bgw_restart_time = 10;
	RegisterBackgroundWorker(&worker);
}

/*
 * The memory context of the current maintenance round, reset after it.
 * CommitTransactionCommand leaves TopMemoryContext current, so each of the
 * round's transactions ends through commit_round_xact, which switches back:
 * otherwise whatever the round allocates after its first transaction (the
 * arrays of the stamps it writes, for one) would live in TopMemoryContext
 * for ever.
 */
static MemoryContext round_cxt = NULL;

static void
commit_round_xact(void)
{
	CommitTransactionCommand();
	if (round_cxt != NULL)
		MemoryContextSwitchTo(round_cxt);
}

/* What run_statement hands each row of its result, before the commit */
typedef void (*RowCallback) (uint64 row, void *arg);

/*
 * Run one statement of the round in its own transaction; returns rows
 * processed, or with value the bigint the statement's one row holds.
 * each_row, if given, is called with each row's number (enr_getattr reads
 * it) while the result is still there.
 */
static uint64
run_statement(EnrPlan *plan, Datum *args, const char *activity, bool value,
			  RowCallback each_row, void *arg)
{
	uint64		n;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	enr_execute(plan, args, NULL, false, 0);
	n = SPI_processed;
	if (each_row)
		for (uint64 r = 0; r < n; r++)
			each_row(r, arg);
	if (value)
		n = n == 1 ? (uint64) DatumGetInt64(enr_getattr(0, 1, &isnull)) : 0;
	SPI_finish();
	PopActiveSnapshot();
	commit_round_xact();
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

static uint64
run_batch(EnrPlan *plan, Datum *args, const char *activity)
{
	return run_statement(plan, args, activity, false, NULL, NULL);
}

/*
 * Expiry scans (0.5.0).  expire_from is the lower bound of the next scan:
 * below it, no token that is still pending or active and past its expiry
 * can appear any more.  A round moves it to the earliest of
 *	  - the time the round started (later tokens are the next round's),
 *	  - the start of the oldest transaction then in progress in this
 *		database: a token it creates and commits later expires after that
 *		start, since create_token takes its expiry from the statement's
 *		start time,
 *	  - the expiry of any token the round found due but could not lock.
 * While a prepared transaction exists in the database, or activity is not
 * tracked (track_activities off), the bound does not move.  Tokens written
 * by other means with an expiry already past (a restore) are caught by the
 * full scan each worker start and every FULL_EXPIRY_SCAN_EVERY; until then
 * enroll refuses them and the tokens view reports them expired all the
 * same.  A long transaction (an idle session in one, a pg_dump) holds the
 * bound back, so rounds scan all expiries since its start meanwhile.
 */
#define FULL_EXPIRY_SCAN_EVERY	(3600 * USECS_PER_SEC)
static TimestampTz expire_from = DT_NOBEGIN;
static TimestampTz last_full_expiry_scan = 0;

/*
 * Earliest start of a transaction or statement of another backend of this
 * database (DT_NOEND if none).  The statement's start counts too: within a
 * procedure a transaction can start after the statement whose start time
 * create_token takes.  DT_NOBEGIN when it cannot be known (activity is not
 * tracked).
 */
static TimestampTz
oldest_transaction_start(void)
{
	TimestampTz oldest = DT_NOEND;
	int			n;

	if (!pgstat_track_activities)
		return DT_NOBEGIN;
	n = pgstat_fetch_stat_numbackends();
	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *b;

		if (l == NULL)
			continue;
		b = &l->backendStatus;
		if (b->st_databaseid != MyDatabaseId || b->st_procpid == MyProcPid)
			continue;
		if (b->st_xact_start_timestamp != 0)
			oldest = Min(oldest, b->st_xact_start_timestamp);
		if (b->st_xact_start_timestamp != 0 && b->st_activity_start_timestamp != 0)
			oldest = Min(oldest, b->st_activity_start_timestamp);
	}
	return oldest;
}

/* Mark due tokens expired, in batches from expire_from on; returns how many */
static uint64
expire_tokens(void)
{
	TimestampTz started;
	TimestampTz oldest;
	TimestampTz cursor;
	TimestampTz next;
	uint64		total = 0;
	uint64		n;
	bool		isnull;
	Datum		d;

	if (GetCurrentTimestamp() - last_full_expiry_scan >= FULL_EXPIRY_SCAN_EVERY)
	{
		expire_from = DT_NOBEGIN;
		last_full_expiry_scan = GetCurrentTimestamp();
		run_batch(&repair_clocks_plan, NULL, "enrollment: repairing retention clocks");
	}
	cursor = expire_from;

	/* read before any batch takes its snapshot (see expire_from) */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	started = GetCurrentTimestamp();
	oldest = oldest_transaction_start();
	commit_round_xact();

	do
	{
		Datum		a[2] = {Int32GetDatum(enrollment_worker_batch), TimestampTzGetDatum(cursor)};

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "enrollment: expiring tokens");
		enr_execute(&expire_plan, a, NULL, false, 0);
		n = SPI_processed;
		for (uint64 r = 0; r < n; r++)
		{
			d = enr_getattr(r, 2, &isnull);
			if (!isnull && DatumGetTimestampTz(d) > cursor)
				cursor = DatumGetTimestampTz(d);
		}
		SPI_finish();
		PopActiveSnapshot();
		commit_round_xact();
		total += n;
		CHECK_FOR_INTERRUPTS();
	} while (n == (uint64) enrollment_worker_batch);

	next = Min(started, oldest);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		Datum		a[2] = {TimestampTzGetDatum(expire_from), TimestampTzGetDatum(started)};

		enr_execute(&still_due_plan, a, NULL, true, 1);
		d = enr_getattr(0, 1, &isnull);
		if (!isnull)
			next = Min(next, DatumGetTimestampTz(d));
		/* a prepared transaction's start is not known: do not move past it */
		enr_execute(&prepared_plan, NULL, NULL, true, 1);
		if (DatumGetInt64(enr_getattr(0, 1, &isnull)) > 0)
			next = expire_from;
	}
	SPI_finish();
	PopActiveSnapshot();
	commit_round_xact();
	pgstat_report_activity(STATE_IDLE, NULL);

	expire_from = Max(expire_from, next);
	return total;
}

/* Has this database's extension the token columns of 0.5.0? */
static bool
retention_available(void)
{
	bool		found;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	found = enr_has_retention_from();
	commit_round_xact();
	return found;
}

/* Is the extension installed in this database? (own short transaction) */
static bool
extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("enrollment", true));
	commit_round_xact();
	return installed;
}

/* Has this database's extension the function name (own short transaction)? */
static bool
function_available(const char *name)
{
	bool		found;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	found = OidIsValid(LookupFuncName(list_make2(makeString("enrollment"), makeString(pstrdup(name))),
									  -1, NULL, true));
	commit_round_xact();
	return found;
}

/* The stamps as the two array arguments of a STAMPS_SQL plan */
static void
stamp_arrays(const uint64 *ids, const TimestampTz *stamps, int n, Datum *args)
{
	Datum	   *idd = palloc(sizeof(Datum) * n);
	Datum	   *std = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
	{
		idd[i] = Int64GetDatum((int64) ids[i]);
		std[i] = TimestampTzGetDatum(stamps[i]);
	}
	args[0] = PointerGetDatum(construct_array(idd, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(std, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* What a STAMPS_SQL statement said of each stamp of a batch */
typedef struct StampOutcome
{
	int			n;				/* stamps in the batch */
	bool	   *skip;			/* per stamp: its row was locked */
	uint64		written;
} StampOutcome;

/* A row of a STAMPS_SQL result: one stamp, in the order of the batch */
static void
stamp_outcome(uint64 row, void *arg)
{
	StampOutcome *o = (StampOutcome *) arg;
	bool		isnull;

	if (row >= (uint64) o->n)
		return;
	if (DatumGetBool(enr_getattr(row, 1, &isnull)))
		o->written++;
	else if (DatumGetBool(enr_getattr(row, 2, &isnull)))
		o->skip[row] = true;	/* its row was locked: keep it noted */
}

/*
 * Write up to max noted stamps of a kind to their rows (stamps_plans), in
 * one transaction, passing over the nkept ids of kept (sorted), and forget
 * them, except those whose row was locked: their ids are added to kept,
 * which stays sorted.  Returns how many were written; *collected says how
 * many it took from the table.
 */
static uint64
write_stamp_batch(EnrStampKind kind, int max, uint64 *kept, int *nkept, int *collected)
{
	uint64	   *ids = palloc(sizeof(uint64) * max);
	TimestampTz *stamps = palloc(sizeof(TimestampTz) * max);
	int			n = enr_stamp_collect(kind, ids, stamps, max, kept, *nkept);
	int			nforget = 0;
	int			nskipped = 0;
	StampOutcome o = {n, palloc0(sizeof(bool) * Max(n, 1)), 0};
	Datum		args[2];

	*collected = n;
	if (n == 0)
		return 0;
	stamp_arrays(ids, stamps, n, args);
	run_statement(&stamps_plans[kind], args, stamps_activity[kind], false, stamp_outcome, &o);

	for (int i = 0; i < n; i++)
	{
		if (o.skip[i])
		{
			kept[(*nkept)++] = ids[i];
			nskipped++;
			continue;
		}
		ids[nforget] = ids[i];
		stamps[nforget] = stamps[i];
		nforget++;
	}
	enr_stamp_forget(kind, ids, stamps, nforget);
	if (nskipped > 0)
		qsort(kept, *nkept, sizeof(uint64), enr_compare_uint64);
	return o.written;
}

/*
 * Write every stamp of a kind noted in this database, worker_batch_size
 * per transaction, until the table (of slots entries) is drained; the
 * stamps of rows that were locked stay noted for the next round.  Returns
 * how many were written.
 */
static uint64
write_stamps(EnrStampKind kind, int slots)
{
	int			batch = Max(enrollment_worker_batch, 1);
	uint64	   *kept = palloc(sizeof(uint64) * slots);
	int			nkept = 0;
	uint64		written = 0;

	/* at most as many batches as the table has slots, and one more */
	for (int i = 0; i <= slots / batch; i++)
	{
		int			collected;
		int			max = Min(batch, slots - nkept);

		if (max <= 0)
			break;
		written += write_stamp_batch(kind, max, kept, &nkept, &collected);
		if (collected < max)
			break;				/* drained */
		CHECK_FOR_INTERRUPTS();
	}
	return written;
}

/*
 * Announcement state of this worker.  Event ids come from a sequence, so a
 * transaction can commit an event with an id below one already seen; such
 * an id is a "hole" until it shows up (or HOLE_TTL passes: its transaction
 * rolled back, or ran longer than any enrollment does).
 */
#define MAX_HOLES	1024
#define HOLE_TTL	(60 * USECS_PER_SEC)
static int64 announced_upto = -1;	/* -1: not started */
static int64 holes[MAX_HOLES];
static TimestampTz hole_since[MAX_HOLES];
static int	nholes = 0;

/* Start announcing after the last event present when the worker starts */
static void
announce_start(void)
{
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	enr_execute(&last_event_plan, NULL, NULL, true, 1);
	announced_upto = DatumGetInt64(enr_getattr(0, 1, &isnull));
	SPI_finish();
	PopActiveSnapshot();
	commit_round_xact();
}

/*
 * One batch of announcements: notify the enrollments among the events after
 * announced_upto and among the holes, then update both.  Returns the number
 * of events read.
 */
static uint64
announce_batch(void)
{
	Datum	   *hd = palloc(sizeof(Datum) * Max(nholes, 1));
	Datum		args[3];
	uint64		n;
	int64		prev = announced_upto;
	TimestampTz now = GetCurrentTimestamp();
	int			keep = 0;

	for (int i = 0; i < nholes; i++)
		hd[i] = Int64GetDatum(holes[i]);
	args[0] = Int64GetDatum(announced_upto);
	args[1] = PointerGetDatum(construct_array(hd, nholes, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = Int32GetDatum(enrollment_worker_batch);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "enrollment: announcing enrollments");
	enr_execute(&announce_plan, args, NULL, false, 0);
	n = SPI_processed;

	/* holes that showed up are done; expired ones are given up */
	for (int i = 0; i < nholes; i++)
	{
		bool		seen = false;

		for (uint64 r = 0; r < n && !seen; r++)
		{
			bool		isnull;

			seen = DatumGetInt64(enr_getattr(r, 1, &isnull)) == holes[i];
		}
		if (!seen && now - hole_since[i] < HOLE_TTL)
		{
			holes[keep] = holes[i];
			hole_since[keep++] = hole_since[i];
		}
	}
	nholes = keep;
	/* ids skipped between the events read are new holes */
	for (uint64 r = 0; r < n; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(enr_getattr(r, 1, &isnull));

		if (id <= announced_upto)
			continue;			/* a hole that showed up */
		for (int64 h = prev + 1; h < id && nholes < MAX_HOLES; h++)
		{
			holes[nholes] = h;
			hole_since[nholes++] = now;
		}
		prev = announced_upto = id;
	}

	SPI_finish();
	PopActiveSnapshot();
	commit_round_xact();
	pgstat_report_activity(STATE_IDLE, NULL);
	pfree(hd);
	return n;
}

/* run_statement's callback for changed_tenants_plan: keep the tenant */
static void
keep_tenant(uint64 row, void *arg)
{
	List	  **tenants = (List **) arg;
	bool		isnull;
	Datum		d = enr_getattr((int) row, 1, &isnull);
	MemoryContext old;

	if (isnull)
		return;
	old = MemoryContextSwitchTo(round_cxt);	/* SPI's context goes at SPI_finish */
	*tenants = lappend(*tenants, TextDatumGetCString(d));
	MemoryContextSwitchTo(old);
}

/* the last tenant whose changes a round folded, where the next one goes on */
static char *fold_after = NULL;

/*
 * Fold the changes of up to a batch of tenants into their kept node counts;
 * a round leaves to the next the tenants whose locks others held and those
 * beyond the batch.  Returns the changes folded.
 */
static uint64
fold_node_changes(void)
{
	Datum		a[2] = {Int32GetDatum(enrollment_worker_batch),
	CStringGetTextDatum(fold_after ? fold_after : "")};
	List	   *tenants = NIL;
	ListCell   *lc;
	uint64		folded = 0;

	run_statement(&changed_tenants_plan, a, "enrollment: finding kept node counts to fold", false,
				  keep_tenant, &tenants);
	foreach(lc, tenants)
	{
		Datum		t[1] = {CStringGetTextDatum((char *) lfirst(lc))};

		folded += run_statement(&fold_node_changes_plan, t, "enrollment: folding node count changes",
								true, NULL, NULL);
		CHECK_FOR_INTERRUPTS();
	}
	/* a full batch: the next round goes on after it; else from the start */
	if (fold_after != NULL)
		pfree(fold_after);
	fold_after = list_length(tenants) == enrollment_worker_batch
		? MemoryContextStrdup(TopMemoryContext, (char *) llast(tenants)) : NULL;
	return folded;
}

/* One maintenance round */
static void
run_round(const char *dbname, bool *said_missing)
{
	TimestampTz start = GetCurrentTimestamp();
	int64		now_s = (int64) time(NULL);
	uint64		n;

	enr_count_worker(WORKER_NONCES_FORGOTTEN,
					 enr_nonce_sweep(now_s - enrollment_hmac_window));

	if (RecoveryInProgress())
	{
		enr_note_worker_run(GetCurrentTimestamp(), GetCurrentTimestamp() - start);
		return;					/* a standby: nothing to write */
	}
	if (!extension_installed())
	{
		if (!*said_missing)
			ereport(LOG,
					(errmsg("enrollment worker: extension \"enrollment\" is not installed in database \"%s\"; waiting",
							dbname)));
		*said_missing = true;
		announced_upto = -1;	/* a new extension starts its ids afresh */
		expire_from = DT_NOBEGIN;	/* and its tokens are all new */
		nholes = 0;
		return;
	}
	if (*said_missing)
		ereport(LOG,
				(errmsg("enrollment worker: extension found in database \"%s\"; starting maintenance",
						dbname)));
	*said_missing = false;

	if (retention_available())
		enr_count_worker(WORKER_TOKENS_EXPIRED, expire_tokens());
	else
	{
		do
		{
			Datum		a[1] = {Int32GetDatum(enrollment_worker_batch)};

			n = run_batch(&expire_plan_v4, a, "enrollment: expiring tokens");
			enr_count_worker(WORKER_TOKENS_EXPIRED, n);
			CHECK_FOR_INTERRUPTS();
		} while (n == (uint64) enrollment_worker_batch);
	}

	do
	{
		Datum		a[2] = {Int32GetDatum(enrollment_worker_batch),
		Float8GetDatum((double) enrollment_token_retention)};

		n = run_batch(retention_available() ? &purge_plan : &purge_plan_v4, a,
					  "enrollment: purging old tokens");
		enr_count_worker(WORKER_TOKENS_PURGED, n);
		CHECK_FOR_INTERRUPTS();
	} while (n == (uint64) enrollment_worker_batch);

	enr_count_worker(WORKER_STAMPS_WRITTEN,
					 write_stamps(ENR_STAMP_API_KEY, enrollment_last_used_slots) +
					 write_stamps(ENR_STAMP_NODE, enrollment_last_seen_slots));

	if (function_available("fold_token_uses"))
	{
		Datum		a[1] = {Int32GetDatum(enrollment_worker_batch)};

		do
		{
			n = run_statement(&fold_plan, a, "enrollment: counting appended token uses", true,
							  NULL, NULL);
			enr_count_worker(WORKER_USES_FOLDED, n);
			CHECK_FOR_INTERRUPTS();
		} while (n == (uint64) enrollment_worker_batch);
	}

	if (function_available("fold_node_changes"))
		enr_count_worker(WORKER_NODE_CHANGES_FOLDED, fold_node_changes());

	if (function_available("set_token_rate"))
		run_batch(&rate_orphans_plan, NULL, "enrollment: dropping the rates of purged tokens");

	if (function_available("seal_audit"))
		run_batch(&seal_plan, NULL, "enrollment: sealing the audit log");

	if (announced_upto < 0)
		announce_start();
	while (announce_batch() == (uint64) enrollment_worker_batch)
		CHECK_FOR_INTERRUPTS();

	enr_note_worker_run(GetCurrentTimestamp(), GetCurrentTimestamp() - start);
}

/*
 * One worker per database: a session advisory lock of this database, held
 * until the process exits.  A launcher restarted while its workers run
 * (they outlive it) starts a second one for each database; that one waits
 * here, taking over when the first exits, instead of running the rounds
 * twice (two announcements of every enrollment, two sweeps at once).
 *
 * It tries once a second rather than queueing for the lock: a wait inside
 * a transaction would show as a transaction in progress, which holds back
 * where the other worker's expiry scans start (oldest_transaction_start).
 */
static void
wait_to_be_the_only_worker(const char *dbname)
{
	LOCKTAG		tag;
	bool		said = false;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (WORKER_LOCK_KEY >> 32),
						 (uint32) WORKER_LOCK_KEY, 1);
	for (;;)
	{
		LockAcquireResult got;

		StartTransactionCommand();
		got = LockAcquire(&tag, ExclusiveLock, true, true);
		CommitTransactionCommand();
		if (got != LOCKACQUIRE_NOT_AVAIL)
			break;
		if (!said)
		{
			ereport(LOG,
					(errmsg("enrollment worker: another worker serves database \"%s\"; waiting until it exits",
							dbname)));
			pgstat_report_activity(STATE_RUNNING, "enrollment: waiting for the other worker of this database");
			said = true;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (said)
		pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run every transaction of this process at READ COMMITTED, whatever
 * default_transaction_isolation says (postgresql.conf, ALTER DATABASE or
 * ROLE, all applied by now; PGC_S_OVERRIDE outlasts a reload too).  Each
 * statement of a round locks what it changes, skipping what others hold,
 * and reads the newest rows where it must: at a stricter level a
 * concurrent change would fail a statement, and an error ends the process
 * until it is started again; under SERIALIZABLE its reads would fail
 * sessions' transactions, and on a standby no snapshot could be taken.
 */
static void
read_committed_always(void)
{
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
}

/* Entry point of the worker process */
void
enrollment_worker_main(Datum main_arg pg_attribute_unused())
{
	char		dbname[BGW_EXTRALEN];
	bool		said_missing = false;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	read_committed_always();
	pgstat_report_appname("enrollment worker");
	ereport(LOG, (errmsg("enrollment worker started for database \"%s\"", dbname)));
	wait_to_be_the_only_worker(dbname);

	round_cxt = AllocSetContextCreate(TopMemoryContext, "enrollment worker round",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(round_cxt);
		run_round(dbname, &said_missing);
		MemoryContextSwitchTo(old);
		MemoryContextReset(round_cxt);
		/*
		 * A worker's table statistics stay its own until flushed: without
		 * this, autovacuum would not see the round's updates and deletions
		 * before the worker exits.
		 */
		pgstat_report_stat(true);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 enrollment_worker_interval * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Which of the listed databases exist.  A heap scan of pg_database, as the
 * autovacuum launcher does: with no database selected, the catalog's
 * indexes cannot be opened until some backend has built the shared
 * relcache, but the (nailed) catalog itself can be read.
 */
static void
databases_exist(List *dbs, int ndbs, bool *exists)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	for (int i = 0; i < ndbs; i++)
		exists[i] = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		for (int i = 0; i < ndbs; i++)
			if (strcmp(NameStr(db->datname), (char *) list_nth(dbs, i)) == 0)
				exists[i] = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
}

/*
 * Entry point of the launcher: keep one worker running per existing
 * database of enrollment.database_names.
 */
void
enrollment_launcher_main(Datum main_arg pg_attribute_unused())
{
	char	   *names;
	List	   *dbs = NIL;
	int			ndbs;
	BackgroundWorkerHandle *handles[ENR_MAX_DATABASES] = {NULL};
	bool		said_missing[ENR_MAX_DATABASES] = {false};

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	read_committed_always();

	/* the list is a postmaster setting: read it once */
	names = pstrdup(enrollment_database_names);
	if (!SplitIdentifierString(names, ',', &dbs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in enrollment.database_names")));
	/* check_database_names (guc.c) allowed no more than this */
	ndbs = Min(list_length(dbs), ENR_MAX_DATABASES);

	for (;;)
	{
		bool		exists[ENR_MAX_DATABASES];

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		databases_exist(dbs, ndbs, exists);

		for (int i = 0; i < ndbs; i++)
		{
			const char *db = list_nth(dbs, i);
			pid_t		pid;
			BackgroundWorker worker;

			if (!exists[i])
			{
				if (!said_missing[i])
					ereport(LOG,
							(errmsg("enrollment launcher: database \"%s\" does not exist; waiting", db)));
				said_missing[i] = true;
				continue;
			}
			said_missing[i] = false;
			if (handles[i] != NULL &&
				GetBackgroundWorkerPid(handles[i], &pid) != BGWH_STOPPED)
				continue;		/* running or starting */
			if (handles[i] != NULL)
			{
				/* the worker stopped: its handle goes before a new one is made */
				pfree(handles[i]);
				handles[i] = NULL;
			}

			init_worker_struct(&worker, "enrollment_worker_main", "enrollment worker");
			snprintf(worker.bgw_name, BGW_MAXLEN, "enrollment worker for %s", db);
			strlcpy(worker.bgw_extra, db, BGW_EXTRALEN);
			worker.bgw_restart_time = BGW_NEVER_RESTART;
			worker.bgw_notify_pid = MyProcPid;
			if (!RegisterDynamicBackgroundWorker(&worker, &handles[i]))
			{
				handles[i] = NULL;
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("enrollment launcher: could not start a worker for database \"%s\"", db),
						 errhint("Raise max_worker_processes.")));
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 enrollment_worker_interval * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
