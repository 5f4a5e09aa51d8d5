/*
 * sql_connect.c — the SQL functions of the connect capability: configure,
 * admin consent, app-only mailboxes, user connect and disconnect.
 *
 * Thin: check the arguments, call oauth/graph/store, return. Every check
 * comes before the first write, and a failure of Microsoft raises an ERROR
 * so the caller's transaction leaves nothing half-written. The acting user
 * is m365_acting_user(); user functions run as m365sync_definer under RLS.
 * No message carries a state, code, token, secret or address.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/xact.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "calendars.h"
#include "crypto.h"
#include "graph.h"
#include "http_util.h"
#include "keyring.h"
#include "identity.h"
#include "settings.h"
#include "oauth.h"
#include "purge.h"
#include "store_accounts.h"
#include "store_audit.h"
#include "store_placement.h"
#include "wake.h"

#define MAX_SECRET_LEN	1024
#define MAX_URI_LEN		2048
#define MAX_MAILBOX_LEN 320
#define MAX_USER_LEN	255

/* --- argument checks ------------------------------------------------------ */

static char *
text_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static bool
redirect_uri_is_valid(const char *uri)
{
	const char *rest;

	if (strlen(uri) > MAX_URI_LEN || strpbrk(uri, " \t\r\n#") != NULL)
		return false;
	if (m365_url_is_https(uri))
		return true;
	/* Plain http only for a loopback host, as Microsoft allows. */
	if (pg_strncasecmp(uri, "http://", 7) != 0)
		return false;
	rest = uri + 7;
	if (pg_strncasecmp(rest, "localhost", 9) == 0)
		rest += 9;
	else if (strncmp(rest, "127.0.0.1", 9) == 0)
		rest += 9;
	else
		return false;
	return *rest == '\0' || *rest == ':' || *rest == '/';
}

static void
state_hash(const char *state, uint8 out[32])
{
	if (m365_sha256((const uint8 *) state, strlen(state), out) != M365_CRYPTO_OK)
		elog(ERROR, "could not hash the state");
}

static void
new_state(char state[M365_STATE_LEN + 1], uint8 hash[32])
{
	if (m365_new_state(state) != 0)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not generate random bytes")));
	state_hash(state, hash);
}

/*
 * Look up a state handed back from the browser, lock it and check it.
 * Malformed, unknown, expired or already used: 22023; another user's: 28000.
 */
static M365OAuthState
take_state(const char *state, const char *kind, const char *acting_user)
{
	M365OAuthState st;
	uint8		hash[32];

	if (!m365_state_is_well_formed(state))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state is malformed"),
				 errdetail("A state is the 43-character value m365sync put in the sign-in URL.")));
	state_hash(state, hash);
	if (!m365_store_oauth_states_find(hash, kind, false, &st))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state is unknown"),
				 errhint("Start again from a new sign-in URL.")));
	if (acting_user != NULL &&
		(st.flowagent_user == NULL || strcmp(st.flowagent_user, acting_user) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("state belongs to another FlowAgent user"),
				 errhint("The sign-in must be completed by the user who started it.")));
	/* Now lock it: two completions of one state cannot both pass. */
	if (!m365_store_oauth_states_find(hash, kind, true, &st))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state is unknown")));
	if (st.used)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state was already used"),
				 errhint("Start again from a new sign-in URL.")));
	if (st.expired)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state has expired"),
				 errdetail("A sign-in must be completed within %d minutes.", M365_STATE_TTL_S / 60),
				 errhint("Start again from a new sign-in URL.")));
	return st;
}

