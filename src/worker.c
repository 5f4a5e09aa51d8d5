/*
 * worker.c — the sync worker's life: signals, states and the latch loop;
 * it publishes its latch through wake.c, where commits set it.
 *
 * The launcher (launcher.c) starts m365sync.max_workers sync workers in the
 * database named by m365sync.database and stops them when a DBA's command
 * needs that database to itself; each syncs its own share of the accounts
 * (m365_wake_account_worker). The worker waits quietly, one log line per change of state,
 * while the extension is not installed there or the master key file cannot
 * be read (a check every WAIT_NOT_READY_MS, and at once on a reload or a
 * CREATE EXTENSION). Once it can sync, each wake-up runs one scheduler
 * round in its own memory context, reset every iteration; rounds woken by
 * commits start at least MIN_WOKEN_ROUND_GAP_MS apart. Every transaction of
 * a round first holds the extension object (extension_guard.c), so DROP
 * and ALTER EXTENSION wait for it, or cut it between two transactions.
 *
 * It never lets one round's ERROR end the process: a failed round is
 * reported, rolled back and retried after a pause, so a bad row cannot
 * start a crash loop. Signal handlers only set flags and the latch (die and
 * the standard reload handler do), so shutdown never waits on us.
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "extension_guard.h"
#include "launcher.h"
#include "settings.h"
#include "masterkey.h"
#include "scheduler.h"
#include "wake.h"
#include "worker.h"

/* The database served, for log lines (read once, at start). */
static char database_name[NAMEDATALEN];

/* Which of the m365sync.max_workers workers this is (from the launcher). */
static int	worker_index = 0;

#define WAIT_NOT_READY_MS		10000
#define WAIT_AFTER_ERROR_MS		5000

/*
 * Rounds woken by a commit start at least this far apart. FlowAgent commits
 * hundreds of times a second under load and each commit sets our latch; a
 * round per commit would run the due-accounts query for nothing most of the
 * time. A lone wake after a quiet spell is not delayed at all.
 */
#define MIN_WOKEN_ROUND_GAP_MS	100

/*
 * After a wake asked by PREPARE TRANSACTION (wake.c), rounds this often for
 * this long: the COMMIT PREPARED that makes the change visible comes moments
 * after the PREPARE, from the Citus coordinator.
 */
#define PREPARED_RECHECK_MS			100
#define PREPARED_RECHECK_WINDOW_MS	2000

static void
m365_worker_detach_shared(int code, Datum arg)
{
	m365_wake_publish_worker(worker_index, NULL);
}

typedef enum WorkerState
{
	WS_UNKNOWN,
	WS_NOT_INSTALLED,
	WS_NO_KEY,
	WS_SYNCING
} WorkerState;

/*
 * Can a round run? In one short transaction: is the extension installed
 * (and which one: extension_guard.c), and can the master keys be read? A
 * key problem is not an ERROR of the worker but a state it waits in; its
 * message is returned in *key_problem (allocated in the caller's context).
 */
static WorkerState
check_ready(char **key_problem)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile bool key_ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!m365_extension_round_begin())
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
		return WS_NOT_INSTALLED;
	}
	PG_TRY();
	{
		(void) m365_master_keys();
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(caller);
		e = CopyErrorData();
		FlushErrorState();
		*key_problem = e->message ? pstrdup(e->message) : pstrdup("unknown error");
		FreeErrorData(e);
		key_ok = false;
	}
	PG_END_TRY();
	if (key_ok)
		CommitTransactionCommand();
	else
		AbortCurrentTransaction();
	MemoryContextSwitchTo(caller);
	return key_ok ? WS_SYNCING : WS_NO_KEY;
}

/* One log line per change of state (and per change of key problem). */
static void
log_state(WorkerState state, const char *key_problem)
{
	if (state == WS_SYNCING)
		ereport(LOG,
				(errmsg("m365sync worker: extension found, syncing")));
	else if (state == WS_NOT_INSTALLED)
		ereport(LOG,
				(errmsg("m365sync worker: extension m365sync is not installed in database \"%s\", waiting",
						database_name),
				 errhint("Run CREATE EXTENSION m365sync in that database.")));
	else if (state == WS_NO_KEY)
		ereport(LOG,
				(errmsg("m365sync worker: master key unavailable, waiting"),
				 errdetail("%s", key_problem),
				 errhint("Fix m365sync.key_file and reload; the worker checks again every %d s and at each reload.",
						 WAIT_NOT_READY_MS / 1000)));
}

/*
 * After a latch wake, let the rest of MIN_WOKEN_ROUND_GAP_MS since the last
 * round's start pass, ignoring the latch meanwhile: the commits that set it
 * in that time are all served by the next round (the caller resets the
 * latch after this, before the round reads what is due).
 */
