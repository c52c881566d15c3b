/*-------------------------------------------------------------------------
 *
 * token_format.c
 *	  Build and parse credential strings; hex and URL-safe base64 codecs.
 *
 * The functions here never allocate, never raise errors and never look at
 * a table: parsing a hostile string can only return a TokenParseResult.
 * They compile both in the backend and, with -DFRONTEND, in the fuzzing
 * harness (which links libpgcommon for the CRC table).
 *
 * src/token_format.c
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "port/pg_bswap.h"
#include "utils/pg_crc.h"

#include "token_format.h"

static const char b64url_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char hex_digits[] = "0123456789abcdef";

/* Number of characters unpadded base64url needs for nbytes bytes */
size_t
enr_base64url_encoded_len(size_t nbytes)
{
	return (nbytes / 3) * 4 + ((nbytes % 3) ? (nbytes % 3) + 1 : 0);
}

/*
 * Encode len bytes as unpadded URL-safe base64 (RFC 4648 section 5).
 * dst must have room for enr_base64url_encoded_len(len) characters; no
 * terminator is written.  Returns the number of characters written.
 */
size_t
enr_base64url_encode(const uint8_t *src, size_t len, char *dst)
{
	size_t		i = 0;
	size_t		o = 0;

	while (i + 3 <= len)
	{
		uint32_t	v = ((uint32_t) src[i] << 16) | ((uint32_t) src[i + 1] << 8) | src[i + 2];

		dst[o++] = b64url_alphabet[(v >> 18) & 0x3f];
		dst[o++] = b64url_alphabet[(v >> 12) & 0x3f];
		dst[o++] = b64url_alphabet[(v >> 6) & 0x3f];
		dst[o++] = b64url_alphabet[v & 0x3f];
		i += 3;
	}
	if (len - i == 1)
	{
		uint32_t	v = (uint32_t) src[i] << 16;

		dst[o++] = b64url_alphabet[(v >> 18) & 0x3f];
		dst[o++] = b64url_alphabet[(v >> 12) & 0x3f];
	}
	else if (len - i == 2)
	{
		uint32_t	v = ((uint32_t) src[i] << 16) | ((uint32_t) src[i + 1] << 8);

		dst[o++] = b64url_alphabet[(v >> 18) & 0x3f];
		dst[o++] = b64url_alphabet[(v >> 12) & 0x3f];
		dst[o++] = b64url_alphabet[(v >> 6) & 0x3f];
	}
	return o;
}

/* Lowercase hex of len bytes into dst (2*len characters, no terminator) */
void
enr_hex_encode_lower(const uint8_t *src, size_t len, char *dst)
{
	for (size_t i = 0; i < len; i++)
	{
		dst[2 * i] = hex_digits[src[i] >> 4];
		dst[2 * i + 1] = hex_digits[src[i] & 0x0f];
	}
}

/*
 * The checks of characters below look at eight at a time, in the bytes
 * ("lanes") of one 64-bit word, with arithmetic only: no branch and no
 * table indexed by a character.  Secret keys are decoded here, and a token's
 * secret is checked, so which characters they are must not change the path
 * taken or the memory read; random characters would also mispredict a
 * branch on every few.
 */

/* x in every byte of a 64-bit word */
#define BYTES(x) (UINT64CONST(0x0101010101010101) * (x))
#define TOP BYTES(0x80)

/*
 * The word at src, the first character in the lowest byte.  With n < 8
 * characters left, the rest of the word is fill (a character the caller's
 * check accepts), and the copy is wiped: it may hold part of a secret.
 */
static inline uint64_t
load8(const char *src, size_t n, char fill)
{
	uint64_t	x;

	if (n >= 8)
		memcpy(&x, src, 8);
	else
	{
		char		pad[8];

		memset(pad, fill, sizeof(pad));
		memcpy(pad, src, n);
		memcpy(&x, pad, 8);
		explicit_bzero(pad, sizeof(pad));
	}
#ifdef WORDS_BIGENDIAN
	x = pg_bswap64(x);
#endif
	return x;
}

/*
 * The top bit of each lane of x (every lane below 0x80) set where
 * lo <= lane <= hi, for 0 < lo <= hi < 0x80: a lane >= lo sets the top bit
 * of lane + (0x80 - lo), a lane > hi that of lane + (0x7F - hi), and
 * neither sum carries into the next lane.
 */
