/*-------------------------------------------------------------------------
 *
 * request_fuzz.c
 *	  libFuzzer harness for the signed-request header parsers and the
 *	  signing string (src/request_format.c).
 *
 * The input is split at its first three 0xff bytes into method, path,
 * timestamp and nonce (missing parts are empty); the whole input is also
 * offered to each header parser.  Checks:
 *	 - the parsers read only their input (exact-size heap copies, so
 *	   AddressSanitizer sees any overread) and accept only what the format
 *	   allows: a key id is 16 lowercase hex digits and parses to the value
 *	   they spell; a timestamp is 1 to 15 digits and parses to its value; a
 *	   nonce has no control character (nor C1 when read as UTF-8), is at
 *	   most 512 bytes and, read as UTF-8, 1 to 128 characters; a signature
 *	   is "sha256=" + 64 hex;
 *	 - the signing string has exactly the announced length and is the five
 *	   parts joined by newlines, the body digest in lowercase hex.
 *
 * fuzz/request_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdlib.h>
#include <string.h>

#include "request_format.h"
#include "token_format.h"

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "property failed: %s\n", #cond); abort(); } } while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
dup_exact(const uint8_t *p, size_t n)
{
	char	   *c = malloc(n ? n : 1);

	memcpy(c, p, n);
	return c;
}

static void
check_headers(const char *s, size_t len)
{
	uint64_t	kid;
	int64_t		ts;
	uint8_t		mac[32];

	if (enr_parse_key_id(s, len, &kid))
	{
		char		hex[16];
		uint8_t		be[8];

		CHECK(len == API_KEY_ID_LEN);
		for (int i = 0; i < 8; i++)
			be[i] = (uint8_t) (kid >> (56 - 8 * i));
		enr_hex_encode_lower(be, 8, hex);
		CHECK(memcmp(hex, s, 16) == 0);
	}
	if (enr_parse_timestamp(s, len, &ts))
	{
		char		buf[32];

		CHECK(len >= 1 && len <= API_TIMESTAMP_MAX_DIGITS && ts >= 0);
		snprintf(buf, sizeof(buf), "%0*lld", (int) len, (long long) ts);
		CHECK(strlen(buf) == len && memcmp(buf, s, len) == 0);
	}
	if (enr_nonce_is_valid(s, len, false))
	{
		CHECK(len >= 1 && len <= API_NONCE_MAX_BYTES);
		for (size_t i = 0; i < len; i++)
			CHECK((unsigned char) s[i] >= 0x20 && (unsigned char) s[i] != 0x7f);
	}
	if (enr_nonce_is_valid(s, len, true))
	{
		size_t		chars = 0;

		CHECK(enr_nonce_is_valid(s, len, false));
		for (size_t i = 0; i < len; i++)
		{
			unsigned char c = (unsigned char) s[i];

			CHECK(!(c == 0xc2 && i + 1 < len &&
					(unsigned char) s[i + 1] >= 0x80 && (unsigned char) s[i + 1] <= 0x9f));
			chars += (c & 0xc0) != 0x80;
		}
		CHECK(chars >= 1 && chars <= API_NONCE_MAX);
	}
	if (enr_parse_signature(s, len, mac))
		CHECK(len == API_SIGNATURE_LEN && memcmp(s, "sha256=", 7) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *part[4] = {data, data + size, data + size, data + size};
	size_t		plen[4] = {size, 0, 0, 0};
	int			n = 1;
	uint8_t		digest[32];
	char	   *p[4];
	char	   *sig;
	size_t		len;
	size_t		got;
	size_t		o = 0;

	{
		char	   *whole = dup_exact(data, size);

		check_headers(whole, size);
		free(whole);
	}

	for (size_t i = 0; i < size && n < 4; i++)
		if (data[i] == 0xff)
		{
			plen[n - 1] = (size_t) (data + i - part[n - 1]);
			part[n] = data + i + 1;
			plen[n] = (size_t) (data + size - part[n]);
			n++;
		}
	for (int i = 0; i < 4; i++)
	{
		p[i] = dup_exact(part[i], plen[i]);
		check_headers(p[i], plen[i]);
	}
	for (int i = 0; i < 32; i++)
		digest[i] = (uint8_t) (size * 31 + i);

	len = enr_signing_string_len(plen[0], plen[1], plen[2], plen[3]);
	sig = malloc(len);
	got = enr_signing_string(sig, p[0], plen[0], p[1], plen[1], p[2], plen[2], p[3], plen[3], digest);
	CHECK(got == len);
	for (int i = 0; i < 4; i++)
	{
		CHECK(memcmp(sig + o, p[i], plen[i]) == 0);
		o += plen[i];
		CHECK(sig[o] == '\n');
		o++;
	}
	{
		char		hex[64];

		enr_hex_encode_lower(digest, 32, hex);
		CHECK(memcmp(sig + o, hex, 64) == 0 && o + 64 == len);
	}
	free(sig);
	for (int i = 0; i < 4; i++)
		free(p[i]);
	return 0;
}
