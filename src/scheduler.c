/*
 * scheduler.c — which accounts are due, and one sync round of an account
 * (pull, then push), shared by the worker (m365_worker_round) and by
 * m365sync.sync() (sql_sync.c).
 *
 * A round runs under a session advisory lock on the account, so a worker
 * round and a sync() call never run the same account at once (the loser
 * reports "busy"); on a Citus cluster that lock is taken on the node
 * holding the account's shard, from whichever node runs the round, and a
 * shard move waits for the round (lock_round). Each round leaves one row in sync_run_log
 * (store_sync_log.c), updates the account's schedule (store_accounts_schedule.c:
 * next_sync_at, or a backoff that honours Retry-After and grows
 * exponentially with jitter otherwise) and, when something changed, sends
 * NOTIFY m365sync with an empty payload (m365sync.changes_since() tells the
 * app whose). No SQL here.
 * Accounts needing a person (reauth_required, consent_required) or
 * disabled are never picked.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "calendars.h"
#include "extension_guard.h"
#include "settings.h"
#include "pull.h"
#include "push.h"
#include "scheduler.h"
#include "store_accounts.h"
#include "store_audit.h"
#include "store_outbox.h"
#include "store_placement.h"
#include "store_subscriptions.h"
#include "store_sync_log.h"
#include "subscriptions.h"
#include "wake.h"
#include "xact_util.h"

/* Advisory lock space of m365sync rounds: (this, account_id). */
#define ROUND_LOCK_CLASS 0x4D33

/* Accounts picked per worker wake-up, so a long queue does not starve reloads. */
#define ROUND_BATCH 64


/* How a round holds its account. */
typedef enum RoundLock
{
	ROUND_UNLOCKED,				/* another session runs it ("busy"), or it is no longer ours */
	ROUND_LOCKED_HERE,			/* the session advisory lock on this node */
	ROUND_LOCKED_ON_OWNER		/* the advisory lock on the owning node, till the caller's commit */
} RoundLock;

/* One account's round within a batch. */
typedef struct RoundJob
{
	M365DueAccount *account;
	RoundLock	lock;
	M365Shard	shard;			/* Citus: the accounts shard held for the round (shard_id 0: none) */
	bool		shard_session;	/* ... held for the session (the worker), else till commit */
	int64		run_id;
	M365RoundStats stats;
	M365PullJob pull;
} RoundJob;

static void
round_tag(LOCKTAG *tag, int64 account_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, ROUND_LOCK_CLASS, (uint32) account_id, 2);
}

/*
 * Take the account's round lock; false: another session runs it (or, for
 * the worker, its shard has left this node). One server: a session advisory
 * lock. Citus: first the account's shard in Citus's placement-metadata lock
 * (store_placement.h), so no shard move completes while the round runs and
 * none is under way when it starts; then the round lock on the node that
 * holds the shard, so every node contends on the same lock: there by the
 * worker itself, from any other node (sync() on the coordinator) through a
 * statement routed there, held till the caller's transaction ends.
 */
static bool
lock_round(RoundJob *j, bool worker)
{
	int64		account_id = j->account->account_id;
	LOCKTAG		tag;

	if (m365_store_placement_distributed())
	{
		M365Shard	shard;

		m365_store_placement_shard_of(account_id, &shard);
		if (!m365_store_placement_hold_shard(&shard, worker))
			return false;
		j->shard = shard;
		j->shard_session = worker;
		if (!m365_store_placement_shard_here(shard.shard_id))
		{
			/* moved away since this batch was read: the destination's worker has it now */
			if (!worker &&
				m365_store_placement_lock_on_owner(account_id, ROUND_LOCK_CLASS, (int32) (uint32) account_id))
			{
				j->lock = ROUND_LOCKED_ON_OWNER;
				return true;
			}
			if (worker)
				m365_store_placement_release_shard(&shard);
			j->shard.shard_id = 0;
			return false;
		}
	}
	round_tag(&tag, account_id);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		if (j->shard.shard_id != 0 && j->shard_session)
			m365_store_placement_release_shard(&j->shard);
		j->shard.shard_id = 0;
		return false;
	}
	j->lock = ROUND_LOCKED_HERE;
	return true;
}

/* Let go of what the round holds for the session (what it holds till commit goes with the commit). */
static void
unlock_round(RoundJob *j)
{
	LOCKTAG		tag;

	if (j->lock == ROUND_LOCKED_HERE)
	{
		round_tag(&tag, j->account->account_id);
		LockRelease(&tag, ExclusiveLock, true);
	}
	if (j->shard.shard_id != 0 && j->shard_session)
		m365_store_placement_release_shard(&j->shard);
	j->shard.shard_id = 0;
	j->lock = ROUND_UNLOCKED;
}

/*
 * Any role may LISTEN: the payload is empty, so a reader with no grants
 * learns that something changed for someone, never for whom. The app
 * asks m365sync.changes_since() acting for its users.
 */
