/*
 * oauth.c — the OAuth 2.0 client inside a backend (see oauth.h): consent and
 * authorize URLs, token endpoint grants, and the per-account access token
 * with serialised refresh.
 *
 * Network only through http.c, rows only through store_accounts.c, parsing
 * only through oauth_util.c. Secrets (client secret, codes, verifiers,
 * tokens) travel in request bodies, never in URLs we log; messages name the
 * token endpoint and Microsoft's error codes only. Token requests run in
 * the caller's transaction, bounded by m365sync.http_timeout and
 * interruptible (http.c).
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "crypto.h"
#include "http_util.h"
#include "settings.h"
#include "oauth.h"

static char *
login_url(const char *tenant, const char *tail)
{
	const char *base = m365_login_url;
	size_t		blen = strlen(base);
	char	   *t = m365_http_escape(tenant);

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	return psprintf("%.*s/%s/%s", (int) blen, base, t, tail);
}

char *
m365_oauth_authorize_url(const M365AppConfig *cfg, const char *state, const char *code_challenge)
{
	const char *pairs[] = {
		"client_id", cfg->client_id,
		"response_type", "code",
		"redirect_uri", cfg->redirect_uri,
		"response_mode", "query",
		"scope", M365_DELEGATED_SCOPE,
		"state", state,
		"code_challenge", code_challenge,
		"code_challenge_method", "S256",
		NULL
	};

	return m365_http_build_query(login_url(M365_DELEGATED_TENANT, "oauth2/v2.0/authorize"), pairs);
}

char *
m365_oauth_admin_consent_url(const M365AppConfig *cfg, const char *tenant, const char *state)
{
	const char *pairs[] = {
		"client_id", cfg->client_id,
		"scope", M365_APP_SCOPE,
		"redirect_uri", cfg->redirect_uri,
		"state", state,
		NULL
	};

	return m365_http_build_query(login_url(tenant, "v2.0/adminconsent"), pairs);
}

/* Wipe and free a palloc'd secret string. */
static void
wipe(char *s)
{
	if (s != NULL)
	{
		m365_secure_zero(s, strlen(s));
		pfree(s);
	}
}

/* Run req; the form body (it holds secrets) is wiped on every path. */
static pg_noinline void
perform_then_wipe(M365HttpRequest *req, char *body)
{
	PG_TRY();
	{
		m365_http_perform(req);
	}
	PG_CATCH();
	{
		wipe(body);
		PG_RE_THROW();
	}
	PG_END_TRY();
	wipe(body);
}

/* Copy a parsed token response into palloc'd memory; frees it on every path. */
static pg_noinline void
take_tokens(M365TokenResponse *tr, M365Tokens *out)
{
	PG_TRY();
	{
		out->access_token = pstrdup(tr->access_token);
		out->refresh_token = tr->refresh_token ? pstrdup(tr->refresh_token) : NULL;
		out->expires_in = tr->expires_in;
	}
	PG_CATCH();
	{
		m365_token_response_free(tr);
		PG_RE_THROW();
	}
	PG_END_TRY();
	m365_token_response_free(tr);
}

/* POST a form to {login}/{tenant}/oauth2/v2.0/token and read the answer. */
static bool
token_request(const char *tenant, const char *const *form, M365Tokens *out,
			  M365TokenFailure *fail)
{
	M365HttpRequest req;
	M365TokenResponse tr;
	char	   *body = m365_http_build_query(NULL, form);

	memset(out, 0, sizeof(*out));
	memset(fail, 0, sizeof(*fail));
	m365_http_init(&req, M365_HTTP_POST, login_url(tenant, "oauth2/v2.0/token"));
	req.content_type = "application/x-www-form-urlencoded";
	req.body = body;
	req.body_len = strlen(body);
	req.max_response = 1024 * 1024;
	perform_then_wipe(&req, body);

	fail->transport = req.response.result;
	fail->status = req.response.status;
	fail->endpoint = m365_http_endpoint(req.url);
	fail->has_retry_after = req.response.has_retry_after;
	fail->retry_after_s = req.response.retry_after_s;
	if (req.response.result != M365_HTTP_OK)
	{
		fail->outcome = m365_http_is_transient(&req.response) ? M365_OAUTH_RETRY : M365_OAUTH_BAD_REQUEST;
		return false;
	}
	if (req.response.status == 200 &&
		m365_parse_token_response(req.response.body, req.response.body_len, &tr) == 0)
	{
		take_tokens(&tr, out);
		m365_secure_zero(req.response.body, req.response.body_len);
		fail->outcome = M365_OAUTH_OK;
		return true;
	}
	(void) m365_parse_oauth_error(req.response.body, req.response.body_len, &fail->error);
	fail->outcome = m365_oauth_classify(req.response.status == 200 ? 502 : req.response.status,
										&fail->error);
	m365_secure_zero(req.response.body, req.response.body_len);
	return false;
}

