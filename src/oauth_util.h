/*
 * oauth_util.h — pure-C pieces of the OAuth 2.0 client (oauth_util.c):
 * reading token and error responses of the Microsoft identity platform,
 * classifying errors, PKCE and state values.
 *
 * No postgres.h: unit tests and fuzz targets call these directly. Parsed
 * strings are malloc'd; free them with m365_token_response_free, which wipes
 * them first. Error descriptions are never kept: they are prose that may
 * quote the user, and we show only codes.
 */
#ifndef M365SYNC_OAUTH_UTIL_H
#define M365SYNC_OAUTH_UTIL_H

#include <stddef.h>

/* PKCE verifier and state: 32 random bytes as base64url = 43 characters. */
#define M365_PKCE_VERIFIER_LEN	43
#define M365_STATE_LEN			43

typedef struct M365TokenResponse
{
	char	   *access_token;
	char	   *refresh_token;	/* NULL when none was issued */
	char	   *token_type;
	char	   *scope;
	long		expires_in;		/* seconds */
} M365TokenResponse;

typedef struct M365OAuthError
{
	char		error[64];		/* "invalid_grant", ... ; "" when absent */
	char		suberror[64];	/* "consent_required", ... ; "" when absent */
	long		aadsts;			/* first of error_codes, or from the description; 0 */
} M365OAuthError;

/* What a failed token request means for the account. */
typedef enum M365OAuthOutcome
{
	M365_OAUTH_OK = 0,
	M365_OAUTH_REAUTH,			/* grant expired, revoked or redeemed: sign in again */
	M365_OAUTH_CONSENT,			/* consent missing or withdrawn */
	M365_OAUTH_RETRY,			/* temporarily_unavailable, 429, 5xx */
	M365_OAUTH_CLIENT,			/* our registration is wrong: client id, secret, redirect */
	M365_OAUTH_BAD_REQUEST		/* anything else */
} M365OAuthOutcome;

/*
 * Parse a successful token response. Returns 0 and fills out (caller frees
 * with m365_token_response_free) or -1 when the body is not a token
 * response (not JSON, no access_token, token_type other than Bearer).
 */
extern int	m365_parse_token_response(const char *body, size_t len, M365TokenResponse *out);
extern void m365_token_response_free(M365TokenResponse *t);

/*
 * Parse an error response {"error", "error_codes", "suberror", ...}.
 * Returns 0 when an "error" member was found, -1 otherwise (err zeroed).
 */
extern int	m365_parse_oauth_error(const char *body, size_t len, M365OAuthError *err);

/* Classify an HTTP status plus parsed error (err may be NULL). */
extern M365OAuthOutcome m365_oauth_classify(long http_status, const M365OAuthError *err);

/* Short name of an outcome, for status columns: "reauth_required", ... */
extern const char *m365_oauth_outcome_name(M365OAuthOutcome o);

/* 43-character base64url values from 32 CSPRNG bytes; 0 on success. */
extern int	m365_pkce_new_verifier(char out[M365_PKCE_VERIFIER_LEN + 1]);
extern int	m365_new_state(char out[M365_STATE_LEN + 1]);

/* S256 challenge: base64url(SHA-256(verifier)); 0 on success. */
extern int	m365_pkce_challenge(const char *verifier, char out[M365_PKCE_VERIFIER_LEN + 1]);

/*
 * A state handed back to us: 43 base64url characters, nothing else. The
 * check comes before any lookup so garbage never reaches SQL.
 */
extern int	m365_state_is_well_formed(const char *state);

/* An authorization code: 1..4096 printable ASCII characters, no blanks. */
extern int	m365_code_is_well_formed(const char *code);

/* A GUID in 8-4-4-4-12 hex form. */
extern int	m365_is_guid(const char *s);

/* A tenant as admins name it: a GUID or a DNS domain; not common/organizations/consumers. */
extern int	m365_tenant_is_valid(const char *s);

#endif							/* M365SYNC_OAUTH_UTIL_H */
