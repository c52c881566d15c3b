/*-------------------------------------------------------------------------
 *
 * identity.c
 *	  Who is acting, and for which tenant.
 *
 * The actor is enrollment.actor when a backend has set it (typically per
 * transaction with set_config(..., true)), otherwise the session user: the
 * login role, not the owner a SECURITY DEFINER function runs as.
 *
 * src/identity.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "enrollment.h"

PG_FUNCTION_INFO_V1(enrollment_current_actor);
PG_FUNCTION_INFO_V1(enrollment_current_tenant);

/* The acting identity, palloc'd */
char *
enr_current_actor(void)
{
	if (enrollment_actor != NULL && enrollment_actor[0] != '\0')
		return pstrdup(enrollment_actor);
	return GetUserNameFromId(GetSessionUserId(), false);
}

/* The current tenant, palloc'd */
char *
enr_current_tenant(void)
{
	if (enrollment_tenant != NULL && enrollment_tenant[0] != '\0')
		return pstrdup(enrollment_tenant);
	return pstrdup("default");
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
