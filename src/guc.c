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

#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "enrollment.h"

#define SECS_PER_DAY_INT	86400

char	   *enrollment_token_prefix = NULL;
char	   *enrollment_node_prefix = NULL;
bool		enrollment_direct_writes = true;
bool		enrollment_call_scan = true;
int			enrollment_once_ttl = 15 * 60;
int			enrollment_cluster_ttl = 365 * SECS_PER_DAY_INT;
int			enrollment_max_ttl = 730 * SECS_PER_DAY_INT;
char	   *enrollment_actor = NULL;
char	   *enrollment_tenant = NULL;
int			enrollment_hmac_window = 300;
int			enrollment_online_window = 300;
char	   *enrollment_server_key_file = NULL;
char	   *enrollment_header_key_id = NULL;
char	   *enrollment_header_timestamp = NULL;
char	   *enrollment_header_nonce = NULL;
char	   *enrollment_header_signature = NULL;

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

/*
 * The maintenance workers' databases: a list the launcher can read, of at
 * most ENR_MAX_DATABASES names, none twice.  Checked here, when the value
 * is set: ALTER SYSTEM refuses a wrong one, and one in postgresql.conf draws
 * a WARNING naming the reason at start and leaves the default in place, as
 * for any extension's setting, instead of failing the launcher again on
 * every restart of it.
 */
static bool
check_database_names(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		ok = true;

	if (*newval == NULL)
		return true;			/* the default applies */
	raw = pstrdup(*newval);
	if (!SplitIdentifierString(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		GUC_check_errhint("List database names separated by commas; double-quote a name with commas, spaces or capitals.");
		ok = false;
	}
	else if (list_length(names) > ENR_MAX_DATABASES)
	{
		GUC_check_errdetail("At most %d databases can be listed; %d are.",
							ENR_MAX_DATABASES, list_length(names));
		ok = false;
	}
	else
		foreach(lc, names)
		{
			for (ListCell *prev = list_head(names); prev != lc; prev = lnext(names, prev))
				if (strcmp(lfirst(prev), lfirst(lc)) == 0)
				{
					GUC_check_errdetail("Database \"%s\" is listed twice.", (char *) lfirst(lc));
					ok = false;
					break;
				}
			if (!ok)
				break;
		}
	list_free(names);
	pfree(raw);
	return ok;
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

/* An HTTP header name: 1..64 token characters (RFC 9110) */
static bool
check_header_name(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const char *s = *newval;
	size_t		len = s ? strlen(s) : 0;

	if (len < 1 || len > 64)
	{
		GUC_check_errdetail("A header name is 1 to 64 characters long.");
		return false;
	}
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  strchr("!#$%&'*+-.^_`|~", c) != NULL))
		{
			GUC_check_errdetail("A header name consists of letters, digits and !#$%%&'*+-.^_`|~.");
			return false;
		}
	}
	return true;
}

/*
 * Define the settings; called first thing from _PG_init.  Settings that
 * need a restart (PGC_POSTMASTER) exist only when the library is preloaded:
 * they size shared memory and start the workers.
 */
void
enrollment_guc_init(bool preloading)
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

	DefineCustomBoolVariable("enrollment.direct_writes",
							 "Write an enrollment through a token not bound to a node without SQL.",
							 "When on (the default), enroll writes the rows of such an enrollment "
							 "through the table access method while the tables have the "
							 "extension's own shape; off sends every enrollment through SQL.",
							 &enrollment_direct_writes,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("enrollment.call_scan",
							 "Run a verdict function that is a FROM item of its own without the function scan.",
							 "When on (the default), a call of check_token, verify_request, "
							 "verify_api_token or enroll that is the whole of its FROM item "
							 "(no LATERAL reference, no WITH ORDINALITY) is planned as a custom "
							 "scan that evaluates it once as one expression; off plans "
							 "PostgreSQL's function scan.",
							 &enrollment_call_scan,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

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

	DefineCustomIntVariable("enrollment.hmac_window",
							"How far a signed request's timestamp may be from server time.",
							"Requests outside the window are stale_timestamp; nonces are remembered this long.",
							&enrollment_hmac_window,
							300, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("enrollment.server_key_file",
							   "File holding the server key that seals stored HMAC secrets.",
							   "Empty means enrollment_server.key in the data directory.",
							   &enrollment_server_key_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("enrollment.header_key_id",
							   "Name of the header carrying the API key id (verify_request with jsonb headers).",
							   NULL, &enrollment_header_key_id, "X-Telovix-Key-ID",
							   PGC_SUSET, 0, check_header_name, NULL, NULL);
	DefineCustomStringVariable("enrollment.header_timestamp",
							   "Name of the header carrying the request timestamp.",
							   NULL, &enrollment_header_timestamp, "X-Telovix-Timestamp",
							   PGC_SUSET, 0, check_header_name, NULL, NULL);
	DefineCustomStringVariable("enrollment.header_nonce",
							   "Name of the header carrying the request nonce.",
							   NULL, &enrollment_header_nonce, "X-Telovix-Nonce",
							   PGC_SUSET, 0, check_header_name, NULL, NULL);
	DefineCustomStringVariable("enrollment.header_signature",
							   "Name of the header carrying the request signature.",
							   NULL, &enrollment_header_signature, "X-Telovix-Signature",
							   PGC_SUSET, 0, check_header_name, NULL, NULL);

	DefineCustomIntVariable("enrollment.worker_interval",
							"Time between two rounds of the maintenance worker.",
							NULL,
							&enrollment_worker_interval,
							10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrollment.token_retention",
							"How long used, exhausted and expired tokens stay listed before the worker deletes them.",
							"Their audit events are kept.",
							&enrollment_token_retention,
							86400, 0, 3650 * SECS_PER_DAY_INT,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	/* read by the nodes view only, with current_setting (0.7.0) */
	DefineCustomIntVariable("enrollment.online_window",
							"How recently a node must have been seen for the nodes view to call it online.",
							"A node is seen when it authenticates; the worker writes the time each round.",
							&enrollment_online_window,
							300, 1, 30 * SECS_PER_DAY_INT,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrollment.worker_batch_size",
							"Rows the worker changes per transaction.",
							"Smaller batches hold row locks for less time.",
							&enrollment_worker_batch,
							500, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	if (preloading)
	{
		DefineCustomIntVariable("enrollment.max_nonces",
								"How many accepted nonces shared memory can hold.",
								"When full, and nothing has left the window, verification fails closed (nonce_cache_full).",
								&enrollment_max_nonces,
								100000, 1024, 100000000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);

		DefineCustomIntVariable("enrollment.last_used_slots",
								"How many API keys' last-used stamps shared memory can hold.",
								NULL,
								&enrollment_last_used_slots,
								10000, 128, 10000000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);

		DefineCustomIntVariable("enrollment.last_seen_slots",
								"How many nodes' last-seen stamps shared memory can hold.",
								"authenticate_node notes when each node was last seen; the worker writes the stamps to node_record.last_seen_at.",
								&enrollment_last_seen_slots,
								10000, 128, 10000000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);

		DefineCustomStringVariable("enrollment.database_names",
								   "Databases the maintenance worker runs in (comma-separated).",
								   "One worker per database; empty means no worker.",
								   &enrollment_database_names,
								   "postgres",
								   PGC_POSTMASTER, GUC_LIST_INPUT,
								   check_database_names, NULL, NULL);
	}

	MarkGUCPrefixReserved("enrollment");
}
