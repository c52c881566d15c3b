/*-------------------------------------------------------------------------
 *
 * hmac_auth.c
 *	  verify_request: authenticate an HMAC-SHA256 signed API request in one
 *	  call; sign_request: the matching client-side helper.
 *
 * Checks, in this order (the first failure is the answer):
 *	 1. the four headers are present and well formed
 *		(missing_headers, invalid_key, invalid_timestamp, invalid_nonce,
 *		 malformed_signature)
 *	 2. the timestamp is inside the window and not older than the replay
 *		floor (stale_timestamp)
 *	 3. the key exists, is not revoked and not expired (invalid_key)
 *	 4. the HMAC of the signing string matches, compared in constant time
 *		(bad_signature)
 *	 5. the nonce was not accepted before for this key (nonce_reused); it is
 *		remembered only now, after the signature checked out
 *		(nonce_cache_full when no room is left: fail closed)
 *	 6. the key holds the required scope (insufficient_scope, HTTP 403)
 * An authentication failure is a result row, never an error, so the
 * caller's transaction goes on.  The function never writes a row: the
 * nonce goes to shared memory and last_used_at is noted there too.
 *
 * src/hmac_auth.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "enrollment.h"
#include "probe.h"
#include "request_format.h"

PG_FUNCTION_INFO_V1(enrollment_verify_request);
PG_FUNCTION_INFO_V1(enrollment_verify_request_headers);
PG_FUNCTION_INFO_V1(enrollment_sign_request);

/* The key is read by key_id without SPI (probe.c) */
static EnrProbeTable key_by_id = {
	.relname = "api_key",
	.indexname = "api_key_pkey",
	.eqproc = F_INT8EQ,
	.ncols = 8,
	.cols = {"key_id", "tenant", "scopes", "scope_mask", "secret_sealed", "key_version",
	"revoked_at", "expires_at"}
};

/* The answer of a verification */
typedef struct VerifyResult
{
	const char *error;			/* NULL when ok */
	int			http_status;
	bool		have_key_id;
	uint64		key_id;
	Datum		scopes;			/* text[] or 0 */
	Datum		tenant;			/* text or 0 */
} VerifyResult;

/* The presented request, as text values (any may be NULL) */
typedef struct SignedRequest
{
	text	   *method;
	text	   *path;
	text	   *key_id;
	text	   *ts;
	text	   *nonce;
	text	   *signature;
	bytea	   *body;
} SignedRequest;

/* Record a failed verification (the error key is the outcome's name) */
static void
fail(VerifyResult *r, VerifyOutcome outcome, int http_status)
{
	r->error = verify_outcome_names[outcome];
	r->http_status = http_status;
	enr_count_verify(outcome);
}

#define TXT(t) VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)

/* record a failure and leave verify() */
#define FAIL(r, error, status) do { fail((r), (error), (status)); return; } while (0)

/* Scope bit of the required scope, -1 for none; unknown names are a caller bug */
static int
required_scope_bit(text *required)
{
	int			bit;

	if (required == NULL)
		return -1;
	bit = enr_scope_bit(TXT(required));
	if (bit < 0)
		enr_unknown_scope_error("required_scope");
	return bit;
}

/* Bit of the audit:read scope, looked up once */
static int
audit_read_bit(void)
{
	static int	bit = -1;

	if (bit < 0)
		bit = enr_scope_bit("audit:read", strlen("audit:read"));
	return bit;
}

/*
 * SHA-256 of the request body.  Most requests (GET, DELETE) have none, and
 * the digest of nothing is a constant: computed once per backend.
 */
static void
body_digest(bytea *body, uint8 out[ENR_DIGEST_LEN])
{
	static uint8 empty[ENR_DIGEST_LEN];
	static bool have_empty = false;

	if (VARSIZE_ANY_EXHDR(body) > 0)
	{
		enr_sha256(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), out);
		return;
	}
	if (!have_empty)
	{
		enr_sha256("", 0, empty);
		have_empty = true;
	}
	memcpy(out, empty, ENR_DIGEST_LEN);
}

/*
 * The nonce rule (1 to 128 characters, no control character).  In a UTF-8
 * or SQL_ASCII database the bytes are read as UTF-8; in any other the
 * characters are counted in the database's encoding, whose every byte
 * below 0x80 is ASCII, so the byte checks still hold.
 */
static bool
nonce_is_valid(text *nonce)
{
	int			enc = GetDatabaseEncoding();
	bool		utf8 = (enc == PG_UTF8 || enc == PG_SQL_ASCII);

	if (!enr_nonce_is_valid(TXT(nonce), utf8))
		return false;
	return utf8 || pg_mbstrlen_with_len(TXT(nonce)) <= API_NONCE_MAX;
}