/* --- admin ---------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(m365sync_configure);

Datum
m365sync_configure(PG_FUNCTION_ARGS)
{
	char	   *client_id = text_arg(fcinfo, 0, "client_id");
	char	   *client_secret = text_arg(fcinfo, 1, "client_secret");
	char	   *redirect_uri = text_arg(fcinfo, 2, "redirect_uri");

	if (!m365_is_guid(client_id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("client_id must be a GUID"),
				 errdetail("The application (client) id of the app registration, e.g. 00000000-0000-0000-0000-000000000000.")));
	if (client_secret[0] == '\0' || strlen(client_secret) > MAX_SECRET_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("client_secret must be 1 to %d bytes", MAX_SECRET_LEN)));
	if (!redirect_uri_is_valid(redirect_uri))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("redirect_uri must be an https URL or http://localhost"),
				 errdetail("Microsoft accepts plain http only for a loopback redirect.")));
	m365_store_app_config_put(client_id, client_secret, redirect_uri);
	m365_secure_zero(client_secret, strlen(client_secret));
	m365_audit_record("configure", NULL, 0);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(m365sync_admin_consent_url);

Datum
m365sync_admin_consent_url(PG_FUNCTION_ARGS)
{
	char	   *tenant = text_arg(fcinfo, 0, "tenant");
	M365AppConfig cfg;
	char		state[M365_STATE_LEN + 1];
	uint8		hash[32];

	if (!m365_tenant_is_valid(tenant))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant must be a tenant id (GUID) or a domain name"),
				 errdetail("Organisation consent is given in one tenant: \"common\", \"organizations\" and \"consumers\" are not tenants.")));
	m365_store_app_config_get(&cfg, false);
	(void) m365_store_tenants_ensure(tenant);
	m365_store_oauth_states_delete_expired();
	new_state(state, hash);
	(void) m365_store_oauth_states_insert(hash, "admin_consent", NULL, tenant, NULL, M365_STATE_TTL_S);
	PG_RETURN_TEXT_P(cstring_to_text(m365_oauth_admin_consent_url(&cfg, tenant, state)));
}

PG_FUNCTION_INFO_V1(m365sync_admin_consent_complete);

/* admin_consent_complete(state, tenant, admin_consent, error default null) */
Datum
m365sync_admin_consent_complete(PG_FUNCTION_ARGS)
{
	char	   *state = text_arg(fcinfo, 0, "state");
	char	   *tenant_guid = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		granted = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	char	   *error = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	M365OAuthState st;
	M365Tenant t;
	const char *status;
	char		code[64];
	size_t		i;

	if (tenant_guid != NULL && tenant_guid[0] != '\0' && !m365_tenant_is_valid(tenant_guid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant must be a tenant id (GUID) or a domain name")));
	/* Keep only an identifier-shaped code of Microsoft's error. */
	code[0] = '\0';
	if (error != NULL)
	{
		for (i = 0; i + 1 < sizeof(code) && (isalnum((unsigned char) error[i]) || error[i] == '_'); i++)
			code[i] = error[i];
		code[i] = '\0';
	}
	st = take_state(state, "admin_consent", NULL);
	if (!m365_store_tenants_get(st.tenant, &t))
		t.tenant_id = m365_store_tenants_ensure(st.tenant);

	if (granted && error == NULL)
		status = "granted";
	else if (strcmp(code, "permission_denied") == 0 || strcmp(code, "access_denied") == 0)
		status = "permission_denied";
	else
		status = "consent_required";
	m365_store_tenants_set_consent(t.tenant_id, status,
							 (tenant_guid && m365_is_guid(tenant_guid)) ? tenant_guid : NULL,
							 status[0] == 'g' ? NULL : (code[0] ? code : "consent_not_granted"));
	m365_store_oauth_states_mark_used(st.state_id);
	if (strcmp(status, "granted") == 0)
	{
		/* App-only accounts waiting for consent may sync again. */
		m365_store_tenants_accounts_set_status(t.tenant_id, "consent_required", "connected");
		m365_wake_worker_at_commit();
	}
	else
		ereport(NOTICE,
				(errmsg("organisation consent for tenant \"%s\" was not granted", st.tenant),
				 errdetail("Microsoft reported: %s.", code[0] ? code : "no consent")));
	m365_audit_record("consent", NULL, 0);
	PG_RETURN_VOID();
}

/* A token source that hands out one fixed token and cannot refresh. */
static char *
fixed_source_get(M365TokenSource *self, const char *rejected)
{
	return rejected ? NULL : pstrdup((const char *) self->arg);
}

PG_FUNCTION_INFO_V1(m365sync_add_mailbox);

/* add_mailbox(flowagent_user, tenant, mailbox) → account_id */
Datum
m365sync_add_mailbox(PG_FUNCTION_ARGS)
{
	char	   *user = text_arg(fcinfo, 0, "flowagent_user");
	char	   *tenant = text_arg(fcinfo, 1, "tenant");
	char	   *mailbox = text_arg(fcinfo, 2, "mailbox");
	M365AppConfig cfg;
	M365Tenant t;
	M365Tokens tok;
	M365TokenFailure fail;
	M365TokenSource ts;
	M365GraphUser gu;
	M365GraphResult gres;
	M365Account acc;
	int64		account_id;

	if (user[0] == '\0' || strlen(user) > MAX_USER_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("flowagent_user must be 1 to %d bytes", MAX_USER_LEN)));
	if (!m365_tenant_is_valid(tenant))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant must be a tenant id (GUID) or a domain name")));
	if (strlen(mailbox) > MAX_MAILBOX_LEN ||
		(!m365_is_guid(mailbox) &&
		 (strchr(mailbox, '@') == NULL || strpbrk(mailbox, " \t\r\n/?#") != NULL ||
		  mailbox[0] == '@' || mailbox[strlen(mailbox) - 1] == '@')))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mailbox must be an e-mail address or a Graph user id")));
	if (!m365_store_tenants_get(tenant, &t) || strcmp(t.consent_status, "granted") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tenant \"%s\" has not granted organisation consent", tenant),
				 errhint("A tenant administrator must open the URL from SELECT m365sync.admin_consent_url('%s') and approve.",
						 tenant)));

	m365_store_app_config_get(&cfg, true);
	if (!m365_oauth_client_credentials(&cfg, t.tenant, &tok, &fail))
	{
		if (fail.outcome == M365_OAUTH_CONSENT)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("tenant \"%s\" has not granted organisation consent", tenant),
					 errdetail("Microsoft answered %s.", m365_oauth_failure_code(&fail)),
					 errhint("A tenant administrator must open the URL from SELECT m365sync.admin_consent_url('%s') and approve.",
							 tenant)));
		m365_oauth_raise(&fail, "get an app-only token");
	}

	ts.get = fixed_source_get;
	ts.arg = tok.access_token;
	if (!m365_graph_get_user(&ts, mailbox, &gu, &gres))
	{
		bool		no_directory = gres.transport == M365_HTTP_OK && gres.status == 403 &&
			strcmp(gres.code, "Authorization_RequestDenied") == 0;

		/*
		 * GET /users/{id} needs User.Read.All (GRAPH.md §11); the calendars
		 * need only Calendars.ReadWrite. A Graph user id reaches the mailbox
		 * without the directory, so it does not need that permission.
		 */
		if (no_directory && m365_is_guid(mailbox))
		{
			memset(&gu, 0, sizeof(gu));
			gu.id = pstrdup(mailbox);
		}
		else if (no_directory)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("could not look up the mailbox: the app may not read the directory"),
					 errdetail("Microsoft Graph answered HTTP 403 Authorization_RequestDenied to the user lookup."),
					 errhint("Pass the mailbox's Graph user id (its object id, a GUID) instead of its address, "
							 "or grant the application permission User.Read.All with admin consent.")));
		else
			m365_graph_raise(&gres, "look up the mailbox");
	}

	m365_store_accounts_lock_user(user);
	/*
	 * One FlowAgent user per mailbox: an operator must not attach a mailbox
	 * another user connected (a shadow account whose events could then be
	 * read). Compared by Graph's user id, which every alias and address of
	 * the mailbox resolves to, rather than by the encrypted address.
	 */
	if (m365_store_accounts_ms_user_taken(gu.id, user))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("mailbox is already connected by another FlowAgent user"),
				 errhint("A mailbox syncs for one FlowAgent user. That user keeps it, or disconnects it, or it is erased with m365sync.purge_user(...) first.")));
	if (m365_store_accounts_of_user_lock(user, &acc))
	{
		if (strcmp(acc.mode, "application") != 0 || acc.tenant_id != t.tenant_id ||
			acc.ms_user_id == NULL || strcmp(acc.ms_user_id, gu.id) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("FlowAgent user already has another Microsoft 365 account"),
					 errhint("Remove it first with SELECT m365sync.purge_user(...).")));
		account_id = acc.account_id;
	}
	else
		account_id = m365_store_accounts_create(user, "application", t.tenant_id);

	m365_store_accounts_set_identity(account_id, gu.id, gu.upn ? gu.upn : mailbox);
	m365_store_accounts_save_tokens(account_id, tok.access_token, NULL, tok.expires_in);
	if (!m365_calendars_refresh(account_id, gu.id, true, &gres))
	{
		if (gres.transport == M365_HTTP_OK && m365_graph_account_state(gres.status, gres.code) != NULL)
			ereport(ERROR,
					(errcode(gres.status == 403 ? ERRCODE_INSUFFICIENT_PRIVILEGE : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("could not list the mailbox's calendars: Microsoft Graph answered HTTP %ld %s",
							gres.status, gres.code),
					 gres.status == 403 ?
					 errhint("The application needs the permission Calendars.ReadWrite with admin consent, and an "
							 "Exchange ApplicationAccessPolicy, if the tenant has one, must include this mailbox.") :
					 errhint("The mailbox has no Exchange Online licence or is inactive.")));
		m365_graph_raise(&gres, "list the mailbox's calendars");
	}
	m365_store_accounts_connected(account_id);
	m365_store_placement_wake_owner(account_id);
	m365_audit_record("add_mailbox", user, account_id);
	PG_RETURN_INT64(account_id);
}

