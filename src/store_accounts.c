/*
 * store_accounts.c — SPI for app_config, tenants, oauth_states and
 * accounts (see store_accounts.h): the installation, sign-in and the
 * account's life (identity, tokens, status, erasure). The accounts table's
 * schedule (which are due, when each syncs next, backoff, when the
 * calendar list is read) is store_accounts_schedule.c's.
 *
 * Every statement is parameterised; every encrypted column goes through
 * keyring.h with its table, column, owning account and row id, so a value
 * copied elsewhere does not decrypt. Encryption runs before SPI_connect and
 * results are copied into the caller's memory context before SPI_finish.
 * No message here carries a secret, a token or an address.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "identity.h"
#include "extension_guard.h"
#include "keyring.h"
#include "spi_util.h"
#include "store_accounts.h"
#include "store_placement.h"

static bytea *
hash_bytea(const uint8 hash[32])
{
	bytea	   *b = palloc(VARHDRSZ + 32);

	SET_VARSIZE(b, VARHDRSZ + 32);
	memcpy(VARDATA(b), hash, 32);
	return b;
}

/* --- app_config ----------------------------------------------------------- */

void
m365_store_app_config_get(M365AppConfig *cfg, bool with_secret)
{
	MemoryContext cxt = CurrentMemoryContext;
	bytea	   *secret = NULL;
	uint64		n;

	memset(cfg, 0, sizeof(*cfg));
	SPI_connect();
	n = m365_spi_run("SELECT client_id, client_secret, redirect_uri FROM m365sync.app_config WHERE id = 1",
			NULL, SPI_OK_SELECT, NULL);
	if (n == 1)
	{
		cfg->client_id = m365_spi_get_text(1, cxt);
		secret = with_secret ? m365_spi_get_bytea(2, cxt) : NULL;
		cfg->redirect_uri = m365_spi_get_text(3, cxt);
	}
	SPI_finish();
	if (n != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("m365sync is not configured"),
				 errhint("An administrator must run SELECT m365sync.configure(client_id, client_secret, redirect_uri) first.")));
	if (secret != NULL)
		cfg->client_secret = m365_decrypt_text("app_config", "client_secret",
											   M365_INSTALLATION_ACCOUNT, 1, secret);
}

void
m365_store_app_config_put(const char *client_id, const char *client_secret,
					 const char *redirect_uri)
{
	M365SpiArgs a = {0};

	m365_spi_arg_text(&a, client_id);
	m365_spi_arg_bytea(&a, m365_encrypt_text("app_config", "client_secret",
									M365_INSTALLATION_ACCOUNT, 1, client_secret));
	m365_spi_arg_text(&a, redirect_uri);
	/* now() in VALUES, not in DO UPDATE: Citus allows only immutable functions there */
	m365_spi_exec("INSERT INTO m365sync.app_config (id, client_id, client_secret, redirect_uri, updated_at) "
			   "VALUES (1, $1, $2, $3, pg_catalog.now()) "
			   "ON CONFLICT (id) DO UPDATE SET client_id = EXCLUDED.client_id, "
			   "client_secret = EXCLUDED.client_secret, redirect_uri = EXCLUDED.redirect_uri, "
			   "updated_at = EXCLUDED.updated_at",
			   &a, SPI_OK_INSERT, NULL);
}

/* --- oauth_states --------------------------------------------------------- */

