/*
 * store_accounts_schedule.c — the accounts table's schedule columns: which
 * accounts are due (next_sync_at, backoff_until, a change notification's
 * mark, the calendar list's calendars_listed_at), and when each syncs next
 * after a round or a failure (see store_accounts.h, "the schedule").
 *
 * store_accounts.c owns the rest of m365sync.accounts' SQL (identity,
 * tokens, status, the account's life); here only the scheduler's reads and
 * the writes that move an account in time. Every statement parameterised;
 * no secret column is read or written here.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "extension_guard.h"
#include "spi_util.h"
#include "store_accounts.h"
#include "store_placement.h"
#include "store_subscriptions.h"

/*
 * Accounts to sync: one (account_id > 0, if it can be synced at all) or
 * every due one.
 */
List *
m365_store_accounts_of_result(MemoryContext cxt)
{
	List	   *out = NIL;
	uint64		i;

	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext spi = MemoryContextSwitchTo(cxt);
		M365DueAccount *a = palloc(sizeof(M365DueAccount));

		a->account_id = m365_spi_row_int8(i, 1);
		a->ms_user_id = m365_spi_row_text(i, 2, cxt);
		/* a third column, where the query has one: the calendar list is due */
		a->calendars_due = SPI_tuptable->tupdesc->natts >= 3 && m365_spi_row_bool(i, 3);
		out = lappend(out, a);
		MemoryContextSwitchTo(spi);
	}
	return out;
}

/*
 * The worker's share as a predicate on accounts a, with its arguments
 * ($3, $4): the one place that says which accounts a worker takes. Any
 * further filter on a worker's accounts is ANDed next to it.
 */
#define WORKER_SHARE_PREDICATE \
	" AND ($3 <= 1 OR pg_catalog.mod(a.account_id, $3::bigint) = $4)"

static void
worker_share_args(M365SpiArgs *a, const M365WorkerShare *share)
{
	m365_spi_arg(a, INT4OID, Int32GetDatum(share ? share->count : 0), false);
	m365_spi_arg(a, INT4OID, Int32GetDatum(share ? share->index : 0), false);
}

/*
 * An account that can be synced at all (the accounts_due index's predicate,
 * 01_tables.sql: keep the two the same, or the index is not used).
 */
#define SYNCABLE(alias) \
	" " alias ".status IN ('connected', 'error', 'mailbox_disabled', 'access_denied')" \
	" AND " alias ".ms_user_id IS NOT NULL"

/* not in a backoff after a failure */
#define NOT_BACKING_OFF(alias) \
	"coalesce(" alias ".backoff_until, '-infinity') <= pg_catalog.now()"

/* when an account is due by its schedule: the accounts_due index's expression */
#define DUE_AT(alias) \
	"GREATEST(coalesce(" alias ".next_sync_at, '-infinity'), coalesce(" alias ".backoff_until, '-infinity'))"

