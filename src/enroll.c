/*-------------------------------------------------------------------------
 *
 * enroll.c
 *	  The enrollment path: check a token, count its use, create or
 *	  re-enroll the node, issue the node credential, audit it.
 *
 * Concurrency: the token row is locked (SELECT ... FOR UPDATE) before any
 * limit is checked, so enrollments through one token are serialised and a
 * cap of K admits exactly K of any number of concurrent callers; under READ
 * COMMITTED a waiter re-reads the row the winner committed.  A re-enrollment
 * also locks the node row, so two re-enrollments of one node apply one
 * after the other.  Everything after the checks is one statement (update
 * token, insert or update node, insert audit event), and any error rolls
 * all of it back: a rejected enrollment changes no row.
 *
 * src/enroll.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "enrollment.h"

PG_FUNCTION_INFO_V1(enrollment_enroll);

static EnrPlan lock_token_plan = {
	.sql = "SELECT t.token_id, t.tenant, t.kind, t.status, t.token_hash, t.use_count,"
	"       t.max_uses, t.cluster_id, t.node_id, t.expires_at, t.prefix"
	"  FROM enrollment.enrollment_token AS t WHERE t.public_id = $1 FOR UPDATE",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static EnrPlan lock_node_plan = {
	.sql = "SELECT n.name, n.status FROM enrollment.node_record AS n"
	" WHERE n.node_id = $1 FOR UPDATE",
	.nargs = 1,
	.argtypes = {UUIDOID}
};

/* $1 token_id, $2 new token status, $3 now, $4 tenant, $5 node name, $6 role,
 * $7 cluster_id, $8 secret prefix, $9 secret public id, $10 secret digest,
 * $11 actor, $12 token's public part */
static EnrPlan enroll_new_plan = {
	.sql = "WITH u AS ("
	"  UPDATE enrollment.enrollment_token"
	"     SET use_count = use_count + 1, status = $2,"
	"         used_at = COALESCE(used_at, $3), last_used_at = $3"
	"   WHERE token_id = $1),"
	" n AS ("
	"  INSERT INTO enrollment.node_record (tenant, name, role, cluster_id, enrolled_by,"
	"      secret_prefix, secret_public_id, secret_hash, enrolled_at)"
	"  VALUES ($4, $5, $6, $7, $1, $8, $9, $10, $3)"
	"  RETURNING node_id, status),"
	" a AS ("
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, node_id, details)"
	"  SELECT $4, $11, 'sensor_enrolled', $1, n.node_id,"
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
	"           'node_name', $5, 'role', $6, 'cluster_id', $7, 'token_prefix', $12))"
	"  FROM n)"
	"SELECT node_id, status FROM n",
	.nargs = 12,
	.argtypes = {UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, BYTEAOID, TEXTOID, TEXTOID}
};

/* as above; $13 is the bound node */
static EnrPlan reenroll_plan = {
	.sql = "WITH u AS ("
	"  UPDATE enrollment.enrollment_token"
	"     SET use_count = use_count + 1, status = $2,"
	"         used_at = COALESCE(used_at, $3), last_used_at = $3"
	"   WHERE token_id = $1),"
	" n AS ("
	"  UPDATE enrollment.node_record"
	"     SET secret_prefix = $8, secret_public_id = $9, secret_hash = $10,"
	"         reenrolled_at = $3, enroll_count = enroll_count + 1,"
	"         role = COALESCE($6, role), cluster_id = COALESCE($7, cluster_id)"
	"   WHERE node_id = $13"
	"  RETURNING node_id, status),"
	" a AS ("
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, node_id, details)"
	"  SELECT $4, $11, 'sensor_enrolled', $1, n.node_id,"
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
	"           'node_name', $5, 'role', $6, 'cluster_id', $7, 'token_prefix', $12,"
	"           'reenrollment', true))"
	"  FROM n)"
	"SELECT node_id, status FROM n",
	.nargs = 13,
	.argtypes = {UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, BYTEAOID, TEXTOID, TEXTOID, UUIDOID}
};

/*
 * Raise one of the token errors, counted in enrollment.stats; the message
 * is the outcome's key and the detail names only the token's public part.
 */
