/*-------------------------------------------------------------------------
 *
 * token_fuzz.c
 *	  libFuzzer harness for the credential codecs (src/token_format.c).
 *
 * Checks, for any input:
 *	 - enr_token_parse never reads outside its input and, when it accepts a
 *	   string, the parts it reports are consistent with the string: a valid
 *	   prefix, the public id spelled in the next 16 characters, a checksum
 *	   that matches;
 *	 - the CRC-32 equals a bit-by-bit computation;
 *	 - hex and base64url codecs: decode(encode(x)) == x; enr_hex_decode
 *	   accepts exactly the strings of hex digits, and what it accepts
 *	   re-encodes to the same text (lowercase input);
 *	 - enr_token_format of any prefix/id/secret the input describes gives a
 *	   string that parses back to the same public id.
 * Before fuzzing, the hex decoder and the base64url alphabet check are
 * also checked exhaustively on every pair of adjacent characters (see
 * check_char_pairs).
 * A violated property aborts, which libFuzzer reports as a crash.
 *
 * fuzz/token_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdlib.h>
#include <string.h>

#include "token_format.h"

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "property failed: %s\n", #cond); abort(); } } while (0)

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_parse(const char *s, size_t len)
{
	TokenParts parts;
	TokenParseResult r = enr_token_parse(s, len, &parts);

	CHECK(enr_token_parse_result_detail(r) != NULL);
	if (r != TOKEN_OK)
		return;
	CHECK(len >= TOKEN_MIN_LEN && len <= TOKEN_MAX_LEN);
	CHECK(parts.prefix_len >= 2 && parts.prefix_len <= TOKEN_PREFIX_MAX);
	CHECK(enr_token_prefix_is_valid(s, parts.prefix_len));
	CHECK(len == parts.prefix_len + TOKEN_PUBLIC_ID_LEN + TOKEN_TAIL_LEN);
	{
		char		hex[TOKEN_PUBLIC_ID_LEN];
		uint8_t		be[8];

		for (int i = 0; i < 8; i++)
			be[i] = (uint8_t) (parts.public_id >> (56 - 8 * i));
		enr_hex_encode_lower(be, 8, hex);
		CHECK(memcmp(hex, s + parts.prefix_len, TOKEN_PUBLIC_ID_LEN) == 0);
	}
	CHECK(s[parts.prefix_len + TOKEN_PUBLIC_ID_LEN] == '.');
	CHECK(enr_base64url_is_alphabet(s + parts.prefix_len + TOKEN_PUBLIC_ID_LEN + 1,
									TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN));
}

/* CRC-32 bit by bit: an independent oracle for the table-driven one */
static uint32_t
crc32_bitwise(const uint8_t *p, size_t n)
{
	uint32_t	c = 0xffffffff;

	for (size_t i = 0; i < n; i++)
	{
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xedb88320 : c >> 1;
	}
	return ~c;
}

/* value of a hex digit, or -1: the plain character test */
static int
hex_nibble(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* in the URL-safe base64 alphabet: the plain character test */
static bool
is_b64url(int c)
{
	return c != '\0' &&
		strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", c) != NULL;
}

static void
check_codecs(const uint8_t *data, size_t size)
{
	size_t		n = size > 64 ? 64 : size;
	char		hex[128];
	uint8_t		back[64];
	char		b64[128];
	size_t		b64len;

	CHECK(enr_token_crc32((const char *) data, size) == crc32_bitwise(data, size));
	enr_hex_encode_lower(data, n, hex);
	CHECK(enr_hex_decode(hex, 2 * n, back));
	CHECK(memcmp(back, data, n) == 0);

	b64len = enr_base64url_encode(data, n, b64);
	CHECK(b64len == enr_base64url_encoded_len(n));
	CHECK(enr_base64url_is_alphabet(b64, b64len));
	/* the alphabet check accepts exactly the strings of alphabet characters */
	{
		bool		all_b64 = true;

		for (size_t i = 0; i < size; i++)
			all_b64 = all_b64 && is_b64url(data[i]);
		CHECK(enr_base64url_is_alphabet((const char *) data, size) == all_b64);
	}

	/*
	 * The decoder accepts exactly the even-length strings of hex digits
	 * (told by a plain character test, not by its own arithmetic), and what
	 * it accepts re-encodes, in lowercase, to the same text.
	 */
	if (size <= 128)
	{
		bool		all_hex = (size % 2 == 0);
		char		again[128];

		for (size_t i = 0; i < size; i++)
			all_hex = all_hex && data[i] != '\0' && strchr("0123456789abcdefABCDEF", data[i]) != NULL;
		CHECK(enr_hex_decode((const char *) data, size, back) == all_hex);
		if (!all_hex)
			return;

		enr_hex_encode_lower(back, size / 2, again);
		for (size_t i = 0; i < size; i++)
		{
			char		c = (char) data[i];

			CHECK(again[i] == ((c >= 'A' && c <= 'F') ? c - 'A' + 'a' : c));
		}
	}
}

/* CHECK, saying which pair failed */
#define CHECK_PAIR(cond) do { if (!(cond)) { \
	fprintf(stderr, "at places %d and %d: bytes 0x%02x 0x%02x\n", p, p + 1, a, b); \
	CHECK(cond); } } while (0)

