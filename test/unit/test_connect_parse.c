/*
 * test_connect_parse.c — the pure-C pieces of the connect capability:
 * URL encoding and endpoint names (never a query or an address),
 * Retry-After in its three forms, OAuth token and error responses and their
 * classification, PKCE S256 (RFC 7636 appendix B vector), input checks and
 * Graph user / calendar / error readers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "graph_util.h"
#include "http_util.h"
#include "oauth_util.h"
#include "tap.h"

/* A string literal and its length. */
#define S(lit) (lit), strlen(lit)

static void
test_url(void)
{
	char	   *s;
	char		ep[128];
	const char *pairs[] = {"scope", "offline_access User.Read", "skip", NULL, "redirect_uri", "https://x/cb?a=1&b", NULL};

	s = m365_url_encode("a b/c?d=e&f~._-é");
	ok(strcmp(s, "a%20b%2Fc%3Fd%3De%26f~._-%C3%A9") == 0, "percent-encoding keeps only unreserved characters: %s", s);
	free(s);
	s = m365_url_with_params("https://h/p?", pairs);
	ok(strcmp(s, "https://h/p?scope=offline_access%20User.Read&redirect_uri=https%3A%2F%2Fx%2Fcb%3Fa%3D1%26b") == 0,
	   "query built from pairs, NULL values skipped: %s", s);
	free(s);

	/* An endpoint name goes into logs and sync_log: never a query, a
	 * password or an address, wherever the URL carries one. */
	static const struct
	{
		const char *url;
		const char *want;
		const char *what;
	}			eps[] = {
		{"https://login.example:8443/contoso.example/oauth2/v2.0/token?code=SECRET", "login.example/contoso.example/oauth2/v2.0/token",
		"query and port dropped"},
		{"https://user:pw@graph.example/v1.0/users/alice@contoso.example/calendars#x", "graph.example/v1.0/users/{mailbox}/calendars",
		"user info and fragment dropped, an address in the path hidden"},
		{"https://graph.example/v1.0/users/alice%40contoso.example", "graph.example/v1.0/users/{mailbox}",
		"a percent-encoded address in the path hidden"},
		{"https://login%40.microsoftonline.com/x", "{mailbox}/x",
		"a percent-encoded @ in the host hides the host"},
		{"https://login.microsoftonline.com:443/x", "login.microsoftonline.com/x",
		"a plain host with a port kept"},
		{"https://[::1]:443/v1.0/me", "[::1]/v1.0/me", "an IPv6 host kept"},
		{"not a url", "(invalid URL)", "not a URL"},
	};
	for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++)
	{
		m365_url_endpoint(eps[i].url, ep, sizeof(ep));
		ok(strcmp(ep, eps[i].want) == 0, "endpoint name: %s: %s is %s (got %s)",
		   eps[i].what, eps[i].url, eps[i].want, ep);
	}
	m365_url_endpoint("https://h/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ep, 10);
	ok(strlen(ep) == 9, "endpoint cut to the buffer");
	ok(m365_url_is_https("https://x") && !m365_url_is_https("http://x") && !m365_url_is_https("https://"),
	   "https check");
}

static void
test_retry_after(void)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT */
	time_t		now = 784111777 - 120;
	static const struct
	{
		const char *v;
		int			ok;
		double		want;
	}			cases[] = {
		{"120", 1, 120},
		{" 7 ", 1, 7},
		{"2.128", 1, 2.128},
		{"0", 1, 0},
		{"Sun, 06 Nov 1994 08:49:37 GMT", 1, 120},
		{"Sunday, 06-Nov-94 08:49:37 GMT", 1, 120},
		{"Sun Nov  6 08:49:37 1994", 1, 120},
		{"Sat, 05 Nov 1994 08:49:37 GMT", 1, 0},	/* in the past */
		{"99999999", 1, 86400},	/* capped at a day */
		{"-1", 0, 0},
		{"1.", 0, 0},
		{"12abc", 0, 0},
		{"Sun, 06 Nov 1994 08:49:37 PST", 0, 0},
		{"soon", 0, 0},
		{"", 0, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		double		s = -1;
		int			r = m365_parse_retry_after(cases[i].v, now, &s);

		ok(r == cases[i].ok && (!r || (s > cases[i].want - 0.0005 && s < cases[i].want + 0.0005)),
		   "Retry-After \"%s\" → %s %.3f (got %d %.3f)", cases[i].v, cases[i].ok ? "ok" : "rejected",
		   cases[i].want, r, s);
	}
}

