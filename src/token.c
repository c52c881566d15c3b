/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Creating enrollment tokens and checking them without using them.
 *
 * create_token validates its arguments strictly (contradictions are errors,
 * never silently rewritten), issues a credential, stores its public id and
 * digest, and records the creation in the audit log in the same statement.
 * check_token is the read-only path: it never writes and never raises for
 * a bad token, so it also works on a standby.
 *
 * src/token.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "enrollment.h"
#include "probe.h"

PG_FUNCTION_INFO_V1(enrollment_create_token);
PG_FUNCTION_INFO_V1(enrollment_create_self_enrollment_token);
PG_FUNCTION_INFO_V1(enrollment_check_token);

typedef enum TokenKind
{
	KIND_ONCE,
	KIND_CLUSTER,
	KIND_REUSABLE
} TokenKind;

static EnrPlan node_for_binding_plan = {
	.sql = "SELECT n.tenant, n.status FROM enrollment.node_record AS n WHERE n.node_id = $1",
	.nargs = 1,
	.argtypes = {UUIDOID}
};

/*
 * A new token and its audit event.  From 0.5.0 on the token's retention
 * clock starts at its expiry (enrollment.sql: retention_from); a database
 * not updated yet has no such column.
 */
#define INSERT_TOKEN_SQL(extra_col, extra_val) \
	"WITH t AS (" \
	"  INSERT INTO enrollment.enrollment_token" \
	"    (tenant, public_id, prefix, token_hash, kind, label, status, max_uses," \
	"     cluster_id, node_id, created_by, expires_at, created_at" extra_col ")" \
	"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14" extra_val ")" \
	"  ON CONFLICT (public_id) DO NOTHING" \
	"  RETURNING token_id)," \
	" a AS (" \
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, node_id, details)" \
	"  SELECT $1, $11, 'sensor_enrollment_token_created', t.token_id, $10," \
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(" \
	"           'kind', $5, 'label', $6, 'prefix', $13, 'max_uses', $8," \
	"           'cluster_id', $9, 'expires_at', $12))" \
	"  FROM t)" \
	"SELECT token_id FROM t"

static EnrPlan insert_token_plan = {
	.sql = INSERT_TOKEN_SQL(", retention_from", ", $12"),
	.nargs = 14,
	.argtypes = {TEXTOID, INT8OID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID}
};

/* the same for a database still at 0.4.0 */
static EnrPlan insert_token_plan_v4 = {
	.sql = INSERT_TOKEN_SQL("", ""),
	.nargs = 14,
	.argtypes = {TEXTOID, INT8OID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID}
};

/* check_token reads the token by public id, without SPI (probe.c) */
static EnrProbeTable token_by_public_id = {
	.relname = "enrollment_token",
	.indexname = "enrollment_token_public_id_key",
	.eqproc = F_INT8EQ,
	.ncols = 11,
	.cols = {"public_id", "token_id", "kind", "status", "token_hash", "use_count",
	"max_uses", "expires_at", "cluster_id", "tenant", "node_id"}
};

/* the node a re-enrollment token is bound to (check_token) */
static EnrProbeTable node_by_id = {
	.relname = "node_record",
	.indexname = "node_record_pkey",
	.eqproc = F_UUID_EQ,
	.ncols = 2,
	.cols = {"node_id", "status"}
};

static TokenKind
parse_kind(text *kind)
{
	char	   *k = text_to_cstring(kind);

	if (strcmp(k, "once") == 0)
		return KIND_ONCE;
	if (strcmp(k, "cluster") == 0)
		return KIND_CLUSTER;
	if (strcmp(k, "reusable") == 0)
		return KIND_REUSABLE;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid token kind"),
			 errdetail("The kind of an enrollment token is once, cluster or reusable."),
			 errhint("Use kind => 'once' for a single machine, 'cluster' for a fleet bound to a cluster_id.")));
	return KIND_ONCE;			/* keep compiler quiet */
}