/* Steps 1 to 6 (see the file header); result in *r */
static void
verify(const SignedRequest *req, int scope_bit, VerifyResult *r)
{
	uint64		key_id;
	int64		ts;
	uint8		presented[ENR_DIGEST_LEN];
	int64		now = (int64) time(NULL);
	uint8		body_hash[ENR_DIGEST_LEN];
	uint8		expected[ENR_DIGEST_LEN];
	char	   *signing;
	size_t		signing_len;
	bool		opened;
	bool		match;
	int32		mask;
	NonceVerdict nv;
	Datum		kv[8];
	bool		kn[8];

	memset(r, 0, sizeof(*r));
	r->http_status = 200;

	/* 1. headers */
	if (req->key_id == NULL || req->ts == NULL || req->nonce == NULL || req->signature == NULL ||
		VARSIZE_ANY_EXHDR(req->key_id) == 0 || VARSIZE_ANY_EXHDR(req->ts) == 0 ||
		VARSIZE_ANY_EXHDR(req->signature) == 0)
		FAIL(r, VERIFY_MISSING_HEADERS, 401);
	if (!enr_parse_key_id(TXT(req->key_id), &key_id))
		FAIL(r, VERIFY_INVALID_KEY, 401);
	r->have_key_id = true;
	r->key_id = key_id;
	if (!enr_parse_timestamp(TXT(req->ts), &ts))
		FAIL(r, VERIFY_INVALID_TIMESTAMP, 401);
	if (!nonce_is_valid(req->nonce))
		FAIL(r, VERIFY_INVALID_NONCE, 401);
	if (!enr_parse_signature(TXT(req->signature), presented))
		FAIL(r, VERIFY_MALFORMED_SIGNATURE, 401);

	/* 2. window and replay floor */
	if (ts < now - enrollment_hmac_window || ts > now + enrollment_hmac_window ||
		ts < enr_replay_floor())
		FAIL(r, VERIFY_STALE_TIMESTAMP, 401);

	/* 3. the key: exists, is the current tenant's, not revoked, not expired */
	if (!enr_probe(&key_by_id, Int64GetDatum((int64) key_id), kv, kn))
		FAIL(r, VERIFY_INVALID_KEY, 401);
	if (!kn[6] || (!kn[7] && DatumGetTimestampTz(kv[7]) <= GetCurrentTimestamp()))
	{
		enr_api_key_forget(key_id); /* keep nothing of a dead key */
		FAIL(r, VERIFY_INVALID_KEY, 401);
	}
	if (!enr_is_current_tenant(kv[1]))
		FAIL(r, VERIFY_INVALID_KEY, 401);

	/* 4. the signature: same work whether it will match or not */
	body_digest(req->body, body_hash);
	signing_len = enr_signing_string_len(VARSIZE_ANY_EXHDR(req->method),
										 VARSIZE_ANY_EXHDR(req->path),
										 VARSIZE_ANY_EXHDR(req->ts),
										 VARSIZE_ANY_EXHDR(req->nonce));
	signing = palloc(signing_len);
	enr_signing_string(signing, TXT(req->method), TXT(req->path), TXT(req->ts),
					   TXT(req->nonce), body_hash);
	opened = enr_api_key_hmac(key_id, DatumGetByteaPP(kv[4]), DatumGetInt32(kv[5]),
							  signing, signing_len, expected);
	match = enr_digest_equal(expected, presented, ENR_DIGEST_LEN) && opened;
	ENR_DECLASSIFY(expected, sizeof(expected));
	pfree(signing);
	if (!match)
		FAIL(r, VERIFY_BAD_SIGNATURE, 401);

	r->tenant = PointerGetDatum(PG_DETOAST_DATUM(kv[1]));
	r->scopes = PointerGetDatum(PG_DETOAST_DATUM(kv[2]));
	mask = DatumGetInt32(kv[3]);

	/* 5. the nonce, remembered only now */
	nv = enr_nonce_check_and_remember(key_id, TXT(req->nonce), ts, now, enrollment_hmac_window);
	if (nv == NONCE_REUSED)
		FAIL(r, VERIFY_NONCE_REUSED, 401);
	if (nv == NONCE_CACHE_FULL)
		FAIL(r, VERIFY_NONCE_CACHE_FULL, 503);
	if (nv == NONCE_STALE)
		FAIL(r, VERIFY_STALE_TIMESTAMP, 401);

	enr_stamp_note(ENR_STAMP_API_KEY, key_id, GetCurrentTimestamp());

	/* 6. the scope */
	if (scope_bit >= 0 && (mask & (1 << scope_bit)) == 0)
		FAIL(r, VERIFY_INSUFFICIENT_SCOPE, 403);
	/* a request verified for audit:read may read its tenant's audit log */
	if (scope_bit >= 0 && scope_bit == audit_read_bit())
		enr_grant_audit_read(TextDatumGetCString(r->tenant));
	enr_count_verify(VERIFY_OK);
}

