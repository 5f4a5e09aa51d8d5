/*
 * launcher.c — the launcher background worker and the state it shares.
 *
 * The launcher connects to no database (it reads only the shared catalog
 * pg_database), so it never stands in the way of a DBA's command. While the
 * database named by m365sync.database exists and accepts connections it
 * keeps m365sync.max_workers sync workers (worker.c) running there as
 * dynamic background workers, each with its index in bgw_extra (its share
 * of the accounts); while it does not, it waits, saying so once. The
 * workers start and stop as one group: when one exits on its own the
 * others are stopped and the group restarts after the restart delay. A DBA's command that
 * PostgreSQL refuses while another session is connected to a database (DROP
 * DATABASE, ALTER DATABASE RENAME or SET TABLESPACE, CREATE DATABASE ...
 * TEMPLATE) first holds the database (m365_hold_database, called from the
 * utility hook): the launcher stops the workers there and starts none until
 * the holding transaction ends. Then it looks again: the database may be
 * gone, renamed, or still there (the command failed).
 *
 * The shared memory request also carries the sync workers' latch slots,
 * which backends set at commit to wake it (wake.c). Nothing here touches an m365sync
 * table, and the launcher never exits with code 0.
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "launcher.h"
#include "settings.h"
#include "wake.h"

/* How often the launcher looks for a missing database (a commit wakes it sooner). */
#define LAUNCHER_POLL_MS		10000

/* A worker that exits on its own is restarted after this, doubling while it keeps failing fast. */
#define RESTART_DELAY_MS		10000
#define RESTART_DELAY_MAX_MS	300000
#define WORKER_RAN_LONG_MS		60000

/* How long a DBA's command waits for the worker to let go of its database. */
#define HOLD_WAIT_MS			30000

typedef struct M365Shared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	Oid			active_dboid;	/* database the launcher runs a worker in */
	Oid			hold_dboid;		/* a DBA's command wants this database free */
	pid_t		hold_pid;		/* ... in this backend's current transaction */
} M365Shared;

static M365Shared *shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void
m365_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(M365Shared)) + m365_wake_shmem_size());
}

static void
m365_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("m365sync", sizeof(M365Shared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(M365Shared));
		SpinLockInit(&shared->mutex);
	}
	m365_wake_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
m365_register_launcher(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = m365_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = m365_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* A standby has no launcher and so no worker: nothing runs until promotion. */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "m365sync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "m365_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "m365sync launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "m365sync launcher");
	RegisterBackgroundWorker(&worker);
}

bool
m365_shared_ready(void)
{
	return shared != NULL;
}

void
m365_wake_launcher(void)
{
	Latch	   *latch;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	latch = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

Oid
m365_shared_active_database(void)
{
	Oid			dboid;

	if (shared == NULL)
		return InvalidOid;
	SpinLockAcquire(&shared->mutex);
	dboid = shared->active_dboid;
	SpinLockRelease(&shared->mutex);
	return dboid;
}

/* ---- the hold a DBA's command takes ---- */

static bool hold_callbacks_registered = false;
static bool wake_launcher_at_end = false;

static void
release_hold(void)
{
	bool		released = false;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	if (shared->hold_pid == MyProcPid)
	{
		shared->hold_pid = 0;
		shared->hold_dboid = InvalidOid;
		released = true;
	}
	SpinLockRelease(&shared->mutex);
	if (released)
		m365_wake_launcher();
}

/*
 * The hold ends with the transaction: at commit the database is gone or
 * renamed (and the launcher sees that), at abort it is still there and
 * the launcher starts the worker again.
 */
static void
hold_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		release_hold();
		if (wake_launcher_at_end)
			m365_wake_launcher();
		wake_launcher_at_end = false;
	}
}

static void
hold_exit_callback(int code, Datum arg)
{
	release_hold();
}

static void
register_hold_callbacks(void)
{
	if (!hold_callbacks_registered)
	{
		RegisterXactCallback(hold_xact_callback, NULL);
		before_shmem_exit(hold_exit_callback, (Datum) 0);
		hold_callbacks_registered = true;
	}
}

void
m365_wake_launcher_at_commit(void)
{
	if (shared == NULL)
		return;
	register_hold_callbacks();
	wake_launcher_at_end = true;
}

