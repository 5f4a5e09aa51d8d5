/*
 * test_envelope.c — unit tests of the envelope layout (src/envelope.c) and
 * the raw header line reader (src/http_util.c): the header and associated
 * data bytes are compared with the layout keyring.h documents, so a change
 * that would make stored values unreadable fails here first.
 */
#include <string.h>

#include "envelope.h"
#include "http_util.h"
#include "tap.h"

int
main(void)
{
	uint8_t		env[M365_ENVELOPE_OVERHEAD + 4] = {0};
	uint8_t		aad[M365_ENVELOPE_AAD_MAX];
	uint8_t		waad[M365_WRAP_AAD_MAX];
	static const uint8_t want_hdr[13] = {1, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 7};
	M365EnvelopeHeader h;
	char		longname[80];
	const char *v;
	size_t		vlen;
	size_t		n;

	m365_envelope_write_header(env, 258, 7);
	ok(memcmp(env, want_hdr, 13) == 0, "header: version 1, big-endian account id and generation");
	ok(m365_envelope_read_header(env, sizeof(env), 258, &h) == M365_ENV_OK &&
	   h.account_id == 258 && h.generation == 7, "header reads back");
	ok(m365_envelope_read_header(env, sizeof(env), 259, &h) == M365_ENV_OTHER_ACCOUNT,
	   "another account's envelope is refused");
	ok(m365_envelope_read_header(env, M365_ENVELOPE_OVERHEAD - 1, 258, &h) == M365_ENV_NOT_ENVELOPE,
	   "a truncated envelope is refused");
	ok(m365_envelope_read_header(env, M365_ENVELOPE_OVERHEAD, 258, &h) == M365_ENV_OK,
	   "an envelope of an empty value is accepted");
	ok(m365_envelope_read_header(NULL, 0, 258, &h) == M365_ENV_NOT_ENVELOPE, "NULL is refused");
	env[0] = 2;
	ok(m365_envelope_read_header(env, sizeof(env), 258, &h) == M365_ENV_NOT_ENVELOPE,
	   "an unknown version is refused");
	env[0] = 1;
	m365_envelope_write_header(env, -1, 0xffffffffu);
	ok(m365_envelope_read_header(env, sizeof(env), -1, &h) == M365_ENV_OK &&
	   h.generation == 0xffffffffu, "extreme account id and generation round-trip");

	m365_envelope_write_header(env, 258, 7);
	n = m365_envelope_value_aad(aad, "events", "content", 258, 9, env);
	ok(n == 12 + 7 + 8 + 8 + 8 + 13, "value aad length");
	ok(memcmp(aad, "m365sync/v1\0events\0content", 27) == 0 &&
	   memcmp(aad + 27, "\0\0\0\0\0\0\x01\x02" "\0\0\0\0\0\0\0\x09", 16) == 0 &&
	   memcmp(aad + 43, want_hdr, 13) == 0, "value aad bytes as keyring.h documents");
	memset(longname, 'x', 64);
	longname[64] = '\0';
	ok(m365_envelope_value_aad(aad, longname, "c", 1, 1, env) == 0, "64-byte table name refused");
	longname[63] = '\0';
	ok(m365_envelope_value_aad(aad, longname, longname, 1, 1, env) == M365_ENVELOPE_AAD_MAX,
	   "63-byte names fit the aad buffer exactly");

	n = m365_envelope_wrap_aad(waad, 258, 7, "k1");
	ok(n == 15 + 8 + 4 + 3 && memcmp(waad, "m365sync/dk/v1\0", 15) == 0 &&
	   memcmp(waad + 15, "\0\0\0\0\0\0\x01\x02\0\0\0\x07k1\0", 15) == 0, "wrap aad bytes");
	ok(m365_envelope_wrap_aad(waad, 1, 1, longname) == M365_WRAP_AAD_MAX, "63-byte key id fits");

	ok(m365_header_value("Retry-After: 2.5\r\n", 18, "retry-after", &v, &vlen) == 1 &&
	   vlen == 3 && memcmp(v, "2.5", 3) == 0, "header value trimmed, name case-insensitive");
	ok(m365_header_value("retry-after:\t \r\n", 16, "retry-after", &v, &vlen) == 1 && vlen == 0,
	   "empty header value");
	ok(m365_header_value("retry-afterx: 1\r\n", 17, "retry-after", &v, &vlen) == 0, "longer name no match");
	ok(m365_header_value("retry: 1\r\n", 10, "retry-after", &v, &vlen) == 0, "shorter name no match");
	ok(m365_header_value("no colon here\r\n", 15, "retry-after", &v, &vlen) == 0, "no colon no match");
	ok(m365_header_is_status_line("HTTP/1.1 100 Continue\r\n", 23) &&
	   !m365_header_is_status_line("HTTP", 4), "status line");
	return done_testing();
}