static inline uint64_t
lanes_in_range(uint64_t x, int lo, int hi)
{
	return (x + BYTES(0x80 - lo)) & ~(x + BYTES(0x7F - hi)) & TOP;
}

/*
 * Eight hex digits (either case) into four bytes.  Sets bits of *bad for a
 * character that is not a hex digit; dst is then garbage.
 */
static inline void
hex_decode8(uint64_t x, uint8_t *dst, uint64_t *bad)
{
	uint64_t	letter;
	uint64_t	value;
	uint64_t	packed;

	*bad |= x & TOP;			/* not ASCII */
	x &= ~TOP;
	/* | 0x20 folds 'A'..'F' onto 'a'..'f' */
	letter = lanes_in_range(x | BYTES(0x20), 'a', 'f');
	*bad |= ~(lanes_in_range(x, '0', '9') | letter) & TOP;

	/* '0'..'9' are 0x30..0x39; 'a'..'f' and 'A'..'F' end in 1..6: add 9 */
	value = (x & BYTES(0x0F)) + (letter >> 7) * 9;
	/* lane 2i of packed: the value of character 2i, then that of 2i + 1 */
	packed = (value << 4) | (value >> 8);
	dst[0] = (uint8_t) packed;
	dst[1] = (uint8_t) (packed >> 16);
	dst[2] = (uint8_t) (packed >> 32);
	dst[3] = (uint8_t) (packed >> 48);
}

/*
 * Decode len hex digits (len must be even) into len/2 bytes.  Accepts both
 * cases.  Returns false on an odd length or a non-hex character; dst then
 * holds garbage.  Takes the same path whatever the digits are (it does not
 * stop at a bad one), so it may decode secrets.  A last part word is
 * padded with '0's.
 */
bool
enr_hex_decode(const char *src, size_t len, uint8_t *dst)
{
	uint64_t	bad = 0;
	size_t		i = 0;

	if (len % 2 != 0)
		return false;
	for (; i + 8 <= len; i += 8)
		hex_decode8(load8(src + i, 8, '0'), dst + i / 2, &bad);
	if (i < len)
	{
		uint8_t		out[4];

		hex_decode8(load8(src + i, len - i, '0'), out, &bad);
		memcpy(dst + i / 2, out, (len - i) / 2);
		explicit_bzero(out, sizeof(out));	/* as load8's copy */
	}
	return bad == 0;
}

/*
 * True when every character is in the URL-safe base64 alphabet.  Looks at
 * every character whatever it finds; a last part word is padded with 'A's.
 */
bool
enr_base64url_is_alphabet(const char *src, size_t len)
{
	uint64_t	bad = 0;

	for (size_t i = 0; i < len; i += 8)
	{
		uint64_t	x = load8(src + i, len - i, 'A');

		bad |= x & TOP;			/* not ASCII */
		x &= ~TOP;
		/* | 0x20 folds 'A'..'Z' onto 'a'..'z', and no other lane onto them */
		bad |= ~(lanes_in_range(x | BYTES(0x20), 'a', 'z') |
				 lanes_in_range(x, '0', '9') |
				 lanes_in_range(x, '-', '-') |
				 lanes_in_range(x, '_', '_')) & TOP;
	}
	return bad == 0;
}

/* The common CRC-32 (as zlib, Python's zlib.crc32 and Go's crc32.IEEE) */
uint32_t
enr_token_crc32(const char *data, size_t len)
{
	pg_crc32	crc;

	INIT_TRADITIONAL_CRC32(crc);
	COMP_TRADITIONAL_CRC32(crc, data, len);
	FIN_TRADITIONAL_CRC32(crc);
	return crc;
}

/*
 * A prefix is 1..16 characters of [a-z0-9-], starting with a letter and
 * ending in '_' (the only '_' allowed, so the prefix is unambiguous).
 */
