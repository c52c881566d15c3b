/*-------------------------------------------------------------------------
 *
 * enroll.c
 *	  The enrollment path: check a token, count its use, create or
 *	  re-enroll the node, issue the node credential, audit it.
 *
 * Concurrency.  A token's limits (single use, max_uses, expiry, revocation)
 * are enforced by the row lock taken to count the use: the token is locked
 * as UPDATE locks it (under READ COMMITTED, a caller that waited for the
 * lock gets the row the winner committed) and checked again on that row,
 * so a cap of K admits exactly K of any number of concurrent callers.  The
 * lock is taken as late as possible: the token is first read without a
 * lock (to reject bad tokens early and to learn what the node needs), the
 * node and its audit event are inserted, and only then is the use counted.
 * So concurrent enrollments through one shared token (a cluster token)
 * serialise only on that last step and the commit, not on the whole
 * enrollment.  A once token, which nobody queues for, is locked first.
 *
 * A shared token without a cap, once used, is not updated at all (0.6.0,
 * appends_use): its row is locked FOR SHARE, which concurrent enrollments
 * hold together and revoke_token's UPDATE waits for, checked again, and the
 * use is appended to token_use; the worker adds those rows to use_count
 * later (fold_token_uses), and the tokens view counts them meanwhile.  Such
 * enrollments do not wait for each other at all, but one that starts while
 * a revocation waits for the row queues behind it rather than joining the
 * share lock (enr_queue_behind_row_writer), so enrollments cannot keep a
 * revocation out.
 * When the locked row may no longer be used, its error (naming the reason)
 * rolls back the node and the event: a rejected enrollment changes no row.
 *
 * The rows are written directly (direct_write.c) while the tables have the
 * extension's own shape, and by SQL otherwise: there the lock is that of
 * the UPDATE counting the use, whose WHERE clause admits only a token that
 * may still be used; a once token has its use counted and its node written
 * by one statement.
 *
 * A re-enrollment token (bound to a node) locks the token first and then
 * the node, so two re-enrollments of one node apply one after the other;
 * a group it names is created (or found) before either, under the group's
 * own lock (placement.c).  The functions that remove nodes lock the nodes'
 * re-enrollment tokens before the nodes, in the same order.
 *
 * An enrollment that creates a node checks the tenant's node limit before
 * it writes or locks anything else (node_limit.c): a tenant with a limit
 * has its setting row locked first, then the token; where any tenant has
 * an address pool, a share of the tenant's pool lock comes before that
 * row, as set_ip_pool takes it.  A tenant with an address pool has that
 * row locked for the node's address (placement.c),
 * and a group the enrollment names is found, or created under its own
 * lock, next.  Where the tenant approves new nodes by hand, the
 * auto-approve rule of the node's cluster is locked after that, by the
 * count of its approvals (approval.c), and the node is written
 * pending_approval unless the rule admits it.  A reusable token with a
 * rate of enrollments per hour counts its use in its row, and checks the
 * rate under that row's lock (rate_limit.c).
 *
 * src/enroll.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "commands/sequence.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "direct_write.h"
#include "enrollment.h"
#include "probe.h"

PG_FUNCTION_INFO_V1(enrollment_enroll);

/* The token row as enroll reads it, unlocked (probe) or locked (SPI) */
#define TOKEN_COLS 12
enum
{
	TC_PUBLIC_ID, TC_TOKEN_ID, TC_TENANT, TC_KIND, TC_STATUS, TC_TOKEN_HASH,
	TC_USE_COUNT, TC_MAX_USES, TC_CLUSTER_ID, TC_NODE_ID, TC_EXPIRES_AT, TC_PREFIX
};

static EnrProbeTable token_by_public_id = {
	.relname = "enrollment_token",
	.indexname = "enrollment_token_public_id_key",
	.eqproc = F_INT8EQ,
	.ncols = TOKEN_COLS,
	.cols = {"public_id", "token_id", "tenant", "kind", "status", "token_hash",
	"use_count", "max_uses", "cluster_id", "node_id", "expires_at", "prefix"}
};

/* the same columns, in the same order, under a row lock */
static EnrPlan lock_token_plan = {
	.sql = "SELECT t.public_id, t.token_id, t.tenant, t.kind, t.status, t.token_hash,"
	"       t.use_count, t.max_uses, t.cluster_id, t.node_id, t.expires_at, t.prefix"
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

/*
 * The node's columns an enrollment sets, and their values (the token's id
 * is $1, or u.token_id where once_plan's UPDATE returns it).  PLACED_
 * adds the node's placement (0.7.0: placement.c), which a database not
 * updated yet has no columns for; PENDING_ sets the status of a node that
 * waits for approval (approval.c), which is otherwise the column default.
 */
#define NODE_COLS "tenant, name, role, cluster_id, enrolled_by, secret_prefix, secret_public_id, secret_hash, enrolled_at"
#define NODE_VALUES(token) "$3, $4, $5, $6, " token ", $7, $8, $9, $2"
#define PLACED_COLS ", node_group, os, private_ip"
#define PLACED_VALUES ", COALESCE($15, 'default'), $16, $17"
#define PENDING_COLS ", status"
#define PENDING_VALUES ", 'pending_approval'"

/* the sensor_enrolled event of the node n (see enrolled_details below) */
#define ENROLLED_EVENT_SQL \
	" a AS (" \
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, node_id, details)" \
	"  SELECT $3, $10, 'sensor_enrolled', $1, n.node_id," \
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(" \
	"           'node_name', $4, 'role', $5, 'cluster_id', $6, 'token_prefix', $11," \
	"           'approval', $13, 'rule_id', $14, 'node_group', $15, 'os', $16, 'private_ip', $17))" \
	"  FROM n)" \
	"SELECT node_id, status FROM n"

/*
 * A new node and its audit event.  $1 token_id, $2 now, $3 tenant, $4 node
 * name, $5 role, $6 cluster_id, $7 secret prefix, $8 secret public id,
 * $9 secret digest, $10 actor, $11 token's public part, $12 (once_plan's),
 * $13 how the node was approved where approval is manual ('rule' or
 * 'pending'; NULL: automatic), $14 the approving rule (approval.c),
 * $15 the group named (NULL: default), $16 OS, $17 private address
 */
#define NEW_NODE_SQL(cols, values) \
	"WITH n AS (" \
	"  INSERT INTO enrollment.node_record (" NODE_COLS cols ")" \
	"  VALUES (" NODE_VALUES("$1") values ")" \
	"  RETURNING node_id, status)," \
	ENROLLED_EVENT_SQL

#define NODE_NARGS 17
#define NODE_ARGTYPES {UUIDOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, BYTEAOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, UUIDOID, TEXTOID, TEXTOID, INETOID}

static EnrPlan new_node_plan = {
	.sql = NEW_NODE_SQL(PLACED_COLS, PLACED_VALUES),
	.nargs = NODE_NARGS,
	.argtypes = NODE_ARGTYPES
};