bool
m365_oauth_redeem_code(const M365AppConfig *cfg, const char *code, const char *code_verifier,
					   M365Tokens *out, M365TokenFailure *fail)
{
	const char *form[] = {
		"client_id", cfg->client_id,
		"grant_type", "authorization_code",
		"code", code,
		"redirect_uri", cfg->redirect_uri,
		"code_verifier", code_verifier,
		"scope", M365_DELEGATED_SCOPE,
		"client_secret", cfg->client_secret,
		NULL
	};

	return token_request(M365_DELEGATED_TENANT, form, out, fail);
}

bool
m365_oauth_refresh(const M365AppConfig *cfg, const char *refresh_token,
				   M365Tokens *out, M365TokenFailure *fail)
{
	const char *form[] = {
		"client_id", cfg->client_id,
		"grant_type", "refresh_token",
		"refresh_token", refresh_token,
		"scope", M365_DELEGATED_SCOPE,
		"client_secret", cfg->client_secret,
		NULL
	};

	return token_request(M365_DELEGATED_TENANT, form, out, fail);
}

bool
m365_oauth_client_credentials(const M365AppConfig *cfg, const char *tenant,
							  M365Tokens *out, M365TokenFailure *fail)
{
	const char *form[] = {
		"client_id", cfg->client_id,
		"grant_type", "client_credentials",
		"scope", M365_APP_SCOPE,
		"client_secret", cfg->client_secret,
		NULL
	};

	return token_request(tenant, form, out, fail);
}

char *
m365_oauth_failure_code(const M365TokenFailure *fail)
{
	if (fail->error.aadsts != 0)
		return psprintf("AADSTS%ld", fail->error.aadsts);
	if (fail->error.error[0] != '\0')
		return pstrdup(fail->error.error);
	if (fail->transport != M365_HTTP_OK)
		return pstrdup("network_error");
	return psprintf("http_%ld", fail->status);
}

void
m365_oauth_raise(const M365TokenFailure *fail, const char *what)
{
	char	   *code = m365_oauth_failure_code(fail);

	if (fail->transport != M365_HTTP_OK)
		ereport(ERROR,
				(errcode(fail->transport == M365_HTTP_ERR_CANCELLED ? ERRCODE_QUERY_CANCELED :
						 fail->transport == M365_HTTP_ERR_CA_FILE ? ERRCODE_CONFIG_FILE_ERROR :
						 ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not %s: request to %s failed: %s", what, fail->endpoint,
						fail->transport == M365_HTTP_ERR_TLS ?
						"the TLS handshake failed (certificate not trusted or not for this host)" :
						fail->transport == M365_HTTP_ERR_TIMEOUT ? "it timed out (m365sync.http_timeout)" :
						fail->transport == M365_HTTP_ERR_URL ? "the URL is not an https URL" :
						fail->transport == M365_HTTP_ERR_CA_FILE ? "m365sync.ca_file could not be read" :
						fail->transport == M365_HTTP_ERR_CANCELLED ? "it was cancelled" :
						"no response"),
				 fail->transport == M365_HTTP_ERR_TLS ?
				 errhint("Check that the server's certificate is signed by a CA in the system store or in m365sync.ca_file and names the host.") : 0));
	switch (fail->outcome)
	{
		case M365_OAUTH_CLIENT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("could not %s: Microsoft rejected the app's credentials", what),
					 errdetail("The token endpoint %s answered HTTP %ld, error %s.",
							   fail->endpoint, fail->status, code),
					 errhint("Check the client id, client secret and redirect URI given to m365sync.configure().")));
			break;
		case M365_OAUTH_CONSENT:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("could not %s: the organisation has not consented to the app", what),
					 errdetail("The token endpoint %s answered HTTP %ld, error %s.",
							   fail->endpoint, fail->status, code),
					 errhint("A tenant administrator must grant consent: SELECT m365sync.admin_consent_url('<tenant>').")));
			break;
		case M365_OAUTH_REAUTH:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not %s: Microsoft rejected the authorization grant", what),
					 errdetail("The token endpoint %s answered HTTP %ld, error %s.",
							   fail->endpoint, fail->status, code),
					 errhint("The code may be expired or already used: sign in again with a new m365sync.connect_url().")));
			break;
		case M365_OAUTH_RETRY:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not %s: Microsoft is temporarily unavailable", what),
					 errdetail("The token endpoint %s answered HTTP %ld, error %s.",
							   fail->endpoint, fail->status, code),
					 errhint("Try again later.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not %s: the token request was refused", what),
					 errdetail("The token endpoint %s answered HTTP %ld, error %s.",
							   fail->endpoint, fail->status, code)));
			break;
	}
	pg_unreachable();
}