List *
m365_store_accounts_due(int64 account_id, int limit, const M365WorkerShare *share)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out;
	/* ownership: a worker on a Citus node takes only the accounts whose shards it holds */
	const char *owned = share != NULL ? m365_store_placement_owned_filter("a.account_id") : "";
	/* the calendar list is read at least daily (0.1.0's table has no calendars_listed_at) */
	const char *calendars_due = m365_schema_is_0_2() ?
		"coalesce(a.calendars_listed_at, '-infinity') <= pg_catalog.now()"
		" - interval '" CppAsString2(M365_CALENDAR_LIST_INTERVAL_S) " seconds'" : "false";
	char	   *sql;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(limit), false);
	worker_share_args(&a, share);
	if (account_id > 0)
		sql = psprintf("SELECT a.account_id, a.ms_user_id, %s FROM m365sync.accounts a"
					   " WHERE a.account_id = $1 AND" SYNCABLE("a") "%s"
					   WORKER_SHARE_PREDICATE " LIMIT $2", calendars_due, owned);
	else if (m365_store_placement_distributed())

		/*
		 * On Citus the same in one pass over the node's shards, which Citus
		 * pushes down (it cannot push down the union below: the joins of
		 * its ways are not all on the distribution column's position).
		 */
		sql = psprintf("SELECT a.account_id, a.ms_user_id, %s FROM m365sync.accounts a"
					   " WHERE" SYNCABLE("a") " AND " NOT_BACKING_OFF("a") "%s"
					   "   AND (coalesce(a.next_sync_at, '-infinity') <= pg_catalog.now()"
					   "    OR " M365_WAKEUP_MARK_DUE
					   "    OR EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = a.account_id"
					   "     AND o.state = 'pending'"
					   "     AND coalesce(o.next_attempt_at, '-infinity') <= pg_catalog.now()))"
					   WORKER_SHARE_PREDICATE
					   " ORDER BY " M365_WAKEUP_MARK_DUE " DESC,"
					   "          a.next_sync_at NULLS FIRST LIMIT $2", calendars_due, owned);
	else
	{
		/*
		 * due: by the schedule, because a change notification marked it and
		 * the mark is due (those first; store_subscriptions.c), or because a
		 * local change waits to be pushed; never during a backoff. Each way
		 * starts from an index of what is due (accounts_due, the marks,
		 * outbox_pending) and reads only those accounts, by key, so the cost
		 * grows with the due accounts, not with all of them (whatever the
		 * planner's estimate of how many are due).
		 */
		const char *cols = psprintf("a.account_id, a.ms_user_id, a.next_sync_at, %s AS calendars_due",
									calendars_due);

		sql = psprintf("SELECT a.account_id, a.ms_user_id, a.calendars_due FROM ("
					   "   SELECT %s FROM m365sync.accounts a"
					   "    WHERE" SYNCABLE("a") " AND " DUE_AT("a") " <= pg_catalog.now()"
					   "   UNION"
					   "   SELECT %s FROM m365sync.account_wakeups w"
					   "     JOIN m365sync.accounts a ON a.account_id = w.account_id"
					   "    WHERE " M365_WAKEUP_GAP_PASSED("w.account_id") " AND" SYNCABLE("a") " AND " NOT_BACKING_OFF("a")
					   "   UNION"
					   "   SELECT %s FROM m365sync.accounts a"
					   "    WHERE a.account_id IN (SELECT o.account_id FROM m365sync.outbox o"
					   "      WHERE o.state = 'pending' AND coalesce(o.next_attempt_at, '-infinity') <= pg_catalog.now())"
					   "      AND" SYNCABLE("a") " AND " NOT_BACKING_OFF("a") ") a"
					   " WHERE true%s" WORKER_SHARE_PREDICATE
					   " ORDER BY " M365_WAKEUP_MARK_DUE " DESC,"
					   "          a.next_sync_at NULLS FIRST LIMIT $2", cols, cols, cols, owned);
	}
	SPI_connect();
	m365_spi_run(sql, &a, SPI_OK_SELECT, "finding due accounts");
	out = m365_store_accounts_of_result(caller);
	SPI_finish();
	return out;
}

