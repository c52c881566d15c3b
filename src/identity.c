/*-------------------------------------------------------------------------
 *
 * identity.c
 *	  Who is acting, and for which tenant.
 *
 * The actor is enrollment.actor when a backend has set it (typically per
 * transaction with set_config(..., true)), otherwise the session user: the
 * login role, not the owner a SECURITY DEFINER function runs as.
 *
 * The caller's role in the current tenant comes from enrollment.member; a
 * superuser or member of enrollment_admin with no actor set (a DBA in psql)
 * counts as owner of every tenant.
 *
 * src/identity.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"

#include "enrollment.h"
#include "probe.h"

PG_FUNCTION_INFO_V1(enrollment_current_actor);
PG_FUNCTION_INFO_V1(enrollment_current_tenant);
PG_FUNCTION_INFO_V1(enrollment_current_member_role);
PG_FUNCTION_INFO_V1(enrollment_require_role);
PG_FUNCTION_INFO_V1(enrollment_require_dba);
PG_FUNCTION_INFO_V1(enrollment_may_read_audit);

/* The acting identity, palloc'd */
char *
enr_current_actor(void)
{
	if (enrollment_actor != NULL && enrollment_actor[0] != '\0')
		return pstrdup(enrollment_actor);
	return GetUserNameFromId(GetSessionUserId(), false);
}

/* The current tenant's name (not a copy) */
static const char *
tenant_name(void)
{
	return (enrollment_tenant != NULL && enrollment_tenant[0] != '\0') ? enrollment_tenant : "default";
}

/* The current tenant, palloc'd */
char *
enr_current_tenant(void)
{
	return pstrdup(tenant_name());
}

/*
 * Is a row's tenant (a text datum) the current tenant?  Compared in place,
 * without copying either string: every per-request path asks this once.
 */
bool
enr_is_current_tenant(Datum tenant)
{
	text	   *t = DatumGetTextPP(tenant);
	const char *cur = tenant_name();
	size_t		len = VARSIZE_ANY_EXHDR(t);

	return strlen(cur) == len && memcmp(VARDATA_ANY(t), cur, len) == 0;
}

/* enrollment.current_actor() RETURNS text */
Datum
enrollment_current_actor(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(enr_current_actor()));
}

/* enrollment.current_tenant() RETURNS text */
Datum
enrollment_current_tenant(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(enr_current_tenant()));
}

/*
 * Roles of tenant members, weakest first.  A caller's rank is that of
 * their role in the current tenant; 0 means not a member.
 */
static const char *const role_names[] = {"viewer", "analyst", "operator", "admin", "owner"};

/* Rank of a role name (1 = viewer .. 5 = owner), 0 if unknown */
int
enr_role_rank(const char *role)
{
	for (int i = 0; i < (int) lengthof(role_names); i++)
		if (strcmp(role, role_names[i]) == 0)
			return i + 1;
	return 0;
}

/* Name of a rank (1..5) */
const char *
enr_role_name(int rank)
{
	Assert(rank >= 1 && rank <= (int) lengthof(role_names));
	return role_names[rank - 1];
}

/* A member's role, read by (tenant, identity) without SPI (probe.c) */
static EnrProbeTable member_by_identity = {
	.relname = "member",
	.indexname = "member_pkey",
	.eqproc = F_TEXTEQ,
	.eqproc2 = F_TEXTEQ,
	.nkeys = 2,
	.ncols = 3,
	.cols = {"tenant", "identity", "role"}
};

/*
 * Is the caller a database-level administrator of the extension?  That is a
 * superuser or a member of role enrollment_admin, acting from a session
 * that has not named an actor (psql, not an application backend).
 */
bool
enr_caller_is_dba(void)
{
	Oid			admin;

	if (enrollment_actor != NULL && enrollment_actor[0] != '\0')
		return false;
	if (superuser_arg(GetSessionUserId()))
		return true;
	admin = get_role_oid("enrollment_admin", true);
	return OidIsValid(admin) && is_member_of_role(GetSessionUserId(), admin);
}

