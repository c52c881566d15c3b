/*-------------------------------------------------------------------------
 *
 * api_key.c
 *	  API keys for HMAC-SHA256 signed requests: creation, the scope
 *	  catalogue, sealing and opening of secrets, server key rotation.
 *
 * A key is a 16-hex-digit key_id (64 random bits, stored as bigint) and a
 * 32-byte secret from the CSPRNG.  The secret is returned once, as hex, and
 * stored only sealed with AES-256-GCM under the current server key; the
 * associated data binds each sealed secret to its key_id and key version,
 * so a sealed secret copied to another row does not open.
 *
 * src/api_key.c
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
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "enrollment.h"

PG_FUNCTION_INFO_V1(enrollment_create_api_key);
PG_FUNCTION_INFO_V1(enrollment_rotate_server_key);
PG_FUNCTION_INFO_V1(enrollment_key_last_used);

#define ROTATION_LOCK_KEY	INT64CONST(0x656e726f6c6c6b65)	/* advisory lock id */

/* The scopes an API key may hold (seed 004); bit i is scopes[i] */
static const char *const scope_names[] = {
	"sensors:read", "sensors:write", "events:read", "events:stream",
	"anomalies:read", "anomalies:write", "compliance:read", "alerts:read",
	"alerts:write", "policies:read", "policies:write", "investigations:read",
	"investigations:write", "audit:read", "chat:read", "sbom:read"
};
#define NUM_SCOPES lengthof(scope_names)

static EnrPlan insert_key_plan = {
	.sql = "WITH k AS ("
	"  INSERT INTO enrollment.api_key"
	"    (key_id, tenant, label, scopes, scope_mask, secret_sealed, key_version,"
	"     created_by, expires_at)"
	"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
	"  RETURNING key_id),"
	" a AS ("
	"  INSERT INTO enrollment.audit_event (tenant, actor, action, details)"
	"  SELECT $2, $8, 'api_key_created',"
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
	"           'key_id', $10, 'label', $3, 'scopes', $4, 'expires_at', $9))"
	"  FROM k)"
	"SELECT key_id FROM k",
	.nargs = 10,
	.argtypes = {INT8OID, TEXTOID, TEXTOID, TEXTARRAYOID, INT4OID, BYTEAOID, INT4OID,
	TEXTOID, TIMESTAMPTZOID, TEXTOID}
};

static EnrPlan keys_to_reseal_plan = {
	.sql = "SELECT key_id, secret_sealed, key_version FROM enrollment.api_key"
	" WHERE key_version <> $1 ORDER BY key_id FOR UPDATE",
	.nargs = 1,
	.argtypes = {INT4OID}
};

static EnrPlan reseal_plan = {
	.sql = "UPDATE enrollment.api_key SET secret_sealed = $2, key_version = $3"
	" WHERE key_id = $1",
	.nargs = 3,
	.argtypes = {INT8OID, BYTEAOID, INT4OID}
};

static EnrPlan rotation_audit_plan = {
	.sql = "INSERT INTO enrollment.audit_event (tenant, actor, action, details)"
	" VALUES ($1, $2, 'server_key_rotated',"
	"   pg_catalog.jsonb_build_object('version', $3, 'resealed', $4))",
	.nargs = 4,
	.argtypes = {TEXTOID, TEXTOID, INT4OID, INT8OID}
};

/*
 * Bit of a scope name, or -1 if unknown.  "analytics:read" is the legacy
 * name of "events:read".
 */
int
enr_scope_bit(const char *name, size_t len)
{
	if (len == 14 && memcmp(name, "analytics:read", 14) == 0)
		name = "events:read", len = 11;
	for (int i = 0; i < (int) NUM_SCOPES; i++)
		if (strlen(scope_names[i]) == len && memcmp(scope_names[i], name, len) == 0)
			return i;
	return -1;
}

/* Raise the error for an unknown scope name (never echoes it) */
void
enr_unknown_scope_error(const char *argname)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown scope in %s", argname),
			 errdetail("Scopes are: sensors:read, sensors:write, events:read, events:stream, "
					   "anomalies:read, anomalies:write, compliance:read, alerts:read, "
					   "alerts:write, policies:read, policies:write, investigations:read, "
					   "investigations:write, audit:read, chat:read, sbom:read "
					   "(analytics:read is accepted for events:read).")));
}

/* Associated data of a sealed secret: its key id and key version */
static void
seal_aad(uint64 key_id, int version, uint8 aad[12])
{
	for (int i = 0; i < 8; i++)
		aad[i] = (uint8) (key_id >> (56 - 8 * i));
	aad[8] = (uint8) (version >> 24);
	aad[9] = (uint8) (version >> 16);
	aad[10] = (uint8) (version >> 8);
	aad[11] = (uint8) version;
}

