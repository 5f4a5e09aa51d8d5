/*
 * sql_keys.c — the SQL face of the keyring: rewrap_keys(), purge_user() and
 * the internal encrypt/decrypt helpers that export_user() (SQL, in
 * src/sql/10_keys.sql), the tests and the benchmark use.
 *
 * Thin: unpack, check, call keyring.c, return. The internal helpers are
 * granted to nobody — only a superuser, or a function a superuser owns, can
 * call them; they must never be granted to m365sync_app, m365sync_definer
 * or PUBLIC, since they would turn the keyring into a decryption oracle.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "keyring.h"
#include "purge.h"

m365_purge_remote_hook_type m365_purge_remote_hook = NULL;

static char *
required_text_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	char	   *s;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	s = text_to_cstring(PG_GETARG_TEXT_PP(n));
	if (s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	return s;
}

PG_FUNCTION_INFO_V1(m365sync_rewrap_keys);

/* SQL: m365sync.rewrap_keys() → integer */
Datum
m365sync_rewrap_keys(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(m365_rewrap_data_keys());
}

/*
 * Deleting per table rather than relying on ON DELETE CASCADE keeps the
 * order visible and lets RLS check every row for a user function caller.
 */
static const char *const purge_statements[] = {
	"DELETE FROM m365sync.conflicts WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.outbox WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.events WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.calendars WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.subscriptions WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.account_wakeups WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.sync_run_log WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.accounts WHERE account_id = ANY ($1)",
};

int
m365_purge_user(const char *flowagent_user)
{
	Datum		user_arg[1];
	Oid			text_type[1] = {TEXTOID};
	Oid			array_type[1] = {INT8ARRAYOID};
	Datum	   *ids;
	Datum		ids_arg[1];
	int			n;
	int			i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	user_arg[0] = CStringGetTextDatum(flowagent_user);
	if (SPI_execute_with_args("SELECT account_id FROM m365sync.accounts "
							  "WHERE flowagent_user = $1 ORDER BY account_id FOR UPDATE",
							  1, text_type, user_arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read m365sync.accounts");
	n = (int) SPI_processed;
	ids = palloc(sizeof(Datum) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}

	/*
	 * Remote first (it needs the tokens), then the keys: from here on no copy
	 * of these accounts' values — a backup, WAL, a dead tuple — decrypts. A
	 * copy of the old data_keys row itself stays unwrappable until the master
	 * key that wrapped it is retired, which is why erasure policy pairs purges
	 * with master key rotation (new first line, rewrap_keys, drop the old line).
	 */
	for (i = 0; i < n; i++)
	{
		if (m365_purge_remote_hook != NULL)
			m365_purge_remote_hook(DatumGetInt64(ids[i]));
		m365_destroy_data_key(DatumGetInt64(ids[i]));
	}

	ids_arg[0] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	for (i = 0; i < (int) lengthof(purge_statements); i++)
		if (SPI_execute_with_args(purge_statements[i], 1, array_type, ids_arg,
								  NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not erase rows of the user");
	if (SPI_execute_with_args("DELETE FROM m365sync.oauth_states WHERE flowagent_user = $1",
							  1, text_type, user_arg, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not erase the user's sign-in states");
	SPI_finish();
	return n;
}

PG_FUNCTION_INFO_V1(m365sync_purge_user);

/* SQL: m365sync.purge_user(flowagent_user text) → void */
Datum
m365sync_purge_user(PG_FUNCTION_ARGS)
{
	m365_purge_user(required_text_arg(fcinfo, 0, "flowagent_user"));
	PG_RETURN_VOID();
}

/* ---- internal helpers (superuser only) ---- */

typedef struct ValueAddress
{
	char	   *table;
	char	   *column;
	int64		account_id;
	int64		row_id;
} ValueAddress;

static ValueAddress
value_address(FunctionCallInfo fcinfo)
{
	ValueAddress a;

	a.table = required_text_arg(fcinfo, 0, "table");
	a.column = required_text_arg(fcinfo, 1, "column");
	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("account_id and row_id must not be null")));
	a.account_id = PG_GETARG_INT64(2);
	a.row_id = PG_GETARG_INT64(3);
	if (strlen(a.table) >= NAMEDATALEN || strlen(a.column) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("table and column must be shorter than %d bytes", NAMEDATALEN)));
	return a;
}

PG_FUNCTION_INFO_V1(m365sync_encrypt_text);

/* SQL: m365sync._encrypt_text(table, column, account_id, row_id, value text) → bytea */
Datum
m365sync_encrypt_text(PG_FUNCTION_ARGS)
{
	ValueAddress a = value_address(fcinfo);
	text	   *value;

	if (PG_ARGISNULL(4))
		PG_RETURN_NULL();
	value = PG_GETARG_TEXT_PP(4);
	PG_RETURN_BYTEA_P(m365_encrypt(a.table, a.column, a.account_id, a.row_id,
								   VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value)));
}

PG_FUNCTION_INFO_V1(m365sync_encrypt_jsonb);

/* SQL: m365sync._encrypt_jsonb(table, column, account_id, row_id, value jsonb) → bytea */
Datum
m365sync_encrypt_jsonb(PG_FUNCTION_ARGS)
{
	ValueAddress a = value_address(fcinfo);
	Jsonb	   *value;

	if (PG_ARGISNULL(4))
		PG_RETURN_NULL();
	value = PG_GETARG_JSONB_P(4);
	PG_RETURN_BYTEA_P(m365_encrypt(a.table, a.column, a.account_id, a.row_id,
								   VARDATA(value), VARSIZE(value) - VARHDRSZ));
}

PG_FUNCTION_INFO_V1(m365sync_decrypt_text);

/* SQL: m365sync._decrypt_text(table, column, account_id, row_id, value bytea) → text */
Datum
m365sync_decrypt_text(PG_FUNCTION_ARGS)
{
	ValueAddress a = value_address(fcinfo);
	size_t		len;
	char	   *plain;

	if (PG_ARGISNULL(4))
		PG_RETURN_NULL();
	plain = m365_decrypt(a.table, a.column, a.account_id, a.row_id,
						 PG_GETARG_BYTEA_PP(4), &len);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(plain, len));
}

PG_FUNCTION_INFO_V1(m365sync_decrypt_jsonb);

/*
 * SQL: m365sync._decrypt_jsonb(table, column, account_id, row_id, value bytea) → jsonb.
 * The plaintext is a jsonb payload (keyring.h): give it a header again, no
 * parsing. It was authenticated, so it is what an encrypt call was given.
 */
Datum
m365sync_decrypt_jsonb(PG_FUNCTION_ARGS)
{
	ValueAddress a = value_address(fcinfo);
	size_t		len;
	char	   *plain;
	Jsonb	   *result;

	if (PG_ARGISNULL(4))
		PG_RETURN_NULL();
	plain = m365_decrypt(a.table, a.column, a.account_id, a.row_id,
						 PG_GETARG_BYTEA_PP(4), &len);
	if (len < sizeof(uint32))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("decrypted %s.%s is not a jsonb value", a.table, a.column)));
	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), plain, len);
	pfree(plain);
	PG_RETURN_JSONB_P(result);
}
