/*-------------------------------------------------------------------------
 *
 * uuid_v7.c
 *	  Time-ordered UUIDs (version 7, RFC 9562) for the keys of the rows an
 *	  enrollment writes.
 *
 * Tokens and nodes used to be keyed by random (version 4) UUIDs.  Every
 * enrollment then wrote entries at random places in four B-trees (the
 * token's and the node's primary keys, the audit log's and the nodes'
 * token_id indexes): each a page likely to be out of the buffer cache once
 * the tables are large, and, after every checkpoint, a full-page image in
 * the WAL that the commit has to flush.  A version 7 UUID starts with the
 * time in milliseconds, so rows made close together in time sit close
 * together in those indexes.  The remaining 74 bits are random (OpenSSL's
 * CSPRNG); the ids are identifiers, not secrets, and the time they reveal
 * is the row's created_at/enrolled_at, which the views show anyway.
 *
 * enr_random_uuid also makes the random (version 4) UUIDs sign_request
 * uses as nonces.
 *
 * src/uuid_v7.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include "fmgr.h"
#include "utils/uuid.h"

#include "enrollment.h"

PG_FUNCTION_INFO_V1(enrollment_uuid_v7);

/* A UUID of the given version: random bits (CSPRNG), the RFC 4122 variant */
pg_uuid_t *
enr_random_uuid(int version)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	enr_random_bytes(u->data, UUID_LEN);
	u->data[6] = (u->data[6] & 0x0F) | (unsigned char) (version << 4);
	u->data[8] = (u->data[8] & 0x3F) | 0x80;	/* variant 10 */
	return u;
}

/*
 * enrollment.uuid_v7() RETURNS uuid
 *
 * 48 bits of Unix time in milliseconds, version 7, 12 random bits, the
 * RFC 4122 variant, 62 random bits.
 */
Datum
enrollment_uuid_v7(PG_FUNCTION_ARGS pg_attribute_unused())
{
	pg_uuid_t  *u = enr_random_uuid(7);
	struct timeval tv;
	uint64		ms;

	gettimeofday(&tv, NULL);
	ms = (uint64) tv.tv_sec * 1000 + tv.tv_usec / 1000;
	for (int i = 0; i < 6; i++)
		u->data[i] = (unsigned char) (ms >> (40 - 8 * i));
	PG_RETURN_UUID_P(u);
}
