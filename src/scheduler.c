/*
 * scheduler.c — which accounts are due, and one sync round of an account
 * (pull, then push), shared by the worker (m365_worker_round) and by
 * m365sync.sync() (sql_sync.c).
 *
 * A round runs under a session advisory lock on the account, so a worker
 * round and a sync() call never run the same account at once (the loser
 * reports "busy"). Each round leaves one row in sync_run_log, updates the
 * account's schedule (next_sync_at, or a backoff that honours Retry-After
 * and grows exponentially with jitter otherwise) and, when something
 * changed, sends NOTIFY m365sync with the account id and a count only.
 * Accounts needing a person (reauth_required, consent_required) or
 * disabled are never picked.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "extension_guard.h"
#include "settings.h"
#include "pull.h"
#include "push.h"
#include "scheduler.h"
#include "subscriptions.h"
#include "xact_util.h"
#include "spi_util.h"

/* Advisory lock space of m365sync rounds: (this, account_id). */
#define ROUND_LOCK_CLASS 0x4D33

/* Accounts picked per worker wake-up, so a long queue does not starve reloads. */
#define ROUND_BATCH 64

typedef struct DueAccount
{
	int64		account_id;
	char	   *ms_user_id;
} DueAccount;

static bool
lock_round(int64 account_id)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, ROUND_LOCK_CLASS, (uint32) account_id, 2);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

static void
unlock_round(int64 account_id)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, ROUND_LOCK_CLASS, (uint32) account_id, 2);
	LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Accounts to sync: one (account_id > 0, if it can be synced at all) or
 * every due one.
 */
static List *
due_accounts(int64 account_id, int limit)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int32GetDatum(limit)};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		i;

	SPI_connect();
	/*
	 * due: by the schedule, because a change notification marked it (those
	 * first), or because a local change waits to be pushed
	 */
	m365_spi_check(SPI_execute_with_args("SELECT a.account_id, a.ms_user_id FROM m365sync.accounts a"
								" WHERE a.status IN ('connected', 'error') AND a.ms_user_id IS NOT NULL"
								"   AND CASE WHEN $1 > 0 THEN a.account_id = $1"
								"       ELSE coalesce(a.backoff_until, '-infinity') <= pg_catalog.now()"
								"        AND (coalesce(a.next_sync_at, '-infinity') <= pg_catalog.now()"
								"         OR EXISTS (SELECT 1 FROM m365sync.account_wakeups w WHERE w.account_id = a.account_id)"
								"         OR EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = a.account_id"
								"          AND o.state = 'pending'"
								"          AND coalesce(o.next_attempt_at, '-infinity') <= pg_catalog.now())) END"
								" ORDER BY EXISTS (SELECT 1 FROM m365sync.account_wakeups w WHERE w.account_id = a.account_id) DESC,"
								"          a.next_sync_at NULLS FIRST LIMIT $2",
								2, types, values, NULL, true, 0), SPI_OK_SELECT, "finding due accounts");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		DueAccount *a = palloc(sizeof(DueAccount));

		a->account_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		a->ms_user_id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		out = lappend(out, a);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

static int64
run_log_start(int64 account_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(account_id)};
	bool		isnull;
	int64		run_id;

	SPI_connect();
	/* We hold the account's round lock: a round still "running" was cut off by a crash or shutdown. */
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.sync_run_log SET status = 'interrupted',"
								" finished_at = pg_catalog.clock_timestamp()"
								" WHERE account_id = $1 AND status = 'running'",
								1, types, values, NULL, false, 0), SPI_OK_UPDATE, "closing an interrupted round");
	m365_spi_check(SPI_execute_with_args("INSERT INTO m365sync.sync_run_log (account_id) VALUES ($1) RETURNING run_id",
								1, types, values, NULL, false, 0), SPI_OK_INSERT_RETURNING, "logging a round");
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	/* This round pulls what any notification so far announced; later ones mark it again. */
	m365_spi_check(SPI_execute_with_args("DELETE FROM m365sync.account_wakeups WHERE account_id = $1",
								1, types, values, NULL, false, 0), SPI_OK_DELETE, "clearing a due mark");
	SPI_finish();
	return run_id;
}