int64
m365_store_oauth_states_insert(const uint8 hash[32], const char *kind, const char *flowagent_user,
				   const char *tenant, const char *code_verifier, int ttl_s)
{
	M365SpiArgs a = {0};
	int64		state_id;
	bytea	   *verifier = NULL;

	SPI_connect();
	m365_spi_run("SELECT pg_catalog.nextval('m365sync.oauth_states_state_id_seq')", NULL, SPI_OK_SELECT, NULL);
	state_id = m365_spi_get_int8(1);
	SPI_finish();

	if (code_verifier != NULL)
		verifier = m365_encrypt_text("oauth_states", "code_verifier",
									 M365_INSTALLATION_ACCOUNT, state_id, code_verifier);
	m365_spi_arg_int8(&a, state_id);
	m365_spi_arg_bytea(&a, hash_bytea(hash));
	m365_spi_arg_text(&a, kind);
	m365_spi_arg_text(&a, flowagent_user);
	m365_spi_arg_text(&a, tenant);
	m365_spi_arg_bytea(&a, verifier);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(ttl_s), false);
	m365_spi_exec("INSERT INTO m365sync.oauth_states "
			   "(state_id, state_hash, kind, flowagent_user, tenant, code_verifier, expires_at) "
			   "VALUES ($1, $2, $3, $4, $5, $6, "
			   "pg_catalog.now() + pg_catalog.make_interval(secs => $7))",
			   &a, SPI_OK_INSERT, NULL);
	return state_id;
}

bool
m365_store_oauth_states_find(const uint8 hash[32], const char *kind, bool for_update, M365OAuthState *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	M365SpiArgs a = {0};
	uint64		n;

	memset(out, 0, sizeof(*out));
	m365_spi_arg_bytea(&a, hash_bytea(hash));
	m365_spi_arg_text(&a, kind);
	SPI_connect();
	n = m365_spi_run(for_update ?
			"SELECT state_id, flowagent_user, tenant, expires_at <= pg_catalog.now(), "
			"used_at IS NOT NULL FROM m365sync.oauth_states "
			"WHERE state_hash = $1 AND kind = $2 FOR UPDATE" :
			"SELECT state_id, flowagent_user, tenant, expires_at <= pg_catalog.now(), "
			"used_at IS NOT NULL FROM m365sync.oauth_states "
			"WHERE state_hash = $1 AND kind = $2",
			&a, SPI_OK_SELECT, NULL);
	if (n == 1)
	{
		out->state_id = m365_spi_get_int8(1);
		out->flowagent_user = m365_spi_get_text(2, cxt);
		out->tenant = m365_spi_get_text(3, cxt);
		out->expired = m365_spi_get_bool(4);
		out->used = m365_spi_get_bool(5);
	}
	SPI_finish();
	return n == 1;
}

char *
m365_store_oauth_states_verifier(int64 state_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	M365SpiArgs a = {0};
	bytea	   *v = NULL;

	m365_spi_arg_int8(&a, state_id);
	SPI_connect();
	if (m365_spi_run("SELECT code_verifier FROM m365sync.oauth_states WHERE state_id = $1",
			&a, SPI_OK_SELECT, NULL) == 1)
		v = m365_spi_get_bytea(1, cxt);
	SPI_finish();
	if (v == NULL)
		return NULL;
	return m365_decrypt_text("oauth_states", "code_verifier",
							 M365_INSTALLATION_ACCOUNT, state_id, v);
}

void
m365_store_oauth_states_mark_used(int64 state_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, state_id);
	/* The verifier has done its job: drop it with the use. */
	m365_spi_exec("UPDATE m365sync.oauth_states SET used_at = pg_catalog.now(), code_verifier = NULL "
			   "WHERE state_id = $1 AND used_at IS NULL",
			   &a, SPI_OK_UPDATE, NULL);
}

void
m365_store_oauth_states_delete_expired(void)
{
	/* Kept a day past expiry so a late replay still reads "expired". */
	m365_spi_exec("DELETE FROM m365sync.oauth_states "
			   "WHERE expires_at < pg_catalog.now() - interval '1 day'",
			   NULL, SPI_OK_DELETE, NULL);
}

/* --- tenants -------------------------------------------------------------- */

int64
m365_store_tenants_ensure(const char *tenant)
{
	M365SpiArgs a = {0};
	int64		id;

	m365_spi_arg_text(&a, tenant);
	SPI_connect();
	m365_spi_run("INSERT INTO m365sync.tenants (tenant) VALUES ($1) ON CONFLICT (tenant) DO NOTHING",
		&a, SPI_OK_INSERT, NULL);
	m365_spi_run("SELECT tenant_id FROM m365sync.tenants WHERE tenant = $1", &a, SPI_OK_SELECT, NULL);
	id = m365_spi_get_int8(1);
	SPI_finish();
	return id;
}

