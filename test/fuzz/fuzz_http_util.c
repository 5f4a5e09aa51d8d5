/*
 * fuzz_http_util.c — libFuzzer target of the HTTP helpers (src/http_util.c)
 * as http.c uses them on what a server sends or a URL holds: a raw response
 * header line (the curl header callback), a Retry-After value, a URL's
 * endpoint name for messages, https checks, percent-encoding of a value
 * and a query built from pairs.
 *
 * Promises checked: Retry-After is within [0, 86400] s; an endpoint name is
 * terminated and shows no address ('@' or %40); an encoded value holds only
 * unreserved characters and %XX and decodes back to the input.
 */
#include <ctype.h>
#include <time.h>

#include "http_util.h"
#include "fuzz.h"

static const char *const header_names[] = {"content-type", "location", "retry-after", "request-id"};

static void
check_encoded(const char *in, const char *enc)
{
	size_t		i = 0,
				j = 0;

	FUZZ_CHECK(enc != NULL);
	while (enc[j])
	{
		if (enc[j] == '%')
		{
			unsigned int v;

			FUZZ_CHECK(isxdigit((unsigned char) enc[j + 1]) && isxdigit((unsigned char) enc[j + 2]));
			FUZZ_CHECK(sscanf(enc + j + 1, "%2x", &v) == 1);
			FUZZ_CHECK((unsigned char) in[i] == v);
			j += 3;
		}
		else
		{
			FUZZ_CHECK(isalnum((unsigned char) enc[j]) || strchr("-._~", enc[j]) != NULL);
			FUZZ_CHECK(in[i] == enc[j]);
			j++;
		}
		i++;
	}
	FUZZ_CHECK(in[i] == '\0');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s = fuzz_cstr(data, size);
	double		secs = -1;
	char		ep[128];
	char		tiny[8];
	char	   *enc;
	size_t		i;
	const char *half;

	/* a raw header line, as curl hands it over (not NUL-terminated) */
	(void) m365_header_is_status_line((const char *) data, size);
	for (i = 0; i < sizeof(header_names) / sizeof(header_names[0]); i++)
	{
		const char *v;
		size_t		vlen;

		if (m365_header_value((const char *) data, size, header_names[i], &v, &vlen))
		{
			FUZZ_CHECK(v >= (const char *) data && v + vlen <= (const char *) data + size);
			/* what http.c then does with a kept value */
			if (vlen <= 1024)
			{
				char	   *val = fuzz_cstr((const uint8_t *) v, vlen);

				if (m365_parse_retry_after(val, (time_t) 1700000000, &secs))
					FUZZ_CHECK(secs >= 0 && secs <= 86400);
				free(val);
			}
		}
	}

	if (m365_parse_retry_after(s, (time_t) 1700000000, &secs))
		FUZZ_CHECK(secs >= 0 && secs <= 86400);
	if (m365_parse_retry_after(s, (time_t) 0, &secs))
		FUZZ_CHECK(secs >= 0 && secs <= 86400);

	m365_url_endpoint(s, ep, sizeof(ep));
	FUZZ_CHECK(fuzz_terminated(ep, sizeof(ep)));
	FUZZ_CHECK(strchr(ep, '@') == NULL && strstr(ep, "%40") == NULL);
	m365_url_endpoint(s, tiny, sizeof(tiny));
	FUZZ_CHECK(fuzz_terminated(tiny, sizeof(tiny)));
	m365_url_endpoint(s, tiny, 1);
	FUZZ_CHECK(tiny[0] == '\0');
	(void) m365_url_is_https(s);

	enc = m365_url_encode(s);
	check_encoded(s, enc);
	free(enc);

	/* the input split in two as a key and a value */
	half = s + strlen(s) / 2;
	{
		char	   *key = strndup(s, (size_t) (half - s));
		const char *pairs[] = {key, half, "x", NULL, "$top", "50", NULL};
		char	   *q = m365_url_with_params("https://graph.microsoft.com/v1.0/me/events?", pairs);

		FUZZ_CHECK(q != NULL && strncmp(q, "https://graph.microsoft.com/v1.0/me/events?", 43) == 0);
		FUZZ_CHECK(strchr(q + 43, '?') == NULL && strchr(q + 43, '#') == NULL);
		free(q);
		free(key);
	}
	free(s);
	return 0;
}