/* --- user ----------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(m365sync_connect_url);

Datum
m365sync_connect_url(PG_FUNCTION_ARGS)
{
	const char *user = m365_acting_user_on_every_node();
	M365AppConfig cfg;
	char		state[M365_STATE_LEN + 1];
	char		verifier[M365_PKCE_VERIFIER_LEN + 1];
	char		challenge[M365_PKCE_VERIFIER_LEN + 1];
	uint8		hash[32];
	char	   *url;

	m365_store_app_config_get(&cfg, false);
	m365_store_oauth_states_delete_expired();
	new_state(state, hash);
	if (m365_pkce_new_verifier(verifier) != 0 || m365_pkce_challenge(verifier, challenge) != 0)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not generate random bytes")));
	(void) m365_store_oauth_states_insert(hash, "connect", user, NULL, verifier, M365_STATE_TTL_S);
	m365_secure_zero(verifier, sizeof(verifier));
	url = m365_oauth_authorize_url(&cfg, state, challenge);
	PG_RETURN_TEXT_P(cstring_to_text(url));
}

PG_FUNCTION_INFO_V1(m365sync_connect_complete);

/* connect_complete(state, code) → account_id */
Datum
m365sync_connect_complete(PG_FUNCTION_ARGS)
{
	const char *user = m365_acting_user_on_every_node();
	char	   *state = text_arg(fcinfo, 0, "state");
	char	   *code = text_arg(fcinfo, 1, "code");
	M365OAuthState st;
	M365AppConfig cfg;
	M365Tokens tok;
	M365TokenFailure fail;
	M365TokenSource ts;
	M365GraphUser me;
	M365GraphResult gres;
	M365Account acc;
	char	   *verifier;
	int64		account_id;
	bool		reused = false;

	if (!m365_code_is_well_formed(code))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("code is malformed"),
				 errdetail("The code is the value of the \"code\" parameter Microsoft adds to the redirect URI.")));
	st = take_state(state, "connect", user);
	verifier = m365_store_oauth_states_verifier(st.state_id);
	if (verifier == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state was already used")));

	m365_store_app_config_get(&cfg, true);
	if (!m365_oauth_redeem_code(&cfg, code, verifier, &tok, &fail))
		m365_oauth_raise(&fail, "redeem the authorization code");
	m365_secure_zero(verifier, strlen(verifier));
	m365_secure_zero(code, strlen(code));
	m365_secure_zero(cfg.client_secret, strlen(cfg.client_secret));

	ts.get = fixed_source_get;
	ts.arg = tok.access_token;
	if (!m365_graph_get_user(&ts, NULL, &me, &gres))
		m365_graph_raise(&gres, "read the signed-in user");

	/* One account per FlowAgent user: creation serialised per user. */
	m365_store_accounts_lock_user(user);
	if (m365_store_accounts_of_user_lock(user, &acc))
	{
		if (strcmp(acc.mode, "delegated") != 0 || acc.ms_user_id == NULL ||
			strcmp(acc.ms_user_id, me.id) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("FlowAgent user is already connected to another Microsoft 365 account"),
					 errhint("Run SELECT m365sync.disconnect() first.")));
		account_id = acc.account_id;
		reused = true;
	}
	else
		account_id = m365_store_accounts_create(user, "delegated", 0);

	m365_store_accounts_set_identity(account_id, me.id, me.upn ? me.upn : me.mail);
	m365_store_accounts_save_tokens(account_id, tok.access_token, tok.refresh_token, tok.expires_in);
	m365_store_accounts_connected(account_id);
	if (!m365_calendars_refresh(account_id, me.id, !reused, &gres))
		m365_graph_raise(&gres, "list the user's calendars");
	m365_store_oauth_states_mark_used(st.state_id);
	m365_store_placement_wake_owner(account_id);
	m365_audit_record("connect", user, account_id);
	PG_RETURN_INT64(account_id);
}