static void
reject_argument(const char *msg, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s", msg),
			 detail ? errdetail("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/*
 * Compute the expiry of a new token from ttl or expires_days (at most one
 * is given) or the kind's default.  Sets *never for a reusable token with
 * neither.  Lifetimes must be positive and at most enrollment.max_token_ttl.
 */
static TimestampTz
compute_expiry(TokenKind kind, FunctionCallInfo fcinfo, TimestampTz now, bool *never)
{
	TimestampTz expires;
	bool		have_ttl = !PG_ARGISNULL(2);
	bool		have_days = !PG_ARGISNULL(6);

	*never = false;
	if (have_ttl && have_days)
		reject_argument("ttl and expires_days are mutually exclusive",
						"Both give the lifetime of the token.",
						"Pass only one of them.");
	if (have_ttl)
	{
		Interval   *ttl = PG_GETARG_INTERVAL_P(2);
		double		shortest = ttl->time / (double) USECS_PER_SEC +
			(ttl->day + ttl->month * 28.0) * SECS_PER_DAY;
		double		longest = ttl->time / (double) USECS_PER_SEC +
			(ttl->day + ttl->month * 31.0) * SECS_PER_DAY;

		/* rule out overflow before adding: months vary from 28 to 31 days */
		if (longest <= 0)
			reject_argument("ttl must be positive",
							"A token's lifetime must end after its creation.", NULL);
		if (shortest > enrollment_max_ttl)
			expires = DT_NOEND; /* caught below with the right message */
		else
			expires = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														  TimestampTzGetDatum(now),
														  IntervalPGetDatum(ttl)));
		if (expires <= now)
			reject_argument("ttl must be positive",
							"A token's lifetime must end after its creation.", NULL);
	}
	else if (have_days)
	{
		int32		days = PG_GETARG_INT32(6);

		if (days <= 0)
			reject_argument("expires_days must be positive", NULL, NULL);
		if ((int64) days * SECS_PER_DAY > enrollment_max_ttl)
			expires = DT_NOEND; /* caught below with the right message */
		else
			expires = now + (int64) days * USECS_PER_DAY;
	}
	else if (kind == KIND_ONCE)
		expires = now + (int64) enrollment_once_ttl * USECS_PER_SEC;
	else if (kind == KIND_CLUSTER)
		expires = now + (int64) enrollment_cluster_ttl * USECS_PER_SEC;
	else
	{
		*never = true;
		return 0;
	}

	if (expires - now > (int64) enrollment_max_ttl * USECS_PER_SEC || TIMESTAMP_IS_NOEND(expires))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token lifetime exceeds the maximum"),
				 errdetail("Enrollment tokens may live at most %d days (enrollment.max_token_ttl).",
						   enrollment_max_ttl / SECS_PER_DAY),
				 errhint("Choose a shorter ttl or expires_days; a superuser can raise enrollment.max_token_ttl.")));
	return expires;
}

/* how many new public ids create_token draws before it gives up */
#define PUBLIC_ID_ATTEMPTS 4

/* The public part of a credential ("enr_0123456789abcdef"), palloc'd */
static char *
public_part(const IssuedCredential *cred)
{
	size_t		len = strlen(cred->text) - TOKEN_TAIL_LEN;

	return pnstrdup(cred->text, len);
}

/*
 * enrollment.create_token(kind text, label text, ttl interval, max_uses int,
 *		cluster_id text, node_id uuid, expires_days int)
 *	RETURNS (token_id, token, prefix, kind, expires_at, max_uses, cluster_id, node_id)
 */