static void
test_tokens(void)
{
	M365TokenResponse t;
	M365OAuthError e;
	const char *good = "{\"token_type\":\"Bearer\",\"scope\":\"User.Read\",\"expires_in\":3599,\"ext_expires_in\":3599,"
		"\"access_token\":\"AT\",\"refresh_token\":\"RT\",\"unknown\":[1]}";
	const char *aad = "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS70008: The refresh token has expired. user alice@contoso.example\\r\\nTrace ID: x\","
		"\"error_codes\":[70008],\"timestamp\":\"2016-01-09 02:02:12Z\",\"trace_id\":\"t\",\"correlation_id\":\"c\"}";

	ok(m365_parse_token_response(good, strlen(good), &t) == 0 && strcmp(t.access_token, "AT") == 0 &&
	   strcmp(t.refresh_token, "RT") == 0 && t.expires_in == 3599, "token response read, unknown fields ignored");
	m365_token_response_free(&t);
	ok(m365_parse_token_response(S("{\"token_type\":\"Bearer\",\"expires_in\":\"60\",\"access_token\":\"A\"}"), &t) == 0 &&
	   t.refresh_token == NULL && t.expires_in == 60, "no refresh token; expires_in as a string");
	m365_token_response_free(&t);
	ok(m365_parse_token_response("{\"token_type\":\"mac\",\"access_token\":\"A\"}", 39, &t) == -1, "non-Bearer refused");
	ok(m365_parse_token_response("{\"expires_in\":1}", 16, &t) == -1, "no access_token refused");
	ok(m365_parse_token_response("{\"access_token\":", 16, &t) == -1, "truncated JSON refused");

	/* expires_in is a JSON number: one outside a long is refused (casting
	 * it was undefined behaviour), a fraction is cut to whole seconds. */
	static const struct
	{
		const char *expires_in;
		int			rc;
		long		want;
		const char *what;
	}			expiry[] = {
		{"1e300", -1, 0, "expires_in 1e300 (beyond a long) refused"},
		{"-1e300", -1, 0, "expires_in -1e300 (below a long) refused"},
		{"3599.9", 0, 3599, "fractional expires_in read as whole seconds"},
	};
	for (size_t i = 0; i < sizeof(expiry) / sizeof(expiry[0]); i++)
	{
		char		body[128];
		int			rc;

		snprintf(body, sizeof(body), "{\"token_type\":\"Bearer\",\"expires_in\":%s,\"access_token\":\"a\"}",
				 expiry[i].expires_in);
		rc = m365_parse_token_response(body, strlen(body), &t);
		ok(rc == expiry[i].rc && (rc != 0 || t.expires_in == expiry[i].want), "%s", expiry[i].what);
		if (rc == 0)
			m365_token_response_free(&t);
	}

	ok(m365_parse_oauth_error(aad, strlen(aad), &e) == 0 && strcmp(e.error, "invalid_grant") == 0 && e.aadsts == 70008,
	   "AAD error: code and AADSTS number");
	ok(m365_oauth_classify(400, &e) == M365_OAUTH_REAUTH, "invalid_grant → reauth_required");
	ok(m365_parse_oauth_error(S("{\"error\":\"invalid_grant\",\"error_codes\":[1e300]}"), &e) == 0 &&
	   e.aadsts == 0 && strcmp(e.error, "invalid_grant") == 0,
	   "an error code beyond any AADSTS number (1e300) reads as no code, the error kept");
	ok(m365_parse_oauth_error(S("{\"error\":\"invalid_grant\",\"error_codes\":[70008]}"), &e) == 0 &&
	   e.aadsts == 70008, "an error code alone gives the AADSTS number");

	static const struct
	{
		const char *body;
		long		status;
		M365OAuthOutcome want;
	}			cases[] = {
		{"{\"error\":\"invalid_grant\",\"error_codes\":[65001],\"suberror\":\"consent_required\"}", 400, M365_OAUTH_CONSENT},
		{"{\"error\":\"invalid_grant\",\"suberror\":\"consent_required\"}", 400, M365_OAUTH_CONSENT},
		{"{\"error\":\"consent_required\"}", 400, M365_OAUTH_CONSENT},
		{"{\"error\":\"interaction_required\",\"error_codes\":[50076]}", 400, M365_OAUTH_REAUTH},
		{"{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS54005: OAuth2 Authorization code was already redeemed\"}", 400, M365_OAUTH_REAUTH},
		{"{\"error\":\"invalid_client\",\"error_codes\":[7000215]}", 401, M365_OAUTH_CLIENT},
		{"{\"error\":\"unauthorized_client\",\"error_codes\":[700016]}", 400, M365_OAUTH_CLIENT},
		{"{\"error\":\"temporarily_unavailable\"}", 400, M365_OAUTH_RETRY},
		{"<html>bad gateway</html>", 502, M365_OAUTH_RETRY},
		{"", 429, M365_OAUTH_RETRY},
		{"{\"error\":\"invalid_scope\"}", 400, M365_OAUTH_BAD_REQUEST},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		(void) m365_parse_oauth_error(cases[i].body, strlen(cases[i].body), &e);
		ok(m365_oauth_classify(cases[i].status, &e) == cases[i].want, "HTTP %ld %s → %s",
		   cases[i].status, cases[i].body, m365_oauth_outcome_name(cases[i].want));
	}
	ok(m365_parse_oauth_error("{\"error\":\"bad<script>\"}", 23, &e) == 0 && strcmp(e.error, "bad") == 0,
	   "error codes keep identifier characters only");
}