/*
 * Every pair of byte values at every two adjacent places of a 20-character
 * string: two words of eight characters and a last word padded, as the
 * checks take them.  In a string of '0's a character must hex-decode to
 * its own value in its own place and leave every other place alone, within
 * a digit pair and across the boundary of two; in a string of 'A's the
 * alphabet check must accept exactly the pairs of alphabet characters.
 */
static void
check_char_pairs(void)
{
	char		s[20];
	uint8_t		out[10];

	for (int p = 0; p + 1 < (int) sizeof(s); p++)
		for (int a = 0; a < 256; a++)
			for (int b = 0; b < 256; b++)
			{
				bool		ok = hex_nibble(a) >= 0 && hex_nibble(b) >= 0;

				memset(s, '0', sizeof(s));
				s[p] = (char) a;
				s[p + 1] = (char) b;
				CHECK_PAIR(enr_hex_decode(s, sizeof(s), out) == ok);
				for (int j = 0; ok && j < (int) sizeof(out); j++)
					CHECK_PAIR(out[j] == ((hex_nibble((unsigned char) s[2 * j]) << 4) |
										  hex_nibble((unsigned char) s[2 * j + 1])));

				memset(s, 'A', sizeof(s));
				s[p] = (char) a;
				s[p + 1] = (char) b;
				CHECK_PAIR(enr_base64url_is_alphabet(s, sizeof(s)) == (is_b64url(a) && is_b64url(b)));
			}
}

/* input: 1 byte prefix length, prefix, 8 bytes id, 32 bytes secret */
static void
check_format(const uint8_t *data, size_t size)
{
	char		prefix[TOKEN_PREFIX_MAX + 1];
	size_t		plen;
	uint64_t	id = 0;
	uint8_t		secret[TOKEN_SECRET_BYTES];
	char		out[TOKEN_MAX_LEN + 1];
	size_t		len;
	TokenParts	parts;

	if (size < 1)
		return;
	plen = data[0] % (TOKEN_PREFIX_MAX + 1);
	if (size < 1 + plen + 8 + TOKEN_SECRET_BYTES)
		return;
	memcpy(prefix, data + 1, plen);
	prefix[plen] = '\0';
	if (strlen(prefix) != plen || !enr_token_prefix_is_valid(prefix, plen))
		return;
	for (int i = 0; i < 8; i++)
		id = (id << 8) | data[1 + plen + i];
	memcpy(secret, data + 1 + plen + 8, TOKEN_SECRET_BYTES);
	len = enr_token_format(prefix, id, secret, out);
	CHECK(len <= TOKEN_MAX_LEN);
	CHECK(enr_token_parse(out, len, &parts) == TOKEN_OK);
	CHECK(parts.public_id == id && parts.prefix_len == plen);
	/* any single changed character is caught (checksum or shape) */
	out[len - 1 - (id % len)] ^= 0x01;
	CHECK(enr_token_parse(out, len, &parts) != TOKEN_OK);
}

int
LLVMFuzzerInitialize(int *argc pg_attribute_unused(), char ***argv pg_attribute_unused())
{
	check_char_pairs();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the parser sees exactly the input: a copy without slack */
	char	   *copy = malloc(size ? size : 1);

	memcpy(copy, data, size);
	check_parse(copy, size);
	free(copy);
	check_codecs(data, size);
	check_format(data, size);
	return 0;
}
