/*
 * store_sync_log.c — SPI for m365sync.sync_run_log, one row per account
 * round (see store_sync_log.h): opened when a round starts, closed with its
 * counts, pruned after a while. Counts and error codes only, never content.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "store_placement.h"
#include "store_sync_log.h"

/*
 * Until ALTER EXTENSION m365sync UPDATE has run, this 0.2.0 library works on
 * a 0.1.0 table, which has no skipped column: the count is then not kept.
 */
static bool
has_skipped_column(void)
{
	Oid			nsp = get_namespace_oid("m365sync", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("sync_run_log", nsp) : InvalidOid;

	return OidIsValid(rel) && get_attnum(rel, "skipped") != InvalidAttrNumber;
}

void
m365_store_sync_log_start_many(const int64 *account_ids, int n, int64 *run_ids)
{
	static SPIPlanPtr insert_plan;
	M365SpiArgs a = {0};
	/* a timestamp as $2: Citus refuses volatile functions (clock_timestamp()) in an UPDATE */
	Datum		now = TimestampTzGetDatum(GetCurrentTimestamp());

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_arg(&a, TIMESTAMPTZOID, now, false);
	SPI_connect();
	/* We hold these accounts' round locks: a round still "running" was cut off by a crash or shutdown. */
	m365_spi_run("UPDATE m365sync.sync_run_log SET status = 'interrupted', finished_at = $2"
				 " WHERE account_id = ANY ($1) AND status = 'running'",
				 &a, SPI_OK_UPDATE, "closing an interrupted round");
	if (m365_store_placement_distributed())
	{
		/* on Citus one row at a time, each routed to its shard */
		for (int i = 0; i < n; i++)
		{
			M365SpiArgs r = {0};

			m365_spi_arg_int8(&r, account_ids[i]);
			m365_spi_arg(&r, TIMESTAMPTZOID, now, false);
			m365_spi_run_saved(&insert_plan,
							   "INSERT INTO m365sync.sync_run_log (account_id, started_at) VALUES ($1, $2)"
							   " RETURNING run_id",
							   &r, SPI_OK_INSERT_RETURNING, 0, "logging a round");
			run_ids[i] = m365_spi_get_int8(1);
		}
	}
	else
	{
		/* the wave's rows in one statement (a wave names each account once) */
		uint64		got = m365_spi_run("INSERT INTO m365sync.sync_run_log (account_id, started_at)"
									   " SELECT u.account_id, $2 FROM pg_catalog.unnest($1) AS u(account_id)"
									   " RETURNING account_id, run_id",
									   &a, SPI_OK_INSERT_RETURNING, "logging rounds");

		for (int i = 0; i < n; i++)
			run_ids[i] = 0;
		/* matched by account: rows come back in the array's order, but nothing promises it */
		for (uint64 r = 0; r < got; r++)
		{
			int64		account_id = m365_spi_row_int8(r, 1);
			int			i = r < (uint64) n && account_ids[r] == account_id && run_ids[r] == 0 ? (int) r : -1;

			for (int k = 0; i < 0 && k < n; k++)
				if (account_ids[k] == account_id && run_ids[k] == 0)
					i = k;
			if (i >= 0)
				run_ids[i] = m365_spi_row_int8(r, 2);
		}
		for (int i = 0; i < n; i++)
			if (run_ids[i] == 0)
				elog(ERROR, "m365sync: no round log row for account %lld", (long long) account_ids[i]);
	}
	SPI_finish();
}

void
m365_store_sync_log_finish(int64 account_id, int64 run_id, const M365RoundStats *st)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, run_id);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(st->pages), false);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(st->fetched), false);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(st->applied), false);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(st->deleted), false);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(st->http_requests), false);
	m365_spi_arg_text(&a, st->ok ? "ok" : "error");
	m365_spi_arg_text(&a, st->ok ? NULL : st->error);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(st->pushed), false);
	/* clock_timestamp() as $11: Citus refuses volatile functions in an UPDATE */
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(GetCurrentTimestamp()), false);
	if (!has_skipped_column())
	{
		m365_spi_exec("UPDATE m365sync.sync_run_log SET finished_at = $11,"
					  " pages = $3, fetched = $4, applied = $5, deleted = $6, http_requests = $7,"
					  " status = $8, error_code = $9, pushed = $10 WHERE account_id = $1 AND run_id = $2",
					  &a, SPI_OK_UPDATE, "logging a round");
		return;
	}
	m365_spi_arg(&a, INT4OID, Int32GetDatum(st->skipped), false);
	m365_spi_exec("UPDATE m365sync.sync_run_log SET finished_at = $11,"
				  " pages = $3, fetched = $4, applied = $5, deleted = $6, http_requests = $7,"
				  " status = $8, error_code = $9, pushed = $10, skipped = $12"
				  " WHERE account_id = $1 AND run_id = $2",
				  &a, SPI_OK_UPDATE, "logging a round");
}

