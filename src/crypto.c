/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  The cryptographic primitives of the extension, all from OpenSSL:
 *	  CSPRNG bytes, SHA-256, HMAC-SHA256, AES-256-GCM, constant-time
 *	  comparison and wiping.
 *
 * Nothing here is hand-rolled.  OpenSSL 3 looks an algorithm up in its
 * provider registry on every call that names it by EVP_sha256() and the
 * like; on the per-request paths that lookup cost more than the hashing.
 * So each backend fetches SHA-256, HMAC and AES-256-GCM once and keeps one
 * context for each, reused call after call.  The contexts are static, so
 * an error raised later by a caller leaks nothing.
 *
 * src/crypto.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "enrollment.h"

/* OpenSSL's CSPRNG; an RNG failure is fatal to the call */
static void
rand_bytes(void *buf, size_t len)
{
	if (RAND_bytes((unsigned char *) buf, (int) len) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes"),
				 errdetail("OpenSSL's random number generator reported a failure."),
				 errhint("Check that the operating system's entropy source is available.")));
}

/*
 * Small draws (a credential's secret, a UUID, an IV, a nonce) are served
 * from a per-process buffer of CSPRNG output, refilled 512 bytes at a time:
 * each RAND_bytes call costs about as much as hashing a token, whatever its
 * length, and an enrollment or a signed request makes several.  Every byte
 * handed out is wiped from the buffer at once, so what the buffer exposes
 * to a reader of this process's memory is at most 512 bytes of output not
 * used yet (which outlive a reseed of OpenSSL's generator; a reseed does
 * not make them less random).  The buffer belongs to the process that
 * filled it: OpenSSL reseeds a forked child, and a fork handler empties the
 * buffer in the child, so a backend forked by the postmaster, or a child
 * forked by untrusted-language code in a backend, starts with an empty
 * buffer rather than its parent's bytes.  (The handler costs nothing per
 * draw; asking getpid() on every draw was a system call each time.)  If
 * the handler cannot be registered, nothing is buffered.
 */
#define RAND_POOL_SIZE	512
#define RAND_POOL_MAX_DRAW	64

static unsigned char rand_pool[RAND_POOL_SIZE];
static size_t rand_pool_left = 0;	/* unused bytes, at the end of rand_pool */
static int	rand_pool_state = 0;	/* 0 not set up, 1 fork handler registered, -1 unbuffered */

/* Empty the buffer (in a child, right after fork) */
static void
rand_pool_forget(void)
{
	OPENSSL_cleanse(rand_pool, sizeof(rand_pool));
	rand_pool_left = 0;
}

/* Fill buf with len bytes of CSPRNG output */
void
enr_random_bytes(void *buf, size_t len)
{
	unsigned char *from;

	if (rand_pool_state == 0)
		rand_pool_state = (pthread_atfork(NULL, NULL, rand_pool_forget) == 0) ? 1 : -1;
	if (len > RAND_POOL_MAX_DRAW || rand_pool_state < 0)
	{
		rand_bytes(buf, len);
		return;
	}
	if (rand_pool_left < len)
	{
		/* empty until the refill succeeds: a failed one serves nothing */
		rand_pool_forget();
		rand_bytes(rand_pool, sizeof(rand_pool));
		rand_pool_left = sizeof(rand_pool);
	}
	from = rand_pool + sizeof(rand_pool) - rand_pool_left;
	memcpy(buf, from, len);
	OPENSSL_cleanse(from, len);
	rand_pool_left -= len;
}

/* Algorithms and contexts of this backend, fetched on first use */
static EVP_MD *sha256_md = NULL;
static EVP_MD_CTX *sha256_ctx = NULL;
static EVP_MAC *hmac_mac = NULL;
static EVP_MAC_CTX *hmac_ctx = NULL;
static EVP_CIPHER *gcm_cipher = NULL;
static EVP_CIPHER_CTX *gcm_ctx = NULL;

static void
crypto_failed(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not compute %s", what),
			 errdetail("An OpenSSL call failed.")));
}

