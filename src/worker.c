/*
 * worker.c — the sync worker's life: registration, signals, the latch loop.
 *
 * One background worker per server connects to m365sync.database. While the
 * extension is not installed there it waits quietly (one log line per state
 * change, a check every WAIT_NOT_INSTALLED_MS). Once it is, each wake-up runs
 * one scheduler round in its own memory context, reset every iteration;
 * rounds woken by commits start at least MIN_WOKEN_ROUND_GAP_MS apart.
 *
 * It must never exit with code 0 (that unregisters it for good) and never
 * let one round's ERROR end the process: a failed round is reported, rolled
 * back and retried after a pause, so a bad row cannot start a crash loop.
 * Signal handlers only set flags and the latch (die and the standard reload
 * handler do), so DROP DATABASE and shutdown never wait on us.
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "m365sync.h"
#include "worker.h"

#define WAIT_NOT_INSTALLED_MS	10000
#define WAIT_AFTER_ERROR_MS		5000

/*
 * Rounds woken by a commit start at least this far apart. FlowAgent commits
 * hundreds of times a second under load and each commit sets our latch; a
 * round per commit would run the due-accounts query for nothing most of the
 * time. A lone wake after a quiet spell is not delayed at all.
 */
#define MIN_WOKEN_ROUND_GAP_MS	100

/* What the worker shares with backends: where to find its latch. */
typedef struct M365WorkerShared
{
	pid_t		worker_pid;
	Latch	   *worker_latch;
} M365WorkerShared;

static M365WorkerShared *worker_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

static void
m365_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(M365WorkerShared)));
}

static void
m365_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_shared = ShmemInitStruct("m365sync worker", sizeof(M365WorkerShared), &found);
	if (!found)
		memset(worker_shared, 0, sizeof(M365WorkerShared));
	LWLockRelease(AddinShmemInitLock);
}

void
m365_register_worker(void)
{
	BackgroundWorker worker;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = m365_shmem_request;
#else
	m365_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = m365_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "m365sync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "m365_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "m365sync worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "m365sync worker");
	RegisterBackgroundWorker(&worker);
}

/*
 * Wake the worker (after a commit that queued work). A no-op when the
 * library was not preloaded or the worker is not running.
 */
void
m365_wake_worker(void)
{
	Latch	   *latch;

	if (worker_shared == NULL)
		return;
	latch = worker_shared->worker_latch;
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Wake the worker when the current transaction commits (what it queued is
 * visible to the worker only then); nothing on abort.
 */
static bool wake_registered = false;
static bool wake_at_commit = false;

static void
wake_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit)
		m365_wake_worker();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_at_commit = false;
}

void
m365_wake_worker_at_commit(void)
{
	if (!wake_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_registered = true;
	}
	wake_at_commit = true;
}

static void
m365_worker_detach_shared(int code, Datum arg)
{
	if (worker_shared != NULL && worker_shared->worker_pid == MyProcPid)
	{
		worker_shared->worker_latch = NULL;
		worker_shared->worker_pid = 0;
	}
}

static bool
extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("m365sync", true));
	CommitTransactionCommand();
	return installed;
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
	MemoryContext round_context;
	volatile int installed_state = -1;	/* unknown, 0 no, 1 yes */
	TimestampTz last_round_start = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/*
	 * A long-lived process that runs an executor per stored event: keep the
	 * freed heap instead of handing it back to the kernel and faulting it in
	 * again page by page (each index scan pallocs ~27 kB). At most 8 MB of
	 * free heap is kept: per-event CPU is the same as with 32 MB, and the
	 * worker's RSS after 100,000 events stays at 15 MB instead of 21 MB.
	 */
	mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);

	BackgroundWorkerInitializeConnection(m365_database, NULL, 0);

	if (worker_shared != NULL)
	{
		worker_shared->worker_pid = MyProcPid;
		worker_shared->worker_latch = MyLatch;
		on_shmem_exit(m365_worker_detach_shared, (Datum) 0);
	}

	ereport(LOG,
			(errmsg("m365sync worker started"),
			 errdetail("Serving database \"%s\".", m365_database)));

	round_context = AllocSetContextCreate(TopMemoryContext,
										  "m365sync worker round",
										  ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		volatile long wait_ms = WAIT_NOT_INSTALLED_MS;

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
			bool		installed = extension_installed();

			if ((int) installed != installed_state)
			{
				if (installed)
					ereport(LOG,
							(errmsg("m365sync worker: extension found, syncing")));
				else
					ereport(LOG,
							(errmsg("m365sync worker: extension m365sync is not installed in database \"%s\", waiting",
									m365_database),
							 errhint("Run CREATE EXTENSION m365sync in that database.")));
				installed_state = installed;
			}

			if (installed)
			{
				pgstat_report_activity(STATE_RUNNING, "m365sync round");
				wait_ms = m365_worker_round();
				pgstat_report_activity(STATE_IDLE, NULL);
			}
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			/* Report, roll back, pause; never let a round end the worker. */
			MemoryContextSwitchTo(TopMemoryContext);
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			installed_state = -1;
			wait_ms = WAIT_AFTER_ERROR_MS;
		}
		PG_END_TRY();

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