void
m365_hold_database(Oid dboid, const char *dbname)
{
	TimestampTz deadline;

	if (shared == NULL || !OidIsValid(dboid))
		return;
	register_hold_callbacks();

	SpinLockAcquire(&shared->mutex);
	shared->hold_dboid = dboid;
	shared->hold_pid = MyProcPid;
	SpinLockRelease(&shared->mutex);
	m365_wake_launcher();

	/* Wait (bounded, cancellable) until the launcher says the worker is gone. */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HOLD_WAIT_MS);
	for (;;)
	{
		bool		busy;

		SpinLockAcquire(&shared->mutex);
		busy = shared->active_dboid == dboid && shared->launcher_latch != NULL;
		SpinLockRelease(&shared->mutex);
		if (!busy)
			break;
		if (GetCurrentTimestamp() >= deadline)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("the m365sync worker did not leave database \"%s\" within %d seconds",
							dbname, HOLD_WAIT_MS / 1000),
					 errhint("Try again, or use WITH (FORCE).")));
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* ---- the launcher ---- */

typedef enum DbState
{
	DB_UNKNOWN,
	DB_MISSING,
	DB_NO_CONNECTIONS,
	DB_READY
} DbState;

/* The running group: one handle per worker index (NULL: not running). */
static BackgroundWorkerHandle **worker_handles = NULL;
static int	n_handles = 0;			/* non-NULL entries */

static void
terminate_workers(void)
{
	for (int i = 0; i < m365_max_workers; i++)
		if (worker_handles[i] != NULL)
			TerminateBackgroundWorker(worker_handles[i]);
}

/* Forget the workers that have stopped; true if any had. */
static bool
reap_workers(void)
{
	bool		any = false;

	for (int i = 0; i < m365_max_workers; i++)
	{
		pid_t		pid;

		if (worker_handles[i] != NULL &&
			GetBackgroundWorkerPid(worker_handles[i], &pid) == BGWH_STOPPED)
		{
			pfree(worker_handles[i]);
			worker_handles[i] = NULL;
			n_handles--;
			any = true;
		}
	}
	return any;
}

static void
launcher_exit(int code, Datum arg)
{
	/* A launcher started again must not find a worker it does not know. */
	if (worker_handles != NULL)
		terminate_workers();
	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		shared->launcher_latch = NULL;
		shared->active_dboid = InvalidOid;
		SpinLockRelease(&shared->mutex);
	}
}

/*
 * Does m365sync.database exist and take connections? A heap scan of
 * pg_database, as the autovacuum launcher does: connected to no database
 * we cannot build the descriptors of its indexes (that needs pg_class)
 * once the shared relcache init file is gone, as after a DROP DATABASE.
 */
static DbState
lookup_database(Oid *dboid)
{
	DbState		state = DB_MISSING;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	*dboid = InvalidOid;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), m365_database) != 0)
			continue;
		*dboid = db->oid;
		state = DB_READY;
		if (!db->datallowconn)
			state = DB_NO_CONNECTIONS;
#ifdef DATCONNLIMIT_INVALID_DB
		/* an interrupted DROP DATABASE leaves it unusable */
		if (database_is_invalid_form(db))
			state = DB_MISSING;
#endif
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return state;
}

static void
log_db_state(DbState state)
{
	if (state == DB_MISSING)
		ereport(LOG,
				(errmsg("m365sync launcher: database \"%s\" does not exist, waiting", m365_database),
				 errhint("Create the database and run CREATE EXTENSION m365sync in it, "
						 "or set m365sync.database (takes a restart).")));
	else if (state == DB_NO_CONNECTIONS)
		ereport(LOG,
				(errmsg("m365sync launcher: database \"%s\" does not allow connections, waiting",
						m365_database),
				 errhint("Run ALTER DATABASE %s ALLOW_CONNECTIONS true.", m365_database)));
}

/* Is dboid held by a live backend's command? Clears a hold its holder left behind. */
static bool
held_by_command(Oid dboid, bool claim_if_free)
{
	pid_t		holder = 0;

	SpinLockAcquire(&shared->mutex);
	if (shared->hold_pid != 0 && shared->hold_dboid == dboid)
		holder = shared->hold_pid;
	else if (claim_if_free)
		shared->active_dboid = dboid;
	SpinLockRelease(&shared->mutex);

	if (holder == 0)
		return false;
	if (BackendPidGetProc(holder) != NULL)
		return true;
	SpinLockAcquire(&shared->mutex);
	if (shared->hold_pid == holder)
	{
		shared->hold_pid = 0;
		shared->hold_dboid = InvalidOid;
	}
	SpinLockRelease(&shared->mutex);
	return held_by_command(dboid, claim_if_free);
}

static bool
start_worker(Oid dboid, int index)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* the launcher restarts it; the postmaster must not (it would race a DROP DATABASE) */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "m365sync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "m365_worker_main");
	if (index == 0)
		snprintf(worker.bgw_name, BGW_MAXLEN, "m365sync worker");
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "m365sync worker %d", index + 1);
	snprintf(worker.bgw_type, BGW_MAXLEN, "m365sync worker");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(worker.bgw_extra, &index, sizeof(index));
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &worker_handles[index]);
	MemoryContextSwitchTo(old);
	if (!ok)
		worker_handles[index] = NULL;
	else
		n_handles++;
	return ok;
}

