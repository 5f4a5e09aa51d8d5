/*
 * fuzz_oauth.c — libFuzzer target of the OAuth response readers
 * (src/oauth_util.c) as oauth.c calls them: a token endpoint answer read as
 * a token response and as an error response, the error classified under
 * the statuses the token endpoint returns; the same bytes as a state, an
 * authorization code, a tenant and a PKCE verifier (sql_connect.c checks
 * these before any lookup).
 *
 * Promises checked: a parsed token has an access token and a sane lifetime;
 * error codes hold only [A-Za-z0-9_] (nothing of the description leaks);
 * every outcome has a name.
 */
#include <ctype.h>

#include "oauth_util.h"
#include "fuzz.h"

static int
is_code(const char *s, size_t cap)
{
	size_t		i;

	for (i = 0; i < cap && s[i]; i++)
		if (!isalnum((unsigned char) s[i]) && s[i] != '_')
			return 0;
	return i < cap;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	M365TokenResponse tok;
	M365OAuthError err;
	static const long statuses[] = {200, 400, 401, 403, 429, 500, 502, 503, 504};
	char	   *s;
	size_t		i;
	char		challenge[M365_PKCE_VERIFIER_LEN + 1];

	if (m365_parse_token_response((const char *) data, size, &tok) == 0)
	{
		FUZZ_CHECK(tok.access_token != NULL && tok.access_token[0] != '\0');
		FUZZ_CHECK(tok.expires_in > 0 && tok.expires_in <= 86400 * 2);
		FUZZ_CHECK(tok.refresh_token == NULL || tok.refresh_token[0] != '\0');
		m365_token_response_free(&tok);
	}
	else
		FUZZ_CHECK(tok.access_token == NULL && tok.refresh_token == NULL);

	if (m365_parse_oauth_error((const char *) data, size, &err) == 0)
	{
		FUZZ_CHECK(is_code(err.error, sizeof(err.error)));
		FUZZ_CHECK(is_code(err.suberror, sizeof(err.suberror)));
	}
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
	{
		FUZZ_CHECK(m365_oauth_outcome_name(m365_oauth_classify(statuses[i], &err)) != NULL);
		FUZZ_CHECK(m365_oauth_outcome_name(m365_oauth_classify(statuses[i], NULL)) != NULL);
	}

	s = fuzz_cstr(data, size);
	if (m365_state_is_well_formed(s))
		FUZZ_CHECK(strlen(s) == M365_STATE_LEN);
	if (m365_code_is_well_formed(s))
		FUZZ_CHECK(strlen(s) >= 1 && strlen(s) <= 4096 && strpbrk(s, " \t\r\n") == NULL);
	if (m365_is_guid(s))
		FUZZ_CHECK(strlen(s) == 36);
	(void) m365_tenant_is_valid(s);
	if (m365_pkce_challenge(s, challenge) == 0)
		FUZZ_CHECK(strlen(challenge) == M365_PKCE_VERIFIER_LEN);
	free(s);
	return 0;
}