bool
m365_store_tenants_get(const char *tenant, M365Tenant *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	M365SpiArgs a = {0};
	uint64		n;

	memset(out, 0, sizeof(*out));
	m365_spi_arg_text(&a, tenant);
	SPI_connect();
	n = m365_spi_run("SELECT tenant_id, tenant, consent_status FROM m365sync.tenants "
			"WHERE tenant = $1 OR tenant_guid = $1 ORDER BY tenant = $1 DESC LIMIT 1",
			&a, SPI_OK_SELECT, NULL);
	if (n == 1)
	{
		out->tenant_id = m365_spi_get_int8(1);
		out->tenant = m365_spi_get_text(2, cxt);
		out->consent_status = m365_spi_get_text(3, cxt);
	}
	SPI_finish();
	return n == 1;
}

char *
m365_store_tenants_name(int64 tenant_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	M365SpiArgs a = {0};
	char	   *name = NULL;

	m365_spi_arg_int8(&a, tenant_id);
	SPI_connect();
	if (m365_spi_run("SELECT tenant FROM m365sync.tenants WHERE tenant_id = $1", &a, SPI_OK_SELECT, NULL) == 1)
		name = m365_spi_get_text(1, cxt);
	SPI_finish();
	return name;
}

void
m365_store_tenants_set_consent(int64 tenant_id, const char *status, const char *tenant_guid,
						 const char *error)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, tenant_id);
	m365_spi_arg_text(&a, status);
	m365_spi_arg_text(&a, tenant_guid);
	m365_spi_arg_text(&a, error);
	/* now() as $5: Citus refuses non-immutable functions inside CASE in an UPDATE */
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()), false);
	m365_spi_exec("UPDATE m365sync.tenants SET consent_status = $2, "
			   "tenant_guid = COALESCE($3, tenant_guid), consent_error = $4, "
			   "consented_at = CASE WHEN $2 = 'granted' THEN $5 ELSE consented_at END, "
			   "updated_at = pg_catalog.now() WHERE tenant_id = $1",
			   &a, SPI_OK_UPDATE, NULL);
}

void
m365_store_tenants_accounts_set_status(int64 tenant_id, const char *from_status, const char *to_status)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, tenant_id);
	m365_spi_arg_text(&a, from_status);
	m365_spi_arg_text(&a, to_status);
	m365_spi_exec("UPDATE m365sync.accounts SET status = $3, last_error = NULL, "
			   "next_sync_at = pg_catalog.now() "
			   "WHERE tenant_id = $1 AND mode = 'application' AND status = $2",
			   &a, SPI_OK_UPDATE, NULL);
}

/* --- accounts ------------------------------------------------------------- */

void
m365_store_accounts_lock_user(const char *flowagent_user)
{
	M365SpiArgs a = {0};

	m365_spi_arg_text(&a, flowagent_user);
	SPI_connect();
	m365_spi_run("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 365))",
		&a, SPI_OK_SELECT, NULL);
	SPI_finish();
}

#define ACCOUNT_COLUMNS \
	"SELECT account_id, flowagent_user, tenant_id, mode, ms_user_id, status, " \
	"token_expires_at > pg_catalog.now() + interval '5 minutes' AND access_token IS NOT NULL " \
	"FROM m365sync.accounts "

static bool
account_query(const char *sql, M365SpiArgs *a, M365Account *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	uint64		n;

	memset(out, 0, sizeof(*out));
	SPI_connect();
	n = m365_spi_run(sql, a, SPI_OK_SELECT, NULL);
	if (n >= 1)
	{
		out->account_id = m365_spi_get_int8(1);
		out->flowagent_user = m365_spi_get_text(2, cxt);
		out->tenant_id = m365_spi_get_int8(3);
		out->mode = m365_spi_get_text(4, cxt);
		out->ms_user_id = m365_spi_get_text(5, cxt);
		out->status = m365_spi_get_text(6, cxt);
		out->token_fresh = m365_spi_get_bool(7);
	}
	SPI_finish();
	return n >= 1;
}

