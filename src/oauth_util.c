/*
 * oauth_util.c — pure-C parts of the OAuth 2.0 client: token and error
 * responses of the Microsoft identity platform (GRAPH.md §7), their
 * classification, PKCE S256 and state values, and input checks.
 *
 * Bytes in, structs out: no postgres.h, no SPI, no network. JSON only
 * through cJSON, randomness and hashing only through crypto.h. Token
 * strings are wiped before they are freed. error_description is never
 * copied: only the error code, suberror and AADSTS number are kept.
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "crypto.h"
#include "oauth_util.h"

static char *
dup_string(const cJSON *item)
{
	if (!cJSON_IsString(item) || item->valuestring == NULL)
		return NULL;
	return strdup(item->valuestring);
}

static void
wipe_free(char *s)
{
	if (s != NULL)
	{
		m365_secure_zero(s, strlen(s));
		free(s);
	}
}

void
m365_token_response_free(M365TokenResponse *t)
{
	wipe_free(t->access_token);
	wipe_free(t->refresh_token);
	free(t->token_type);
	free(t->scope);
	memset(t, 0, sizeof(*t));
}

/*
 * A JSON number as a long, or fallback when it is not a whole number
 * within [lo, hi] (NaN, 1e300: converting those to long is undefined).
 */
static long
number_in_range(double v, long lo, long hi, long fallback)
{
	if (!(v >= (double) lo && v <= (double) hi))
		return fallback;
	return (long) v;
}

int
m365_parse_token_response(const char *body, size_t len, M365TokenResponse *out)
{
	cJSON	   *root;
	const cJSON *exp;
	int			rc = -1;

	memset(out, 0, sizeof(*out));
	if (body == NULL)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	if (root == NULL || !cJSON_IsObject(root))
		goto done;
	out->access_token = dup_string(cJSON_GetObjectItemCaseSensitive(root, "access_token"));
	out->refresh_token = dup_string(cJSON_GetObjectItemCaseSensitive(root, "refresh_token"));
	out->token_type = dup_string(cJSON_GetObjectItemCaseSensitive(root, "token_type"));
	out->scope = dup_string(cJSON_GetObjectItemCaseSensitive(root, "scope"));
	exp = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
	if (cJSON_IsNumber(exp))
		out->expires_in = number_in_range(exp->valuedouble, 0, LONG_MAX / 2, -1);
	else if (cJSON_IsString(exp) && exp->valuestring)	/* some clouds send a string */
		out->expires_in = strtol(exp->valuestring, NULL, 10);
	else
		out->expires_in = 3600;
	if (out->access_token == NULL || out->access_token[0] == '\0' ||
		(out->token_type != NULL && strcasecmp(out->token_type, "Bearer") != 0) ||
		out->expires_in <= 0 || out->expires_in > 86400 * 2)
		goto done;
	if (out->refresh_token != NULL && out->refresh_token[0] == '\0')
	{
		free(out->refresh_token);
		out->refresh_token = NULL;
	}
	rc = 0;
done:
	cJSON_Delete(root);
	if (rc != 0)
		m365_token_response_free(out);
	return rc;
}

static void
copy_code(char *dst, size_t dstlen, const cJSON *item)
{
	const char *s;
	size_t		i;

	dst[0] = '\0';
	if (!cJSON_IsString(item) || item->valuestring == NULL)
		return;
	s = item->valuestring;
	/* Codes are identifiers: keep [A-Za-z0-9_] only, so nothing else leaks. */
	for (i = 0; i + 1 < dstlen && (isalnum((unsigned char) s[i]) || s[i] == '_'); i++)
		dst[i] = s[i];
	dst[i] = '\0';
}

int
m365_parse_oauth_error(const char *body, size_t len, M365OAuthError *err)
{
	cJSON	   *root;
	const cJSON *item;
	int			rc = -1;

	memset(err, 0, sizeof(*err));
	if (body == NULL)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	if (root == NULL || !cJSON_IsObject(root))
		goto done;
	item = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (!cJSON_IsString(item))
		goto done;
	copy_code(err->error, sizeof(err->error), item);
	copy_code(err->suberror, sizeof(err->suberror),
			  cJSON_GetObjectItemCaseSensitive(root, "suberror"));
	item = cJSON_GetObjectItemCaseSensitive(root, "error_codes");
	if (cJSON_IsArray(item) && cJSON_IsNumber(cJSON_GetArrayItem(item, 0)))
		err->aadsts = number_in_range(cJSON_GetArrayItem(item, 0)->valuedouble, 0, 999999999, 0);
	else
	{
		/* Only the number after "AADSTS" is read from the description. */
		item = cJSON_GetObjectItemCaseSensitive(root, "error_description");
		if (cJSON_IsString(item) && item->valuestring &&
			strncmp(item->valuestring, "AADSTS", 6) == 0)
			err->aadsts = strtol(item->valuestring + 6, NULL, 10);
	}
	rc = 0;
done:
	cJSON_Delete(root);
	return rc;
}