static void
test_pkce_and_checks(void)
{
	char		v[M365_PKCE_VERIFIER_LEN + 1],
				v2[M365_PKCE_VERIFIER_LEN + 1],
				c[M365_PKCE_VERIFIER_LEN + 1];

	ok(m365_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", c) == 0 &&
	   strcmp(c, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") == 0, "S256 challenge matches RFC 7636 appendix B");
	ok(m365_pkce_new_verifier(v) == 0 && strlen(v) == 43 && m365_pkce_new_verifier(v2) == 0 && strcmp(v, v2) != 0,
	   "verifiers: 43 characters, fresh each time");
	ok(m365_state_is_well_formed(v), "a new state value is well formed");
	ok(!m365_state_is_well_formed("short") && !m365_state_is_well_formed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") &&
	   !m365_state_is_well_formed(NULL), "malformed states refused");
	ok(m365_code_is_well_formed("0.AXcA-abc_def") && !m365_code_is_well_formed("a b") && !m365_code_is_well_formed(""),
	   "code check");
	ok(m365_is_guid("11111111-2222-3333-4444-55555555555a") && !m365_is_guid("11111111222233334444555555555555"),
	   "GUID check");
	ok(m365_tenant_is_valid("contoso.onmicrosoft.com") && !m365_tenant_is_valid("common") &&
	   !m365_tenant_is_valid("Organizations") && !m365_tenant_is_valid("a..b") && !m365_tenant_is_valid("x/y.z"),
	   "tenant check: domain or GUID, never common/organizations");
}

static void
test_graph(void)
{
	char		code[64];
	M365GraphUser u;
	M365GraphCalendarPage p;
	const char *err = "{\"error\":{\"code\":\"ErrorItemNotFound\",\"message\":\"alice@contoso.example not found\",\"innerError\":{}}}";
	const char *cals = "{\"value\":[{\"id\":\"A\",\"name\":\"Calendar\",\"isDefaultCalendar\":true,\"canEdit\":true},"
		"{\"id\":\"B\",\"name\":\"Shared\",\"canEdit\":false},{\"name\":\"no id\"},7],"
		"\"@odata.nextLink\":\"https://graph/v1.0/me/calendars?$skiptoken=x\"}";

	ok(m365_graph_parse_error(err, strlen(err), code, sizeof(code)) == 0 && strcmp(code, "ErrorItemNotFound") == 0,
	   "Graph error code read, message ignored");
	ok(m365_graph_parse_error("oops", 4, code, sizeof(code)) == -1 && code[0] == '\0', "non-JSON error body");
	ok(strcmp(m365_graph_account_state(404, "MailboxNotEnabledForRESTAPI"), "mailbox_disabled") == 0 &&
	   strcmp(m365_graph_account_state(401, "MailboxNotEnabledForRESTAPI"), "mailbox_disabled") == 0 &&
	   strcmp(m365_graph_account_state(403, "ErrorAccessDenied"), "access_denied") == 0 &&
	   m365_graph_account_state(404, "ErrorItemNotFound") == NULL &&
	   m365_graph_account_state(403, "Authorization_RequestDenied") == NULL &&
	   m365_graph_account_state(401, "InvalidAuthenticationToken") == NULL &&
	   m365_graph_account_state(404, NULL) == NULL,
	   "account states: MailboxNotEnabledForRESTAPI (404 or 401), 403 ErrorAccessDenied; nothing else");
	ok(m365_graph_item_gone(404, "ErrorItemNotFound") && !m365_graph_item_gone(404, "MailboxNotEnabledForRESTAPI") &&
	   !m365_graph_item_gone(404, "") && !m365_graph_item_gone(410, "ErrorItemNotFound"),
	   "only 404 ErrorItemNotFound means gone");
	ok(m365_graph_parse_user(S("{\"id\":\"u1\",\"userPrincipalName\":\"a@b.c\",\"mail\":null}"), &u) == 0 &&
	   strcmp(u.id, "u1") == 0 && strcmp(u.upn, "a@b.c") == 0 && u.mail == NULL, "user read");
	m365_graph_user_free(&u);
	ok(m365_graph_parse_user("{\"userPrincipalName\":\"a@b.c\"}", 29, &u) == -1, "user without id refused");
	ok(m365_graph_parse_calendars(cals, strlen(cals), &p) == 0 && p.count == 2 && p.items[0].is_default &&
	   p.items[0].can_edit && !p.items[1].is_default && !p.items[1].can_edit &&
	   p.next_link != NULL && strstr(p.next_link, "skiptoken") != NULL,
	   "calendar page: items, flags, nextLink; entries without id skipped");
	m365_graph_calendar_page_free(&p);
	ok(m365_graph_parse_calendars("{\"value\":{}}", 12, &p) == -1, "page without value array refused");
}

/* m365_read_file: whole file, larger than one read chunk; missing file gives NULL. */
static void
test_read_file(void)
{
	char		path[] = "/tmp/m365-unit-readXXXXXX";
	int			fd = mkstemp(path);
	size_t		n = 200000,
				len = 0;
	char	   *want = malloc(n),
			   *got;
	FILE	   *f;

	for (size_t i = 0; i < n; i++)
		want[i] = (char) ('a' + i % 23);
	f = fdopen(fd, "wb");
	fwrite(want, 1, n, f);
	fclose(f);
	got = m365_read_file(path, &len);
	ok(got != NULL && len == n && memcmp(got, want, n) == 0, "read_file: 200,000 bytes read whole");
	free(got);
	unlink(path);
	ok(m365_read_file(path, &len) == NULL, "read_file: a missing file gives NULL");
	free(want);
}

int
main(void)
{
	test_url();
	test_read_file();
	test_retry_after();
	test_tokens();
	test_pkce_and_checks();
	test_graph();
	return done_testing();
}