bool
m365_store_accounts_lock(int64 account_id, M365Account *out)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	return account_query(ACCOUNT_COLUMNS "WHERE account_id = $1 FOR UPDATE", &a, out);
}

/*
 * The user's account; 0 when they have none. Caller connected to SPI.
 * First from user_accounts, by its primary key (on Citus a reference table,
 * read where we are: this node's copy, with a plan kept for it, as Citus
 * would plan the query afresh on each call); an account made outside
 * m365_store_accounts_create (rows written by hand) or under 0.1.0's schema
 * (which has no user_accounts; the update fills it) is still found in
 * accounts, where on Citus the search asks every shard. So is one whose map
 * row this transaction wrote through Citus to another connection.
 */
static int64
account_of_user(const char *flowagent_user)
{
	static SPIPlanPtr by_map,
				by_accounts;
	static const char *map_on_shard = "SELECT u.account_id FROM %1$s u WHERE u.flowagent_user = $1";
	M365SpiArgs a = {0};
	bool		mapped = false;

	m365_spi_arg_text(&a, flowagent_user);
	if (m365_schema_is_0_2())
	{
		if (m365_store_placement_distributed() &&
			m365_store_placement_run_on_shard("m365sync.user_accounts", 0, map_on_shard, &a, 1, false))
			mapped = SPI_processed == 1;
		else
			mapped = m365_spi_run_saved(&by_map, "SELECT u.account_id FROM m365sync.user_accounts u"
										" WHERE u.flowagent_user = $1",
										&a, SPI_OK_SELECT, 1, "finding the user's account") == 1;
	}
	if (mapped ||
		m365_spi_run_saved(&by_accounts, "SELECT a.account_id FROM m365sync.accounts a"
						   " WHERE a.flowagent_user = $1 ORDER BY a.account_id LIMIT 1",
						   &a, SPI_OK_SELECT, 1, "finding the user's account") == 1)
		return m365_spi_get_int8(1);
	return 0;
}

bool
m365_store_accounts_of_user_lock(const char *flowagent_user, M365Account *out)
{
	M365SpiArgs a = {0};

	int64		account_id;

	/*
	 * Found, then locked by its id: Citus locks rows only in a query that
	 * names one shard (the distribution column, account_id). The user's
	 * accounts are made under m365_store_accounts_lock_user.
	 */
	memset(out, 0, sizeof(*out));
	SPI_connect();
	account_id = account_of_user(flowagent_user);
	SPI_finish();
	if (account_id == 0)
		return false;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, flowagent_user);
	return account_query(ACCOUNT_COLUMNS "WHERE account_id = $1 AND flowagent_user = $2 FOR UPDATE", &a, out);
}

int64
m365_store_accounts_create(const char *flowagent_user, const char *mode, int64 tenant_id)
{
	M365SpiArgs a = {0};
	int64		id;

	m365_spi_arg_text(&a, flowagent_user);
	m365_spi_arg_text(&a, mode);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(tenant_id), tenant_id == 0);
	SPI_connect();
	m365_spi_run("INSERT INTO m365sync.accounts (flowagent_user, mode, tenant_id, status) "
		"VALUES ($1, $2, $3, 'connecting') RETURNING account_id",
		&a, SPI_OK_INSERT_RETURNING, NULL);
	id = m365_spi_get_int8(1);
	if (m365_schema_is_0_2())
	{
		memset(&a, 0, sizeof(a));
		m365_spi_arg_text(&a, flowagent_user);
		m365_spi_arg_int8(&a, id);
		m365_spi_run("INSERT INTO m365sync.user_accounts (flowagent_user, account_id) VALUES ($1, $2)",
					 &a, SPI_OK_INSERT, "recording the user's account");
		/* the account's route (events() on Citus); it goes with the account (the key) */
		m365_spi_run("INSERT INTO m365sync.account_routes (account_id) VALUES ($2)",
					 &a, SPI_OK_INSERT, "recording the account's route");
	}
	SPI_finish();
	return id;
}