static EnrPlan new_pending_node_plan = {
	.sql = NEW_NODE_SQL(PLACED_COLS PENDING_COLS, PLACED_VALUES PENDING_VALUES),
	.nargs = NODE_NARGS,
	.argtypes = NODE_ARGTYPES
};

/* (a database not updated to 0.7.0 has no placement and no manual approval) */
static EnrPlan new_node_plan_v6 = {
	.sql = NEW_NODE_SQL("", ""),
	.nargs = NODE_NARGS,
	.argtypes = NODE_ARGTYPES
};

/*
 * The retention clock of a token whose use ends it (0.5.0, enrollment.sql:
 * retention_from): it stays at the token's expiry when that is at most
 * enrollment.token_retention away, so the update changes no indexed column
 * and is HOT, and starts now otherwise.  $N is now + token_retention.
 * Databases not updated yet have no such column: the _v4 plans.
 */
#define RETENTION_ON_END(ends, now, horizon) \
	", retention_from = CASE WHEN " ends " AND (retention_from IS NULL OR retention_from > " horizon ")" \
	"                        THEN " now " ELSE retention_from END"

/*
 * Count one use, if the token may still be used; the last statement of a
 * new enrollment, so that its row lock is held only until the commit.
 * $1 token_id, $2 now, $3 now + token_retention.  The new status follows the
 * same rules as new_status() below.
 */
#define COUNT_USE_SQL(retention) \
	"UPDATE enrollment.enrollment_token" \
	"   SET use_count = use_count + 1," \
	"       status = CASE WHEN kind = 'once' THEN 'used'" \
	"                     WHEN max_uses IS NOT NULL AND use_count + 1 >= max_uses THEN 'exhausted'" \
	"                     ELSE 'active' END," \
	"       used_at = COALESCE(used_at, $2), last_used_at = $2" retention \
	" WHERE token_id = $1 AND status IN ('pending', 'active')" \
	"   AND (max_uses IS NULL OR use_count < max_uses)" \
	"   AND (expires_at IS NULL OR expires_at > $2)"

