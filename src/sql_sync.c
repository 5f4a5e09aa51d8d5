/*
 * sql_sync.c — m365sync.sync(account_id), the SQL face of the scheduler
 * (SPEC §4 "Admin"), thin.
 *
 * Checks its argument, runs the rounds in the caller's transaction through
 * scheduler.c (the worker, by contrast, commits page by page) and returns
 * one row per account. Results carry counts and Graph error codes only.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "scheduler.h"

PG_FUNCTION_INFO_V1(m365sync_sync);

/*
 * SQL: m365sync.sync(account_id bigint default null) → setof sync_result.
 * Runs in the caller's transaction: the whole round commits or rolls back
 * with it (the worker, by contrast, commits page by page).
 */
Datum
m365sync_sync(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		account_id = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	M365SyncOutcome *rounds;
	int			n;
	int			i;

	if (!PG_ARGISNULL(0) && account_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("account_id must be positive")));

	InitMaterializedSRF(fcinfo, 0);
	rounds = m365_sync_in_caller_xact(account_id, &n);
	if (account_id > 0 && n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("account %lld does not exist or cannot be synced now", (long long) account_id),
				 errhint("See m365sync.account_status: accounts that need the user to reconnect are not synced.")));

	for (i = 0; i < n; i++)
	{
		M365SyncOutcome *j = &rounds[i];
		Datum		values[9];
		bool		nulls[9] = {0};
		bool		busy = strcmp(j->stats.error, "busy") == 0;

		values[0] = Int64GetDatum(j->account_id);
		values[1] = Int32GetDatum(j->stats.calendars);
		values[2] = Int32GetDatum(j->stats.fetched);
		values[3] = Int32GetDatum(j->stats.applied);
		values[4] = Int32GetDatum(j->stats.deleted);
		values[5] = Int32GetDatum(j->stats.pushed);
		values[6] = Int32GetDatum(j->stats.conflicts);
		values[7] = CStringGetTextDatum(busy ? "busy" : j->stats.ok ? "ok" : "error");
		values[8] = CStringGetTextDatum(j->stats.error);
		nulls[8] = j->stats.ok && !busy;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
