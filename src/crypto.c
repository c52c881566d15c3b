/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  The cryptographic primitives of the extension, all from OpenSSL:
 *	  CSPRNG bytes, SHA-256, HMAC-SHA256, AES-256-GCM, constant-time
 *	  comparison and wiping.
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
#include <openssl/hmac.h>
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

/* HMAC-SHA256 of data under key into out */
void
enr_hmac_sha256(const uint8 *key, size_t keylen, const void *data, size_t len,
				uint8 out[ENR_DIGEST_LEN])
{
	unsigned int outlen = 0;

	if (HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) data, len,
			 out, &outlen) == NULL || outlen != ENR_DIGEST_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256"),
				 errdetail("OpenSSL's HMAC failed.")));
}

/*
 * AES-256-GCM.  The sealed form is iv (12) || ciphertext (len) || tag (16);
 * aad is authenticated but not stored.  The cipher context is freed on every
 * path before any error is raised.
 */
void
enr_aes_gcm_seal(const uint8 key[ENR_AEAD_KEY_LEN], const uint8 *aad, size_t aadlen,
				 const uint8 *plain, size_t len, uint8 *sealed)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	uint8	   *iv = sealed;
	uint8	   *ct = sealed + ENR_AEAD_IV_LEN;
	uint8	   *tag = sealed + ENR_AEAD_IV_LEN + len;
	int			outl = 0;
	int			finl = 0;
	bool		ok;

	enr_random_bytes(iv, ENR_AEAD_IV_LEN);
	ok = ctx != NULL &&
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ENR_AEAD_IV_LEN, NULL) == 1 &&
		EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_EncryptUpdate(ctx, ct, &outl, plain, (int) len) == 1 &&
		EVP_EncryptFinal_ex(ctx, ct + outl, &finl) == 1 &&
		(size_t) (outl + finl) == len &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ENR_AEAD_TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
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
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	const uint8 *iv = sealed;
	const uint8 *ct = sealed + ENR_AEAD_IV_LEN;
	uint8		tag[ENR_AEAD_TAG_LEN];
	int			outl = 0;
	int			finl = 0;
	bool		ok;

	memcpy(tag, sealed + ENR_AEAD_IV_LEN + len, ENR_AEAD_TAG_LEN);
	ok = ctx != NULL &&
		EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ENR_AEAD_IV_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, key, iv) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_DecryptUpdate(ctx, plain, &outl, ct, (int) len) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENR_AEAD_TAG_LEN, tag) == 1 &&
		EVP_DecryptFinal_ex(ctx, plain + outl, &finl) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		enr_secure_zero(plain, len);
	return ok;
}