/* Seal a 32-byte secret for key_id under the current server key */
static bytea *
seal_secret(uint64 key_id, const uint8 secret[32], int *version)
{
	const ServerKey *sk = enr_server_key_current();
	bytea	   *sealed = palloc(VARHDRSZ + ENR_SEALED_LEN(32));
	uint8		aad[12];

	SET_VARSIZE(sealed, VARHDRSZ + ENR_SEALED_LEN(32));
	seal_aad(key_id, sk->version, aad);
	enr_aes_gcm_seal(sk->key, aad, sizeof(aad), secret, 32, (uint8 *) VARDATA(sealed));
	*version = sk->version;
	return sealed;
}

/*
 * Open a stored secret.  False when it does not open (altered row or wrong
 * key); an unknown key version is an error, not a failed authentication.
 */
bool
enr_open_secret(uint64 key_id, bytea *sealed, int version, uint8 secret[32])
{
	const ServerKey *sk;
	uint8		aad[12];

	if (VARSIZE_ANY_EXHDR(sealed) != ENR_SEALED_LEN(32))
		return false;
	sk = enr_server_key_version(version);
	seal_aad(key_id, version, aad);
	return enr_aes_gcm_open(sk->key, aad, sizeof(aad),
							(const uint8 *) VARDATA_ANY(sealed), 32, secret);
}

/* Key id as 16 lowercase hex digits, palloc'd */
char *
enr_key_id_text(uint64 key_id)
{
	static const char hex[] = "0123456789abcdef";
	char	   *out = palloc(17);

	for (int i = 15; i >= 0; i--, key_id >>= 4)
		out[i] = hex[key_id & 0xf];
	out[16] = '\0';
	return out;
}

/*
 * enrollment.create_api_key(label text, scopes text[], expires_days integer)
 *	RETURNS (key_id text, label text, scopes text[], hmac_secret text, expires_at timestamptz)
 */