static void
notify_changes(const M365RoundStats *st)
{
	if (st->applied + st->deleted > 0)
		Async_Notify("m365sync", "");
}


static void
unlock_all(RoundJob *jobs, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		unlock_round(&jobs[i]);
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
 * Read the account's calendar list again (calendars.c): new calendars
 * appear, deleted ones leave with their events. A failure is logged and
 * tried again next round; it never fails the round. In the worker it is a
 * transaction of its own, an ERROR reported and rolled back.
 */
static void
refresh_calendars(RoundJob *j, bool isolated)
{
	MemoryContext cxt = CurrentMemoryContext;
	M365GraphResult res;

	PG_TRY();
	{
		if (!m365_calendars_refresh(j->account->account_id, j->account->ms_user_id, false, &res))
			ereport(LOG,
					(errmsg("m365sync: could not read the calendar list of account %lld: %s",
							(long long) j->account->account_id,
							res.code[0] ? res.code : res.no_token ? "noAccessToken" : "networkError"),
					 errdetail("HTTP status %ld; trying again next round.", res.status)));
		if (isolated)
			m365_commit_and_continue();
	}
	PG_CATCH();
	{
		if (!isolated)
			PG_RE_THROW();
		m365_report_and_continue(cxt);
	}
	PG_END_TRY();
}

/* What run_rounds' hooks need. */
typedef struct RoundBatch
{
	bool		commit_each_page;
} RoundBatch;

/*
 * A wave of rounds starts (pull_stream.c calls this when it needs more accounts
 * for its stream): lock and log each, and clear the due marks it pulls.
 */
static void
prepare_wave(M365PullJob **pulls, int n, void *arg)
{
	RoundBatch *b = arg;
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	int			nids = 0;

	for (int i = 0; i < n; i++)
	{
		RoundJob   *j = pulls[i]->owner;

		if (!lock_round(j, b->commit_each_page))
		{
			strlcpy(j->stats.error, "busy", sizeof(j->stats.error));
			pulls[i]->skip = true;
			continue;
		}
		ids[nids++] = j->account->account_id;
	}
	if (nids > 0)
	{
		int64	   *run_ids = palloc(sizeof(int64) * nids);
		int			k = 0;

		m365_store_sync_log_start_many(ids, nids, run_ids);
		/* These rounds pull what any notification so far announced; later ones mark them again. */
		m365_store_wakeups_clear_many(ids, nids);
		for (int i = 0; i < n; i++)
		{
			RoundJob   *j = pulls[i]->owner;

			if (j->lock != ROUND_UNLOCKED)
				j->run_id = run_ids[k++];
		}
	}
}

/* A wave of rounds ends: the push, in the same locked round, then the log and schedule. */
static void
finish_wave(M365PullJob **pulls, int n, void *arg)
{
	RoundBatch *b = arg;
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	bool	   *to_push = palloc(sizeof(bool) * Max(n, 1));
	int64	   *logged = palloc(sizeof(int64) * Max(n, 1));
	int64	   *run_ids = palloc(sizeof(int64) * Max(n, 1));
	const M365RoundStats **stats = palloc(sizeof(M365RoundStats *) * Max(n, 1));
	int64	   *ok_ids = palloc(sizeof(int64) * Max(n, 1));
	int			nlog = 0,
				nok = 0;

	/* who has changes to push: one statement for the wave */
	for (int i = 0; i < n; i++)
		ids[i] = ((RoundJob *) pulls[i]->owner)->account->account_id;
	m365_store_outbox_due_among(ids, n, to_push);
	for (int i = 0; i < n; i++)
	{
		RoundJob   *j = pulls[i]->owner;

		if (j->lock == ROUND_UNLOCKED)
			continue;
		/* A calendar answered 404: the list at once, in this round. */
		if (j->pull.calendar_gone)
			refresh_calendars(j, b->commit_each_page);
		/* remote changes met pending local ones first */
		if (j->stats.ok && to_push[i])
			push_isolated(j, b->commit_each_page);
		/* the log rows and the schedules of successful rounds: one statement each, below */
		logged[nlog] = j->account->account_id;
		run_ids[nlog] = j->run_id;
		stats[nlog++] = &j->stats;
		if (j->stats.ok)
			ok_ids[nok++] = j->account->account_id;
		else
			m365_store_accounts_schedule(j->account->account_id, &j->stats, m365_sync_interval_s);
		notify_changes(&j->stats);
	}
	m365_store_sync_log_finish_many(logged, run_ids, stats, nlog);
	m365_store_accounts_schedule_ok_many(ok_ids, nok, m365_sync_interval_s);

	/*
	 * These rounds are over: their last writes are visible before another
	 * session may start a round of theirs, and then their locks go, not at
	 * the batch's end (every commit walks the locks this session holds).
	 */
	if (b->commit_each_page)
		m365_commit_and_continue();
	for (int i = 0; i < n; i++)
		unlock_round(pulls[i]->owner);
}

/*
 * The rounds of a batch of accounts: pulled together as one stream
 * (pull_stream.c), which starts them a wave at a time (prepare_wave: lock, log)
 * and ends them a wave at a time (finish_wave: push, log, schedule) while
 * the requests of others are in flight. In the worker (commit_each_page)
 * each wave's start and end commit, and every page commits with its
 * cursor. A round's locks go with its wave's end (in sync(), what is
 * held till commit stays till the caller commits).
 */
static RoundJob *
run_rounds(List *due, bool commit_each_page)
{
	volatile int n = list_length(due);
	RoundJob   *volatile jobs = palloc0(sizeof(RoundJob) * Max(n, 1));
	List	   *pulls = NIL;
	ListCell   *lc;
	int			i = 0;
	RoundBatch	b = {commit_each_page};
	M365PullHooks hooks = {prepare_wave, finish_wave, &b};

	foreach(lc, due)
	{
		RoundJob   *j = &jobs[i++];

		j->account = lfirst(lc);
		j->pull.account_id = j->account->account_id;
		j->pull.ms_user_id = j->account->ms_user_id;
		j->pull.stats = &j->stats;
		j->pull.owner = j;
		j->pull.list_calendars = j->account->calendars_due;
		pulls = lappend(pulls, &j->pull);
	}
	PG_TRY();
	{
		m365_pull_run(pulls, commit_each_page, m365_max_connections, &hooks);
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
 * and only a batch's tail leaves connections idle, and few due-accounts
 * queries (each reads every account: with thousands of accounts, one per
 * 128 rounds was a quarter of the worker's CPU in a poll). At 50 ms a
 * request that is a batch of about 6 s at 8 connections, 3 s at 64: a
 * reload or a notification's mark waits at most that long.
 */
static int
batch_size(void)
{
	return Min(Max(64 * m365_max_connections, 256), 4096);
}

/*
 * sync_runs is history, not a log that grows for ever: rounds older than
 * RUN_HISTORY_DAYS go (an index probe on started_at each worker round).
 */
#define RUN_HISTORY_DAYS 14

/*
 * Housekeeping of every round, the worker's and m365sync.sync()'s: old
 * sync history, and audit rows past m365sync.audit_retention (the only
 * delete audit_log's trigger lets through).
 */
static void
prune_history(void)
{
	m365_store_sync_log_prune(RUN_HISTORY_DAYS);
	m365_store_audit_prune(m365_audit_retention_s);
}

/*
 * The worker's round (see scheduler.h): sync what is due of this worker's
 * share, one transaction per page. The first worker also does the chores
 * that span accounts (history pruning, subscriptions), so they run once.
 */
long
m365_worker_round(int worker_index, int n_workers)
{
	MemoryContext round_cxt = CurrentMemoryContext;	/* the worker's, reset each round */
	List	   *due;
	int			batch = batch_size();
	M365WorkerShare share = {worker_index, n_workers};
	long		next_mark_ms;
	long		wait_ms;

	m365_worker_start_xact();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(round_cxt);
	if (worker_index == M365_CHORES_WORKER)
		prune_history();
	due = m365_store_accounts_due(0, batch, &share);
	if (due != NIL)
	{
		ListCell   *lc;

		/* which worker runs which account: ids only (TAP 044 reads these) */
		foreach(lc, due)
			elog(DEBUG1, "m365sync worker %d: round of account %lld", worker_index,
				 (long long) ((M365DueAccount *) lfirst(lc))->account_id);
		(void) run_rounds(due, true);
	}
	/* Subscriptions after the pulls: a notification's pull never waits for one. */
	if (worker_index == M365_CHORES_WORKER)
		(void) m365_subscriptions_maintain();
	next_mark_ms = m365_store_wakeups_next_ms();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(round_cxt);

	/* A full batch: more may be waiting, go again at once. */
	if (list_length(due) >= batch)
		return 0;
	wait_ms = list_length(due) > 0 ? 1000L : Min((long) m365_sync_interval_s * 1000L, 10000L);
	/* a notification's mark held back by the gap after a round: wake when it is due */
	return next_mark_ms >= 0 ? Min(wait_ms, next_mark_ms) : wait_ms;
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
	List	   *due;
	RoundJob   *jobs;
	M365SyncOutcome *out;
	int			i;

	prune_history();
	due = m365_store_accounts_due(account_id, account_id > 0 ? 1 : INT_MAX, NULL);
	jobs = run_rounds(due, false);
	out = palloc0(sizeof(M365SyncOutcome) * Max(list_length(due), 1));

	for (i = 0; i < list_length(due); i++)
	{
		out[i].account_id = jobs[i].account->account_id;
		out[i].stats = jobs[i].stats;
	}
	*n = list_length(due);
	return out;
}
