/*
 * test_fuzz_regress.c — unit tests pinning the parser bugs the fuzz targets
 * (test/fuzz) found, one case each, so the fix cannot silently regress
 * even when the fuzz smoke is skipped. The crashing inputs themselves are
 * in test/fuzz/corpus/<target>/ (named in each description).
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "event_json.h"
#include "http_util.h"
#include "oauth_util.h"
#include "tap.h"

#define S(lit) lit, sizeof(lit) - 1

int
main(void)
{
	M365TokenResponse t;
	M365OAuthError e;
	char		ep[128];
	cJSON	   *patch;
	cJSON	   *stored;
	const char *changed[8];
	int			n;

	/* oauth/edge-token-expires-huge.json: (long) 1e300 was undefined behaviour */
	ok(m365_parse_token_response(S("{\"token_type\":\"Bearer\",\"expires_in\":1e300,\"access_token\":\"a\"}"), &t) == -1,
	   "expires_in 1e300 refused (oauth/edge-token-expires-huge.json)");
	ok(m365_parse_token_response(S("{\"token_type\":\"Bearer\",\"expires_in\":-1e300,\"access_token\":\"a\"}"), &t) == -1,
	   "expires_in -1e300 refused");
	ok(m365_parse_token_response(S("{\"token_type\":\"Bearer\",\"expires_in\":3599.9,\"access_token\":\"a\"}"), &t) == 0 &&
	   t.expires_in == 3599, "fractional expires_in still read");
	m365_token_response_free(&t);
	/* oauth/edge-error-codes-huge.json */
	ok(m365_parse_oauth_error(S("{\"error\":\"invalid_grant\",\"error_codes\":[1e300]}"), &e) == 0 &&
	   e.aadsts == 0 && strcmp(e.error, "invalid_grant") == 0,
	   "error_codes [1e300] reads as no code (oauth/edge-error-codes-huge.json)");
	ok(m365_parse_oauth_error(S("{\"error\":\"invalid_grant\",\"error_codes\":[70008]}"), &e) == 0 &&
	   e.aadsts == 70008, "a real error code still read");

	/* http_util/regress-host-pct40.txt: an address in the host was shown */
	m365_url_endpoint("https://login%40.microsoftonline.com/x", ep, sizeof(ep));
	ok(strcmp(ep, "{mailbox}/x") == 0, "%%40 in the host hidden (got %s)", ep);
	m365_url_endpoint("https://login.microsoftonline.com:443/x", ep, sizeof(ep));
	ok(strcmp(ep, "login.microsoftonline.com/x") == 0, "plain host kept (got %s)", ep);

	/* event_json/edge-dup-keys.json: a repeated read-only name survived the strip */
	stored = cJSON_Parse("{\"id\":\"AAMk=\",\"subject\":\"a\"}");
	patch = cJSON_Parse("{\"id\":\"x\",\"id\":\"forged\",\"changeKey\":\"1\",\"changeKey\":\"2\",\"subject\":\"b\"}");
	m365_event_strip_readonly(patch);
	ok(cJSON_GetObjectItemCaseSensitive(patch, "id") == NULL &&
	   cJSON_GetObjectItemCaseSensitive(patch, "changeKey") == NULL,
	   "every copy of a repeated read-only field stripped (event_json/edge-dup-keys.json)");
	n = m365_event_merge(stored, patch, changed, 8);
	ok(n == 1 && strcmp(cJSON_GetObjectItemCaseSensitive(stored, "id")->valuestring, "AAMk=") == 0,
	   "merge keeps the stored id");
	cJSON_Delete(patch);
	cJSON_Delete(stored);
	return done_testing();
}
