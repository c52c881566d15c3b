/*-------------------------------------------------------------------------
 *
 * hmac_key_cache.c
 *	  The HMAC of a signed request under an API key's stored secret, with
 *	  the keyed HMAC contexts of recently used keys kept per backend.
 *
 * Verifying a request under a key means opening its sealed secret
 * (AES-256-GCM) and keying HMAC-SHA256 with it (hashing the padded key
 * into the inner and outer states): about 12 k instructions, a third of
 * verify_request, redone for every request of the same key.  A backend
 * therefore keeps, for the last ENR_HMAC_KEY_CACHE keys it verified, the
 * keyed context, and reuses it while the key's row still holds the very
 * same sealed secret.
 *
 * An entry is found by key_id and used only when the stored sealed bytes
 * and the server key version are identical to those it was made from, so
 * a new secret, a re-seal under a rotated server key or a restored row
 * never meets a stale entry: it misses and is opened afresh.  Everything
 * else verify_request checks (revocation, expiry, tenant, the signature,
 * the nonce) is read from the row and checked on every call as before;
 * this only saves recomputing a value that depends on nothing else.
 *
 * What is cached is as sensitive as the secret itself, and it stays in
 * this backend's private memory only (never shared memory, never written
 * anywhere): the server key that opens every stored secret is cached in the
 * same memory already (server_key.c).  A key found revoked or expired is
 * dropped at once; evicted entries are freed, and OpenSSL wipes them.
 *
 * src/hmac_key_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "enrollment.h"

/* Keys whose keyed contexts one backend keeps (about 1 kB each) */
#define ENR_HMAC_KEY_CACHE	64

#define SEALED_SECRET_LEN	ENR_SEALED_LEN(32)

typedef struct KeyCacheEntry
{
	EVP_MAC_CTX *mac;			/* NULL: the slot is free */
	uint64		key_id;
	int			version;		/* server key version of the sealed bytes */
	uint8		sealed[SEALED_SECRET_LEN];
	uint64		last_use;		/* for eviction of the least recently used */
} KeyCacheEntry;

static KeyCacheEntry key_cache[ENR_HMAC_KEY_CACHE];
static uint64 use_clock = 0;

/* The entry made from exactly this sealed secret, or NULL */
static KeyCacheEntry *
cache_find(uint64 key_id, int version, const uint8 *sealed)
{
	for (int i = 0; i < ENR_HMAC_KEY_CACHE; i++)
	{
		KeyCacheEntry *e = &key_cache[i];

		if (e->mac != NULL && e->key_id == key_id && e->version == version &&
			memcmp(e->sealed, sealed, SEALED_SECRET_LEN) == 0)
			return e;
	}
	return NULL;
}

/* A slot for a new entry: a free one, else the least recently used (freed) */
static KeyCacheEntry *
cache_slot(void)
{
	KeyCacheEntry *victim = &key_cache[0];

	for (int i = 0; i < ENR_HMAC_KEY_CACHE; i++)
	{
		KeyCacheEntry *e = &key_cache[i];

		if (e->mac == NULL)
			return e;
		if (e->last_use < victim->last_use)
			victim = e;
	}
	enr_hmac_key_free(victim->mac);
	victim->mac = NULL;
	return victim;
}

/*
 * HMAC-SHA256 of msg under the secret of API key key_id, stored sealed
 * under server key version `version`.  Returns false when the sealed secret
 * does not open (an altered row or a wrong server key); out then holds an
 * HMAC under an all-zero key, so that the caller's comparison does the same
 * work and fails.
 */
bool
enr_api_key_hmac(uint64 key_id, bytea *sealed, int version,
				 const void *msg, size_t len, uint8 out[ENR_DIGEST_LEN])
{
	const uint8 *bytes = (const uint8 *) VARDATA_ANY(sealed);
	KeyCacheEntry *e;
	uint8		secret[32];
	EVP_MAC_CTX *mac;

	memset(secret, 0, sizeof(secret));
	if (VARSIZE_ANY_EXHDR(sealed) == SEALED_SECRET_LEN &&
		(e = cache_find(key_id, version, bytes)) != NULL)
	{
		e->last_use = ++use_clock;
		enr_hmac_keyed(e->mac, msg, len, out);
		return true;
	}

	if (!enr_open_secret(key_id, sealed, version, secret))
	{
		/* secret is all zeros here */
		enr_hmac_sha256(secret, sizeof(secret), msg, len, out);
		return false;
	}
	ENR_SECRET(secret, sizeof(secret));
	mac = enr_hmac_key_new(secret, sizeof(secret));
	enr_secure_zero(secret, sizeof(secret));
	if (mac == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256"),
				 errdetail("Keying an OpenSSL HMAC context failed.")));

	e = cache_slot();
	e->mac = mac;
	e->key_id = key_id;
	e->version = version;
	memcpy(e->sealed, bytes, SEALED_SECRET_LEN);
	e->last_use = ++use_clock;
	enr_hmac_keyed(mac, msg, len, out);
	return true;
}

/* Drop what this backend keeps of key_id (found revoked or expired) */
void
enr_api_key_forget(uint64 key_id)
{
	for (int i = 0; i < ENR_HMAC_KEY_CACHE; i++)
	{
		KeyCacheEntry *e = &key_cache[i];

		if (e->mac != NULL && e->key_id == key_id)
		{
			enr_hmac_key_free(e->mac);
			e->mac = NULL;
		}
	}
}
