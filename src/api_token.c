/*-------------------------------------------------------------------------
 *
 * api_token.c
 *	  Bearer API tokens: creation, and verification on the request path.
 *
 * An API token is a credential string like an enrollment token (prefix,
 * public id, secret, checksum; see token_format.h) whose prefix is the
 * tenant's own (enrollment.tenant_setting, default "api_").  It is stored
 * as public id + SHA-256 digest and belongs to the member who created it.
 *
 * Its permissions are those it was given (all, when none were listed)
 * intersected with what its owner's role allows at the moment of each
 * check, so demoting the owner narrows the token at once and a token never
 * exceeds its owner.  verify_api_token reads the token and the owner's
 * membership with direct index probes and never raises for a bad token.
 *
 * src/api_token.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/uuid.h"

#include "enrollment.h"
#include "probe.h"

PG_FUNCTION_INFO_V1(enrollment_create_api_token);
PG_FUNCTION_INFO_V1(enrollment_verify_api_token);
PG_FUNCTION_INFO_V1(enrollment_role_permissions);

/* The permissions an API token may carry; bit i is perm_names[i] */
static const char *const perm_names[] = {
	"nodes:read", "stats:read", "tokens:read", "tokens:write", "nodes:write",
	"agents:register", "api_tokens:read", "api_tokens:write", "keys:read",
	"keys:write", "audit:read", "members:read", "members:write"
};
#define NUM_PERMS lengthof(perm_names)

/*
 * What each role allows, by rank (1 viewer .. 5 owner).  Each role has the
 * permissions of the roles below it.
 */
static const int32 role_perms[6] = {
	0,
	0x0001,						/* viewer: nodes:read */
	0x0003,						/* analyst: + stats:read */
	0x00ff,						/* operator: + tokens, nodes:write,
								 * agents:register, own API tokens */
	0x1fff,						/* admin: + keys, audit:read, members */
	0x1fff						/* owner: everything */
};

static EnrPlan tenant_prefix_plan = {
	.sql = "SELECT s.api_token_prefix FROM enrollment.tenant_setting AS s"
	" WHERE s.tenant OPERATOR(pg_catalog.=) $1",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

static EnrPlan insert_api_token_plan = {
	.sql = "WITH t AS ("
	"  INSERT INTO enrollment.api_token"
	"    (tenant, public_id, prefix, token_hash, label, permissions, perm_mask, owner, created_by)"
	"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
	"  RETURNING token_id),"
	" a AS ("
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, object_type, object_id, details)"
	"  SELECT $1, $8, 'api_token_created', 'api_token', t.token_id::text,"
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
	"           'label', $5, 'permissions', $6, 'prefix', $9))"
	"  FROM t)"
	"SELECT token_id FROM t",
	.nargs = 9,
	.argtypes = {TEXTOID, INT8OID, TEXTOID, BYTEAOID, TEXTOID, TEXTARRAYOID, INT4OID, TEXTOID, TEXTOID}
};

/* verify_api_token reads the token (and its owner's membership) directly */
static EnrProbeTable api_token_by_public_id = {
	.relname = "api_token",
	.indexname = "api_token_public_id_key",
	.eqproc = F_INT8EQ,
	.ncols = 7,
	.cols = {"public_id", "token_id", "tenant", "token_hash", "status", "owner", "perm_mask"}
};


/* Bit of a permission name, -1 if unknown */
static int
perm_bit(const char *name, size_t len)
{
	for (int i = 0; i < (int) NUM_PERMS; i++)
		if (strlen(perm_names[i]) == len && memcmp(perm_names[i], name, len) == 0)
			return i;
	return -1;
}

static void
unknown_permission(const char *argname)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown permission in %s", argname),
			 errdetail("Permissions are: nodes:read, stats:read, tokens:read, tokens:write, "
					   "nodes:write, agents:register, api_tokens:read, api_tokens:write, "
					   "keys:read, keys:write, audit:read, members:read, members:write.")));
}