bool
enr_token_prefix_is_valid(const char *prefix, size_t len)
{
	if (len < 2 || len > TOKEN_PREFIX_MAX)
		return false;
	if (!(prefix[0] >= 'a' && prefix[0] <= 'z'))
		return false;
	if (prefix[len - 1] != '_')
		return false;
	for (size_t i = 1; i < len - 1; i++)
	{
		char		c = prefix[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

/* Write the 6-character checksum of data[0..len) into dst */
static void
checksum_encode(const char *data, size_t len, char *dst)
{
	uint32_t	crc = enr_token_crc32(data, len);
	uint8_t		be[4];

	be[0] = (uint8_t) (crc >> 24);
	be[1] = (uint8_t) (crc >> 16);
	be[2] = (uint8_t) (crc >> 8);
	be[3] = (uint8_t) crc;
	enr_base64url_encode(be, 4, dst);
}

/*
 * Format a credential string into dst, which needs TOKEN_MAX_LEN + 1 bytes.
 * The prefix must already be valid.  Returns the length written (a NUL
 * terminator follows).
 */
size_t
enr_token_format(const char *prefix, uint64_t public_id,
			 const uint8_t secret[TOKEN_SECRET_BYTES], char *dst)
{
	size_t		plen = strlen(prefix);
	size_t		o = 0;
	uint8_t		idbytes[8];

	memcpy(dst, prefix, plen);
	o = plen;
	for (int i = 0; i < 8; i++)
		idbytes[i] = (uint8_t) (public_id >> (56 - 8 * i));
	enr_hex_encode_lower(idbytes, 8, dst + o);
	o += TOKEN_PUBLIC_ID_LEN;
	dst[o++] = '.';
	o += enr_base64url_encode(secret, TOKEN_SECRET_BYTES, dst + o);
	checksum_encode(dst, o, dst + o);
	o += TOKEN_CHECKSUM_LEN;
	dst[o] = '\0';
	return o;
}

/*
 * Check the shape and checksum of a presented credential string and decode
 * its public id.  The string need not be NUL-terminated and may contain
 * anything; only the first failing rule is reported.
 */
TokenParseResult
enr_token_parse(const char *s, size_t len, TokenParts *out)
{
	size_t		plen;
	const char *idp;
	const char *tail;
	char		expect[TOKEN_CHECKSUM_LEN];
	uint64_t	id = 0;

	if (len < TOKEN_MIN_LEN || len > TOKEN_MAX_LEN)
		return TOKEN_BAD_LENGTH;

	/* fixed-size tail first, so the prefix length follows from the total */
	plen = len - TOKEN_PUBLIC_ID_LEN - TOKEN_TAIL_LEN;
	idp = s + plen;
	tail = idp + TOKEN_PUBLIC_ID_LEN;

	if (!enr_token_prefix_is_valid(s, plen))
		return TOKEN_BAD_PREFIX;
	/* checked and decoded in one pass (the public id is no secret) */
	for (int i = 0; i < TOKEN_PUBLIC_ID_LEN; i++)
	{
		char		c = idp[i];

		/* lowercase only: exactly one spelling per token */
		if (c >= '0' && c <= '9')
			id = (id << 4) | (uint64_t) (c - '0');
		else if (c >= 'a' && c <= 'f')
			id = (id << 4) | (uint64_t) (c - 'a' + 10);
		else
			return TOKEN_BAD_PUBLIC_ID;
	}
	if (tail[0] != '.')
		return TOKEN_BAD_SEPARATOR;
	if (!enr_base64url_is_alphabet(tail + 1, TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN))
		return TOKEN_BAD_SECRET;

	checksum_encode(s, len - TOKEN_CHECKSUM_LEN, expect);
	if (memcmp(expect, s + len - TOKEN_CHECKSUM_LEN, TOKEN_CHECKSUM_LEN) != 0)
		return TOKEN_BAD_CHECKSUM;

	out->prefix_len = plen;
	out->public_id = id;
	return TOKEN_OK;
}

/* A sentence for errdetail; never includes any part of the input */
const char *
enr_token_parse_result_detail(TokenParseResult r)
{
	switch (r)
	{
		case TOKEN_OK:
			return "The token is well formed.";
		case TOKEN_BAD_LENGTH:
			return "The token has the wrong length; it may be truncated.";
		case TOKEN_BAD_PREFIX:
			return "The token does not start with a valid prefix.";
		case TOKEN_BAD_PUBLIC_ID:
			return "The public part of the token is not 16 lowercase hex digits.";
		case TOKEN_BAD_SEPARATOR:
			return "The token is missing the '.' between its public and secret parts.";
		case TOKEN_BAD_SECRET:
			return "The secret part of the token contains characters outside URL-safe base64.";
		case TOKEN_BAD_CHECKSUM:
			return "The token's checksum does not match; it was mistyped or altered.";
	}
	return "The token is malformed.";
}
