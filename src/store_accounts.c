/*
 * store_accounts.c — SPI for app_config, tenants, oauth_states, accounts
 * and calendars (see store_accounts.h).
 *
 * Every statement is parameterised; every encrypted column goes through
 * keyring.h with its table, column, owning account and row id, so a value
 * copied elsewhere does not decrypt. Encryption runs before SPI_connect and
 * results are copied into the caller's memory context before SPI_finish.
 * No message here carries a secret, a token or an address.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "keyring.h"
#include "store_accounts.h"

#define MAX_ARGS 8

typedef struct Args
{
	int			n;
	Oid			types[MAX_ARGS];
	Datum		values[MAX_ARGS];
	char		nulls[MAX_ARGS];
} Args;

static void
arg(Args *a, Oid type, Datum v, bool isnull)
{
	Assert(a->n < MAX_ARGS);
	a->types[a->n] = type;
	a->values[a->n] = v;
	a->nulls[a->n] = isnull ? 'n' : ' ';
	a->n++;
}

static void
arg_text(Args *a, const char *s)
{
	arg(a, TEXTOID, s ? PointerGetDatum(cstring_to_text(s)) : (Datum) 0, s == NULL);
}

static void
arg_int8(Args *a, int64 v)
{
	arg(a, INT8OID, Int64GetDatum(v), false);
}

static void
arg_bytea(Args *a, bytea *b)
{
	arg(a, BYTEAOID, PointerGetDatum(b), b == NULL);
}

static bytea *
hash_bytea(const uint8 hash[32])
{
	bytea	   *b = palloc(VARHDRSZ + 32);

	SET_VARSIZE(b, VARHDRSZ + 32);
	memcpy(VARDATA(b), hash, 32);
	return b;
}

/* Run one statement inside its own SPI connection; returns SPI_processed. */
static uint64
run(const char *sql, Args *a, int expect)
{
	int			rc;

	rc = SPI_execute_with_args(sql, a ? a->n : 0, a ? a->types : NULL,
							   a ? a->values : NULL, a ? a->nulls : NULL, false, 0);
	if (rc != expect)
		elog(ERROR, "m365sync: unexpected SPI result %d for an internal statement", rc);
	return SPI_processed;
}

/* Column of the first result row, copied into cxt; NULL when null. */
static char *
get_text(int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
	MemoryContext old;
	char	   *s;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	s = TextDatumGetCString(d);
	MemoryContextSwitchTo(old);
	return s;
}

static bytea *
get_bytea(int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
	MemoryContext old;
	bytea	   *b;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	b = DatumGetByteaPCopy(d);
	MemoryContextSwitchTo(old);
	return b;
}