/* The permission names of a mask, as text[] */
static Datum
perm_array(int32 mask)
{
	Datum		names[NUM_PERMS];
	int			n = 0;

	for (int i = 0; i < (int) NUM_PERMS; i++)
		if (mask & (1 << i))
			names[n++] = CStringGetTextDatum(perm_names[i]);
	return PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * enrollment.create_api_token(label text, permissions text[])
 *	RETURNS (token_id uuid, token text, prefix text, permissions text[])
 *
 * Operators and above; the permissions asked for must be within the
 * creator's role (NULL: whatever the owner's role allows at each check).
 */
Datum
enrollment_create_api_token(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	text	   *label;
	char	   *tenant = enr_current_tenant();
	char	   *actor = enr_current_actor();
	int			rank;
	int32		mask = -1;
	char	   *prefix = "api_";
	IssuedCredential cred;
	Datum		args[9];
	char		nulls[9];
	Datum		out[4];
	bool		outnulls[4] = {false, false, false, false};
	MemoryContext callcxt = CurrentMemoryContext;
	HeapTuple	result;
	Datum		token_id;
	bool		isnull;

	enr_require_role("operator", "create API tokens");
	rank = enr_caller_rank();
	tupdesc = enr_result_tupdesc(fcinfo);
	enr_require_arg(fcinfo, 0, "label");
	label = PG_GETARG_TEXT_PP(0);
	enr_check_text_arg(label, "label", 128, false);

	if (!PG_ARGISNULL(1))
	{
		Datum	   *elems;
		bool	   *elemnulls;
		int			nelems;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elemnulls, &nelems);
		mask = 0;
		for (int i = 0; i < nelems; i++)
		{
			int			bit;

			if (elemnulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("permissions must not contain NULL")));
			bit = perm_bit(VARDATA_ANY(elems[i]), VARSIZE_ANY_EXHDR(elems[i]));
			if (bit < 0)
				unknown_permission("permissions");
			mask |= 1 << bit;
		}
		if (mask == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("permissions must not be empty"),
					 errhint("Pass NULL for everything your role allows, or list the permissions.")));
		if ((mask & ~role_perms[rank]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission_denied"),
					 errdetail("A token cannot have permissions its owner's role (%s) does not allow.",
							   enr_role_name(rank)),
					 errhint("Ask for fewer permissions, or ask an admin for a stronger role.")));
	}

	/*
	 * The token's permissions follow its owner's role in the member table at
	 * each check, so an owner who is no member would get a token that never
	 * verifies.  Only a DBA (owner of every tenant without a row) can get this
	 * far without being one: for anyone else the rank above is the member's.
	 */
	if (enr_caller_is_dba() &&
		enr_member_rank(CStringGetTextDatum(tenant), CStringGetTextDatum(actor)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("an API token must be owned by a member of the tenant"),
				 errdetail("\"%s\" is not a member of tenant \"%s\"; the token's permissions follow its owner's role there.",
						   actor, tenant),
				 errhint("Set enrollment.actor to the member the token is for.")));

	SPI_connect();
	{
		Datum		a[1] = {CStringGetTextDatum(tenant)};

		enr_execute(&tenant_prefix_plan, a, NULL, true, 1);
		if (SPI_processed == 1)
		{
			Datum		p = enr_getattr(0, 1, &isnull);

			if (!isnull)
				prefix = TextDatumGetCString(p);
		}
	}

	/*
	 * The settings' prefixes pass their check hooks; this one only the
	 * table's CHECK, which a superuser could drop.  A credential has room
	 * for a valid prefix only.
	 */
	if (!enr_token_prefix_is_valid(prefix, strlen(prefix)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid API token prefix \"%s\" for tenant \"%s\"", prefix, tenant),
				 errdetail("A prefix is 2 to 16 characters: a lowercase letter, then lowercase letters, digits or '-', ending in '_'."),
				 errhint("Fix the tenant's prefix with enrollment.set_api_token_prefix.")));
	enr_issue_credential(prefix, false, &cred);

	args[0] = CStringGetTextDatum(tenant);
	args[1] = Int64GetDatum(cred.public_id);
	args[2] = CStringGetTextDatum(prefix);
	args[3] = PointerGetDatum(enr_digest_bytea(cred.digest));
	args[4] = PointerGetDatum(label);
	args[5] = mask == -1 ? (Datum) 0 : perm_array(mask);
	args[6] = Int32GetDatum(mask);
	args[7] = CStringGetTextDatum(actor);
	args[8] = CStringGetTextDatum(psprintf("%s%016" INT64_MODIFIER "x", prefix, (uint64) cred.public_id));
	memset(nulls, ' ', sizeof(nulls));
	if (mask == -1)
		nulls[5] = 'n';
	if (enr_execute(&insert_api_token_plan, args, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "API token insert returned no row");
	token_id = enr_getattr(0, 1, &isnull);

	MemoryContextSwitchTo(callcxt);
	out[0] = token_id;
	out[1] = CStringGetTextDatum(cred.text);
	out[2] = CStringGetTextDatum(psprintf("%s%016" INT64_MODIFIER "x", prefix, (uint64) cred.public_id));
	out[3] = perm_array(mask & role_perms[rank]);
	result = heap_form_tuple(tupdesc, out, outnulls);
	enr_wipe_credential(&cred);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * enrollment.verify_api_token(token text, required_permission text)
 *	RETURNS enrollment.api_token_verdict
 *		(ok, error, http_status, token_id, owner, permissions)
 *
 * Errors: invalid_token (401: malformed, unknown, wrong secret or another
 * tenant's), token_revoked (401: revoked, or its owner is no longer a
 * member), insufficient_permission (403).  An unknown required_permission
 * is a caller bug and raises.
 */
Datum
enrollment_verify_api_token(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = enr_result_tupdesc(fcinfo);
	Datum		out[6];
	bool		outnulls[6] = {false, true, false, true, true, true};
	const char *error = NULL;
	int			http = 200;
	int			required = -1;
	int64		public_id;
	uint8		digest[ENR_DIGEST_LEN];
	Datum		v[7];
	bool		n[7];

	if (!PG_ARGISNULL(1))
	{
		text	   *req = PG_GETARG_TEXT_PP(1);

		required = perm_bit(VARDATA_ANY(req), VARSIZE_ANY_EXHDR(req));
		if (required < 0)
			unknown_permission("required_permission");
	}

	if (PG_ARGISNULL(0) ||
		enr_parse_presented(PG_GETARG_TEXT_PP(0), &public_id, digest) != TOKEN_OK ||
		!enr_probe(&api_token_by_public_id, Int64GetDatum(public_id), v, n) ||
		!enr_digest_matches(DatumGetByteaPP(v[3]), digest) ||
		!enr_is_current_tenant(v[2]))
	{
		error = "invalid_token";
		http = 401;
	}
	else
	{
		int			rank = enr_member_rank(v[2], v[5]);
		int32		effective;

		out[3] = v[1];
		outnulls[3] = false;
		out[4] = v[5];
		outnulls[4] = false;
		effective = DatumGetInt32(v[6]) & role_perms[rank];
		if (strcmp(TextDatumGetCString(v[4]), "active") != 0 || rank == 0)
		{
			error = "token_revoked";
			http = 401;
			effective = 0;
		}
		else if (required >= 0 && (effective & (1 << required)) == 0)
		{
			error = "insufficient_permission";
			http = 403;
		}
		out[5] = perm_array(effective);
		outnulls[5] = false;
	}

	out[0] = BoolGetDatum(error == NULL);
	out[1] = error ? CStringGetTextDatum(error) : (Datum) 0;
	outnulls[1] = (error == NULL);
	out[2] = Int32GetDatum(http);
	return enr_return_row(fcinfo, tupdesc, out, outnulls);
}

/* enrollment.role_permissions(role text) RETURNS text[]: what a role allows */
Datum
enrollment_role_permissions(PG_FUNCTION_ARGS)
{
	int			rank = enr_role_rank(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (rank == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown role"),
				 errdetail("Roles are owner, admin, operator, analyst and viewer.")));
	PG_RETURN_DATUM(perm_array(role_perms[rank]));
}
