/*
 * sql_keys.c — the SQL face of the keyring: rewrap_keys(), purge_user()
 * (erasure itself is purge.c) and the internal encrypt/decrypt helpers that
 * export_user() (SQL, in src/sql/10_keys.sql), the tests and the benchmark
 * use.
 *
 * Thin: unpack, check, call keyring.c, return. The internal helpers are
 * granted to nobody — only a superuser, or a function a superuser owns, can
 * call them; they must never be granted to m365sync_app, m365sync_definer
 * or PUBLIC, since they would turn the keyring into a decryption oracle.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "keyring.h"
#include "purge.h"
#include "store_audit.h"
#include "store_events.h"

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
	int			n = m365_rewrap_data_keys();

	m365_audit_record("rewrap_keys", NULL, 0);
	PG_RETURN_INT32(n);
}

PG_FUNCTION_INFO_V1(m365sync_purge_user);

/* SQL: m365sync.purge_user(flowagent_user text) → void */
Datum
m365sync_purge_user(PG_FUNCTION_ARGS)
{
	char	   *user = required_text_arg(fcinfo, 0, "flowagent_user");

	m365_purge_user(user);
	m365_audit_record("purge", user, 0);
	PG_RETURN_VOID();
}

/* ---- internal helpers (superuser only) ---- */

PG_FUNCTION_INFO_V1(m365sync_ical_uid_hash);

/*
 * The upgrade from 0.1.0 hashes the iCalUIds 0.1.0 stored in clear
 * (m365sync--0.1.0--0.2.0.sql creates a function on this for the update
 * and drops it again). STRICT.
 */
Datum
m365sync_ical_uid_hash(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(m365_store_events_ical_uid_hash(PG_GETARG_INT64(0),
																	 text_to_cstring(PG_GETARG_TEXT_PP(1)))));
}

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