/* Close the round's log row and set the account's schedule. */
static void
finish_round(int64 account_id, int64 run_id, const M365RoundStats *st)
{
	Oid			types[12] = {INT8OID, INT8OID, INT4OID, INT4OID, INT4OID, INT4OID, INT4OID,
	TEXTOID, TEXTOID, FLOAT8OID, INT4OID, INT4OID};
	Datum		values[12];
	char		nulls[13] = "            ";

	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(run_id);
	values[2] = Int32GetDatum(st->pages);
	values[3] = Int32GetDatum(st->fetched);
	values[4] = Int32GetDatum(st->applied);
	values[5] = Int32GetDatum(st->deleted);
	values[6] = Int32GetDatum(st->http_requests);
	values[7] = CStringGetTextDatum(st->ok ? "ok" : "error");
	values[8] = CStringGetTextDatum(st->error);
	nulls[8] = st->ok ? 'n' : ' ';
	values[9] = Float8GetDatum(st->retry_after_s);
	nulls[9] = st->has_retry_after ? ' ' : 'n';
	values[10] = Int32GetDatum(m365_sync_interval_s);
	values[11] = Int32GetDatum(st->pushed);

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.sync_run_log SET finished_at = pg_catalog.clock_timestamp(),"
								" pages = $3, fetched = $4, applied = $5, deleted = $6, http_requests = $7,"
								" status = $8, error_code = $9, pushed = $12 WHERE account_id = $1 AND run_id = $2",
								12, types, values, nulls, false, 0), SPI_OK_UPDATE, "logging a round");
	if (st->ok)
		m365_spi_check(SPI_execute_with_args("UPDATE m365sync.accounts SET last_sync_at = pg_catalog.now(),"
									" next_sync_at = pg_catalog.now() + pg_catalog.make_interval(secs => $11),"
									" failures = 0, backoff_until = NULL, last_error = NULL,"
									" status = CASE WHEN status = 'error' THEN 'connected' ELSE status END"
									" WHERE account_id = $1",
									11, types, values, nulls, false, 0), SPI_OK_UPDATE, "scheduling an account");
	else
		/* Retry-After when given, else 30 s doubling per failure up to the interval, with jitter. */
		m365_spi_check(SPI_execute_with_args("UPDATE m365sync.accounts SET failures = failures + 1, last_error = $9,"
									" backoff_until = pg_catalog.now() + pg_catalog.make_interval(secs =>"
									"   coalesce($10, least($11, 30 * pg_catalog.power(2, least(failures, 12)))"
									"             * (0.75 + 0.5 * pg_catalog.random()))),"
									" next_sync_at = pg_catalog.now()"
									" WHERE account_id = $1",
									11, types, values, nulls, false, 0), SPI_OK_UPDATE, "backing off an account");
	SPI_finish();

	if (st->applied + st->deleted > 0)
	{
		char		payload[96];

		snprintf(payload, sizeof(payload), "{\"account_id\":%lld,\"changed\":%d}",
				 (long long) account_id, st->applied + st->deleted);
		Async_Notify("m365sync", payload);
	}
}

/* One account's round within a batch. */
typedef struct RoundJob
{
	DueAccount *account;
	bool		locked;			/* false: another session runs it ("busy") */
	int64		run_id;
	M365RoundStats stats;
	M365PullJob pull;
} RoundJob;

static void
unlock_all(RoundJob *jobs, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (jobs[i].locked)
		{
			unlock_round(jobs[i].account->account_id);
			jobs[i].locked = false;
		}
}

/*
 * One account's push. In the worker an ERROR is reported, rolled back and
 * recorded as that account's failure, so it cannot take the others down;
 * in sync() it propagates to the caller.
 */
static void
push_isolated(RoundJob *j, bool commit_each_wave)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (!commit_each_wave)
	{
		(void) m365_push_account(j->account->account_id, j->account->ms_user_id, false, &j->stats);
		return;
	}
	PG_TRY();
	{
		(void) m365_push_account(j->account->account_id, j->account->ms_user_id, true, &j->stats);
	}
	PG_CATCH();
	{
		m365_report_and_continue(cxt);
		j->stats.ok = false;
		strlcpy(j->stats.error, "internalError", sizeof(j->stats.error));
	}
	PG_END_TRY();
}