static EnrPlan count_use_plan = {
	.sql = COUNT_USE_SQL(RETENTION_ON_END("(kind = 'once' OR (max_uses IS NOT NULL AND use_count + 1 >= max_uses))", "$2", "$3")),
	.nargs = 3,
	.argtypes = {UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/*
 * Append one use of an uncapped shared token (0.6.0; see appends_use()):
 * the token row is locked FOR SHARE, which other enrollments share and
 * revoke_token's or the worker's UPDATE waits for, and checked again on its
 * newest version.  $1 token_id, $2 now.  No row is inserted when the token
 * may no longer be used or has been given a cap meanwhile.
 */
static EnrPlan append_use_plan = {
	.sql = "INSERT INTO enrollment.token_use (token_id, used_at)"
	" SELECT t.token_id, $2 FROM enrollment.enrollment_token AS t"
	"  WHERE t.token_id = $1 AND t.status = 'active' AND t.max_uses IS NULL AND t.use_count > 0"
	"    AND (t.expires_at IS NULL OR t.expires_at > $2)"
	"  FOR SHARE",
	.nargs = 2,
	.argtypes = {UUIDOID, TIMESTAMPTZOID}
};

static EnrPlan count_use_plan_v4 = {
	.sql = COUNT_USE_SQL(""),
	.nargs = 3,
	.argtypes = {UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/*
 * A once token: no other caller may be waiting for it, so the use is
 * counted and the node written in one statement (one executor start-up
 * less than new_node_plan + count_use_plan); parameters as new_node_plan,
 * with $12 now + token_retention.  No row comes back when the UPDATE
 * refuses the token.
 */
#define ONCE_SQL(retention, cols, values) \
	"WITH u AS (" \
	"  UPDATE enrollment.enrollment_token" \
	"     SET use_count = use_count + 1, status = 'used'," \
	"         used_at = COALESCE(used_at, $2), last_used_at = $2" retention \
	"   WHERE token_id = $1 AND status = 'pending' AND use_count = 0" \
	"     AND (expires_at IS NULL OR expires_at > $2)" \
	"  RETURNING token_id)," \
	" n AS (" \
	"  INSERT INTO enrollment.node_record (" NODE_COLS cols ")" \
	"  SELECT " NODE_VALUES("u.token_id") values " FROM u" \
	"  RETURNING node_id, status)," \
	ENROLLED_EVENT_SQL

static EnrPlan once_plan = {
	.sql = ONCE_SQL(RETENTION_ON_END("true", "$2", "$12"), PLACED_COLS, PLACED_VALUES),
	.nargs = NODE_NARGS,
	.argtypes = NODE_ARGTYPES
};

static EnrPlan once_pending_plan = {
	.sql = ONCE_SQL(RETENTION_ON_END("true", "$2", "$12"), PLACED_COLS PENDING_COLS,
					PLACED_VALUES PENDING_VALUES),
	.nargs = NODE_NARGS,
	.argtypes = NODE_ARGTYPES
};

/* databases not updated to 0.7.0 (_v6) or to 0.5.0 (_v4, no retention_from) */
static EnrPlan once_plan_v6 = {
	.sql = ONCE_SQL(RETENTION_ON_END("true", "$2", "$12"), "", ""),
	.nargs = NODE_NARGS,
	.argtypes = NODE_ARGTYPES
};

static EnrPlan once_plan_v4 = {
	.sql = ONCE_SQL("", "", ""),
	.nargs = NODE_NARGS,
	.argtypes = NODE_ARGTYPES
};

/*
 * A re-enrollment, with the token and the node locked: $1 token_id, $2 new
 * token status, $3 now, $4 tenant, $5 node name, $6 role, $7 cluster_id,
 * $8 secret prefix, $9 secret public id, $10 secret digest, $11 actor,
 * $12 token's public part, $13 the bound node, $14 now + token_retention,
 * $15 the group named, $16 OS (NULL: the node keeps its own); the
 * placed plan also returns the node's group and address
 */
#define REENROLL_SQL(retention, placed, returned) \
	"WITH u AS (" \
	"  UPDATE enrollment.enrollment_token" \
	"     SET use_count = use_count + 1, status = $2," \
	"         used_at = COALESCE(used_at, $3), last_used_at = $3" retention \
	"   WHERE token_id = $1)," \
	" n AS (" \
	"  UPDATE enrollment.node_record" \
	"     SET secret_prefix = $8, secret_public_id = $9, secret_hash = $10," \
	"         reenrolled_at = $3, enroll_count = enroll_count + 1," \
	"         role = COALESCE($6, role), cluster_id = COALESCE($7, cluster_id)" placed \
	"   WHERE node_id = $13" \
	"  RETURNING node_id, status" returned ")," \
	" a AS (" \
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, token_id, node_id, details)" \
	"  SELECT $4, $11, 'sensor_enrolled', $1, n.node_id," \
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(" \
	"           'node_name', $5, 'role', $6, 'cluster_id', $7, 'token_prefix', $12," \
	"           'node_group', $15, 'os', $16, 'reenrollment', true))" \
	"  FROM n)" \
	"SELECT * FROM n"

#define REENROLL_PLACED ", node_group = COALESCE($15, node_group), os = COALESCE($16, os)"
#define REENROLL_RETURNED ", node_group, private_ip"
#define REENROLL_NARGS 16
#define REENROLL_ARGTYPES {UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, BYTEAOID, TEXTOID, TEXTOID, UUIDOID, TIMESTAMPTZOID, TEXTOID, TEXTOID}

static EnrPlan reenroll_plan = {
	.sql = REENROLL_SQL(RETENTION_ON_END("$2 <> 'active'", "$3", "$14"), REENROLL_PLACED, REENROLL_RETURNED),
	.nargs = REENROLL_NARGS,
	.argtypes = REENROLL_ARGTYPES
};

static EnrPlan reenroll_plan_v6 = {
	.sql = REENROLL_SQL(RETENTION_ON_END("$2 <> 'active'", "$3", "$14"), "", ""),
	.nargs = REENROLL_NARGS,
	.argtypes = REENROLL_ARGTYPES
};

static EnrPlan reenroll_plan_v4 = {
	.sql = REENROLL_SQL("", "", ""),
	.nargs = REENROLL_NARGS,
	.argtypes = REENROLL_ARGTYPES
};

/*
 * The three tables an enrollment through a once token writes, for the
 * direct path (direct_write.c): every column each has in this version.
 */
enum
{
	TK_TOKEN_ID, TK_TENANT, TK_PUBLIC_ID, TK_PREFIX, TK_TOKEN_HASH, TK_KIND, TK_LABEL,
	TK_STATUS, TK_USE_COUNT, TK_MAX_USES, TK_CLUSTER_ID, TK_NODE_ID, TK_CREATED_BY,
	TK_CREATED_AT, TK_EXPIRES_AT, TK_USED_AT, TK_LAST_USED_AT, TK_REVOKED_AT,
	TK_REVOKED_BY, TK_RETENTION_FROM, TK_NCOLS
};

#define COL(name, type)		{name, type, false}
#define DEFAULTED(name, type)	{name, type, true}

static EnrDirectTable token_table = {
	.relname = "enrollment_token",
	.check = "enrollment_token_rules",
	.rules = enrollment_token_rules,
	.update = true,
	.ncols = TK_NCOLS,
	.cols = {COL("token_id", UUIDOID), COL("tenant", TEXTOID), COL("public_id", INT8OID),
		COL("prefix", TEXTOID), COL("token_hash", BYTEAOID), COL("kind", TEXTOID),
		COL("label", TEXTOID), COL("status", TEXTOID), COL("use_count", INT4OID),
		COL("max_uses", INT4OID), COL("cluster_id", TEXTOID), COL("node_id", UUIDOID),
		COL("created_by", TEXTOID), COL("created_at", TIMESTAMPTZOID),
		COL("expires_at", TIMESTAMPTZOID), COL("used_at", TIMESTAMPTZOID),
		COL("last_used_at", TIMESTAMPTZOID), COL("revoked_at", TIMESTAMPTZOID),
	COL("revoked_by", TEXTOID), COL("retention_from", TIMESTAMPTZOID)}
};

/* where the columns of token_by_public_id (TC_*) are among TK_* */
static const int tc_column[TOKEN_COLS] = {
	TK_PUBLIC_ID, TK_TOKEN_ID, TK_TENANT, TK_KIND, TK_STATUS, TK_TOKEN_HASH,
	TK_USE_COUNT, TK_MAX_USES, TK_CLUSTER_ID, TK_NODE_ID, TK_EXPIRES_AT, TK_PREFIX
};

enum
{
	ND_NODE_ID, ND_TENANT, ND_NAME, ND_ROLE, ND_CLUSTER_ID, ND_STATUS, ND_ENROLLED_BY,
	ND_SECRET_PREFIX, ND_SECRET_PUBLIC_ID, ND_SECRET_HASH, ND_ENROLLED_AT,
	ND_REENROLLED_AT, ND_ENROLL_COUNT, ND_LAST_SEEN_AT, ND_REMOVED_AT, ND_NODE_GROUP, ND_OS,
	ND_PRIVATE_IP, ND_NCOLS
};

/*
 * what once_plan's INSERT leaves to the column defaults is DEFAULTED;
 * before ALTER EXTENSION UPDATE to 0.7.0 the last three are missing
 */
static EnrDirectTable node_table = {
	.relname = "node_record",
	.check = "node_record_rules",
	.rules = enrollment_node_record_rules,
	.ncols = ND_NCOLS,
	.nrequired = ND_NODE_GROUP, /* the placement of 0.7.0 may not be there yet */
	.cols = {DEFAULTED("node_id", UUIDOID), COL("tenant", TEXTOID), COL("name", TEXTOID),
		COL("role", TEXTOID), COL("cluster_id", TEXTOID), DEFAULTED("status", TEXTOID),
		COL("enrolled_by", UUIDOID), COL("secret_prefix", TEXTOID),
		COL("secret_public_id", INT8OID), COL("secret_hash", BYTEAOID),
		COL("enrolled_at", TIMESTAMPTZOID), DEFAULTED("reenrolled_at", TIMESTAMPTZOID),
		DEFAULTED("enroll_count", INT4OID), DEFAULTED("last_seen_at", TIMESTAMPTZOID),
		DEFAULTED("removed_at", TIMESTAMPTZOID), DEFAULTED("node_group", TEXTOID),
	DEFAULTED("os", TEXTOID), DEFAULTED("private_ip", INETOID)}
};

enum
{
	AE_EVENT_ID, AE_TENANT, AE_OCCURRED_AT, AE_ACTOR, AE_ACTION, AE_TOKEN_ID,
	AE_NODE_ID, AE_DETAILS, AE_OBJECT_TYPE, AE_OBJECT_ID, AE_NCOLS
};

static EnrDirectTable audit_table = {
	.relname = "audit_event",
	.ncols = AE_NCOLS,
	.cols = {DEFAULTED("event_id", INT8OID), COL("tenant", TEXTOID),
		DEFAULTED("occurred_at", TIMESTAMPTZOID), COL("actor", TEXTOID),
		COL("action", TEXTOID), COL("token_id", UUIDOID), COL("node_id", UUIDOID),
	COL("details", JSONBOID), DEFAULTED("object_type", TEXTOID), DEFAULTED("object_id", TEXTOID)}
};

/* token_use (0.6.0): a use of an uncapped shared token, not yet counted */
enum
{
	TU_TOKEN_ID, TU_USED_AT, TU_NCOLS
};

static EnrDirectTable use_table = {
	.relname = "token_use",
	.ncols = TU_NCOLS,
	.cols = {COL("token_id", UUIDOID), COL("used_at", TIMESTAMPTZOID)}
};

/* Where a new node goes (placement.c): what enroll was given, and its address */
typedef struct NodePlacement
{
	text	   *group;			/* NULL: 'default' */
	text	   *os;
	Datum		address;		/* inet */
	bool		noaddress;		/* the tenant has no pool */
} NodePlacement;

/* A token row, decoded */
typedef struct TokenRow
{
	Datum		token_id;
	Datum		tenant;
	char	   *kind;
	char	   *status;
	int32		use_count;
	int32		max_uses;
	bool		nomax;
	Datum		cluster;
	bool		nocluster;
	Datum		bound_node;
	bool		unbound;
	TimestampTz expires;
	bool		noexp;
	char	   *public_prefix;	/* prefix + public id: safe to show */
	int32		rate;			/* enrollments per hour (rate_limit.c); -1: none */
	bool		appended;		/* its use went to token_use (appends_use) */
} TokenRow;

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

static void
invalid_token(void)
{
	token_error(ERRCODE_ENR_INVALID_TOKEN, ENROLL_INVALID_TOKEN,
				"No enrollment token matches.", NULL);
}

/*
 * Decode a token row read by the probe or by lock_token_plan (same column
 * order), after checking that it is the presented token and the current
 * tenant's: unknown, wrong-secret and other tenants' tokens look alike.
 */
static void
decode_token(Datum *v, bool *n, int64 public_id, const uint8 *digest, TokenRow *t)
{
	if (!enr_digest_matches(DatumGetByteaPP(v[TC_TOKEN_HASH]), digest) ||
		!enr_is_current_tenant(v[TC_TENANT]))
		invalid_token();

	t->token_id = v[TC_TOKEN_ID];
	t->tenant = v[TC_TENANT];
	t->kind = TextDatumGetCString(v[TC_KIND]);
	t->status = TextDatumGetCString(v[TC_STATUS]);
	t->use_count = DatumGetInt32(v[TC_USE_COUNT]);
	t->nomax = n[TC_MAX_USES];
	t->max_uses = t->nomax ? 0 : DatumGetInt32(v[TC_MAX_USES]);
	t->nocluster = n[TC_CLUSTER_ID];
	t->cluster = v[TC_CLUSTER_ID];
	t->unbound = n[TC_NODE_ID];
	t->bound_node = v[TC_NODE_ID];
	t->noexp = n[TC_EXPIRES_AT];
	t->expires = t->noexp ? 0 : DatumGetTimestampTz(v[TC_EXPIRES_AT]);
	t->public_prefix = psprintf("%s%016" INT64_MODIFIER "x",
								TextDatumGetCString(v[TC_PREFIX]), (uint64) public_id);
}

/* Lock the token row and decode it; false if it is gone */
static bool
lock_token(int64 public_id, const uint8 *digest, TokenRow *t)
{
	Datum		a[1] = {Int64GetDatum(public_id)};
	Datum		v[TOKEN_COLS];
	bool		n[TOKEN_COLS];

	enr_execute(&lock_token_plan, a, NULL, false, 1);
	if (SPI_processed != 1)
		return false;
	for (int c = 0; c < TOKEN_COLS; c++)
		v[c] = enr_getattr(0, c + 1, &n[c]);
	decode_token(v, n, public_id, digest, t);
	return true;
}

/*
 * May the token be used now by this caller?  Raises the token's error,
 * most definitive first.  (count_use_plan's WHERE clause is the same test
 * without the cluster, which never changes.)
 */
static void
check_usable(TokenRow *t, TimestampTz now, text *cluster_id)
{
	if (strcmp(t->status, "revoked") == 0)
		token_error(ERRCODE_ENR_TOKEN_REVOKED, ENROLL_TOKEN_REVOKED,
					psprintf("Token %s was revoked.", t->public_prefix),
					"Ask an operator for a new token.");
	if (strcmp(t->status, "used") == 0 || strcmp(t->status, "exhausted") == 0 ||
		(!t->nomax && t->use_count >= t->max_uses))
		token_error(ERRCODE_ENR_TOKEN_EXHAUSTED, ENROLL_TOKEN_EXHAUSTED,
					strcmp(t->kind, "once") == 0
					? psprintf("Token %s was already used.", t->public_prefix)
					: psprintf("Token %s reached its limit of %d enrollments.",
							   t->public_prefix, t->max_uses),
					"Ask an operator for a new token.");
	if (strcmp(t->status, "expired") == 0 || (!t->noexp && t->expires <= now))
		token_error(ERRCODE_ENR_TOKEN_EXPIRED, ENROLL_TOKEN_EXPIRED,
					psprintf("Token %s expired at %s.", t->public_prefix,
							 timestamptz_to_str(t->expires)),
					"Ask an operator for a new token.");
	if (strcmp(t->kind, "cluster") == 0 &&
		(cluster_id == NULL ||
		 !enr_text_equal(DatumGetTextPP(t->cluster), cluster_id)))
		token_error(ERRCODE_ENR_CLUSTER_MISMATCH, ENROLL_CLUSTER_MISMATCH,
					psprintf("Token %s only enrolls nodes of its own cluster.", t->public_prefix),
					"Pass the cluster_id the token was created for.");
}

/* The token's status after one more use */
static const char *
new_status(const TokenRow *t)
{
	if (strcmp(t->kind, "once") == 0)
		return "used";
	if (!t->nomax && t->use_count + 1 >= t->max_uses)
		return "exhausted";
	return "active";
}

/* Add key: value (a text datum) to a jsonb object being built, unless NULL */
static void
push_text_member(JsonbParseState **state, const char *key, text *value)
{
	JsonbValue	k;
	JsonbValue	v;

	if (value == NULL)
		return;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v.type = jbvString;
	v.val.string.val = VARDATA_ANY(value);
	v.val.string.len = VARSIZE_ANY_EXHDR(value);
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* How a new node was approved, for its event: NULL where approval is automatic */
static text *
approval_detail(const NodeApproval *approval)
{
	if (!approval->manual)
		return NULL;
	return cstring_to_text(approval->by_rule ? "rule" : "pending");
}

/*
 * The details of a sensor_enrolled event, as the SQL path writes them:
 * jsonb_strip_nulls(jsonb_build_object('node_name', …, 'role', …,
 * 'cluster_id', …, 'token_prefix', …, 'approval', …, 'rule_id', …,
 * 'node_group', …, 'os', …, 'private_ip', …))
 */
static Datum
enrolled_details(text *node_name, text *node_role, text *cluster_id, const char *token_prefix,
				 const NodeApproval *approval, const NodePlacement *place)
{
	JsonbParseState *state = NULL;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_text_member(&state, "node_name", node_name);
	push_text_member(&state, "role", node_role);
	push_text_member(&state, "cluster_id", cluster_id);
	push_text_member(&state, "token_prefix", cstring_to_text(token_prefix));
	push_text_member(&state, "approval", approval_detail(approval));
	if (approval->by_rule)
		push_text_member(&state, "rule_id",
						 cstring_to_text(DatumGetCString(DirectFunctionCall1(uuid_out, approval->rule_id))));
	push_text_member(&state, "node_group", place->group);
	push_text_member(&state, "os", place->os);
	if (!place->noaddress)
		push_text_member(&state, "private_ip",
						 cstring_to_text(DatumGetCString(DirectFunctionCall1(inet_out, place->address))));
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/* A snapshot that sees what this transaction and the ones committed so far wrote */
static void
push_newest_snapshot(void)
{
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
}

/*
 * Lock the token row the probe read at tid in the given mode (its newest
 * version, should another enrollment have used it meanwhile: as UPDATE
 * under READ COMMITTED) and check that row again: the token's error is
 * raised when it may no longer be used.  Its columns are left in tv/tn,
 * the locked version's tid in locked_tid.
 */
static void
direct_lock_token(EnrDirectWrite *w, ResultRelInfo *tokens, ItemPointer tid, LockTupleMode mode,
				  int64 public_id, const uint8 *digest, TimestampTz now, text *cluster_id,
				  TokenRow *tok, Datum *tv, bool *tn, ItemPointer locked_tid)
{
	TupleTableSlot *locked;
	Datum		v[TOKEN_COLS];
	bool		n[TOKEN_COLS];
	char	   *kind = tok->kind;

	push_newest_snapshot();
	locked = enr_direct_lock(w, tokens, tid, mode);
	PopActiveSnapshot();
	if (locked == NULL)
		invalid_token();		/* deleted meanwhile */
	enr_direct_values(&token_table, locked, tv, tn);
	*locked_tid = locked->tts_tid;
	for (int c = 0; c < TOKEN_COLS; c++)
	{
		v[c] = tv[tc_column[c]];
		n[c] = tn[tc_column[c]];
	}
	decode_token(v, n, public_id, digest, tok);
	check_usable(tok, now, cluster_id);
	if (strcmp(tok->kind, kind) != 0 || !tok->unbound)
		elog(ERROR, "token %s changed kind or binding", tok->public_prefix);
}

/* The token's columns after one more use: count_use_plan's and once_plan's SET */
static void
set_use(const TokenRow *tok, TimestampTz now, Datum *tv, bool *tn)
{
	const char *status = new_status(tok);
	TimestampTz horizon = now + (int64) enrollment_token_retention * USECS_PER_SEC;

	/* once_plan's WHERE clause: an unused once token is pending (as made) */
	if (strcmp(tok->kind, "once") == 0 && (strcmp(tok->status, "pending") != 0 || tok->use_count != 0))
		elog(ERROR, "could not count the use of token %s", tok->public_prefix);
	tv[TK_USE_COUNT] = Int32GetDatum(tok->use_count + 1);
	tv[TK_STATUS] = CStringGetTextDatum(status);
	if (tn[TK_USED_AT])
		tv[TK_USED_AT] = TimestampTzGetDatum(now);
	tn[TK_USED_AT] = false;
	tv[TK_LAST_USED_AT] = TimestampTzGetDatum(now);
	tn[TK_LAST_USED_AT] = false;
	if (strcmp(status, "active") != 0 &&
		(tn[TK_RETENTION_FROM] || DatumGetTimestampTz(tv[TK_RETENTION_FROM]) > horizon))
	{
		tv[TK_RETENTION_FROM] = TimestampTzGetDatum(now);
		tn[TK_RETENTION_FROM] = false;
	}
}

/*
 * Count the use in the token row: the same values as count_use_plan and
 * once_plan with RETENTION_ON_END.
 *
 * A once token is first updated as UPDATE would update it, at the version
 * the probe read and checked, without locking it before
 * (enr_direct_update_if_newest):
 * nobody else uses that row, so the lock would only add a WAL record.  If
 * another transaction updated or deleted the row meanwhile, that writes
 * nothing, and the newest version is locked, checked again (its error
 * raised: used, revoked, gone) and updated, as for a shared token with a
 * cap, whose row concurrent enrollments do share.
 */
static void
direct_count_use(EnrDirectWrite *w, ResultRelInfo *tokens, ItemPointer tid, int64 public_id,
				 const uint8 *digest, TimestampTz now, text *cluster_id, TokenRow *tok)
{
	Datum		tv[TK_NCOLS];
	bool		tn[TK_NCOLS];
	ItemPointerData at;

	if (strcmp(tok->kind, "once") == 0)
	{
		TupleTableSlot *seen;

		push_newest_snapshot();
		seen = enr_direct_fetch(w, tokens, tid);
		PopActiveSnapshot();
		if (seen != NULL)
			enr_direct_values(&token_table, seen, tv, tn);
		/*
		 * Still visible at tid, it is the version the probe decoded into tok
		 * and checked (a line pointer cannot be reused meanwhile: see
		 * enr_direct_lock); only its other columns are needed here.
		 */
		if (seen != NULL &&
			datumIsEqual(tv[TK_TOKEN_ID], tok->token_id, false, UUID_LEN))
		{
			set_use(tok, now, tv, tn);
			if (enr_direct_update_if_newest(w, tokens, &token_table, tid, tv, tn))
				return;
		}
	}

	direct_lock_token(w, tokens, tid, LockTupleNoKeyExclusive, public_id, digest, now,
					  cluster_id, tok, tv, tn, &at);
	set_use(tok, now, tv, tn);
	enr_direct_update(w, tokens, &token_table, &at, tv, tn);
}

/*
 * Does an enrollment through this token append its use to token_use rather
 * than update the token row (0.6.0)?  Only one through an active reusable or
 * cluster token without a cap that has been used before: such a token's
 * row changes with a use only in use_count and last_used_at, which the
 * worker can add up later, so concurrent enrollments through it need not
 * queue for its row lock and each other's commits.  A cap is checked
 * against an exact count under that lock, and the first use (use_count 0
 * in the row: no use is appended before it) also sets used_at.  So is a
 * rate (0.7.0): a token with one counts every use under that lock.
 */
static bool
appends_use(const TokenRow *t)
{
	return strcmp(t->kind, "once") != 0 && t->unbound && t->nomax && t->rate < 0 &&
		strcmp(t->status, "active") == 0 && t->use_count > 0 && enr_has_token_use();
}

/*
 * Append the use of an uncapped shared token to token_use, with the token
 * row locked FOR SHARE and checked again: append_use_plan without SQL.
 */
static void
direct_append_use(EnrDirectWrite *w, ResultRelInfo *tokens, ResultRelInfo *uses, ItemPointer tid,
				  int64 public_id, const uint8 *digest, TimestampTz now, text *cluster_id,
				  TokenRow *tok)
{
	Datum		tv[TK_NCOLS];
	bool		tn[TK_NCOLS];
	ItemPointerData at;
	Datum		uv[TU_NCOLS];
	bool		un[TU_NCOLS] = {false};

	direct_lock_token(w, tokens, tid, LockTupleShare, public_id, digest, now,
					  cluster_id, tok, tv, tn, &at);
	/* given a cap meanwhile (by hand: no function does): its count must be exact */
	if (!appends_use(tok))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("token %s changed during the enrollment", tok->public_prefix),
				 errdetail("Its row no longer allows the use to be appended: it was given a cap meanwhile."),
				 errhint("Try the enrollment again.")));
	uv[TU_TOKEN_ID] = tok->token_id;
	uv[TU_USED_AT] = TimestampTzGetDatum(now);
	enr_direct_insert(w, uses, &use_table, uv, un);
	tok->appended = true;
}

/*
 * An enrollment through a token not bound to a node, written without SQL
 * (direct_write.c): the same rows, values, rules and locking as once_plan,
 * or as new_node_plan followed by count_use_plan.  A once token, which
 * nobody queues for, is locked and counted first; a reusable or cluster
 * token, which concurrent enrollments share, last, so that its row lock is
 * held only from there to the commit.  Returns false, having written
 * nothing, when a table is not of the shape the direct path needs: then the
 * caller runs the SQL.
 */
static bool
enroll_direct(ItemPointer tid, int64 public_id, const uint8 *digest, TimestampTz now,
			  text *node_name, text *node_role, text *cluster_id,
			  const IssuedCredential *cred, const NodeApproval *approval,
			  const NodePlacement *place, TokenRow *tok, Datum *node_id, Datum *node_status)
{
	EnrDirectWrite w;
	ResultRelInfo *tokens;
	ResultRelInfo *nodes;
	ResultRelInfo *events;
	ResultRelInfo *uses = NULL;
	Datum		nv[ND_NCOLS];
	bool		nn[ND_NCOLS];
	Datum		av[AE_NCOLS];
	bool		an[AE_NCOLS];
	bool		lock_first = strcmp(tok->kind, "once") == 0;
	bool		append = appends_use(tok);

	/* refused as SQL's UPDATE would be (a standby, a read-only transaction) */
	PreventCommandIfReadOnly("enroll");
	enr_direct_begin(&w);
	if ((tokens = enr_direct_open(&w, &token_table)) == NULL ||
		(nodes = enr_direct_open(&w, &node_table)) == NULL ||
		(events = enr_direct_open(&w, &audit_table)) == NULL ||
		(append && (uses = enr_direct_open(&w, &use_table)) == NULL))
	{
		enr_direct_end(&w);
		return false;
	}

	if (lock_first)
		direct_count_use(&w, tokens, tid, public_id, digest, now, cluster_id, tok);

	/* the node; node_id, status and the rest from the column defaults */
	memset(nn, false, sizeof(nn));
	enr_direct_defaults(&w, &node_table, nv, nn);
	if (approval->manual && !approval->by_rule)
	{
		nv[ND_STATUS] = CStringGetTextDatum("pending_approval");
		nn[ND_STATUS] = false;
	}
	nv[ND_TENANT] = tok->tenant;
	nv[ND_NAME] = PointerGetDatum(node_name);
	nv[ND_ROLE] = PointerGetDatum(node_role);
	nn[ND_ROLE] = node_role == NULL;
	nv[ND_CLUSTER_ID] = PointerGetDatum(cluster_id);
	nn[ND_CLUSTER_ID] = cluster_id == NULL;
	nv[ND_ENROLLED_BY] = tok->token_id;
	nv[ND_SECRET_PREFIX] = CStringGetTextDatum(enrollment_node_prefix);
	nv[ND_SECRET_PUBLIC_ID] = Int64GetDatum(cred->public_id);
	nv[ND_SECRET_HASH] = PointerGetDatum(enr_digest_bytea(cred->digest));
	nv[ND_ENROLLED_AT] = TimestampTzGetDatum(now);
	if (place->group)
		nv[ND_NODE_GROUP] = PointerGetDatum(place->group);
	nv[ND_OS] = PointerGetDatum(place->os);
	nn[ND_OS] = place->os == NULL;
	nv[ND_PRIVATE_IP] = place->address;
	nn[ND_PRIVATE_IP] = place->noaddress;
	enr_direct_insert(&w, nodes, &node_table, nv, nn);
	if (nn[ND_NODE_ID] || nn[ND_STATUS])
		elog(ERROR, "node_record defaults left node_id or status null");	/* NOT NULL caught it */
	*node_id = datumCopy(nv[ND_NODE_ID], false, UUID_LEN);
	*node_status = datumCopy(nv[ND_STATUS], false, -1);

	/* its audit event; event_id and occurred_at from the column defaults */
	memset(an, false, sizeof(an));
	enr_direct_defaults(&w, &audit_table, av, an);
	av[AE_TENANT] = tok->tenant;
	av[AE_ACTOR] = CStringGetTextDatum(enr_current_actor());
	av[AE_ACTION] = CStringGetTextDatum("sensor_enrolled");
	av[AE_TOKEN_ID] = tok->token_id;
	av[AE_NODE_ID] = *node_id;
	av[AE_DETAILS] = enrolled_details(node_name, node_role, cluster_id, tok->public_prefix,
									  approval, place);
	enr_direct_insert(&w, events, &audit_table, av, an);

	/* a shared token: the use last (an error here rolls back node and event) */
	if (append)
		direct_append_use(&w, tokens, uses, tid, public_id, digest, now, cluster_id, tok);
	else if (!lock_first)
		direct_count_use(&w, tokens, tid, public_id, digest, now, cluster_id, tok);

	enr_direct_end(&w);
	enr_count_enroll(ENROLL_WRITTEN_DIRECTLY);
	return true;
}

/*
 * A reusable token's rate, with its row locked by this enrollment (the use
 * counted in it, or appended under a share lock): read again, as no
 * set_token_rate can now commit before this transaction does, and the last
 * hour's enrollments counted, this one's node included (rate_limit.c).
 */
static void
check_rate(TokenRow *tok, TimestampTz now)
{
	int32		rate = enr_token_rate(tok->token_id);
	int64		last_hour;

	if (rate < 0)
		return;
	if (tok->appended)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("token %s changed during the enrollment", tok->public_prefix),
				 errdetail("It was given a rate of enrollments per hour meanwhile, and this enrollment had appended its use without counting it."),
				 errhint("Try the enrollment again.")));
	if (rate == 0)
		enr_rate_limited(tok->public_prefix, 0, 0);
	last_hour = enr_enrollments_last_hour(tok->token_id, now);
	if (last_hour > rate)
		enr_rate_limited(tok->public_prefix, rate, last_hour - 1);
}

/* Run new_node_plan or once_plan (or a _pending one); false if it wrote no node */
static bool
write_node(EnrPlan *plan, Datum *args, const char *nulls, Datum *node_id, Datum *node_status)
{
	bool		isnull;

	if (enr_execute(plan, args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "enrollment statement failed");
	if (SPI_processed != 1)
		return false;
	*node_id = enr_getattr(0, 1, &isnull);
	*node_status = enr_getattr(0, 2, &isnull);
	return true;
}

/* now + enrollment.token_retention: see RETENTION_ON_END */
static Datum
retention_horizon(TimestampTz now)
{
	return TimestampTzGetDatum(now + (int64) enrollment_token_retention * USECS_PER_SEC);
}

/* Run count_use_plan; false if the token may no longer be used */
static bool
count_use(Datum token_id, TimestampTz now)
{
	Datum		a[3] = {token_id, TimestampTzGetDatum(now), retention_horizon(now)};

	return enr_execute(enr_has_retention_from() ? &count_use_plan : &count_use_plan_v4,
					   a, NULL, false, 0) == SPI_OK_UPDATE &&
		SPI_processed == 1;
}

/*
 * Run append_use_plan, having queued behind a revocation or fold waiting
 * for the row at tid (enr_queue_behind_row_writer); false if the token may
 * no longer be used this way.
 */
static bool
append_use(Datum token_id, ItemPointer tid, TimestampTz now)
{
	Datum		a[2] = {token_id, TimestampTzGetDatum(now)};
	Relation	rel = table_open(token_by_public_id.relid, AccessShareLock);

	enr_queue_behind_row_writer(rel, tid);
	table_close(rel, NoLock);
	return enr_execute(&append_use_plan, a, NULL, false, 0) == SPI_OK_INSERT &&
		SPI_processed == 1;
}

/*
 * enrollment.enroll(token text, node_name text, cluster_id text, node_role text,
 *					 node_group text, node_os text) RETURNS enrollment.enrolled_node
 *
 * Until ALTER EXTENSION UPDATE to 0.7.0 the function has only the first
 * four arguments, and its result type the first five columns.
 */
Datum
enrollment_enroll(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	text	   *node_name;
	text	   *cluster_id = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	text	   *node_role = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	NodePlacement place;
	int64		public_id;
	uint8		digest[ENR_DIGEST_LEN];
	TokenParseResult pr;
	TimestampTz now = enr_now();
	MemoryContext callcxt = CurrentMemoryContext;
	bool		isnull;
	TokenRow	tok;
	IssuedCredential cred;
	Datum		node_id;
	Datum		node_status;
	NodeApproval approval;
	bool		counted;
	ItemPointerData token_tid;
	Datum		out[7];
	bool		outnulls[7] = {false};
	Datum		result;

	tupdesc = enr_result_tupdesc(fcinfo);

	enr_require_arg(fcinfo, 0, "token");
	enr_require_arg(fcinfo, 1, "node_name");
	node_name = PG_GETARG_TEXT_PP(1);
	enr_check_text_arg(node_name, "node_name", 128, false);
	if (cluster_id)
		enr_check_text_arg(cluster_id, "cluster_id", 128, false);
	if (node_role)
		enr_check_text_arg(node_role, "node_role", 64, false);
	place.group = PG_NARGS() > 4 && !PG_ARGISNULL(4) ? PG_GETARG_TEXT_PP(4) : NULL;
	place.os = PG_NARGS() > 5 && !PG_ARGISNULL(5) ? PG_GETARG_TEXT_PP(5) : NULL;
	place.address = (Datum) 0;
	place.noaddress = true;
	if (place.group)
		enr_check_text_arg(place.group, "node_group", 64, false);
	if (place.os)
		enr_check_text_arg(place.os, "node_os", 64, false);
	/* the result type of the installed release: 0.7.0's, or an earlier one's */
	if (tupdesc->natts != 5 && tupdesc->natts != 7)
		elog(ERROR, "enrolled_node has %d columns, not 5 or 7", tupdesc->natts);
	if ((place.group || place.os || tupdesc->natts > 5) && !enr_has_node_placement())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the tables of extension \"enrollment\" predate its functions"),
				 errdetail("enroll of 0.7.0 places nodes, and node_record has no column for that."),
				 errhint("Run ALTER EXTENSION enrollment UPDATE.")));

	/* shape and checksum: a malformed token never reaches a table */
	pr = enr_parse_presented(PG_GETARG_TEXT_PP(0), &public_id, digest);
	if (pr != TOKEN_OK)
		token_error(ERRCODE_ENR_INVALID_TOKEN, ENROLL_INVALID_TOKEN,
					enr_token_parse_result_detail(pr),
					"Check that the whole token was copied.");

	/* first, without a lock: reject what cannot enroll before writing */
	{
		Datum		v[TOKEN_COLS];
		bool		n[TOKEN_COLS];

		if (!enr_probe_latest(&token_by_public_id, Int64GetDatum(public_id), v, n, &token_tid))
			invalid_token();
		decode_token(v, n, public_id, digest, &tok);
	}
	check_usable(&tok, now, cluster_id);
	if (!tok.nocluster)
		cluster_id = DatumGetTextPP(tok.cluster);

	/* a reusable token's rate, if it has one; a token switched off stops here */
	tok.rate = strcmp(tok.kind, "reusable") == 0 ? enr_token_rate(tok.token_id) : -1;
	tok.appended = false;
	if (tok.rate == 0)
		enr_rate_limited(tok.public_prefix, 0, 0);

	enr_issue_credential(enrollment_node_prefix, false, &cred);

	/* an error from here on must not leave the issued secret in memory */
	PG_TRY();
	{
		SPI_connect();

		if (tok.unbound)
		{
			/*
			 * a new node: a share of the tenant's pool lock where pools
			 * exist, the tenant's license node limit (node_limit.c), then
			 * its address and group (placement.c; the address under the
			 * same row lock as the limit), then whether it waits for
			 * approval (approval.c)
			 */
			enr_await_pool_change(tok.tenant);
			enr_check_node_limit(tok.tenant, tok.public_prefix);
			place.noaddress = !enr_allocate_address(tok.tenant, tok.public_prefix, &place.address);
			if (place.group)
				enr_ensure_group(tok.tenant, place.group);
			enr_approve_new_node(tok.tenant, tok.nocluster ? NULL : cluster_id, node_role,
								 &approval);

			if (enrollment_direct_writes &&
				enroll_direct(&token_tid, public_id, digest, now, node_name, node_role,
							  cluster_id, &cred, &approval, &place, &tok, &node_id, &node_status))
				counted = true;
			else
			{
				/* through SQL: once_plan, or new_node_plan then count_use_plan */
				Datum		args[NODE_NARGS];
				char		nulls[NODE_NARGS];
				bool		placed = enr_has_node_placement();
				text	   *approved = approval_detail(&approval);
				bool		waits = approval.manual && !approval.by_rule;

				args[0] = tok.token_id;
				args[1] = TimestampTzGetDatum(now);
				args[2] = tok.tenant;
				args[3] = PointerGetDatum(node_name);
				args[4] = node_role ? PointerGetDatum(node_role) : (Datum) 0;
				args[5] = cluster_id ? PointerGetDatum(cluster_id) : (Datum) 0;
				args[6] = CStringGetTextDatum(enrollment_node_prefix);
				args[7] = Int64GetDatum(cred.public_id);
				args[8] = PointerGetDatum(enr_digest_bytea(cred.digest));
				args[9] = CStringGetTextDatum(enr_current_actor());
				args[10] = CStringGetTextDatum(tok.public_prefix);
				args[11] = retention_horizon(now);
				args[12] = approved ? PointerGetDatum(approved) : (Datum) 0;
				args[13] = approval.rule_id;
				args[14] = PointerGetDatum(place.group);
				args[15] = PointerGetDatum(place.os);
				args[16] = place.address;
				memset(nulls, ' ', sizeof(nulls));
				if (!node_role)
					nulls[4] = 'n';
				if (!cluster_id)
					nulls[5] = 'n';
				if (!approved)
					nulls[12] = 'n';
				if (!approval.by_rule)
					nulls[13] = 'n';
				if (!place.group)
					nulls[14] = 'n';
				if (!place.os)
					nulls[15] = 'n';
				if (place.noaddress)
					nulls[16] = 'n';

				if (strcmp(tok.kind, "once") == 0)
					counted = write_node(waits ? &once_pending_plan :
										 placed ? &once_plan :
										 enr_has_retention_from() ? &once_plan_v6 : &once_plan_v4,
										 args, nulls, &node_id, &node_status);
				else
				{
					if (!write_node(waits ? &new_pending_node_plan :
									placed ? &new_node_plan : &new_node_plan_v6,
									args, nulls, &node_id, &node_status))
						elog(ERROR, "enrollment of token %s wrote no node", tok.public_prefix);
					/* last: count the use under the row lock, or append it */
					if (appends_use(&tok))
						counted = tok.appended = append_use(tok.token_id, &token_tid, now);
					else
						counted = count_use(tok.token_id, now);
				}
			}
			if (!counted)
			{
				/* the token changed since it was read: lock it, raise what stops it */
				if (!lock_token(public_id, digest, &tok))
					invalid_token();
				check_usable(&tok, now, cluster_id);
				/* still usable, and now locked by us (a once token cannot be) */
				if (strcmp(tok.kind, "once") == 0 || !count_use(tok.token_id, now))
					elog(ERROR, "could not count the use of token %s", tok.public_prefix);
			}

			if (strcmp(tok.kind, "reusable") == 0)
				check_rate(&tok, now);
			if (!place.noaddress)
				enr_record_address(tok.tenant, place.address, node_id);
		}
		else
		{
			/* a re-enrollment token only serves the node it is bound to */
			Datum		args[REENROLL_NARGS];
			char		nulls[REENROLL_NARGS];
			Datum		a[1];
			char	   *bound_name;
			char	   *bound_status;

			/*
			 * a group named here first: its lock (placement.c) comes before
			 * the token's and the node's, as a new node's does before its
			 * token's, and as removals lock tokens before nodes
			 */
			if (place.group)
				enr_ensure_group(tok.tenant, place.group);
			if (!lock_token(public_id, digest, &tok))
				invalid_token();
			check_usable(&tok, now, cluster_id);

			a[0] = tok.bound_node;
			enr_execute(&lock_node_plan, a, NULL, false, 1);
			if (SPI_processed != 1)
				elog(ERROR, "node bound to token %s is missing", tok.public_prefix);
			bound_name = TextDatumGetCString(enr_getattr(0, 1, &isnull));
			bound_status = TextDatumGetCString(enr_getattr(0, 2, &isnull));
			if (strcmp(bound_status, "removed") == 0)
				token_error(ERRCODE_ENR_NODE_MISMATCH, ENROLL_NODE_MISMATCH,
							psprintf("The node token %s is bound to was removed.", tok.public_prefix),
							"Enroll the machine as a new node with a plain token.");
			if (strcmp(bound_name, text_to_cstring(node_name)) != 0)
				token_error(ERRCODE_ENR_NODE_MISMATCH, ENROLL_NODE_MISMATCH,
							psprintf("Token %s re-enrolls a different node.", tok.public_prefix),
							"Pass the node_name of the node the token was created for.");

			args[0] = tok.token_id;
			args[1] = CStringGetTextDatum(new_status(&tok));
			args[2] = TimestampTzGetDatum(now);
			args[3] = tok.tenant;
			args[4] = PointerGetDatum(node_name);
			args[5] = node_role ? PointerGetDatum(node_role) : (Datum) 0;
			args[6] = cluster_id ? PointerGetDatum(cluster_id) : (Datum) 0;
			args[7] = CStringGetTextDatum(enrollment_node_prefix);
			args[8] = Int64GetDatum(cred.public_id);
			args[9] = PointerGetDatum(enr_digest_bytea(cred.digest));
			args[10] = CStringGetTextDatum(enr_current_actor());
			args[11] = CStringGetTextDatum(tok.public_prefix);
			args[12] = tok.bound_node;
			args[13] = retention_horizon(now);
			args[14] = PointerGetDatum(place.group);
			args[15] = PointerGetDatum(place.os);
			memset(nulls, ' ', sizeof(nulls));
			if (!node_role)
				nulls[5] = 'n';
			if (!cluster_id)
				nulls[6] = 'n';
			if (!place.group)
				nulls[14] = 'n';
			if (!place.os)
				nulls[15] = 'n';

			if (enr_execute(enr_has_node_placement() ? &reenroll_plan :
							enr_has_retention_from() ? &reenroll_plan_v6 : &reenroll_plan_v4,
							args, nulls, false, 0) != SPI_OK_SELECT ||
				SPI_processed != 1)
				elog(ERROR, "re-enrollment through token %s wrote no node", tok.public_prefix);
			node_id = enr_getattr(0, 1, &isnull);
			node_status = enr_getattr(0, 2, &isnull);
			/* the node keeps its group unless one was named, and its address */
			if (tupdesc->natts > 5)
			{
				place.group = DatumGetTextPP(enr_getattr(0, 3, &isnull));
				place.address = enr_getattr(0, 4, &place.noaddress);
			}
		}
	}
	PG_CATCH();
	{
		enr_wipe_credential(&cred);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* the worker announces the enrollment from the audit log (worker.c) */
	enr_count_enroll(ENROLL_OK);

	MemoryContextSwitchTo(callcxt);
	out[0] = node_id;
	out[1] = CStringGetTextDatum(cred.text);
	enr_wipe_credential(&cred);	/* before anything below can raise */
	out[2] = node_status;
	out[3] = tok.token_id;
	out[4] = BoolGetDatum(!tok.unbound);
	if (tupdesc->natts > 5)
	{
		/* 0.7.0: where the node is (the group 'default' when none was named) */
		out[5] = place.group ? PointerGetDatum(place.group) : CStringGetTextDatum("default");
		out[6] = place.address;
		outnulls[6] = place.noaddress;
	}
	result = enr_return_row(fcinfo, tupdesc, out, outnulls);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