/* The whole group, or none of it (those started are stopped again). */
static bool
start_workers(Oid dboid)
{
	for (int i = 0; i < m365_max_workers; i++)
		if (worker_handles[i] == NULL && !start_worker(dboid, i))
		{
			terminate_workers();
			return false;
		}
	return true;
}

void
m365_launcher_main(Datum arg)
{
	DbState		last_state = DB_UNKNOWN;
	bool		stopping = false;
	bool		exited_alone = false;	/* stopping because one worker exited on its own */
	bool		start_failed_logged = false;
	TimestampTz started_at = 0;
	TimestampTz restart_at = 0;
	long		restart_delay = RESTART_DELAY_MS;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	if (shared == NULL)
		proc_exit(1);			/* cannot happen: we are only registered when preloaded */

	worker_handles = MemoryContextAllocZero(TopMemoryContext,
											sizeof(BackgroundWorkerHandle *) * m365_max_workers);

	/* Workers of a launcher before us were told to stop; let them go first. */
	for (int i = 0; i < m365_max_workers; i++)
	{
		for (;;)
		{
			pid_t		old_pid;

			old_pid = m365_wake_worker_pid(i);
			if (old_pid == 0 || kill(old_pid, 0) != 0)
				break;
			(void) kill(old_pid, SIGTERM);
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 200, PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
	}

	SpinLockAcquire(&shared->mutex);
	shared->launcher_latch = MyLatch;
	shared->active_dboid = InvalidOid;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(launcher_exit, (Datum) 0);

	ereport(LOG,
			(errmsg("m365sync launcher started"),
			 errdetail("Serving database \"%s\".", m365_database)));

	for (;;)
	{
		long		wait_ms = LAUNCHER_POLL_MS;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		now = GetCurrentTimestamp();

		if (n_handles > 0)
		{
			Oid			active;

			SpinLockAcquire(&shared->mutex);
			active = shared->active_dboid;
			SpinLockRelease(&shared->mutex);

			if (reap_workers() && n_handles > 0 && !stopping)
			{
				/* one exited on its own: the others stop too, and the group restarts */
				terminate_workers();
				exited_alone = true;
				stopping = true;
			}
			if (n_handles == 0)
			{
				SpinLockAcquire(&shared->mutex);
				shared->active_dboid = InvalidOid;
				SpinLockRelease(&shared->mutex);
				if (stopping && !exited_alone)
				{
					restart_at = 0;
					restart_delay = RESTART_DELAY_MS;
				}
				else
				{
					/* exited on its own: restart calmly, more calmly if it keeps failing fast */
					if (TimestampDifferenceExceeds(started_at, now, WORKER_RAN_LONG_MS))
						restart_delay = RESTART_DELAY_MS;
					restart_at = TimestampTzPlusMilliseconds(now, restart_delay);
					ereport(LOG,
							(errmsg("m365sync launcher: the sync worker exited, restarting it in %ld s",
									restart_delay / 1000)));
					restart_delay = Min(restart_delay * 2, RESTART_DELAY_MAX_MS);
				}
				stopping = false;
				exited_alone = false;
				last_state = DB_UNKNOWN;
				wait_ms = 0;
			}
			else if (!stopping && held_by_command(active, false))
			{
				ereport(LOG,
						(errmsg("m365sync launcher: stopping the sync worker so that a command can use database \"%s\"",
								m365_database)));
				terminate_workers();
				stopping = true;
			}
		}
		else if (restart_at != 0 && now < restart_at)
			wait_ms = Max(1, TimestampDifferenceMilliseconds(now, restart_at));
		else
		{
			Oid			dboid;
			DbState		state = lookup_database(&dboid);

			restart_at = 0;
			if (state != last_state && state != DB_READY)
				log_db_state(state);
			if (state == DB_READY && held_by_command(dboid, true))
				wait_ms = 1000;	/* the holder's transaction end wakes us sooner */
			else if (state == DB_READY)
			{
				if (start_workers(dboid))
				{
					started_at = now;
					start_failed_logged = false;
				}
				else
				{
					SpinLockAcquire(&shared->mutex);
					shared->active_dboid = InvalidOid;
					SpinLockRelease(&shared->mutex);
					if (!start_failed_logged)
						ereport(LOG,
								(errmsg("m365sync launcher: could not start the sync worker, retrying"),
								 errhint("Raise max_worker_processes.")));
					start_failed_logged = true;
				}
			}
			last_state = state;
		}

		if (wait_ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
