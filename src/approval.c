/*-------------------------------------------------------------------------
 *
 * approval.c
 *	  Whether a new node starts active or waits for an operator's approval
 *	  (0.7.0): a tenant's node_approval setting and its auto-approve rules.
 *
 * A tenant approves new nodes automatically unless its tenant_setting row
 * says node_approval = 'manual' (enrollment.set_node_approval).  Then a
 * new node is written as pending_approval, unless the auto-approve rule of
 * its cluster admits it: the node's role is one of the rule's
 * allowed_roles (an empty list admits every role, and a node without a
 * role only then) and the rule has approved fewer than max_nodes nodes.
 * A rule vouches for a cluster identity, so it applies only to enrollments
 * through a cluster token, whose cluster is the token's: the cluster_id
 * passed with any other token is the caller's own claim (enroll passes no
 * cluster then).
 *
 * Exactness.  A rule with a cap counts its approvals by one UPDATE whose
 * WHERE clause holds the whole test, so a caller that waited for the row
 * lock of another enrollment tests the row that one committed (under READ
 * COMMITTED; a serialization failure under REPEATABLE READ, as for a
 * token): N concurrent enrollments against a rule with K approvals left
 * approve exactly min(N, K) nodes, and the others wait for an operator.
 * The lock is held to the commit, after the node limit's lock and before
 * the token's, and a failed enrollment rolls its count back.  A rule
 * without a cap has nothing to count exactly: it is matched by a read
 * without a lock, so the enrollments of its cluster do not queue for each
 * other (an enrollment that read it just before its deletion committed is
 * still approved by it, as one that read the mode before a change).
 *
 * Cost.  Where no tenant approves by hand (the default), nothing is read:
 * limits_cache.c remembers that.  Where one does, every other tenant pays
 * one unlocked primary-key probe of tenant_setting per new node.
 *
 * src/approval.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"

#include "enrollment.h"
#include "probe.h"

static EnrProbeTable approval_by_tenant = {
	.relname = "tenant_setting",
	.indexname = "tenant_setting_pkey",
	.eqproc = F_TEXTEQ,
	.ncols = 2,
	.cols = {"tenant", "node_approval"}
};

/*
 * The rule of the node's cluster, if it admits the node's role, read
 * without a lock: $1 tenant, $2 cluster_id, $3 role (NULL: none)
 */
static EnrPlan match_rule_plan = {
	.sql = "SELECT r.rule_id, r.max_nodes IS NULL FROM enrollment.auto_approve_rule AS r"
	" WHERE r.tenant OPERATOR(pg_catalog.=) $1 AND r.cluster_id OPERATOR(pg_catalog.=) $2"
	"   AND (pg_catalog.cardinality(r.allowed_roles) OPERATOR(pg_catalog.=) 0"
	"        OR $3 OPERATOR(pg_catalog.=) ANY (r.allowed_roles))",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Count one approval by a rule with a cap, if it still admits the node:
 * the same test, and the cap, on the newest version of its row, locked.
 */
static EnrPlan approve_by_rule_plan = {
	.sql = "UPDATE enrollment.auto_approve_rule AS r"
	"   SET approved_count = r.approved_count OPERATOR(pg_catalog.+) 1"
	" WHERE r.tenant OPERATOR(pg_catalog.=) $1 AND r.cluster_id OPERATOR(pg_catalog.=) $2"
	"   AND (pg_catalog.cardinality(r.allowed_roles) OPERATOR(pg_catalog.=) 0"
	"        OR $3 OPERATOR(pg_catalog.=) ANY (r.allowed_roles))"
	"   AND (r.max_nodes IS NULL OR r.approved_count OPERATOR(pg_catalog.<) r.max_nodes)"
	" RETURNING r.rule_id",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Decide how a new node of the tenant starts.  approval->manual false: as
 * the column default has it (active); true: active when approval->by_rule,
 * pending_approval otherwise.  cluster_id is the cluster a cluster token
 * binds the node to, NULL for any other token.  Must be called between
 * SPI_connect and SPI_finish, after the node limit's check and before the
 * token is locked.
 */
void
enr_approve_new_node(Datum tenant, text *cluster_id, text *node_role, NodeApproval *approval)
{
	Datum		v[2];
	bool		n[2];
	Datum		a[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;

	approval->manual = false;
	approval->by_rule = false;
	approval->rule_id = (Datum) 0;

	/* the setting as of now, like the node limit (node_limit.c) */
	if (!enr_any_manual_approval() ||
		!enr_probe_newest(&approval_by_tenant, tenant, v, n) || n[1])
		return;
	approval->manual = true;

	/* a rule is a cluster's: a node not bound to one always waits */
	if (cluster_id == NULL)
		return;
	a[0] = tenant;
	a[1] = PointerGetDatum(cluster_id);
	a[2] = node_role ? PointerGetDatum(node_role) : (Datum) 0;
	if (node_role == NULL)
		nulls[2] = 'n';
	if (enr_execute(&match_rule_plan, a, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the auto-approve rule");
	if (SPI_processed != 1)
		return;
	if (!DatumGetBool(enr_getattr(0, 2, &isnull)))
	{
		/* a cap: count the approval under the rule's row lock */
		if (enr_execute(&approve_by_rule_plan, a, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not count the approval of the auto-approve rule");
		if (SPI_processed != 1)
			return;
	}
	approval->by_rule = true;
	approval->rule_id = enr_getattr(0, 1, &isnull);
}