static Datum
create_token_impl(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;
	TokenKind	kind;
	text	   *kind_text;
	text	   *label = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	text	   *cluster_id = PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4);
	pg_uuid_t  *node_id = PG_ARGISNULL(5) ? NULL : PG_GETARG_UUID_P(5);
	bool		have_max = !PG_ARGISNULL(3);
	int32		max_uses = have_max ? PG_GETARG_INT32(3) : 0;
	TimestampTz now = enr_now();
	TimestampTz expires;
	bool		never;
	char	   *tenant = enr_current_tenant();
	char	   *actor = enr_current_actor();
	IssuedCredential cred;
	Datum		args[14];
	char		nulls[14];
	Datum		token_id;
	Datum		out[8];
	bool		outnulls[8] = {false};
	MemoryContext callcxt = CurrentMemoryContext;
	HeapTuple	result;
	const char *status;
	int			attempt;

	tupdesc = enr_result_tupdesc(fcinfo);

	/* arguments */
	enr_require_arg(fcinfo, 0, "kind");
	kind_text = PG_GETARG_TEXT_PP(0);
	kind = parse_kind(kind_text);
	if (label)
		enr_check_text_arg(label, "label", 128, false);
	if (cluster_id)
		enr_check_text_arg(cluster_id, "cluster_id", 128, false);
	if (have_max && max_uses <= 0)
		reject_argument("max_uses must be positive",
						"max_uses caps the number of enrollments; NULL means no cap.", NULL);

	switch (kind)
	{
		case KIND_ONCE:
			if (have_max && max_uses != 1)
				reject_argument("a once token is used exactly once",
								"max_uses other than 1 contradicts kind 'once'.",
								"Use kind 'reusable' or 'cluster' for several enrollments.");
			if (cluster_id)
				reject_argument("cluster_id is only for cluster tokens",
								"A once token is not bound to a cluster.",
								"Use kind 'cluster' to bind a token to a cluster_id.");
			max_uses = 1;
			have_max = true;
			break;
		case KIND_CLUSTER:
			if (!cluster_id)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("a cluster token needs a cluster_id"),
						 errdetail("Only nodes presenting the same cluster_id may enroll with a cluster token."),
						 errhint("Pass cluster_id => 'your-cluster'.")));
			if (node_id)
				reject_argument("node_id is only for once tokens",
								"Re-enrollment tokens are single-use tokens bound to one node.", NULL);
			break;
		case KIND_REUSABLE:
			if (cluster_id)
				reject_argument("cluster_id is only for cluster tokens",
								"A reusable token is not bound to a cluster.",
								"Use kind 'cluster' to bind a token to a cluster_id.");
			if (node_id)
				reject_argument("node_id is only for once tokens",
								"Re-enrollment tokens are single-use tokens bound to one node.", NULL);
			break;
	}
	expires = compute_expiry(kind, fcinfo, now, &never);
	status = (kind == KIND_ONCE) ? "pending" : "active";

	SPI_connect();

	/* a re-enrollment token must name an existing, enrolled node of this tenant */
	if (node_id)
	{
		Datum		a[1] = {UUIDPGetDatum(node_id)};
		bool		isnull;
		char	   *ntenant = NULL;
		char	   *nstatus = NULL;

		enr_execute(&node_for_binding_plan, a, NULL, true, 1);
		if (SPI_processed == 1)
		{
			ntenant = TextDatumGetCString(enr_getattr(0, 1, &isnull));
			nstatus = TextDatumGetCString(enr_getattr(0, 2, &isnull));
		}
		if (SPI_processed != 1 || strcmp(ntenant, tenant) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("node not found"),
					 errdetail("No node with that node_id exists in tenant \"%s\".", tenant),
					 errhint("List nodes in enrollment.nodes.")));
		if (strcmp(nstatus, "removed") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("node was removed"),
					 errdetail("A removed node cannot be re-enrolled."),
					 errhint("Create a plain once token to enroll it as a new node.")));
	}

	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(tenant);
	args[2] = CStringGetTextDatum(enrollment_token_prefix);
	args[4] = PointerGetDatum(kind_text);
	args[5] = label ? PointerGetDatum(label) : (Datum) 0;
	args[6] = CStringGetTextDatum(status);
	args[7] = Int32GetDatum(max_uses);
	args[8] = cluster_id ? PointerGetDatum(cluster_id) : (Datum) 0;
	args[9] = node_id ? UUIDPGetDatum(node_id) : (Datum) 0;
	args[10] = CStringGetTextDatum(actor);
	args[11] = TimestampTzGetDatum(expires);
	/* created when its lifetime starts, so expires_at - created_at is it */
	args[13] = TimestampTzGetDatum(now);
	if (!label)
		nulls[5] = 'n';
	if (!have_max)
		nulls[7] = 'n';
	if (!cluster_id)
		nulls[8] = 'n';
	if (!node_id)
		nulls[9] = 'n';
	if (never)
		nulls[11] = 'n';

	/*
	 * The public id is time-ordered (credential.c), so one issued in the same
	 * second as another may collide with it: the insert then adds no row (ON
	 * CONFLICT DO NOTHING, and no audit event either), and a new credential
	 * is drawn.  A second collision in a row is already unlikely beyond
	 * measure; several mean something else is wrong.
	 */
	for (attempt = 1;; attempt++)
	{
		enr_issue_credential(enrollment_token_prefix, true, &cred);
		args[1] = Int64GetDatum(cred.public_id);
		args[3] = PointerGetDatum(enr_digest_bytea(cred.digest));
		args[12] = CStringGetTextDatum(public_part(&cred));
		if (enr_execute(enr_has_retention_from() ? &insert_token_plan : &insert_token_plan_v4,
						args, nulls, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "token insert failed");
		if (SPI_processed == 1)
			break;
		enr_wipe_credential(&cred);
		if (attempt == PUBLIC_ID_ATTEMPTS)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("could not issue a token with an unused public id"),
					 errdetail("%d public ids drawn in a row were already taken.", attempt),
					 errhint("Try again; if this repeats, look for rows inserted into enrollment.enrollment_token by other means.")));
	}
	{
		bool		isnull;

		token_id = enr_getattr(0, 1, &isnull);
	}

	/* build the result in the caller's context before SPI memory goes away */
	MemoryContextSwitchTo(callcxt);
	out[0] = token_id;
	out[1] = CStringGetTextDatum(cred.text);
	out[2] = CStringGetTextDatum(public_part(&cred));
	out[3] = PointerGetDatum(kind_text);
	out[4] = TimestampTzGetDatum(expires);
	outnulls[4] = never;
	out[5] = Int32GetDatum(max_uses);
	outnulls[5] = !have_max;
	out[6] = cluster_id ? PointerGetDatum(cluster_id) : (Datum) 0;
	outnulls[6] = (cluster_id == NULL);
	out[7] = node_id ? UUIDPGetDatum(node_id) : (Datum) 0;
	outnulls[7] = (node_id == NULL);
	result = heap_form_tuple(tupdesc, out, outnulls);
	enr_wipe_credential(&cred);

	/* a token for new nodes: warn when the license is (nearly) used up */
	if (!node_id)
		enr_warn_node_capacity(args[0]);

	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/* create_token: operators and above */
