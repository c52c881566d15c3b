/*-------------------------------------------------------------------------
 *
 * token_format.h
 *	  Shape of the credential strings the extension issues, and the codecs
 *	  used to build and check them.
 *
 * A credential string looks like
 *
 *		<prefix><public id>.<secret><checksum>
 *
 *	  prefix	 2..16 characters: a lowercase letter, then [a-z0-9-], ending
 *				 in '_' (e.g. "enr_")
 *	  public id	 16 lowercase hex digits (64 bits: random, or the issue time
 *				 in seconds and 32 random bits; credential.c); the lookup key
 *	  secret	 43 characters of unpadded URL-safe base64 (32 random bytes)
 *	  checksum	 6 characters of unpadded URL-safe base64 of the CRC-32 of
 *				 everything before it
 *
 * The checksum lets a mistyped or truncated credential be rejected without
 * touching a table, and lets secret scanners recognise a real one.  It is
 * not a security measure: the secret is checked against its SHA-256 digest.
 *
 * Everything declared here is plain C with no backend dependencies, so it
 * can be linked into a fuzzing harness on its own.
 *
 * src/token_format.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENROLLMENT_TOKEN_FORMAT_H
#define ENROLLMENT_TOKEN_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_PREFIX_MAX		16
#define TOKEN_PUBLIC_ID_LEN		16	/* hex digits */
#define TOKEN_SECRET_BYTES		32
#define TOKEN_SECRET_LEN		43	/* base64url of 32 bytes, no padding */
#define TOKEN_CHECKSUM_LEN		6	/* base64url of 4 bytes, no padding */
/* '.' + secret + checksum */
#define TOKEN_TAIL_LEN			(1 + TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN)
#define TOKEN_MIN_LEN			(2 + TOKEN_PUBLIC_ID_LEN + TOKEN_TAIL_LEN)
#define TOKEN_MAX_LEN			(TOKEN_PREFIX_MAX + TOKEN_PUBLIC_ID_LEN + TOKEN_TAIL_LEN)

/* Result of parsing a presented credential string */
typedef enum TokenParseResult
{
	TOKEN_OK = 0,
	TOKEN_BAD_LENGTH,
	TOKEN_BAD_PREFIX,
	TOKEN_BAD_PUBLIC_ID,
	TOKEN_BAD_SEPARATOR,
	TOKEN_BAD_SECRET,
	TOKEN_BAD_CHECKSUM
} TokenParseResult;

typedef struct TokenParts
{
	size_t		prefix_len;		/* length of the prefix, '_' included */
	uint64_t	public_id;		/* decoded public id */
} TokenParts;

/* codec helpers */
extern size_t enr_base64url_encoded_len(size_t nbytes);
extern size_t enr_base64url_encode(const uint8_t *src, size_t len, char *dst);
extern bool enr_base64url_is_alphabet(const char *src, size_t len);
extern void enr_hex_encode_lower(const uint8_t *src, size_t len, char *dst);
extern bool enr_hex_decode(const char *src, size_t len, uint8_t *dst);
extern uint32_t enr_token_crc32(const char *data, size_t len);

/* credential strings */
extern bool enr_token_prefix_is_valid(const char *prefix, size_t len);
extern TokenParseResult enr_token_parse(const char *s, size_t len, TokenParts *out);
extern size_t enr_token_format(const char *prefix, uint64_t public_id,
						   const uint8_t secret[TOKEN_SECRET_BYTES], char *dst);
extern const char *enr_token_parse_result_detail(TokenParseResult r);

#endif							/* ENROLLMENT_TOKEN_FORMAT_H */