/* Form the result row (ok, error, http_status, key_id, scopes, tenant) */
static Datum
result_datum(FunctionCallInfo fcinfo, const VerifyResult *r)
{
	TupleDesc	tupdesc;
	Datum		out[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	tupdesc = enr_result_tupdesc(fcinfo);
	out[0] = BoolGetDatum(r->error == NULL);
	out[1] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
	nulls[1] = (r->error == NULL);
	out[2] = Int32GetDatum(r->http_status);
	out[3] = r->have_key_id ? CStringGetTextDatum(enr_key_id_text(r->key_id)) : (Datum) 0;
	nulls[3] = !r->have_key_id;
	out[4] = r->scopes;
	nulls[4] = (r->scopes == (Datum) 0);
	out[5] = r->tenant;
	nulls[5] = (r->tenant == (Datum) 0);
	return enr_return_row(fcinfo, tupdesc, out, nulls);
}

/* method and path are the caller's own data: NULL there is a bug, not a bad request */
static void
require_method_path(FunctionCallInfo fcinfo, SignedRequest *req)
{
	enr_require_arg(fcinfo, 0, "method");
	enr_require_arg(fcinfo, 1, "path");
	req->method = PG_GETARG_TEXT_PP(0);
	req->path = PG_GETARG_TEXT_PP(1);
}

/*
 * enrollment.verify_request(method text, path text, key_id text, ts text,
 *		nonce text, signature text, body bytea, required_scope text)
 *	RETURNS (ok, error, http_status, key_id, scopes, tenant)
 */
Datum
enrollment_verify_request(PG_FUNCTION_ARGS)
{
	SignedRequest req;
	VerifyResult r;
	int			scope_bit;

	enr_require_shmem();
	require_method_path(fcinfo, &req);
	req.key_id = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	req.ts = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	req.nonce = PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4);
	req.signature = PG_ARGISNULL(5) ? NULL : PG_GETARG_TEXT_PP(5);
	req.body = PG_ARGISNULL(6) ? (bytea *) cstring_to_text("") : PG_GETARG_BYTEA_PP(6);
	scope_bit = required_scope_bit(PG_ARGISNULL(7) ? NULL : PG_GETARG_TEXT_PP(7));

	verify(&req, scope_bit, &r);
	PG_RETURN_DATUM(result_datum(fcinfo, &r));
}

/*
 * Find the configured header names in a jsonb object, case-insensitively.
 * Returns false when a header appears twice (ambiguous).  Values that are
 * not strings or numbers count as missing.
 */
static bool
extract_headers(Jsonb *headers, SignedRequest *req)
{
	const char *names[4] = {enrollment_header_key_id, enrollment_header_timestamp,
	enrollment_header_nonce, enrollment_header_signature};
	text	  **slots[4] = {&req->key_id, &req->ts, &req->nonce, &req->signature};
	bool		seen[4] = {false, false, false, false};
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			current = -1;

	req->key_id = req->ts = req->nonce = req->signature = NULL;
	if (!JB_ROOT_IS_OBJECT(headers))
		return true;			/* no headers at all */

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			current = -1;
			for (int i = 0; i < 4; i++)
			{
				if (strlen(names[i]) == (size_t) v.val.string.len &&
					pg_strncasecmp(names[i], v.val.string.val, v.val.string.len) == 0)
				{
					if (seen[i])
						return false;
					seen[i] = true;
					current = i;
				}
			}
		}
		else if (tok == WJB_VALUE && current >= 0)
		{
			if (v.type == jbvString)
				*slots[current] = cstring_to_text_with_len(v.val.string.val, v.val.string.len);
			else if (v.type == jbvNumeric)
				*slots[current] = cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out,
																					  NumericGetDatum(v.val.numeric))));
			current = -1;
		}
	}
	return true;
}

/*
 * enrollment.verify_request(method text, path text, headers jsonb,
 *		body bytea, required_scope text)
 *	RETURNS (ok, error, http_status, key_id, scopes, tenant)
 */
Datum
enrollment_verify_request_headers(PG_FUNCTION_ARGS)
{
	SignedRequest req;
	VerifyResult r;
	int			scope_bit;

	enr_require_shmem();
	require_method_path(fcinfo, &req);
	req.body = PG_ARGISNULL(3) ? (bytea *) cstring_to_text("") : PG_GETARG_BYTEA_PP(3);
	scope_bit = required_scope_bit(PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4));

	if (PG_ARGISNULL(2) || !extract_headers(PG_GETARG_JSONB_P(2), &req))
	{
		memset(&r, 0, sizeof(r));
		fail(&r, VERIFY_MISSING_HEADERS, 401);
	}
	else
		verify(&req, scope_bit, &r);
	PG_RETURN_DATUM(result_datum(fcinfo, &r));
}