/* The transaction's lock on one Microsoft 365 user id (after the user's lock, never before). */
static void
lock_ms_user(const char *ms_user_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_text(&a, ms_user_id);
	m365_spi_exec("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('ms_user_id:' || $1, 365))",
				  &a, SPI_OK_SELECT, NULL);
}

bool
m365_store_accounts_ms_user_taken(const char *ms_user_id, const char *flowagent_user)
{
	M365SpiArgs a = {0};
	bool		taken;

	lock_ms_user(ms_user_id);
	m365_spi_arg_text(&a, ms_user_id);
	m365_spi_arg_text(&a, flowagent_user);
	SPI_connect();
	m365_spi_run("SELECT EXISTS (SELECT 1 FROM m365sync.accounts"
				 " WHERE ms_user_id = $1 AND flowagent_user <> $2)",
				 &a, SPI_OK_SELECT, "looking for the mailbox's other accounts");
	taken = m365_spi_row_bool(0, 1);
	SPI_finish();
	return taken;
}

void
m365_store_accounts_set_identity(int64 account_id, const char *ms_user_id, const char *mailbox)
{
	M365SpiArgs a = {0};

	if (ms_user_id)
		lock_ms_user(ms_user_id);
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, ms_user_id);
	m365_spi_arg_bytea(&a, mailbox ? m365_encrypt_text("accounts", "mailbox", account_id, account_id, mailbox)
			  : NULL);
	m365_spi_exec("UPDATE m365sync.accounts SET ms_user_id = $2, mailbox = $3 WHERE account_id = $1",
			   &a, SPI_OK_UPDATE, NULL);
}

void
m365_store_accounts_save_tokens(int64 account_id, const char *access_token,
						  const char *refresh_token, long expires_in)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_bytea(&a, m365_encrypt_text("accounts", "access_token", account_id, account_id,
									access_token));
	m365_spi_arg_bytea(&a, refresh_token ?
			  m365_encrypt_text("accounts", "refresh_token", account_id, account_id, refresh_token) :
			  NULL);
	m365_spi_arg(&a, INT8OID, Int64GetDatum((int64) expires_in), false);
	/* A rotated refresh token replaces the old one; none issued keeps it. */
	m365_spi_exec("UPDATE m365sync.accounts SET access_token = $2, "
			   "refresh_token = COALESCE($3, refresh_token), "
			   "token_expires_at = pg_catalog.now() + pg_catalog.make_interval(secs => $4) "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE, NULL);
}

static char *
account_secret(int64 account_id, const char *column)
{
	MemoryContext cxt = CurrentMemoryContext;
	M365SpiArgs a = {0};
	bytea	   *v = NULL;
	char	   *sql = psprintf("SELECT %s FROM m365sync.accounts WHERE account_id = $1", column);

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	if (m365_spi_run(sql, &a, SPI_OK_SELECT, NULL) == 1)
		v = m365_spi_get_bytea(1, cxt);
	SPI_finish();
	if (v == NULL)
		return NULL;
	return m365_decrypt_text("accounts", column, account_id, account_id, v);
}

char *
m365_store_accounts_fresh_access_token(int64 account_id)
{
	static SPIPlanPtr plan;
	MemoryContext cxt = CurrentMemoryContext;
	M365SpiArgs a = {0};
	bytea	   *v = NULL;

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	if (m365_spi_run_saved(&plan, "SELECT access_token FROM m365sync.accounts WHERE account_id = $1"
						   " AND token_expires_at > pg_catalog.now() + interval '5 minutes'"
						   " AND access_token IS NOT NULL"
						   " AND status NOT IN ('reauth_required', 'consent_required', 'disabled')",
						   &a, SPI_OK_SELECT, 0, "reading an access token") == 1)
		v = m365_spi_get_bytea(1, cxt);
	SPI_finish();
	if (v == NULL)
		return NULL;
	return m365_decrypt_text("accounts", "access_token", account_id, account_id, v);
}

