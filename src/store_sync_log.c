/*
 * store_sync_log.c — SPI for m365sync.sync_run_log, one row per account
 * round (see store_sync_log.h): opened when a round starts, closed with its
 * counts, pruned after a while. Counts and error codes only, never content.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "spi_util.h"
#include "store_sync_log.h"

int64
m365_store_sync_log_start(int64 account_id)
{
	int64		run_id;

	m365_store_sync_log_start_many(&account_id, 1, &run_id);
	return run_id;
}

/*
 * The rounds of many accounts start (one statement each for all of them, a
 * batch of the worker): run_ids[i] is account_ids[i]'s. The caller holds
 * each account's round lock.
 */
void
m365_store_sync_log_start_many(const int64 *account_ids, int n, int64 *run_ids)
{
	M365SpiArgs a = {0};
	uint64		rows;

	if (n == 0)
		return;
	m365_spi_arg_int8_array(&a, account_ids, n);
	SPI_connect();
	/* We hold the accounts' round locks: a round still "running" was cut off by a crash or shutdown. */
	m365_spi_run("UPDATE m365sync.sync_run_log SET status = 'interrupted',"
				 " finished_at = pg_catalog.clock_timestamp()"
				 " WHERE account_id = ANY ($1) AND status = 'running'",
				 &a, SPI_OK_UPDATE, "closing an interrupted round");
	/* ordinality: the ids come back in the order given */
	rows = m365_spi_run("WITH i AS (INSERT INTO m365sync.sync_run_log (account_id)"
						" SELECT u.id FROM unnest($1) WITH ORDINALITY AS u(id, k) ORDER BY u.k"
						" RETURNING account_id, run_id)"
						" SELECT i.run_id FROM i JOIN unnest($1) WITH ORDINALITY AS u(id, k) ON u.id = i.account_id"
						" ORDER BY u.k",
						&a, SPI_OK_SELECT, "logging rounds");
	if (rows != (uint64) n)
		elog(ERROR, "m365sync: logging %d rounds gave %llu rows", n, (unsigned long long) rows);
	for (int i = 0; i < n; i++)
		run_ids[i] = m365_spi_row_int8(i, 1);
	SPI_finish();
}

/* Close many rounds in one statement (ids of the accounts and of their rounds, their counts). */
void
m365_store_sync_log_finish_many(const int64 *account_ids, const int64 *run_ids,
								M365RoundStats *const *st, int n)
{
	M365SpiArgs a = {0};
	Datum	   *cols[7];
	bool	   *errnull = palloc(sizeof(bool) * Max(n, 1));
	Datum	   *status = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *error = palloc(sizeof(Datum) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (n == 0)
		return;
	for (int c = 0; c < 7; c++)
		cols[c] = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		cols[0][i] = Int32GetDatum(st[i]->pages);
		cols[1][i] = Int32GetDatum(st[i]->fetched);
		cols[2][i] = Int32GetDatum(st[i]->applied);
		cols[3][i] = Int32GetDatum(st[i]->deleted);
		cols[4][i] = Int32GetDatum(st[i]->http_requests);
		cols[5][i] = Int32GetDatum(st[i]->pushed);
		status[i] = CStringGetTextDatum(st[i]->ok ? "ok" : "error");
		errnull[i] = st[i]->ok;
		error[i] = st[i]->ok ? (Datum) 0 : CStringGetTextDatum(st[i]->error);
	}
	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_arg_int8_array(&a, run_ids, n);
	for (int c = 0; c < 6; c++)
		m365_spi_arg(&a, INT4ARRAYOID,
					 PointerGetDatum(construct_array(cols[c], n, INT4OID, sizeof(int32), true, TYPALIGN_INT)), false);
	m365_spi_arg(&a, TEXTARRAYOID,
				 PointerGetDatum(construct_array(status, n, TEXTOID, -1, false, TYPALIGN_INT)), false);
	m365_spi_arg(&a, TEXTARRAYOID,
				 PointerGetDatum(construct_md_array(error, errnull, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT)),
				 false);
	m365_spi_exec("UPDATE m365sync.sync_run_log l SET finished_at = pg_catalog.clock_timestamp(),"
				  " pages = u.pages, fetched = u.fetched, applied = u.applied, deleted = u.deleted,"
				  " http_requests = u.requests, pushed = u.pushed, status = u.status, error_code = u.error"
				  " FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
				  "  AS u(account_id, run_id, pages, fetched, applied, deleted, requests, pushed, status, error)"
				  " WHERE l.account_id = u.account_id AND l.run_id = u.run_id",
				  &a, SPI_OK_UPDATE, "logging rounds");
}

void
m365_store_sync_log_finish(int64 account_id, int64 run_id, const M365RoundStats *st)
{
	M365RoundStats *one = (M365RoundStats *) st;

	m365_store_sync_log_finish_many(&account_id, &run_id, &one, 1);
}

void
m365_store_sync_log_prune(int days)
{
	M365SpiArgs a = {0};

	m365_spi_arg(&a, INT4OID, Int32GetDatum(days), false);
	m365_spi_exec("DELETE FROM m365sync.sync_run_log"
				  " WHERE started_at < pg_catalog.now() - pg_catalog.make_interval(days => $1)",
				  &a, SPI_OK_DELETE, "pruning sync_runs");
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_sync_log_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.sync_run_log WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}
