/*-------------------------------------------------------------------------
 *
 * request_format.h
 *	  Parsing the four signed-request headers and assembling the signing
 *	  string of an HMAC-SHA256 signed API request.
 *
 * Signing string (byte-exact, no normalisation):
 *
 *		METHOD \n PATH \n UNIX_TIMESTAMP \n NONCE \n hex(sha256(body))
 *
 * Signature header: "sha256=" followed by 64 hex digits.
 *
 * Plain C with no backend dependencies, like token_format.h, so that the
 * parsers can be fuzzed on their own.
 *
 * src/request_format.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENROLLMENT_REQUEST_FORMAT_H
#define ENROLLMENT_REQUEST_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_KEY_ID_LEN			16		/* hex digits */
#define API_NONCE_MAX			128		/* characters */
#define API_NONCE_MAX_BYTES		(4 * API_NONCE_MAX) /* whatever the encoding */
#define API_SIGNATURE_PREFIX	"sha256="
#define API_SIGNATURE_LEN		(7 + 64)
#define API_TIMESTAMP_MAX_DIGITS 15

/* Verdicts of the header checks, in the order they are applied */
typedef enum RequestCheck
{
	REQ_OK = 0,
	REQ_MISSING_HEADERS,
	REQ_INVALID_KEY,			/* key id not 16 hex digits */
	REQ_INVALID_TIMESTAMP,
	REQ_INVALID_NONCE,
	REQ_MALFORMED_SIGNATURE
} RequestCheck;

extern bool enr_parse_key_id(const char *s, size_t len, uint64_t *key_id);
extern bool enr_parse_timestamp(const char *s, size_t len, int64_t *ts);
extern bool enr_nonce_is_valid(const char *s, size_t len, bool utf8);
extern bool enr_parse_signature(const char *s, size_t len, uint8_t mac[32]);
extern size_t enr_signing_string_len(size_t method_len, size_t path_len,
									 size_t ts_len, size_t nonce_len);
extern size_t enr_signing_string(char *dst,
								 const char *method, size_t method_len,
								 const char *path, size_t path_len,
								 const char *ts, size_t ts_len,
								 const char *nonce, size_t nonce_len,
								 const uint8_t body_sha256[32]);

#endif							/* ENROLLMENT_REQUEST_FORMAT_H */