Datum
enrollment_create_token(PG_FUNCTION_ARGS)
{
	enr_require_role("operator", "create enrollment tokens");
	return create_token_impl(fcinfo);
}

#define SELF_ENROLLMENT_MAX_TTL (60 * 60)	/* seconds */

/*
 * enrollment.create_self_enrollment_token(ttl interval DEFAULT '15 minutes')
 *	RETURNS the row of create_token
 *
 * Any member of the tenant may mint a token for their own machine: a once
 * token with a short lifetime (at most an hour), created by (and so bound
 * to) the caller's own identity, whatever their role.
 */
Datum
enrollment_create_self_enrollment_token(PG_FUNCTION_ARGS)
{
	LOCAL_FCINFO(inner, 7);
	Interval   *ttl;

	enr_require_role("viewer", "mint a self-enrollment token");
	enr_require_arg(fcinfo, 0, "ttl");
	ttl = PG_GETARG_INTERVAL_P(0);
	if (ttl->month != 0 || ttl->day != 0 || ttl->time > (int64) SELF_ENROLLMENT_MAX_TTL * USECS_PER_SEC)
		reject_argument("ttl of a self-enrollment token is at most 1 hour",
						"A self-enrollment token is short-lived by design.",
						"Pass a ttl of up to '1 hour', or ask an operator for a longer-lived token.");

	InitFunctionCallInfoData(*inner, fcinfo->flinfo, 7, fcinfo->fncollation, NULL, fcinfo->resultinfo);
	for (int i = 0; i < 7; i++)
	{
		inner->args[i].value = (Datum) 0;
		inner->args[i].isnull = true;
	}
	inner->args[0].value = CStringGetTextDatum("once");
	inner->args[0].isnull = false;
	inner->args[1].value = CStringGetTextDatum("self-enrollment");
	inner->args[1].isnull = false;
	inner->args[2].value = IntervalPGetDatum(ttl);
	inner->args[2].isnull = false;
	return create_token_impl(inner);
}

/*
 * For check_token: the verdict of the limits enroll checks beyond the
 * token row, in enroll's order (a token switched off, the tenant's node
 * limit for a token that creates nodes, the token's rate), or NULL.  They
 * are read as they are now, without the locks enroll takes, and without
 * SQL (node_count.c): the caller needs no privilege on the tables.
 */