/*
 * Raise permission_denied unless the caller is a DBA (see enr_caller_is_dba):
 * for what spans every tenant.  why says what makes it so.
 */
void
enr_require_dba(const char *why)
{
	if (!enr_caller_is_dba())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission_denied"),
				 errdetail("%s", why),
				 errhint("Run it from psql as a superuser or a member of enrollment_admin, without enrollment.actor set.")));
}

/* Role rank of identity (text) in tenant (text); 0: not a member */
int
enr_member_rank(Datum tenant, Datum identity)
{
	Datum		v[3];
	bool		n[3];

	if (!enr_probe2(&member_by_identity, tenant, identity, v, n))
		return 0;
	return enr_role_rank(TextDatumGetCString(v[2]));
}

/* The caller's role rank in the current tenant (a DBA is owner everywhere) */
int
enr_caller_rank(void)
{
	if (enr_caller_is_dba())
		return 5;
	return enr_member_rank(CStringGetTextDatum(tenant_name()), CStringGetTextDatum(enr_current_actor()));
}

/*
 * Raise permission_denied unless the caller holds at least min_role in the
 * current tenant.  what names the action, for the detail.
 */
void
enr_require_role(const char *min_role, const char *what)
{
	int			need = enr_role_rank(min_role);
	int			have = enr_caller_rank();

	Assert(need > 0);
	if (have < need)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission_denied"),
				 errdetail("To %s in tenant \"%s\" takes the role %s or higher; \"%s\" %s.",
						   what, enr_current_tenant(), min_role, enr_current_actor(),
						   have == 0 ? "is not a member" : psprintf("is %s", enr_role_name(have))),
				 errhint("A tenant owner or admin grants roles with enrollment.add_member or enrollment.set_member_role.")));
}

/*
 * A request verified by verify_request with required_scope 'audit:read'
 * lets the rest of its transaction read the key's tenant's audit log
 * (seed 004: audit:read keys).  Kept per backend, for one local
 * transaction id, so it cannot outlive the transaction.
 */
static LocalTransactionId audit_read_lxid = InvalidLocalTransactionId;
static char audit_read_tenant[NAMEDATALEN];

void
enr_grant_audit_read(const char *tenant)
{
	audit_read_lxid = MyProc->lxid;
	strlcpy(audit_read_tenant, tenant, sizeof(audit_read_tenant));
}

/* enrollment.may_read_audit() RETURNS boolean: true, or permission_denied */
Datum
enrollment_may_read_audit(PG_FUNCTION_ARGS)
{
	if (audit_read_lxid != InvalidLocalTransactionId && audit_read_lxid == MyProc->lxid &&
		strcmp(audit_read_tenant, enr_current_tenant()) == 0)
		PG_RETURN_BOOL(true);
	enr_require_role("admin", "read the audit log");
	PG_RETURN_BOOL(true);
}

/* enrollment.current_member_role() RETURNS text: NULL when not a member */
Datum
enrollment_current_member_role(PG_FUNCTION_ARGS)
{
	int			rank = enr_caller_rank();

	if (rank == 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(enr_role_name(rank)));
}

/*
 * enrollment.require_dba(action text) RETURNS boolean (true, or an error):
 * for the SQL functions that act on every tenant at once.
 */
Datum
enrollment_require_dba(PG_FUNCTION_ARGS)
{
	enr_require_arg(fcinfo, 0, "action");
	enr_require_dba(psprintf("To %s is for a DBA: it acts on every tenant's data.",
							 text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_BOOL(true);
}

/* enrollment.require_role(min_role text, action text) RETURNS boolean (true, or an error) */
Datum
enrollment_require_role(PG_FUNCTION_ARGS)
{
	char	   *min_role;

	enr_require_arg(fcinfo, 0, "min_role");
	enr_require_arg(fcinfo, 1, "action");
	min_role = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (enr_role_rank(min_role) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown role"),
				 errdetail("Roles are owner, admin, operator, analyst and viewer.")));
	enr_require_role(min_role, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_BOOL(true);
}