static int64
get_int8(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

static bool
get_bool(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? false : DatumGetBool(d);
}

/* Run a write with no result rows of interest. */
static uint64
exec_write(const char *sql, Args *a, int expect)
{
	uint64		n;

	SPI_connect();
	n = run(sql, a, expect);
	SPI_finish();
	return n;
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
	n = run("SELECT client_id, client_secret, redirect_uri FROM m365sync.app_config WHERE id = 1",
			NULL, SPI_OK_SELECT);
	if (n == 1)
	{
		cfg->client_id = get_text(1, cxt);
		secret = with_secret ? get_bytea(2, cxt) : NULL;
		cfg->redirect_uri = get_text(3, cxt);
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
	Args		a = {0};

	arg_text(&a, client_id);
	arg_bytea(&a, m365_encrypt_text("app_config", "client_secret",
									M365_INSTALLATION_ACCOUNT, 1, client_secret));
	arg_text(&a, redirect_uri);
	exec_write("INSERT INTO m365sync.app_config (id, client_id, client_secret, redirect_uri) "
			   "VALUES (1, $1, $2, $3) "
			   "ON CONFLICT (id) DO UPDATE SET client_id = EXCLUDED.client_id, "
			   "client_secret = EXCLUDED.client_secret, redirect_uri = EXCLUDED.redirect_uri, "
			   "updated_at = pg_catalog.now()",
			   &a, SPI_OK_INSERT);
}

/* --- oauth_states --------------------------------------------------------- */

int64
m365_store_state_insert(const uint8 hash[32], const char *kind, const char *flowagent_user,
				   const char *tenant, const char *code_verifier, int ttl_s)
{
	Args		a = {0};
	int64		state_id;
	bytea	   *verifier = NULL;

	SPI_connect();
	run("SELECT pg_catalog.nextval('m365sync.oauth_states_state_id_seq')", NULL, SPI_OK_SELECT);
	state_id = get_int8(1);
	SPI_finish();

	if (code_verifier != NULL)
		verifier = m365_encrypt_text("oauth_states", "code_verifier",
									 M365_INSTALLATION_ACCOUNT, state_id, code_verifier);
	arg_int8(&a, state_id);
	arg_bytea(&a, hash_bytea(hash));
	arg_text(&a, kind);
	arg_text(&a, flowagent_user);
	arg_text(&a, tenant);
	arg_bytea(&a, verifier);
	arg(&a, INT4OID, Int32GetDatum(ttl_s), false);
	exec_write("INSERT INTO m365sync.oauth_states "
			   "(state_id, state_hash, kind, flowagent_user, tenant, code_verifier, expires_at) "
			   "VALUES ($1, $2, $3, $4, $5, $6, "
			   "pg_catalog.now() + pg_catalog.make_interval(secs => $7))",
			   &a, SPI_OK_INSERT);
	return state_id;
}

bool
m365_store_state_find(const uint8 hash[32], const char *kind, bool for_update, M365OAuthState *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	Args		a = {0};
	uint64		n;

	memset(out, 0, sizeof(*out));
	arg_bytea(&a, hash_bytea(hash));
	arg_text(&a, kind);
	SPI_connect();
	n = run(for_update ?
			"SELECT state_id, flowagent_user, tenant, expires_at <= pg_catalog.now(), "
			"used_at IS NOT NULL FROM m365sync.oauth_states "
			"WHERE state_hash = $1 AND kind = $2 FOR UPDATE" :
			"SELECT state_id, flowagent_user, tenant, expires_at <= pg_catalog.now(), "
			"used_at IS NOT NULL FROM m365sync.oauth_states "
			"WHERE state_hash = $1 AND kind = $2",
			&a, SPI_OK_SELECT);
	if (n == 1)
	{
		out->state_id = get_int8(1);
		out->flowagent_user = get_text(2, cxt);
		out->tenant = get_text(3, cxt);
		out->expired = get_bool(4);
		out->used = get_bool(5);
	}
	SPI_finish();
	return n == 1;
}

char *
m365_store_state_verifier(int64 state_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	Args		a = {0};
	bytea	   *v = NULL;

	arg_int8(&a, state_id);
	SPI_connect();
	if (run("SELECT code_verifier FROM m365sync.oauth_states WHERE state_id = $1",
			&a, SPI_OK_SELECT) == 1)
		v = get_bytea(1, cxt);
	SPI_finish();
	if (v == NULL)
		return NULL;
	return m365_decrypt_text("oauth_states", "code_verifier",
							 M365_INSTALLATION_ACCOUNT, state_id, v);
}

void
m365_store_state_mark_used(int64 state_id)
{
	Args		a = {0};

	arg_int8(&a, state_id);
	/* The verifier has done its job: drop it with the use. */
	exec_write("UPDATE m365sync.oauth_states SET used_at = pg_catalog.now(), code_verifier = NULL "
			   "WHERE state_id = $1 AND used_at IS NULL",
			   &a, SPI_OK_UPDATE);
}

void
m365_store_states_delete_expired(void)
{
	/* Kept a day past expiry so a late replay still reads "expired". */
	exec_write("DELETE FROM m365sync.oauth_states "
			   "WHERE expires_at < pg_catalog.now() - interval '1 day'",
			   NULL, SPI_OK_DELETE);
}

/* --- tenants -------------------------------------------------------------- */

int64
m365_store_tenant_ensure(const char *tenant)
{
	Args		a = {0};
	int64		id;

	arg_text(&a, tenant);
	SPI_connect();
	run("INSERT INTO m365sync.tenants (tenant) VALUES ($1) ON CONFLICT (tenant) DO NOTHING",
		&a, SPI_OK_INSERT);
	run("SELECT tenant_id FROM m365sync.tenants WHERE tenant = $1", &a, SPI_OK_SELECT);
	id = get_int8(1);
	SPI_finish();
	return id;
}

bool
m365_store_tenant_get(const char *tenant, M365Tenant *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	Args		a = {0};
	uint64		n;

	memset(out, 0, sizeof(*out));
	arg_text(&a, tenant);
	SPI_connect();
	n = run("SELECT tenant_id, tenant, consent_status FROM m365sync.tenants "
			"WHERE tenant = $1 OR tenant_guid = $1 ORDER BY tenant = $1 DESC LIMIT 1",
			&a, SPI_OK_SELECT);
	if (n == 1)
	{
		out->tenant_id = get_int8(1);
		out->tenant = get_text(2, cxt);
		out->consent_status = get_text(3, cxt);
	}
	SPI_finish();
	return n == 1;
}

char *
m365_store_tenant_name(int64 tenant_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	Args		a = {0};
	char	   *name = NULL;

	arg_int8(&a, tenant_id);
	SPI_connect();
	if (run("SELECT tenant FROM m365sync.tenants WHERE tenant_id = $1", &a, SPI_OK_SELECT) == 1)
		name = get_text(1, cxt);
	SPI_finish();
	return name;
}

void
m365_store_tenant_set_consent(int64 tenant_id, const char *status, const char *tenant_guid,
						 const char *error)
{
	Args		a = {0};

	arg_int8(&a, tenant_id);
	arg_text(&a, status);
	arg_text(&a, tenant_guid);
	arg_text(&a, error);
	exec_write("UPDATE m365sync.tenants SET consent_status = $2, "
			   "tenant_guid = COALESCE($3, tenant_guid), consent_error = $4, "
			   "consented_at = CASE WHEN $2 = 'granted' THEN pg_catalog.now() ELSE consented_at END, "
			   "updated_at = pg_catalog.now() WHERE tenant_id = $1",
			   &a, SPI_OK_UPDATE);
}

void
m365_store_tenant_accounts_set_status(int64 tenant_id, const char *from_status, const char *to_status)
{
	Args		a = {0};

	arg_int8(&a, tenant_id);
	arg_text(&a, from_status);
	arg_text(&a, to_status);
	exec_write("UPDATE m365sync.accounts SET status = $3, last_error = NULL, "
			   "next_sync_at = pg_catalog.now() "
			   "WHERE tenant_id = $1 AND mode = 'application' AND status = $2",
			   &a, SPI_OK_UPDATE);
}

/* --- accounts ------------------------------------------------------------- */

void
m365_store_lock_user(const char *flowagent_user)
{
	Args		a = {0};

	arg_text(&a, flowagent_user);
	SPI_connect();
	run("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 365))",
		&a, SPI_OK_SELECT);
	SPI_finish();
}

#define ACCOUNT_COLUMNS \
	"SELECT account_id, flowagent_user, tenant_id, mode, ms_user_id, status, " \
	"token_expires_at > pg_catalog.now() + interval '5 minutes' AND access_token IS NOT NULL " \
	"FROM m365sync.accounts "

static bool
account_query(const char *sql, Args *a, M365Account *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	uint64		n;

	memset(out, 0, sizeof(*out));
	SPI_connect();
	n = run(sql, a, SPI_OK_SELECT);
	if (n >= 1)
	{
		out->account_id = get_int8(1);
		out->flowagent_user = get_text(2, cxt);
		out->tenant_id = get_int8(3);
		out->mode = get_text(4, cxt);
		out->ms_user_id = get_text(5, cxt);
		out->status = get_text(6, cxt);
		out->token_fresh = get_bool(7);
	}
	SPI_finish();
	return n >= 1;
}

bool
m365_store_account_lock(int64 account_id, M365Account *out)
{
	Args		a = {0};

	arg_int8(&a, account_id);
	return account_query(ACCOUNT_COLUMNS "WHERE account_id = $1 FOR UPDATE", &a, out);
}

bool
m365_store_account_of_user_lock(const char *flowagent_user, M365Account *out)
{
	Args		a = {0};

	arg_text(&a, flowagent_user);
	return account_query(ACCOUNT_COLUMNS "WHERE flowagent_user = $1 "
						 "ORDER BY account_id LIMIT 1 FOR UPDATE", &a, out);
}

int64
m365_store_account_create(const char *flowagent_user, const char *mode, int64 tenant_id)
{
	Args		a = {0};
	int64		id;

	arg_text(&a, flowagent_user);
	arg_text(&a, mode);
	arg(&a, INT8OID, Int64GetDatum(tenant_id), tenant_id == 0);
	SPI_connect();
	run("INSERT INTO m365sync.accounts (flowagent_user, mode, tenant_id, status) "
		"VALUES ($1, $2, $3, 'connecting') RETURNING account_id",
		&a, SPI_OK_INSERT_RETURNING);
	id = get_int8(1);
	SPI_finish();
	return id;
}

void
m365_store_account_set_identity(int64 account_id, const char *ms_user_id, const char *mailbox)
{
	Args		a = {0};

	arg_int8(&a, account_id);
	arg_text(&a, ms_user_id);
	arg_bytea(&a, mailbox ? m365_encrypt_text("accounts", "mailbox", account_id, account_id, mailbox)
			  : NULL);
	exec_write("UPDATE m365sync.accounts SET ms_user_id = $2, mailbox = $3 WHERE account_id = $1",
			   &a, SPI_OK_UPDATE);
}

void
m365_store_account_save_tokens(int64 account_id, const char *access_token,
						  const char *refresh_token, long expires_in)
{
	Args		a = {0};

	arg_int8(&a, account_id);
	arg_bytea(&a, m365_encrypt_text("accounts", "access_token", account_id, account_id,
									access_token));
	arg_bytea(&a, refresh_token ?
			  m365_encrypt_text("accounts", "refresh_token", account_id, account_id, refresh_token) :
			  NULL);
	arg(&a, INT8OID, Int64GetDatum((int64) expires_in), false);
	/* A rotated refresh token replaces the old one; none issued keeps it. */
	exec_write("UPDATE m365sync.accounts SET access_token = $2, "
			   "refresh_token = COALESCE($3, refresh_token), "
			   "token_expires_at = pg_catalog.now() + pg_catalog.make_interval(secs => $4) "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE);
}

static char *
account_secret(int64 account_id, const char *column)
{
	MemoryContext cxt = CurrentMemoryContext;
	Args		a = {0};
	bytea	   *v = NULL;
	char	   *sql = psprintf("SELECT %s FROM m365sync.accounts WHERE account_id = $1", column);

	arg_int8(&a, account_id);
	SPI_connect();
	if (run(sql, &a, SPI_OK_SELECT) == 1)
		v = get_bytea(1, cxt);
	SPI_finish();
	if (v == NULL)
		return NULL;
	return m365_decrypt_text("accounts", column, account_id, account_id, v);
}

char *
m365_store_account_access_token(int64 account_id)
{
	return account_secret(account_id, "access_token");
}

char *
m365_store_account_refresh_token(int64 account_id)
{
	return account_secret(account_id, "refresh_token");
}

void
m365_store_account_connected(int64 account_id)
{
	Args		a = {0};

	arg_int8(&a, account_id);
	exec_write("UPDATE m365sync.accounts SET status = 'connected', last_error = NULL, "
			   "failures = 0, backoff_until = NULL, next_sync_at = pg_catalog.now() "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE);
}

void
m365_store_account_set_status(int64 account_id, const char *status, const char *last_error)
{
	Args		a = {0};

	arg_int8(&a, account_id);
	arg_text(&a, status);
	arg_text(&a, last_error);
	/* Accounts that need a person stop polling until that person acts. */
	exec_write("UPDATE m365sync.accounts SET status = $2, last_error = $3, "
			   "next_sync_at = CASE WHEN $2 IN ('reauth_required', 'consent_required', 'disabled') "
			   "THEN NULL ELSE next_sync_at END "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE);
}

void
m365_store_account_backoff(int64 account_id, const char *last_error, double delay_s)
{
	Args		a = {0};

	arg_int8(&a, account_id);
	arg_text(&a, last_error);
	arg(&a, FLOAT8OID, Float8GetDatum(delay_s), delay_s < 0);
	/* Without Retry-After: 30 s doubling per failure, at most an hour. */
	exec_write("UPDATE m365sync.accounts SET failures = failures + 1, last_error = $2, "
			   "backoff_until = pg_catalog.now() + pg_catalog.make_interval(secs => "
			   "COALESCE($3, LEAST(3600, 30 * pg_catalog.power(2, LEAST(failures, 10))))) "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE);
}

/* --- calendars ------------------------------------------------------------ */

int64
m365_store_calendar_upsert(int64 account_id, const M365GraphCalendar *c, bool enable)
{
	Args		a = {0};
	int64		calendar_id;
	bool		found;
	bytea	   *name;
	Args		w = {0};

	arg_int8(&a, account_id);
	arg_text(&a, c->id);
	SPI_connect();
	found = run("SELECT calendar_id FROM m365sync.calendars WHERE account_id = $1 AND graph_id = $2",
				&a, SPI_OK_SELECT) == 1;
	if (!found)
		run("SELECT pg_catalog.nextval('m365sync.calendars_calendar_id_seq')", NULL, SPI_OK_SELECT);
	calendar_id = get_int8(1);
	SPI_finish();

	name = c->name ? m365_encrypt_text("calendars", "name", account_id, calendar_id, c->name) : NULL;
	arg_int8(&w, account_id);
	arg_int8(&w, calendar_id);
	arg_text(&w, c->id);
	arg_bytea(&w, name);
	arg(&w, BOOLOID, BoolGetDatum(c->is_default), false);
	arg(&w, BOOLOID, BoolGetDatum(c->can_edit), false);
	arg(&w, BOOLOID, BoolGetDatum(enable), false);
	if (found)
		exec_write("UPDATE m365sync.calendars SET name = $4, is_default = $5, can_edit = $6 "
				   "WHERE account_id = $1 AND calendar_id = $2 AND graph_id = $3",
				   &w, SPI_OK_UPDATE);
	else
		exec_write("INSERT INTO m365sync.calendars "
				   "(account_id, calendar_id, graph_id, name, is_default, can_edit, sync_enabled) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7)",
				   &w, SPI_OK_INSERT);
	return calendar_id;
}