static const char *
check_limits(Datum token_id, text *kind, Datum tenant, bool unbound)
{
	int32		rate = enr_text_is(kind, "reusable") ? enr_token_rate(token_id) : -1;

	if (rate == 0)
		return "rate_limited";
	if (unbound && enr_node_limit_reached(tenant))
		return "node_limit_exceeded";
	if (rate > 0 && enr_enrollments_last_hour(token_id, enr_now()) >= rate)
		return "rate_limited";
	return NULL;
}

/*
 * For check_token: whether the node a re-enrollment token is bound to was
 * removed (or is gone), which enroll refuses as node_mismatch.  Only bound
 * tokens pay for this probe.
 */
static bool
bound_node_removed(Datum node_id)
{
	Datum		v[2];
	bool		n[2];

	return !enr_probe(&node_by_id, node_id, v, n) ||
		enr_text_is(DatumGetTextPP(v[1]), "removed");
}

/*
 * enrollment.check_token(token text, cluster_id text)
 *	RETURNS (ok, error, token_id, kind, status, expires_at, uses_left)
 *
 * Same checks and order as enroll, without using the token or raising.
 */
Datum
enrollment_check_token(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		out[7];
	bool		outnulls[7] = {false, false, true, true, true, true, true};
	const char *error = NULL;
	int64		public_id;
	uint8		digest[ENR_DIGEST_LEN];

	tupdesc = enr_result_tupdesc(fcinfo);

	if (PG_ARGISNULL(0) ||
		enr_parse_presented(PG_GETARG_TEXT_PP(0), &public_id, digest) != TOKEN_OK)
		error = "invalid_token";

	if (error == NULL)
	{
		Datum		v[11];
		bool		n[11];

		/* another tenant's token is as unknown as a made-up one */
		if (!enr_probe(&token_by_public_id, Int64GetDatum(public_id), v, n) ||
			!enr_digest_matches(DatumGetByteaPP(v[4]), digest) ||
			!enr_is_current_tenant(v[9]))
			error = "invalid_token";
		else
		{
			/* kind and status go out as the row holds them: no text round trip */
			text	   *status = DatumGetTextPP(v[3]);
			int32		use_count = DatumGetInt32(v[5]);
			bool		nomax = n[6];
			int32		max_uses = DatumGetInt32(v[6]);
			bool		noexp = n[7];
			TimestampTz expires = DatumGetTimestampTz(v[7]);
			bool		live = (enr_text_is(status, "pending") || enr_text_is(status, "active"));

			if (enr_text_is(status, "revoked"))
				error = "token_revoked";
			else if (enr_text_is(status, "used") || enr_text_is(status, "exhausted") ||
					 (!nomax && use_count >= max_uses))
				error = "token_exhausted";
			else if (enr_text_is(status, "expired") || (!noexp && expires <= enr_now()))
				error = "token_expired";
			else if (!n[8] &&	/* only a cluster token has a cluster_id */
					 (PG_ARGISNULL(1) ||
					  !enr_text_equal(DatumGetTextPP(v[8]), PG_GETARG_TEXT_PP(1))))
				error = "cluster_mismatch";	/* none given: enroll refuses it too */
			else if (!n[10] && bound_node_removed(v[10]))
				error = "node_mismatch";
			else
				error = check_limits(v[1], DatumGetTextPP(v[2]), v[9], n[10]);

			out[2] = v[1];
			outnulls[2] = false;
			out[3] = v[2];
			outnulls[3] = false;
			/* a live token past its expiry is reported as expired */
			out[4] = (live && !noexp && expires <= enr_now()) ?
				CStringGetTextDatum("expired") : PointerGetDatum(status);
			outnulls[4] = false;
			out[5] = TimestampTzGetDatum(expires);
			outnulls[5] = noexp;
			out[6] = Int32GetDatum(nomax ? 0 : Max(max_uses - use_count, 0));
			outnulls[6] = nomax;
		}
	}

	out[0] = BoolGetDatum(error == NULL);
	out[1] = error ? CStringGetTextDatum(error) : (Datum) 0;
	outnulls[1] = (error == NULL);
	return enr_return_row(fcinfo, tupdesc, out, outnulls);
}