void
m365_store_sync_log_finish_many(const int64 *account_ids, const int64 *run_ids,
								const M365RoundStats *const *st, int n)
{
	M365SpiArgs a = {0};
	Datum	   *d;
	bool	   *nulls;

	if (n == 0)
		return;
	if (!has_skipped_column())
	{
		for (int i = 0; i < n; i++)
			m365_store_sync_log_finish(account_ids[i], run_ids[i], st[i]);
		return;
	}
	d = palloc(sizeof(Datum) * n);
	nulls = palloc0(sizeof(bool) * n);
	/* a timestamp as $1: Citus refuses volatile functions (clock_timestamp()) in an UPDATE */
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(GetCurrentTimestamp()), false);
	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_arg_int8_array(&a, run_ids, n);
#define INT_COLUMN(field) \
	do { \
		for (int i = 0; i < n; i++) \
			d[i] = Int32GetDatum(st[i]->field); \
		m365_spi_arg_array(&a, INT4OID, d, NULL, n); \
	} while (0)
	INT_COLUMN(pages);
	INT_COLUMN(fetched);
	INT_COLUMN(applied);
	INT_COLUMN(deleted);
	INT_COLUMN(http_requests);
	INT_COLUMN(pushed);
	INT_COLUMN(skipped);
#undef INT_COLUMN
	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(st[i]->ok ? "ok" : "error");
	m365_spi_arg_array(&a, TEXTOID, d, NULL, n);
	for (int i = 0; i < n; i++)
	{
		nulls[i] = st[i]->ok;
		d[i] = st[i]->ok ? (Datum) 0 : CStringGetTextDatum(st[i]->error);
	}
	m365_spi_arg_array(&a, TEXTOID, d, nulls, n);
	/*
	 * One statement for a wave of rounds. The arrays are joined on the
	 * distribution column (account_id), so Citus runs it on each shard
	 * with no function but unnest (immutable). Planned each time, with the
	 * arrays' length and the table's size of now: a kept generic plan
	 * assumes ten rows, and one made while the history was small kept
	 * its sequential scan of sync_runs as the history grew (a tenth of the
	 * worker's CPU in a poll of 10,000 mailboxes).
	 */
	SPI_connect();
	m365_spi_run_once("UPDATE m365sync.sync_run_log l SET finished_at = $1,"
					  " pages = u.pages, fetched = u.fetched, applied = u.applied, deleted = u.deleted,"
					  " http_requests = u.http_requests, pushed = u.pushed, skipped = u.skipped,"
					  " status = u.status, error_code = u.error_code"
					  " FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
					  "   AS u(account_id, run_id, pages, fetched, applied, deleted, http_requests, pushed, skipped,"
					  "        status, error_code)"
					  " WHERE l.account_id = u.account_id AND l.run_id = u.run_id",
					  &a, SPI_OK_UPDATE, "logging rounds");
	SPI_finish();
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