/*
 * The rounds of a batch of accounts: lock and log each, pull them together
 * (waves of concurrent requests), then close each round. In the worker
 * (commit_each_page) the log rows commit first so they show while the
 * rounds run, and every page commits with its cursor.
 */
static RoundJob *
run_rounds(List *due, bool commit_each_page)
{
	volatile int n = list_length(due);
	RoundJob   *volatile jobs = palloc0(sizeof(RoundJob) * Max(n, 1));
	List	   *pulls = NIL;
	ListCell   *lc;
	int			i = 0;

	foreach(lc, due)
	{
		jobs[i].account = lfirst(lc);
		i++;
	}
	PG_TRY();
	{
		for (i = 0; i < n; i++)
		{
			RoundJob   *j = &jobs[i];

			if (!(j->locked = lock_round(j->account->account_id)))
			{
				strlcpy(j->stats.error, "busy", sizeof(j->stats.error));
				continue;
			}
			j->run_id = run_log_start(j->account->account_id);
			j->pull.account_id = j->account->account_id;
			j->pull.ms_user_id = j->account->ms_user_id;
			j->pull.stats = &j->stats;
			pulls = lappend(pulls, &j->pull);
		}
		if (commit_each_page)
			m365_commit_and_continue();

		m365_pull_run(pulls, commit_each_page, m365_max_connections);

		/* then the push, in the same locked round: remote changes met pending local ones first */
		for (i = 0; i < n; i++)
			if (jobs[i].locked && jobs[i].stats.ok)
				push_isolated(&jobs[i], commit_each_page);

		for (i = 0; i < n; i++)
			if (jobs[i].locked)
				finish_round(jobs[i].account->account_id, jobs[i].run_id, &jobs[i].stats);
	}
	PG_CATCH();
	{
		unlock_all(jobs, n);
		PG_RE_THROW();
	}
	PG_END_TRY();
	unlock_all(jobs, n);
	return jobs;
}

/*
 * Accounts per worker batch: many per connection, so the stream stays full
 * and only a batch's tail leaves connections idle.
 */
static int
batch_size(void)
{
	return Min(Max(16 * m365_max_connections, 32), 4096);
}

/*
 * sync_runs is history, not a log that grows for ever: rounds older than
 * RUN_HISTORY_DAYS go (an index probe on started_at each worker round).
 */
#define RUN_HISTORY_DAYS 14

static void
prune_run_history(void)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(RUN_HISTORY_DAYS)};

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("DELETE FROM m365sync.sync_run_log"
								" WHERE started_at < pg_catalog.now() - pg_catalog.make_interval(days => $1)",
								1, types, values, NULL, false, 0), SPI_OK_DELETE, "pruning sync_runs");
	SPI_finish();
}

/* The worker's round (see scheduler.h): sync what is due, one transaction per page. */
long
m365_worker_round(void)
{
	MemoryContext round_cxt = CurrentMemoryContext;	/* the worker's, reset each round */
	List	   *due;
	int			batch = batch_size();

	m365_worker_start_xact();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(round_cxt);
	prune_run_history();
	due = due_accounts(0, batch);
	if (due != NIL)
		(void) run_rounds(due, true);
	/* Subscriptions after the pulls: a notification's pull never waits for one. */
	(void) m365_subscriptions_maintain();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(round_cxt);

	/* A full batch: more may be waiting, go again at once. */
	if (list_length(due) >= batch)
		return 0;
	return list_length(due) > 0 ? 1000L : Min((long) m365_sync_interval_s * 1000L, 10000L);
}

/*
 * One round of the given account (account_id > 0) or of every due one, in
 * the caller's transaction: the whole round commits or rolls back with it.
 * Returns the rounds run (*n of them; none for an account that cannot be
 * synced now). For m365sync.sync() (sql_sync.c).
 */
M365SyncOutcome *
m365_sync_in_caller_xact(int64 account_id, int *n)
{
	List	   *due = due_accounts(account_id, account_id > 0 ? 1 : INT_MAX);
	RoundJob   *jobs = run_rounds(due, false);
	M365SyncOutcome *out = palloc0(sizeof(M365SyncOutcome) * Max(list_length(due), 1));
	int			i;

	for (i = 0; i < list_length(due); i++)
	{
		out[i].account_id = jobs[i].account->account_id;
		out[i].stats = jobs[i].stats;
	}
	*n = list_length(due);
	return out;
}
