/*-------------------------------------------------------------------------
 *
 * credential.c
 *	  Issue new credential strings (enrollment tokens, node secrets) and
 *	  check presented ones against their stored digests.
 *
 * A credential's plaintext exists only in the IssuedCredential handed back
 * to the caller, which returns it once and wipes its copy.  Tables keep the
 * public id (for an index lookup) and the SHA-256 digest of the whole
 * string; presented strings are compared by digest in constant time.
 *
 * src/credential.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "enrollment.h"

/*
 * Generate a fresh credential with the given (already validated) prefix.
 *
 * The public id is 64 random bits, or, when time_ordered, the time of issue
 * in Unix seconds in its upper 32 bits and 32 random bits below.  Credentials
 * that are mostly used soon after they are issued (enrollment tokens: a once
 * token lives 15 minutes by default) get time-ordered ids, so that the ones
 * in use sit together at one end of the public id index instead of on
 * random leaf pages of it: with a million older tokens the lookups and the
 * index entries of recent ones stay on a few pages in shared buffers
 * (bench/README.md).  The id is no secret (it is the lookup key, shown in
 * listings); the secret keeps its 32 random bytes either way.  (From 2038 the
 * stored bigint is negative and from 2106 the seconds wrap: either only moves
 * where in the index the recent ids sit together.)  Ids issued in
 * the same second collide with odds of about n^2 / 2^33, so a caller storing
 * a time-ordered id must insert it with ON CONFLICT DO NOTHING and issue
 * another one when that inserts nothing.
 */
void
enr_issue_credential(const char *prefix, bool time_ordered, IssuedCredential *cred)
{
	uint8		rnd[sizeof(uint64) + TOKEN_SECRET_BYTES];	/* public id, secret */
	uint64		public_id;
	size_t		len;

	/* one call to the CSPRNG: each call costs about as much as the whole draw */
	enr_random_bytes(rnd, sizeof(rnd));
	memcpy(&public_id, rnd, sizeof(public_id));
	if (time_ordered)
		public_id = ((uint64) (uint32) time(NULL) << 32) | (public_id & UINT64CONST(0xFFFFFFFF));
	len = enr_token_format(prefix, public_id, rnd + sizeof(public_id), cred->text);
	enr_secure_zero(rnd, sizeof(rnd));

	cred->public_id = (int64) public_id;
	enr_sha256(cred->text, len, cred->digest);
}

/* Wipe the plaintext of an issued credential once it has been copied out */
void
enr_wipe_credential(IssuedCredential *cred)
{
	enr_secure_zero(cred, sizeof(*cred));
}

/*
 * Parse a presented credential: on success set its public id and the digest
 * to compare with the stored one.  No table is touched.
 */
TokenParseResult
enr_parse_presented(text *presented, int64 *public_id, uint8 digest[ENR_DIGEST_LEN])
{
	const char *s = VARDATA_ANY(presented);
	size_t		len = VARSIZE_ANY_EXHDR(presented);
	TokenParts	parts;
	TokenParseResult r;

	r = enr_token_parse(s, len, &parts);
	if (r != TOKEN_OK)
		return r;
	*public_id = (int64) parts.public_id;
	enr_sha256(s, len, digest);
	return TOKEN_OK;
}

/* A digest as a bytea value, for a query parameter */
bytea *
enr_digest_bytea(const uint8 digest[ENR_DIGEST_LEN])
{
	bytea	   *b = (bytea *) palloc(VARHDRSZ + ENR_DIGEST_LEN);

	SET_VARSIZE(b, VARHDRSZ + ENR_DIGEST_LEN);
	memcpy(VARDATA(b), digest, ENR_DIGEST_LEN);
	return b;
}

/* Constant-time check of a presented digest against a stored bytea digest */
bool
enr_digest_matches(bytea *stored, const uint8 digest[ENR_DIGEST_LEN])
{
	bool		equal;

	if (VARSIZE_ANY_EXHDR(stored) != ENR_DIGEST_LEN)
		return false;
	/* the stored digest is what a timing attack would be after */
	ENR_SECRET(VARDATA_ANY(stored), ENR_DIGEST_LEN);
	equal = enr_digest_equal((const uint8 *) VARDATA_ANY(stored), digest, ENR_DIGEST_LEN);
	ENR_DECLASSIFY(VARDATA_ANY(stored), ENR_DIGEST_LEN);
	return equal;
}