void
m365_store_accounts_schedule(int64 account_id, const M365RoundStats *st, int interval_s)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	if (st->ok)
	{
		m365_spi_arg(&a, INT4OID, Int32GetDatum(interval_s), false);
		m365_spi_exec("UPDATE m365sync.accounts SET last_sync_at = pg_catalog.now(),"
					  " next_sync_at = pg_catalog.now() + pg_catalog.make_interval(secs => $2),"
					  " failures = 0, backoff_until = NULL, last_error = NULL,"
					  " status = CASE WHEN status IN ('error', 'mailbox_disabled', 'access_denied')"
					  "   THEN 'connected' ELSE status END"
					  " WHERE account_id = $1",
					  &a, SPI_OK_UPDATE, "scheduling an account");
		return;
	}
	m365_spi_arg_text(&a, st->error);
	m365_spi_arg(&a, FLOAT8OID, Float8GetDatum(st->retry_after_s), !st->has_retry_after);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(interval_s), false);
	/* the jitter drawn here: Citus refuses volatile functions (random()) in an UPDATE */
	m365_spi_arg(&a, FLOAT8OID, Float8GetDatum(0.75 + 0.5 * pg_prng_double(&pg_global_prng_state)), false);
	/* 0.1.0's status check knows no account states until ALTER EXTENSION UPDATE: back off only */
	m365_spi_arg_text(&a, st->account_state[0] && m365_schema_is_0_2() ? st->account_state : NULL);
	m365_spi_arg(&a, BOOLOID, BoolGetDatum(st->account_state[0] != '\0'), false);
	/*
	 * Retry-After when given, else 30 s doubling per failure up to the
	 * interval, with jitter. A state of the account (a mailbox without
	 * licence, an access policy: graph_util.h) shows in status and is
	 * retried after a while: 5 minutes doubling up to an hour (an access
	 * policy may take an hour to apply), whatever the sync interval.
	 */
	m365_spi_exec("UPDATE m365sync.accounts SET failures = failures + 1, last_error = $2,"
				  " status = coalesce($6, status),"
				  " backoff_until = pg_catalog.now() + pg_catalog.make_interval(secs =>"
				  "   coalesce($3, CASE WHEN NOT $7"
				  "                THEN least($4, 30 * pg_catalog.power(2, least(failures, 12)))"
				  "                ELSE least(3600, 300 * pg_catalog.power(2, least(failures, 4))) END"
				  "             * $5)),"
				  " next_sync_at = pg_catalog.now()"
				  " WHERE account_id = $1",
				  &a, SPI_OK_UPDATE, "backing off an account");
}

void
m365_store_accounts_schedule_ok_many(const int64 *account_ids, int n, int interval_s)
{
	M365SpiArgs a = {0};
	/* now() computed here: no function in a multi-shard UPDATE on Citus */
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	if (n == 0)
		return;
	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(now), false);
	m365_spi_arg(&a, TIMESTAMPTZOID,
				 TimestampTzGetDatum(TimestampTzPlusMilliseconds(now, (int64) interval_s * 1000)), false);
	m365_spi_exec("UPDATE m365sync.accounts SET last_sync_at = $2, next_sync_at = $3,"
				  " failures = 0, backoff_until = NULL, last_error = NULL,"
				  " status = CASE WHEN status IN ('error', 'mailbox_disabled', 'access_denied')"
				  "   THEN 'connected' ELSE status END"
				  " WHERE account_id = ANY ($1)",
				  &a, SPI_OK_UPDATE, "scheduling accounts");
}

void
m365_store_accounts_backoff(int64 account_id, const char *last_error, double delay_s)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, last_error);
	m365_spi_arg(&a, FLOAT8OID, Float8GetDatum(delay_s), delay_s < 0);
	/* Without Retry-After: 30 s doubling per failure, at most an hour. */
	m365_spi_exec("UPDATE m365sync.accounts SET failures = failures + 1, last_error = $2, "
			   "backoff_until = pg_catalog.now() + pg_catalog.make_interval(secs => "
			   "COALESCE($3, LEAST(3600, 30 * pg_catalog.power(2, LEAST(failures, 10))))) "
			   "WHERE account_id = $1",
			   &a, SPI_OK_UPDATE, NULL);
}

static void
set_calendars_listed(int64 account_id, bool now)
{
	M365SpiArgs a = {0};

	if (!m365_schema_is_0_2())
		return;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_exec(now ? "UPDATE m365sync.accounts SET calendars_listed_at = pg_catalog.now() WHERE account_id = $1"
				  : "UPDATE m365sync.accounts SET calendars_listed_at = NULL WHERE account_id = $1",
				  &a, SPI_OK_UPDATE, "recording when the calendars were listed");
}

void
m365_store_accounts_calendars_listed(int64 account_id)
{
	set_calendars_listed(account_id, true);
}

void
m365_store_accounts_calendars_stale(int64 account_id)
{
	set_calendars_listed(account_id, false);
}