static void
token_error(int sqlstate, EnrollOutcome outcome, const char *detail, const char *hint)
{
	const char *key = enroll_outcome_names[outcome];

	enr_count_enroll(outcome);
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", key),
			 errdetail_internal("%s", detail),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * enrollment.enroll(token text, node_name text, cluster_id text, node_role text)
 *	RETURNS (node_id uuid, node_secret text, status text, token_id uuid, reenrolled boolean)
 */
Datum
enrollment_enroll(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	text	   *node_name;
	text	   *cluster_id = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	text	   *node_role = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	int64		public_id;
	uint8		digest[ENR_DIGEST_LEN];
	TokenParseResult pr;
	TimestampTz now = enr_now();
	MemoryContext callcxt = CurrentMemoryContext;
	bool		isnull;
	Datum		token_id;
	char	   *tenant;
	char	   *kind;
	char	   *status;
	char	   *public_prefix;
	int32		use_count;
	int32		max_uses;
	bool		nomax;
	Datum		tcluster;
	bool		nocluster;
	Datum		bound_node;
	bool		unbound;
	TimestampTz expires;
	bool		noexp;
	const char *new_status;
	IssuedCredential cred;
	Datum		args[13];
	char		nulls[13];
	Datum		out[5];
	bool		outnulls[5] = {false};
	HeapTuple	result;

	tupdesc = enr_result_tupdesc(fcinfo);

	enr_require_arg(fcinfo, 0, "token");
	enr_require_arg(fcinfo, 1, "node_name");
	node_name = PG_GETARG_TEXT_PP(1);
	enr_check_text_arg(node_name, "node_name", 128, false);
	if (cluster_id)
		enr_check_text_arg(cluster_id, "cluster_id", 128, false);
	if (node_role)
		enr_check_text_arg(node_role, "node_role", 64, false);

	/* shape and checksum: a malformed token never reaches a table */
	pr = enr_parse_presented(PG_GETARG_TEXT_PP(0), &public_id, digest);
	if (pr != TOKEN_OK)
		token_error(ERRCODE_ENR_INVALID_TOKEN, ENROLL_INVALID_TOKEN,
					enr_token_parse_result_detail(pr),
					"Check that the whole token was copied.");

	SPI_connect();

	{
		Datum		a[1] = {Int64GetDatum(public_id)};

		enr_execute(&lock_token_plan, a, NULL, false, 1);
	}
	/* unknown, wrong-secret and other tenants' tokens look alike to the caller */
	if (SPI_processed != 1 ||
		!enr_digest_matches(DatumGetByteaPP(enr_getattr(0, 5, &isnull)), digest) ||
		!enr_is_current_tenant(enr_getattr(0, 2, &isnull)))
		token_error(ERRCODE_ENR_INVALID_TOKEN, ENROLL_INVALID_TOKEN,
					"No enrollment token matches.", NULL);

	token_id = enr_getattr(0, 1, &isnull);
	tenant = TextDatumGetCString(enr_getattr(0, 2, &isnull));
	kind = TextDatumGetCString(enr_getattr(0, 3, &isnull));
	status = TextDatumGetCString(enr_getattr(0, 4, &isnull));
	use_count = DatumGetInt32(enr_getattr(0, 6, &isnull));
	max_uses = DatumGetInt32(enr_getattr(0, 7, &nomax));
	tcluster = enr_getattr(0, 8, &nocluster);
	bound_node = enr_getattr(0, 9, &unbound);
	expires = DatumGetTimestampTz(enr_getattr(0, 10, &noexp));
	public_prefix = psprintf("%s%016" INT64_MODIFIER "x",
							 TextDatumGetCString(enr_getattr(0, 11, &isnull)),
							 (uint64) public_id);

	/* state checks, most definitive first */
	if (strcmp(status, "revoked") == 0)
		token_error(ERRCODE_ENR_TOKEN_REVOKED, ENROLL_TOKEN_REVOKED,
					psprintf("Token %s was revoked.", public_prefix),
					"Ask an operator for a new token.");
	if (strcmp(status, "used") == 0 || strcmp(status, "exhausted") == 0 ||
		(!nomax && use_count >= max_uses))
		token_error(ERRCODE_ENR_TOKEN_EXHAUSTED, ENROLL_TOKEN_EXHAUSTED,
					strcmp(kind, "once") == 0
					? psprintf("Token %s was already used.", public_prefix)
					: psprintf("Token %s reached its limit of %d enrollments.", public_prefix, max_uses),
					"Ask an operator for a new token.");
	if (strcmp(status, "expired") == 0 || (!noexp && expires <= now))
		token_error(ERRCODE_ENR_TOKEN_EXPIRED, ENROLL_TOKEN_EXPIRED,
					psprintf("Token %s expired at %s.", public_prefix,
							 timestamptz_to_str(expires)),
					"Ask an operator for a new token.");
	if (strcmp(kind, "cluster") == 0 &&
		(cluster_id == NULL ||
		 !enr_text_equal(DatumGetTextPP(tcluster), cluster_id)))
		token_error(ERRCODE_ENR_CLUSTER_MISMATCH, ENROLL_CLUSTER_MISMATCH,
					psprintf("Token %s only enrolls nodes of its own cluster.", public_prefix),
					"Pass the cluster_id the token was created for.");
	if (!nocluster)
		cluster_id = DatumGetTextPP(tcluster);

	/* a re-enrollment token only serves the node it is bound to */
	if (!unbound)
	{
		Datum		a[1] = {bound_node};
		char	   *bound_name;
		char	   *bound_status;

		enr_execute(&lock_node_plan, a, NULL, false, 1);
		if (SPI_processed != 1)
			elog(ERROR, "node bound to token %s is missing", public_prefix);
		bound_name = TextDatumGetCString(enr_getattr(0, 1, &isnull));
		bound_status = TextDatumGetCString(enr_getattr(0, 2, &isnull));
		if (strcmp(bound_status, "removed") == 0)
			token_error(ERRCODE_ENR_NODE_MISMATCH, ENROLL_NODE_MISMATCH,
						psprintf("The node token %s is bound to was removed.", public_prefix),
						"Enroll the machine as a new node with a plain token.");
		if (strcmp(bound_name, text_to_cstring(node_name)) != 0)
			token_error(ERRCODE_ENR_NODE_MISMATCH, ENROLL_NODE_MISMATCH,
						psprintf("Token %s re-enrolls a different node.", public_prefix),
						"Pass the node_name of the node the token was created for.");
	}

	if (strcmp(kind, "once") == 0)
		new_status = "used";
	else if (!nomax && use_count + 1 >= max_uses)
		new_status = "exhausted";
	else
		new_status = "active";

	enr_issue_credential(enrollment_node_prefix, &cred);

	args[0] = token_id;
	args[1] = CStringGetTextDatum(new_status);
	args[2] = TimestampTzGetDatum(now);
	args[3] = CStringGetTextDatum(tenant);
	args[4] = PointerGetDatum(node_name);
	args[5] = node_role ? PointerGetDatum(node_role) : (Datum) 0;
	args[6] = cluster_id ? PointerGetDatum(cluster_id) : (Datum) 0;
	args[7] = CStringGetTextDatum(enrollment_node_prefix);
	args[8] = Int64GetDatum(cred.public_id);
	args[9] = PointerGetDatum(enr_digest_bytea(cred.digest));
	args[10] = CStringGetTextDatum(enr_current_actor());
	args[11] = CStringGetTextDatum(public_prefix);
	args[12] = bound_node;
	memset(nulls, ' ', sizeof(nulls));
	if (!node_role)
		nulls[5] = 'n';
	if (!cluster_id)
		nulls[6] = 'n';

	if (enr_execute(unbound ? &enroll_new_plan : &reenroll_plan, args, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "enrollment of token %s wrote no node", public_prefix);

	/* the worker announces the enrollment from the audit log (worker.c) */
	enr_count_enroll(ENROLL_OK);

	MemoryContextSwitchTo(callcxt);
	out[0] = enr_getattr(0, 1, &isnull);
	out[1] = CStringGetTextDatum(cred.text);
	out[2] = enr_getattr(0, 2, &isnull);
	out[3] = token_id;
	out[4] = BoolGetDatum(!unbound);
	result = heap_form_tuple(tupdesc, out, outnulls);
	enr_wipe_credential(&cred);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}