/* Fetch the algorithms and create the contexts once per backend */
static void
crypto_init(void)
{
	if (gcm_ctx != NULL)
		return;
	if (sha256_md == NULL && (sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		crypto_failed("SHA-256 (algorithm not available)");
	if (sha256_ctx == NULL && (sha256_ctx = EVP_MD_CTX_new()) == NULL)
		crypto_failed("SHA-256 (out of memory)");
	if (hmac_mac == NULL && (hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		crypto_failed("HMAC-SHA256 (algorithm not available)");
	if (hmac_ctx == NULL)
	{
		OSSL_PARAM	params[2];
		static const uint8 nokey[32] = {0};

		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
		params[1] = OSSL_PARAM_construct_end();
		if ((hmac_ctx = EVP_MAC_CTX_new(hmac_mac)) == NULL ||
			EVP_MAC_init(hmac_ctx, nokey, sizeof(nokey), params) != 1)
		{
			EVP_MAC_CTX_free(hmac_ctx);
			hmac_ctx = NULL;
			crypto_failed("HMAC-SHA256 (set-up failed)");
		}
	}
	if (gcm_cipher == NULL && (gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) == NULL)
		crypto_failed("AES-256-GCM (algorithm not available)");
	if ((gcm_ctx = EVP_CIPHER_CTX_new()) == NULL)
		crypto_failed("AES-256-GCM (out of memory)");
}

/* SHA-256 of data into out */
void
enr_sha256(const void *data, size_t len, uint8 out[ENR_DIGEST_LEN])
{
	unsigned int outlen = 0;

	crypto_init();
	if (EVP_DigestInit_ex2(sha256_ctx, sha256_md, NULL) != 1 ||
		EVP_DigestUpdate(sha256_ctx, data, len) != 1 ||
		EVP_DigestFinal_ex(sha256_ctx, out, &outlen) != 1 ||
		outlen != ENR_DIGEST_LEN)
		crypto_failed("SHA-256 digest");
}

/* Constant-time equality of two byte strings of the same length */
bool
enr_digest_equal(const uint8 *a, const uint8 *b, size_t len)
{
#ifdef ENR_CT_BROKEN
	/* scripts/valgrind --control only: a comparison that stops early */
	int			diff = memcmp(a, b, len);
#else
	int			diff = CRYPTO_memcmp(a, b, len);
#endif

	/* whether they are equal is public; where they differ is not */
	ENR_DECLASSIFY(&diff, sizeof(diff));
	return diff == 0;
}

/* Wipe a buffer that held secret material (not optimised away) */
void
enr_secure_zero(void *buf, size_t len)
{
	OPENSSL_cleanse(buf, len);
}

/*
 * HMAC-SHA256 of data under key into out.  The context keeps the digest
 * chosen at set-up and is keyed afresh by each call.  Its key-derived
 * state stays in backend memory until the next call; that exposes nothing
 * new, since the server key that opens every stored secret is cached in
 * the same memory (server_key.c).
 */
void
enr_hmac_sha256(const uint8 *key, size_t keylen, const void *data, size_t len,
				uint8 out[ENR_DIGEST_LEN])
{
	size_t		outlen = 0;

	crypto_init();
	if (EVP_MAC_init(hmac_ctx, key, keylen, NULL) != 1 ||
		EVP_MAC_update(hmac_ctx, (const unsigned char *) data, len) != 1 ||
		EVP_MAC_final(hmac_ctx, out, &outlen, ENR_DIGEST_LEN) != 1 ||
		outlen != ENR_DIGEST_LEN)
		crypto_failed("HMAC-SHA256");
}

/*
 * A context keyed once with an HMAC-SHA256 key, for a key used many times
 * (hmac_key_cache.c).  Keying hashes the padded key into the inner and
 * outer states; enr_hmac_keyed() restarts from those states instead of
 * keying again.  Returns NULL when OpenSSL fails, so that the caller can
 * wipe its copy of the key before raising the error.
 */
EVP_MAC_CTX *
enr_hmac_key_new(const uint8 *key, size_t keylen)
{
	EVP_MAC_CTX *ctx;
	OSSL_PARAM	params[2];

	crypto_init();
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	ctx = EVP_MAC_CTX_new(hmac_mac);
	if (ctx != NULL && EVP_MAC_init(ctx, key, keylen, params) != 1)
	{
		EVP_MAC_CTX_free(ctx);	/* frees and wipes what was derived */
		ctx = NULL;
	}
	return ctx;
}

/* HMAC-SHA256 of data under the key a context was made with */
void
enr_hmac_keyed(EVP_MAC_CTX *ctx, const void *data, size_t len, uint8 out[ENR_DIGEST_LEN])
{
	size_t		outlen = 0;

	/* no key: restart from the states derived when the context was keyed */
	if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 ||
		EVP_MAC_update(ctx, (const unsigned char *) data, len) != 1 ||
		EVP_MAC_final(ctx, out, &outlen, ENR_DIGEST_LEN) != 1 ||
		outlen != ENR_DIGEST_LEN)
		crypto_failed("HMAC-SHA256");
}

/* Free a keyed context; OpenSSL wipes the key-derived states */
void
enr_hmac_key_free(EVP_MAC_CTX *ctx)
{
	EVP_MAC_CTX_free(ctx);
}

/*
 * AES-256-GCM.  The sealed form is iv (12) || ciphertext (len) || tag (16);
 * aad is authenticated but not stored.  The backend's cipher context is
 * reset (its key schedule wiped) on every path before any error is raised;
 * 12 bytes is GCM's default IV length.
 */
void
enr_aes_gcm_seal(const uint8 key[ENR_AEAD_KEY_LEN], const uint8 *aad, size_t aadlen,
				 const uint8 *plain, size_t len, uint8 *sealed)
{
	EVP_CIPHER_CTX *ctx;
	uint8	   *iv = sealed;
	uint8	   *ct = sealed + ENR_AEAD_IV_LEN;
	uint8	   *tag = sealed + ENR_AEAD_IV_LEN + len;
	int			outl = 0;
	int			finl = 0;
	bool		ok;

	enr_random_bytes(iv, ENR_AEAD_IV_LEN);
	crypto_init();
	ctx = gcm_ctx;
	ok = EVP_EncryptInit_ex2(ctx, gcm_cipher, key, iv, NULL) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_EncryptUpdate(ctx, ct, &outl, plain, (int) len) == 1 &&
		EVP_EncryptFinal_ex(ctx, ct + outl, &finl) == 1 &&
		(size_t) (outl + finl) == len &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ENR_AEAD_TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_reset(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encrypt a secret"),
				 errdetail("OpenSSL's AES-256-GCM encryption failed.")));
}

/*
 * Open a sealed secret of plaintext length len into plain.  Returns false
 * when the tag does not verify (wrong key, altered ciphertext or aad).
 */
bool
enr_aes_gcm_open(const uint8 key[ENR_AEAD_KEY_LEN], const uint8 *aad, size_t aadlen,
				 const uint8 *sealed, size_t len, uint8 *plain)
{
	EVP_CIPHER_CTX *ctx;
	const uint8 *iv = sealed;
	const uint8 *ct = sealed + ENR_AEAD_IV_LEN;
	uint8		tag[ENR_AEAD_TAG_LEN];
	int			outl = 0;
	int			finl = 0;
	bool		ok;

	memcpy(tag, sealed + ENR_AEAD_IV_LEN + len, ENR_AEAD_TAG_LEN);
	crypto_init();
	ctx = gcm_ctx;
	ok = EVP_DecryptInit_ex2(ctx, gcm_cipher, key, iv, NULL) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_DecryptUpdate(ctx, plain, &outl, ct, (int) len) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENR_AEAD_TAG_LEN, tag) == 1 &&
		EVP_DecryptFinal_ex(ctx, plain + outl, &finl) == 1;
	EVP_CIPHER_CTX_reset(ctx);
	if (!ok)
		enr_secure_zero(plain, len);
	return ok;
}