M365OAuthOutcome
m365_oauth_classify(long http_status, const M365OAuthError *err)
{
	if (http_status >= 200 && http_status < 300)
		return M365_OAUTH_OK;
	if (err != NULL && err->error[0] != '\0')
	{
		/* Consent first: it arrives as invalid_grant with a suberror. */
		if (err->aadsts == 65001 || err->aadsts == 65004 ||
			strcmp(err->error, "consent_required") == 0 ||
			strcmp(err->suberror, "consent_required") == 0)
			return M365_OAUTH_CONSENT;
		if (strcmp(err->error, "temporarily_unavailable") == 0)
			return M365_OAUTH_RETRY;
		if (strcmp(err->error, "invalid_client") == 0 ||
			strcmp(err->error, "unauthorized_client") == 0 ||
			err->aadsts == 7000215 || err->aadsts == 7000222 ||
			err->aadsts == 700016 || err->aadsts == 50011)
			return M365_OAUTH_CLIENT;
		if (strcmp(err->error, "invalid_grant") == 0 ||
			strcmp(err->error, "interaction_required") == 0)
			return M365_OAUTH_REAUTH;
	}
	if (http_status == 429 || http_status >= 500)
		return M365_OAUTH_RETRY;
	return M365_OAUTH_BAD_REQUEST;
}

const char *
m365_oauth_outcome_name(M365OAuthOutcome o)
{
	switch (o)
	{
		case M365_OAUTH_OK:
			return "ok";
		case M365_OAUTH_REAUTH:
			return "reauth_required";
		case M365_OAUTH_CONSENT:
			return "consent_required";
		case M365_OAUTH_RETRY:
			return "temporarily_unavailable";
		case M365_OAUTH_CLIENT:
			return "invalid_client";
		case M365_OAUTH_BAD_REQUEST:
			return "invalid_request";
	}
	return "invalid_request";
}

static int
random_b64(char out[44])
{
	uint8_t		rnd[32];

	if (m365_random_bytes(rnd, sizeof(rnd)) != M365_CRYPTO_OK)
		return -1;
	if (m365_base64url_encode(rnd, sizeof(rnd), out) != M365_CRYPTO_OK)
		return -1;
	m365_secure_zero(rnd, sizeof(rnd));
	return 0;
}

int
m365_pkce_new_verifier(char out[M365_PKCE_VERIFIER_LEN + 1])
{
	return random_b64(out);
}

int
m365_new_state(char out[M365_STATE_LEN + 1])
{
	return random_b64(out);
}

int
m365_pkce_challenge(const char *verifier, char out[M365_PKCE_VERIFIER_LEN + 1])
{
	uint8_t		digest[32];

	if (m365_sha256((const uint8_t *) verifier, strlen(verifier), digest) != M365_CRYPTO_OK)
		return -1;
	if (m365_base64url_encode(digest, sizeof(digest), out) != M365_CRYPTO_OK)
		return -1;
	return 0;
}

int
m365_state_is_well_formed(const char *state)
{
	size_t		i;

	if (state == NULL)
		return 0;
	for (i = 0; state[i]; i++)
		if (!(isalnum((unsigned char) state[i]) || state[i] == '-' || state[i] == '_'))
			return 0;
	return i == M365_STATE_LEN;
}

int
m365_code_is_well_formed(const char *code)
{
	size_t		i;

	if (code == NULL)
		return 0;
	for (i = 0; code[i]; i++)
		if (code[i] <= ' ' || code[i] > '~' || i >= 4096)
			return 0;
	return i > 0;
}

int
m365_is_guid(const char *s)
{
	int			i;

	if (s == NULL || strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return 0;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return 0;
	}
	return 1;
}

int
m365_tenant_is_valid(const char *s)
{
	size_t		i,
				len;
	int			dot = 0;

	if (s == NULL)
		return 0;
	if (m365_is_guid(s))
		return 1;
	len = strlen(s);
	if (len < 3 || len > 253 || strcasecmp(s, "common") == 0 ||
		strcasecmp(s, "organizations") == 0 || strcasecmp(s, "consumers") == 0)
		return 0;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '.')
		{
			if (i == 0 || i == len - 1 || s[i - 1] == '.')
				return 0;
			dot = 1;
		}
		else if (!(isalnum(c) || c == '-'))
			return 0;
	}
	return dot;
}