/*
 * The 32-byte secret of sign_request's hmac_secret (64 hex digits).  The
 * digits are copied and marked secret for the constant-time check
 * (scripts/valgrind): decoding them may not branch on them.  Only whether
 * they were hex is made public.  secret is wiped when they were not.
 */
static bool
decode_secret(text *secret_hex, uint8 secret[32])
{
	char		digits[64];
	bool		ok;

	if (VARSIZE_ANY_EXHDR(secret_hex) != sizeof(digits))
		return false;
	memcpy(digits, VARDATA_ANY(secret_hex), sizeof(digits));
	ENR_SECRET(digits, sizeof(digits));
	ok = enr_hex_decode(digits, sizeof(digits), secret);
	enr_secure_zero(digits, sizeof(digits));
	ENR_DECLASSIFY(&ok, sizeof(ok));
	if (!ok)
		enr_secure_zero(secret, 32);
	return ok;
}

/*
 * enrollment.sign_request(method text, path text, key_id text,
 *		hmac_secret text, body bytea, ts bigint, nonce text) RETURNS jsonb
 *
 * The four headers of a signed request, as a client would send them (for
 * psql users and tests).  ts defaults to now, nonce to a random UUID.
 */
Datum
enrollment_sign_request(PG_FUNCTION_ARGS)
{
	text	   *method;
	text	   *path;
	text	   *key_id;
	text	   *secret_hex;
	bytea	   *body;
	char	   *ts;
	char	   *nonce;
	uint64		kid;
	uint8		secret[32];
	uint8		body_hash[ENR_DIGEST_LEN];
	uint8		mac[ENR_DIGEST_LEN];
	char		mac_hex[65];
	char	   *signing;
	size_t		signing_len;

	enr_require_arg(fcinfo, 0, "method");
	enr_require_arg(fcinfo, 1, "path");
	enr_require_arg(fcinfo, 2, "key_id");
	enr_require_arg(fcinfo, 3, "hmac_secret");
	method = PG_GETARG_TEXT_PP(0);
	path = PG_GETARG_TEXT_PP(1);
	key_id = PG_GETARG_TEXT_PP(2);
	secret_hex = PG_GETARG_TEXT_PP(3);
	body = PG_ARGISNULL(4) ? (bytea *) cstring_to_text("") : PG_GETARG_BYTEA_PP(4);

	if (!enr_parse_key_id(TXT(key_id), &kid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_id must be 16 lowercase hex digits")));
	if (!decode_secret(secret_hex, secret))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hmac_secret must be 64 hex digits")));
	ts = PG_ARGISNULL(5) ? psprintf(INT64_FORMAT, (int64) time(NULL))
		: psprintf(INT64_FORMAT, PG_GETARG_INT64(5));
	if (PG_ARGISNULL(6))
	{
		/* a version 4 UUID, as gen_random_uuid() makes */
		pg_uuid_t  *u = enr_random_uuid(4);

		nonce = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
	}
	else
		nonce = text_to_cstring(PG_GETARG_TEXT_PP(6));

	body_digest(body, body_hash);
	signing_len = enr_signing_string_len(VARSIZE_ANY_EXHDR(method), VARSIZE_ANY_EXHDR(path),
										 strlen(ts), strlen(nonce));
	signing = palloc(signing_len);
	enr_signing_string(signing, TXT(method), TXT(path), ts, strlen(ts), nonce, strlen(nonce),
					   body_hash);
	enr_hmac_sha256(secret, sizeof(secret), signing, signing_len, mac);
	enr_secure_zero(secret, sizeof(secret));
	ENR_DECLASSIFY(mac, sizeof(mac));	/* the signature is the output */
	enr_hex_encode_lower(mac, sizeof(mac), mac_hex);
	mac_hex[64] = '\0';

	{
		/* the object is built as jsonb directly, not printed and parsed again */
		const char *names[4] = {enrollment_header_key_id, enrollment_header_timestamp,
		enrollment_header_nonce, enrollment_header_signature};
		const char *values[4] = {text_to_cstring(key_id), ts, nonce,
		psprintf("sha256=%s", mac_hex)};
		JsonbParseState *state = NULL;
		JsonbValue *obj;

		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		for (int i = 0; i < 4; i++)
		{
			JsonbValue	k;
			JsonbValue	v;

			k.type = jbvString;
			k.val.string.val = (char *) names[i];
			k.val.string.len = strlen(names[i]);
			v.type = jbvString;
			v.val.string.val = (char *) values[i];
			v.val.string.len = strlen(values[i]);
			pushJsonbValue(&state, WJB_KEY, &k);
			pushJsonbValue(&state, WJB_VALUE, &v);
		}
		obj = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
		PG_RETURN_JSONB_P(JsonbValueToJsonb(obj));
	}
}