Datum
enrollment_create_api_key(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	text	   *label;
	ArrayType  *scopes_in;
	Datum	   *elems;
	bool	   *elemnulls;
	int			nelems;
	int32		mask = 0;
	Datum		canon[NUM_SCOPES];
	int			ncanon = 0;
	ArrayType  *scopes;
	bool		have_exp = !PG_ARGISNULL(2);
	TimestampTz expires = 0;
	uint64		key_id;
	uint8		secret[32];
	char		secret_hex[65];
	int			version;
	bytea	   *sealed;
	Datum		args[10];
	char		nulls[10];
	Datum		out[5];
	bool		outnulls[5] = {false};
	MemoryContext callcxt = CurrentMemoryContext;
	HeapTuple	result;
	char	   *actor = enr_current_actor();
	char	   *tenant = enr_current_tenant();

	enr_require_role("admin", "create API keys");
	tupdesc = enr_result_tupdesc(fcinfo);

	enr_require_arg(fcinfo, 0, "label");
	label = PG_GETARG_TEXT_PP(0);
	enr_check_text_arg(label, "label", 128, false);

	enr_require_arg(fcinfo, 1, "scopes");
	scopes_in = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(scopes_in) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scopes must be a one-dimensional array")));
	deconstruct_array(scopes_in, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elemnulls, &nelems);
	if (nelems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an API key needs at least one scope"),
				 errhint("Grant only the scopes the integration needs, e.g. ARRAY['events:read'].")));
	for (int i = 0; i < nelems; i++)
	{
		int			bit;

		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("scopes must not contain NULL")));
		bit = enr_scope_bit(VARDATA_ANY(DatumGetTextPP(elems[i])),
							VARSIZE_ANY_EXHDR(DatumGetTextPP(elems[i])));
		if (bit < 0)
			enr_unknown_scope_error("scopes");
		mask |= (1 << bit);
	}
	/* canonical form: known names, aliases resolved, no duplicates, catalogue order */
	for (int i = 0; i < (int) NUM_SCOPES; i++)
		if (mask & (1 << i))
			canon[ncanon++] = CStringGetTextDatum(scope_names[i]);
	scopes = construct_array(canon, ncanon, TEXTOID, -1, false, TYPALIGN_INT);

	if (have_exp)
	{
		int32		days = PG_GETARG_INT32(2);

		if (days <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("expires_days must be positive"),
					 errhint("Pass NULL for a key that does not expire.")));
		if (days > 36500)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("expires_days is too large"),
					 errdetail("An API key may be given at most 36500 days; NULL means no expiry.")));
		expires = enr_now() + (int64) days * USECS_PER_DAY;
	}

	SPI_connect();

	enr_random_bytes(&key_id, sizeof(key_id));
	enr_random_bytes(secret, sizeof(secret));
	sealed = seal_secret(key_id, secret, &version);
	enr_hex_encode_lower(secret, 32, secret_hex);
	secret_hex[64] = '\0';
	enr_secure_zero(secret, sizeof(secret));

	args[0] = Int64GetDatum((int64) key_id);
	args[1] = CStringGetTextDatum(tenant);
	args[2] = PointerGetDatum(label);
	args[3] = PointerGetDatum(scopes);
	args[4] = Int32GetDatum(mask);
	args[5] = PointerGetDatum(sealed);
	args[6] = Int32GetDatum(version);
	args[7] = CStringGetTextDatum(actor);
	args[8] = TimestampTzGetDatum(expires);
	args[9] = CStringGetTextDatum(enr_key_id_text(key_id));
	memset(nulls, ' ', sizeof(nulls));
	if (!have_exp)
		nulls[8] = 'n';
	if (enr_execute(&insert_key_plan, args, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "API key insert returned no row");

	MemoryContextSwitchTo(callcxt);
	out[0] = CStringGetTextDatum(enr_key_id_text(key_id));
	out[1] = PointerGetDatum(label);
	out[2] = PointerGetDatum(scopes);
	out[3] = CStringGetTextDatum(secret_hex);
	out[4] = TimestampTzGetDatum(expires);
	outnulls[4] = !have_exp;
	result = heap_form_tuple(tupdesc, out, outnulls);
	enr_secure_zero(secret_hex, sizeof(secret_hex));
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * enrollment.rotate_server_key() RETURNS TABLE (version integer, resealed bigint)
 *
 * Adds a server key version and re-seals every secret under it in this
 * transaction.  Verifications keep working throughout: they only read the
 * rows, and the old version stays in the key file.
 */
Datum
enrollment_rotate_server_key(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	int			version;
	int64		resealed = 0;
	Datum		out[2];
	bool		outnulls[2] = {false, false};
	MemoryContext callcxt = CurrentMemoryContext;
	HeapTuple	result;

	/* the server key serves every tenant: a database administrator's job */
	enr_require_dba("Rotating the server key affects every tenant.");
	tupdesc = enr_result_tupdesc(fcinfo);
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot rotate the server key on a standby"),
				 errhint("Rotate on the primary, then copy its server key file to the standbys.")));

	/* one rotation at a time, across the whole cluster */
	DirectFunctionCall1(pg_advisory_xact_lock_int8, Int64GetDatum(ROTATION_LOCK_KEY));

	SPI_connect();
	version = enr_server_key_rotate();
	{
		Datum		a[1] = {Int32GetDatum(version)};
		SPITupleTable *rows;
		uint64		nrows;

		enr_execute(&keys_to_reseal_plan, a, NULL, false, 0);
		rows = SPI_tuptable;
		nrows = SPI_processed;
		for (uint64 i = 0; i < nrows; i++)
		{
			bool		isnull;
			uint64		key_id = (uint64) DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			bytea	   *old = DatumGetByteaPP(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));
			int			oldver = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull));
			uint8		secret[32];
			int			newver;
			Datum		u[3];

			if (!enr_open_secret(key_id, old, oldver, secret))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("stored secret of API key %s does not open", enr_key_id_text(key_id)),
						 errdetail("The sealed secret or its server key version %d was altered.", oldver),
						 errhint("Revoke this key and create a new one.")));
			u[0] = Int64GetDatum((int64) key_id);
			u[1] = PointerGetDatum(seal_secret(key_id, secret, &newver));
			u[2] = Int32GetDatum(newver);
			enr_secure_zero(secret, sizeof(secret));
			enr_execute(&reseal_plan, u, NULL, false, 0);
			resealed++;
		}
	}
	{
		Datum		a[4] = {CStringGetTextDatum(enr_current_tenant()),
			CStringGetTextDatum(enr_current_actor()),
		Int32GetDatum(version), Int64GetDatum(resealed)};

		enr_execute(&rotation_audit_plan, a, NULL, false, 0);
	}

	MemoryContextSwitchTo(callcxt);
	out[0] = Int32GetDatum(version);
	out[1] = Int64GetDatum(resealed);
	result = heap_form_tuple(tupdesc, out, outnulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * enrollment.key_last_used(key_id bigint) RETURNS timestamptz
 *
 * The latest accepted request of a key noted in shared memory and not yet
 * written to its row; NULL when there is none.
 */
Datum
enrollment_key_last_used(PG_FUNCTION_ARGS)
{
	TimestampTz stamp = enr_stamp_get(ENR_STAMP_API_KEY, (uint64) PG_GETARG_INT64(0));

	if (stamp == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(stamp);
}
