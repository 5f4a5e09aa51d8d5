/*
 * sql_conflicts.c — m365sync.conflicts() and m365sync.resolve_conflict()
 * (SPEC §4 "User"), thin.
 *
 * Each unpacks its arguments, checks them before anything is written, and
 * leaves rows to store_conflicts.c and decryption to keyring.c. Runs in
 * the caller's transaction as m365sync_definer, so row level security
 * limits both to the acting FlowAgent user's account. Messages name ids,
 * never content; another user's event is reported like a missing one.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "keyring.h"
#include "spi_util.h"
#include "identity.h"
#include "settings.h"
#include "store_accounts.h"
#include "store_audit.h"
#include "store_conflicts.h"
#include "store_events.h"

PG_FUNCTION_INFO_V1(m365sync_conflicts);

/* conflicts() → table(event_id, detected_at, policy, kept, lost) */
Datum
m365sync_conflicts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		account_id;
	uint64		n;

	m365_acting_user();
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	account_id = m365_store_accounts_of_acting_user();
	n = account_id ? m365_store_conflicts_list(account_id) : 0;
	for (uint64 i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {0};
		int64		conflict_id = m365_spi_row_int8(i, 6);
		size_t		len;
		char	   *plain;
		Jsonb	   *lost;

		for (int k = 0; k < 4; k++)
			values[k] = m365_spi_row_datum(i, k + 1, &nulls[k]);
		plain = m365_decrypt("conflicts", "lost", account_id, conflict_id,
							 m365_spi_row_bytea(i, 5, CurrentMemoryContext), &len);
		lost = palloc(VARHDRSZ + len);
		SET_VARSIZE(lost, VARHDRSZ + len);
		memcpy(VARDATA(lost), plain, len);
		values[4] = JsonbPGetDatum(lost);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(m365sync_resolve_conflict);

/* resolve_conflict(event_id, keep) → void */
Datum
m365sync_resolve_conflict(PG_FUNCTION_ARGS)
{
	int64		event_id = PG_GETARG_INT64(0);
	char	   *keep = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		account_id;

	if (strcmp(keep, "local") != 0 && strcmp(keep, "remote") != 0 && strcmp(keep, "kept") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keep must be 'local', 'remote' or 'kept'")));
	m365_acting_user();
	SPI_connect();
	account_id = m365_store_accounts_of_acting_user();
	if (account_id == 0 || !m365_store_conflicts_resolve(account_id, event_id, keep))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("event %lld has no unresolved conflict", (long long) event_id),
				 errhint("See m365sync.conflicts().")));
	SPI_finish();
	m365_audit_record("resolve_conflict", m365_acting_user(), account_id);
	PG_RETURN_VOID();
}
