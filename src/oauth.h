/*
 * oauth.h — OAuth 2.0 against the Microsoft identity platform inside a
 * backend (oauth.c): consent and sign-in URLs, the token endpoint
 * (authorization code with PKCE, refresh token, client credentials) and the
 * per-account access token with refresh before expiry and once on 401.
 *
 * Pure parts (parsing, PKCE, checks) are in oauth_util.h. Network through
 * http.h only; rows through store_accounts.h only. Failures of the token
 * endpoint are returned as data (M365TokenFailure) so that callers can
 * record an account's status and commit it; m365_oauth_raise turns one into
 * an ERROR naming the endpoint and Microsoft's codes, never a secret.
 */
#ifndef M365SYNC_OAUTH_H
#define M365SYNC_OAUTH_H

#include "postgres.h"

#include "graph.h"
#include "http.h"
#include "oauth_util.h"
#include "store_accounts.h"

/* Delegated sign-in: work and school accounts of any tenant. */
#define M365_DELEGATED_TENANT	"organizations"
#define M365_DELEGATED_SCOPE	"offline_access User.Read Calendars.ReadWrite"
#define M365_APP_SCOPE			"https://graph.microsoft.com/.default"
#define M365_STATE_TTL_S		600

typedef struct M365Tokens
{
	char	   *access_token;	/* palloc'd */
	char	   *refresh_token;	/* palloc'd, NULL when none issued */
	long		expires_in;
} M365Tokens;

typedef struct M365TokenFailure
{
	M365OAuthOutcome outcome;
	M365OAuthError error;		/* codes from Microsoft's answer */
	M365HttpResult transport;
	long		status;
	bool		has_retry_after;
	double		retry_after_s;
	char	   *endpoint;
} M365TokenFailure;

/* URLs the admin and the user open in a browser (palloc'd). */
extern char *m365_oauth_authorize_url(const M365AppConfig *cfg, const char *state,
									  const char *code_challenge);
extern char *m365_oauth_admin_consent_url(const M365AppConfig *cfg, const char *tenant,
										  const char *state);

/* Token endpoint grants; true on success. cfg must carry the client secret. */
extern bool m365_oauth_redeem_code(const M365AppConfig *cfg, const char *code,
								   const char *code_verifier, M365Tokens *out,
								   M365TokenFailure *fail);
extern bool m365_oauth_refresh(const M365AppConfig *cfg, const char *refresh_token,
							   M365Tokens *out, M365TokenFailure *fail);
extern bool m365_oauth_client_credentials(const M365AppConfig *cfg, const char *tenant,
										  M365Tokens *out, M365TokenFailure *fail);

extern void m365_oauth_raise(const M365TokenFailure *fail, const char *what) pg_attribute_noreturn();

/* Short code for accounts.last_error: "invalid_grant", "AADSTS70008", ... */
extern char *m365_oauth_failure_code(const M365TokenFailure *fail);

/*
 * A valid access token for an account (palloc'd), refreshed under the
 * account's row lock when it expires within 5 minutes or when rejected is
 * the token Graph just refused. The row lock serialises refreshes: a second
 * caller waits, then finds the winner's fresh token. A rotated refresh token
 * is saved in the current transaction. Returns NULL, with the account's
 * status set (reauth_required, consent_required, backoff), when no token
 * can be had; no request is sent for an account that needs a person.
 */
extern char *m365_account_access_token(int64 account_id, const char *rejected);

/* A token source for graph.c bound to one account. */
extern void m365_account_token_source(M365TokenSource *ts, int64 *account_id);

#endif							/* M365SYNC_OAUTH_H */
