/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The enrollment.* settings.
 *
 * Defaults for token lifetimes and prefixes may be changed by a superuser
 * (postgresql.conf, ALTER SYSTEM, ALTER DATABASE ... SET) without a rebuild.
 * enrollment.actor and enrollment.tenant are per session or per
 * transaction: a backend sets them with set_config(..., true).
 *
 * src/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "enrollment.h"

#define SECS_PER_DAY_INT	86400

char	   *enrollment_token_prefix = NULL;
char	   *enrollment_node_prefix = NULL;
int			enrollment_once_ttl = 15 * 60;
int			enrollment_cluster_ttl = 365 * SECS_PER_DAY_INT;
int			enrollment_max_ttl = 730 * SECS_PER_DAY_INT;
char	   *enrollment_actor = NULL;
char	   *enrollment_tenant = NULL;

/* A prefix must match the credential format (see token_format.h) */
static bool
check_prefix(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	if (*newval == NULL || !enr_token_prefix_is_valid(*newval, strlen(*newval)))
	{
		GUC_check_errdetail("A prefix is 2 to 16 characters: a lowercase letter, then "
							"lowercase letters, digits or '-', ending in '_'.");
		return false;
	}
	return true;
}

/* Tenant names: 1..63 characters of [a-z0-9_-] */
static bool
check_tenant(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const char *s = *newval;
	size_t		len = s ? strlen(s) : 0;

	if (len < 1 || len > 63)
	{
		GUC_check_errdetail("A tenant name is 1 to 63 characters long.");
		return false;
	}
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
		{
			GUC_check_errdetail("A tenant name consists of lowercase letters, digits, '_' and '-'.");
			return false;
		}
	}
	return true;
}

/* The acting identity is free text but bounded, and has no control characters */
static bool
check_actor(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const char *s = *newval;

	if (s == NULL)
		return true;
	if (strlen(s) > 256)
	{
		GUC_check_errdetail("An actor name is at most 256 bytes long.");
		return false;
	}
	for (; *s; s++)
	{
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
		{
			GUC_check_errdetail("An actor name may not contain control characters.");
			return false;
		}
	}
	return true;
}

/* Define every setting; called first thing from _PG_init */
void
enrollment_guc_init(void)
{
	DefineCustomStringVariable("enrollment.token_prefix",
							   "Prefix of newly issued enrollment tokens.",
							   "Tokens issued under an earlier prefix stay valid.",
							   &enrollment_token_prefix,
							   "enr_",
							   PGC_SUSET, 0,
							   check_prefix, NULL, NULL);

	DefineCustomStringVariable("enrollment.node_secret_prefix",
							   "Prefix of newly issued node credentials.",
							   "Credentials issued under an earlier prefix stay valid.",
							   &enrollment_node_prefix,
							   "node_",
							   PGC_SUSET, 0,
							   check_prefix, NULL, NULL);

	DefineCustomIntVariable("enrollment.once_token_ttl",
							"Default lifetime of a one-time enrollment token.",
							"Used when create_token is called for kind 'once' without ttl or expires_days.",
							&enrollment_once_ttl,
							15 * 60, 1, 730 * SECS_PER_DAY_INT,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrollment.cluster_token_ttl",
							"Default lifetime of a cluster enrollment token.",
							"Used when create_token is called for kind 'cluster' without ttl or expires_days.",
							&enrollment_cluster_ttl,
							365 * SECS_PER_DAY_INT, 1, 730 * SECS_PER_DAY_INT,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrollment.max_token_ttl",
							"Longest lifetime any enrollment token may be given.",
							"Requests for a longer ttl or expires_days are rejected, never shortened.",
							&enrollment_max_ttl,
							730 * SECS_PER_DAY_INT, 1, 3650 * SECS_PER_DAY_INT,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("enrollment.actor",
							   "Identity recorded as the actor of changes (audit log, created_by).",
							   "Empty means the session user.",
							   &enrollment_actor,
							   "",
							   PGC_USERSET, 0,
							   check_actor, NULL, NULL);

	DefineCustomStringVariable("enrollment.tenant",
							   "Tenant that new tokens belong to.",
							   NULL,
							   &enrollment_tenant,
							   "default",
							   PGC_USERSET, 0,
							   check_tenant, NULL, NULL);

	MarkGUCPrefixReserved("enrollment");
}