/* Record why an account could not get a token. */
static void
record_failure(int64 account_id, const M365TokenFailure *fail)
{
	char	   *code = m365_oauth_failure_code(fail);

	switch (fail->outcome)
	{
		case M365_OAUTH_REAUTH:
			m365_store_accounts_set_status(account_id, "reauth_required", code);
			break;
		case M365_OAUTH_CONSENT:
			m365_store_accounts_set_status(account_id, "consent_required", code);
			break;
		case M365_OAUTH_CLIENT:
			m365_store_accounts_set_status(account_id, "error", code);
			break;
		default:
			m365_store_accounts_backoff(account_id, code,
								  fail->has_retry_after ? fail->retry_after_s : -1);
			break;
	}
}

char *
m365_account_access_token(int64 account_id, const char *rejected)
{
	M365Account acc;
	M365AppConfig cfg;
	M365Tokens tok;
	M365TokenFailure fail;
	char	   *current;
	bool		ok;

	/* Most calls: the stored token is fresh; no row lock for reading it. */
	if (rejected == NULL && (current = m365_store_accounts_fresh_access_token(account_id)) != NULL)
		return current;

	/* The row lock: concurrent refreshes of one account queue up here. */
	if (!m365_store_accounts_lock(account_id, &acc))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("account %lld does not exist", (long long) account_id)));
	if (strcmp(acc.status, "reauth_required") == 0 ||
		strcmp(acc.status, "consent_required") == 0 ||
		strcmp(acc.status, "disabled") == 0)
		return NULL;

	current = m365_store_accounts_access_token(account_id);
	if (current != NULL && acc.token_fresh &&
		(rejected == NULL || strcmp(current, rejected) != 0))
		return current;
	wipe(current);

	m365_store_app_config_get(&cfg, true);
	if (strcmp(acc.mode, "application") == 0)
	{
		char	   *tenant = m365_store_tenants_name(acc.tenant_id);

		if (tenant == NULL)
		{
			m365_store_accounts_set_status(account_id, "error", "no_tenant");
			return NULL;
		}
		ok = m365_oauth_client_credentials(&cfg, tenant, &tok, &fail);
	}
	else
	{
		char	   *refresh = m365_store_accounts_refresh_token(account_id);

		if (refresh == NULL)
		{
			m365_store_accounts_set_status(account_id, "reauth_required", "no_refresh_token");
			wipe(cfg.client_secret);
			return NULL;
		}
		ok = m365_oauth_refresh(&cfg, refresh, &tok, &fail);
		wipe(refresh);
	}
	wipe(cfg.client_secret);
	if (!ok)
	{
		if (fail.transport == M365_HTTP_ERR_CANCELLED)
			m365_oauth_raise(&fail, "refresh an access token");
		record_failure(account_id, &fail);
		return NULL;
	}
	/* Rotated refresh token and new access token in this transaction. */
	m365_store_accounts_save_tokens(account_id, tok.access_token, tok.refresh_token, tok.expires_in);
	wipe(tok.refresh_token);
	return tok.access_token;
}

static char *
account_source_get(M365TokenSource *self, const char *rejected)
{
	return m365_account_access_token(*(int64 *) self->arg, rejected);
}

void
m365_account_token_source(M365TokenSource *ts, int64 *account_id)
{
	ts->get = account_source_get;
	ts->arg = account_id;
}
