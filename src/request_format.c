/*-------------------------------------------------------------------------
 *
 * request_format.c
 *	  Header parsers and signing-string assembly for signed API requests.
 *
 * None of these functions allocates or raises; hostile input only ever
 * yields false.  Compiles in the backend and, with -DFRONTEND, in the
 * fuzzing harness.
 *
 * src/request_format.c
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "request_format.h"
#include "token_format.h"

/* A key id is exactly 16 lowercase hex digits */
bool
enr_parse_key_id(const char *s, size_t len, uint64_t *key_id)
{
	uint64_t	v = 0;

	if (len != API_KEY_ID_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];
		int			d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return false;
		v = (v << 4) | (uint64_t) d;
	}
	*key_id = v;
	return true;
}

/*
 * A timestamp is Unix epoch seconds written as 1 to 15 decimal digits, no
 * sign, no spaces (what str(int(time.time())) produces).
 */
bool
enr_parse_timestamp(const char *s, size_t len, int64_t *ts)
{
	int64_t		v = 0;

	if (len < 1 || len > API_TIMESTAMP_MAX_DIGITS)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*ts = v;
	return true;
}

/*
 * A nonce is 1 to 128 characters, and never more than 512 bytes.  Control
 * characters are refused: C0 (NUL, newline, ...) and DEL always, and when
 * utf8, the C1 range U+0080..U+009F too (bytes C2 80..C2 9F).  A newline
 * would make the signing string ambiguous.
 *
 * With utf8 the characters are counted here (every byte that is not a
 * continuation byte).  Without it (a database encoding other than UTF-8
 * and SQL_ASCII) only the bytes are checked, and the caller counts the
 * characters in the database's encoding.
 */
bool
enr_nonce_is_valid(const char *s, size_t len, bool utf8)
{
	size_t		chars = 0;

	if (len < 1 || len > API_NONCE_MAX_BYTES)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
		if (!utf8)
			continue;
		if (c == 0xc2 && i + 1 < len &&
			(unsigned char) s[i + 1] >= 0x80 && (unsigned char) s[i + 1] <= 0x9f)
			return false;
		if ((c & 0xc0) != 0x80)
			chars++;
	}
	return !utf8 || (chars >= 1 && chars <= API_NONCE_MAX);
}

/* "sha256=" and 64 hex digits (either case) into 32 bytes */
bool
enr_parse_signature(const char *s, size_t len, uint8_t mac[32])
{
	if (len != API_SIGNATURE_LEN || memcmp(s, API_SIGNATURE_PREFIX, 7) != 0)
		return false;
	return enr_hex_decode(s + 7, 64, mac);
}

/* Length of the signing string for the given parts */
size_t
enr_signing_string_len(size_t method_len, size_t path_len, size_t ts_len, size_t nonce_len)
{
	return method_len + 1 + path_len + 1 + ts_len + 1 + nonce_len + 1 + 64;
}

/*
 * Assemble the signing string into dst (enr_signing_string_len bytes; no
 * terminator).  Returns its length.
 */
size_t
enr_signing_string(char *dst,
				   const char *method, size_t method_len,
				   const char *path, size_t path_len,
				   const char *ts, size_t ts_len,
				   const char *nonce, size_t nonce_len,
				   const uint8_t body_sha256[32])
{
	size_t		o = 0;

	memcpy(dst + o, method, method_len);
	o += method_len;
	dst[o++] = '\n';
	memcpy(dst + o, path, path_len);
	o += path_len;
	dst[o++] = '\n';
	memcpy(dst + o, ts, ts_len);
	o += ts_len;
	dst[o++] = '\n';
	memcpy(dst + o, nonce, nonce_len);
	o += nonce_len;
	dst[o++] = '\n';
	enr_hex_encode_lower(body_sha256, 32, dst + o);
	o += 64;
	return o;
}