static void
space_out_woken_rounds(TimestampTz last_round_start)
{
	long		since = TimestampDifferenceMilliseconds(last_round_start,
														GetCurrentTimestamp());

	if (since < MIN_WOKEN_ROUND_GAP_MS)
		(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 MIN_WOKEN_ROUND_GAP_MS - since, PG_WAIT_EXTENSION);
}

void
m365_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	MemoryContext round_context;
	volatile WorkerState state = WS_UNKNOWN;
	char	   *volatile key_problem = NULL;	/* in worker_context */
	MemoryContext worker_context;
	TimestampTz last_round_start = 0;
	char	   *name;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&worker_index, MyBgworkerEntry->bgw_extra, sizeof(worker_index));

	/*
	 * A long-lived process that runs an executor per stored event: keep the
	 * freed heap instead of handing it back to the kernel and faulting it in
	 * again page by page (each index scan pallocs ~27 kB). At most 8 MB of
	 * free heap is kept: per-event CPU is the same as with 32 MB, and the
	 * worker's RSS after 100,000 events stays at 15 MB instead of 21 MB.
	 */
	mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);

	/* By oid: the launcher found it by name; if it went meanwhile this is one FATAL line and the launcher looks again. */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/*
	 * Small statements only: JIT compiling one (the due-accounts query over
	 * thousands of accounts crosses jit_above_cost) took 280 ms of CPU to
	 * save none. Likewise the per-round statements once the events table
	 * holds millions of rows: compiled on every run, they took over a third
	 * of the worker's CPU in an initial sync of 1,000 mailboxes x 1,000
	 * events.
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	m365_wake_publish_worker(worker_index, MyLatch);
	on_shmem_exit(m365_worker_detach_shared, (Datum) 0);

	StartTransactionCommand();
	name = get_database_name(MyDatabaseId);
	strlcpy(database_name, name ? name : m365_database, sizeof(database_name));
	CommitTransactionCommand();

	if (m365_max_workers > 1)
		ereport(LOG,
				(errmsg("m365sync worker %d of %d started", worker_index + 1, m365_max_workers),
				 errdetail("Serving database \"%s\".", database_name)));
	else
		ereport(LOG,
				(errmsg("m365sync worker started"),
				 errdetail("Serving database \"%s\".", database_name)));

	worker_context = AllocSetContextCreate(TopMemoryContext,
										   "m365sync worker",
										   ALLOCSET_SMALL_SIZES);
	round_context = AllocSetContextCreate(TopMemoryContext,
										  "m365sync worker round",
										  ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		volatile long wait_ms = WAIT_NOT_READY_MS;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(round_context);
		last_round_start = GetCurrentTimestamp();

		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(round_context);
			char	   *problem = NULL;
			WorkerState ready = check_ready(&problem);

			if (ready != state ||
				(ready == WS_NO_KEY && (key_problem == NULL || strcmp(problem, key_problem) != 0)))
			{
				log_state(ready, problem);
				if (key_problem != NULL)
					pfree(key_problem);
				key_problem = problem ? MemoryContextStrdup(worker_context, problem) : NULL;
				state = ready;
			}

			if (ready == WS_SYNCING)
			{
				pgstat_report_activity(STATE_RUNNING, "m365sync round");
				wait_ms = m365_worker_round(worker_index, m365_max_workers);
				pgstat_report_activity(STATE_IDLE, NULL);
			}
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(TopMemoryContext);
			if (m365_extension_round_cut())
			{
				/* DROP/ALTER EXTENSION came between two transactions: look again at once, quietly. */
				FlushErrorState();
				AbortOutOfAnyTransaction();
				wait_ms = 0;
			}
			else
			{
				/* Report, roll back, pause; never let a round end the worker. */
				EmitErrorReport();
				FlushErrorState();
				AbortOutOfAnyTransaction();
				state = WS_UNKNOWN;
				wait_ms = WAIT_AFTER_ERROR_MS;
			}
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		PG_END_TRY();

		/* a prepared transaction woke us: its COMMIT PREPARED follows, look again soon */
		if (wait_ms > PREPARED_RECHECK_MS && m365_wake_prepared_recently(PREPARED_RECHECK_WINDOW_MS))
			wait_ms = PREPARED_RECHECK_MS;

		if (wait_ms > 0)
		{
			int			rc = WaitLatch(MyLatch,
									   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									   wait_ms, PG_WAIT_EXTENSION);

			if (rc & WL_LATCH_SET)
				space_out_woken_rounds(last_round_start);
			ResetLatch(MyLatch);
		}
	}
}