/*
 * Test and maintenance entry, not part of the SQL interface: re-read one
 * account's calendars with its stored token (refreshing it as needed) and
 * return the account's status afterwards. Lets the TAP tests drive the
 * token life cycle without a sync round; CREATE FUNCTION on it needs a
 * superuser.
 */
PG_FUNCTION_INFO_V1(m365sync_debug_refresh_calendars);

Datum
m365sync_debug_refresh_calendars(PG_FUNCTION_ARGS)
{
	int64		account_id = PG_GETARG_INT64(0);
	M365Account acc;
	M365GraphResult res;

	if (!m365_store_accounts_lock(account_id, &acc))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("account %lld does not exist", (long long) account_id)));
	if (!m365_calendars_refresh(account_id, acc.ms_user_id, false, &res) && !res.no_token)
		m365_graph_raise(&res, "list the account's calendars");
	m365_store_accounts_lock(account_id, &acc);
	PG_RETURN_TEXT_P(cstring_to_text(acc.status));
}

PG_FUNCTION_INFO_V1(m365sync_disconnect);

/*
 * disconnect(): the acting user's erasure, as purge_user does it: data keys
 * destroyed first (crypto-shredding), then the rows.
 */
Datum
m365sync_disconnect(PG_FUNCTION_ARGS)
{
	const char *user = m365_acting_user_on_every_node();

	m365_store_accounts_lock_user(user);
	(void) m365_purge_user(user);
	m365_audit_record("disconnect", user, 0);
	PG_RETURN_VOID();
}