char *
m365_store_accounts_access_token(int64 account_id)
{
	return account_secret(account_id, "access_token");
}

char *
m365_store_accounts_refresh_token(int64 account_id)
{
	return account_secret(account_id, "refresh_token");
}

void
m365_store_accounts_connected(int64 account_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_exec("UPDATE m365sync.accounts SET status = 'connected', last_error = NULL, "
			   "failures = 0, backoff_until = NULL, next_sync_at = pg_catalog.now() "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE, NULL);
}

void
m365_store_accounts_set_status(int64 account_id, const char *status, const char *last_error)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, status);
	m365_spi_arg_text(&a, last_error);
	/* Accounts that need a person stop polling until that person acts. */
	m365_spi_exec("UPDATE m365sync.accounts SET status = $2, last_error = $3, "
			   "next_sync_at = CASE WHEN $2 IN ('reauth_required', 'consent_required', 'disabled') "
			   "THEN NULL ELSE next_sync_at END "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE, NULL);
}

/* The account of the acting FlowAgent user (the caller is connected to SPI). */
int64
m365_store_accounts_of_acting_user(void)
{
	return account_of_user(m365_acting_user());
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_accounts_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.accounts WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
	if (m365_schema_is_0_2())
		m365_spi_exec("DELETE FROM m365sync.user_accounts WHERE account_id = ANY ($1)",
					  &a, SPI_OK_DELETE, "erasing rows of the user");
}

/* The user's accounts, locked for the purge; *ids in the caller's context. */
int
m365_store_accounts_ids_of_user_lock(const char *flowagent_user, int64 **ids)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	int			n;

	int			locked = 0;

	m365_spi_arg_text(&a, flowagent_user);
	SPI_connect();
	n = (int) m365_spi_run("SELECT account_id FROM m365sync.accounts "
						   "WHERE flowagent_user = $1 ORDER BY account_id",
						   &a, SPI_OK_SELECT, "reading the user's accounts");
	*ids = MemoryContextAlloc(caller, sizeof(int64) * (n + 1));
	for (int i = 0; i < n; i++)
		(*ids)[i] = m365_spi_row_int8(i, 1);
	/* then each locked by its id: Citus locks rows only in a single-shard query */
	for (int i = 0; i < n; i++)
	{
		M365SpiArgs b = {0};

		m365_spi_arg_int8(&b, (*ids)[i]);
		m365_spi_arg_text(&b, flowagent_user);
		if (m365_spi_run("SELECT account_id FROM m365sync.accounts"
						 " WHERE account_id = $1 AND flowagent_user = $2 FOR UPDATE",
						 &b, SPI_OK_SELECT, "locking the user's accounts") == 1)
			(*ids)[locked++] = (*ids)[i];
	}
	SPI_finish();
	return locked;
}

void
m365_store_oauth_states_delete_user(const char *flowagent_user)
{
	M365SpiArgs a = {0};

	m365_spi_arg_text(&a, flowagent_user);
	m365_spi_exec("DELETE FROM m365sync.oauth_states WHERE flowagent_user = $1",
				  &a, SPI_OK_DELETE, "erasing the user's sign-in states");
}

/* The account's subscription state (subscriptions.c): a failure, or clear it. */
void
m365_store_accounts_subscription_error(int64 account_id, const char *code, int delay_s)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, code);
	/*
	 * now() + delay_s computed here: Citus refuses non-immutable functions
	 * (now(), timestamptz + interval) inside CASE in an UPDATE
	 */
	m365_spi_arg(&a, TIMESTAMPTZOID,
				 TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(),
																 (int64) delay_s * 1000)), false);
	m365_spi_exec("UPDATE m365sync.accounts SET subscription_error = $2,"
		 " subscription_retry_at = CASE WHEN $2 IS NULL THEN NULL ELSE $3 END"
		 " WHERE account_id = $1",
		 &a, SPI_OK_UPDATE, "recording a subscription failure");
}
