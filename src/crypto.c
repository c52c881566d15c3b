/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  The cryptographic primitives of the extension, all from OpenSSL:
 *	  CSPRNG bytes, SHA-256, constant-time comparison and wiping.
 *
 * Nothing here is hand-rolled.  The one-shot EVP_Digest() call allocates
 * and frees its context internally, so no OpenSSL object outlives a call
 * and nothing leaks when a caller later raises an error.
 *
 * src/crypto.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "enrollment.h"

/* Fill buf with len bytes from OpenSSL's CSPRNG; an RNG failure is fatal to the call */
void
enr_random_bytes(void *buf, size_t len)
{
	if (RAND_bytes((unsigned char *) buf, (int) len) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes"),
				 errdetail("OpenSSL's random number generator reported a failure."),
				 errhint("Check that the operating system's entropy source is available.")));
}

/* SHA-256 of data into out */
void
enr_sha256(const void *data, size_t len, uint8 out[ENR_DIGEST_LEN])
{
	unsigned int outlen = 0;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 ||
		outlen != ENR_DIGEST_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute SHA-256 digest"),
				 errdetail("OpenSSL's EVP_Digest failed.")));
}

/* Constant-time equality of two byte strings of the same length */
bool
enr_digest_equal(const uint8 *a, const uint8 *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

/* Wipe a buffer that held secret material (not optimised away) */
void
enr_secure_zero(void *buf, size_t len)
{
	OPENSSL_cleanse(buf, len);
}
