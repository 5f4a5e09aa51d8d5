/*
 * wake.c — the one wake path of the sync worker: the shared-memory slot
 * where the worker publishes its latch, and the single at-commit callback
 * that sets it.
 *
 * Whoever queues work (an app write, a conflict resolved, a notification, a
 * connect, CREATE EXTENSION) asks for a wake at commit: what it queued is
 * visible to the worker only then. An abort wakes nobody. PREPARE
 * TRANSACTION (a Citus coordinator's two-phase commit across nodes) wakes
 * the worker and has it look again shortly, until the later COMMIT PREPARED
 * has landed. The slot lives in the launcher's shared
 * memory request (launcher.c); without preload there is no slot and every
 * wake is a no-op (m365sync.sync() drives syncing then). Knows no table.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "wake.h"

typedef struct WakeSlot
{
	slock_t		mutex;
	Latch	   *worker_latch;
	pid_t		worker_pid;
	TimestampTz prepared_wake_at;	/* last PREPARE TRANSACTION that asked for a wake */
} WakeSlot;

static WakeSlot *slot = NULL;

Size
m365_wake_shmem_size(void)
{
	return MAXALIGN(sizeof(WakeSlot));
}

void
m365_wake_shmem_init(void)
{
	bool		found;

	slot = ShmemInitStruct("m365sync wake", sizeof(WakeSlot), &found);
	if (!found)
	{
		memset(slot, 0, sizeof(WakeSlot));
		SpinLockInit(&slot->mutex);
	}
}

void
m365_wake_publish_worker(Latch *latch)
{
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	if (latch != NULL)
	{
		slot->worker_latch = latch;
		slot->worker_pid = MyProcPid;
	}
	else if (slot->worker_pid == MyProcPid)
	{
		slot->worker_latch = NULL;
		slot->worker_pid = 0;
	}
	SpinLockRelease(&slot->mutex);
}

pid_t
m365_wake_worker_pid(void)
{
	pid_t		pid;

	if (slot == NULL)
		return 0;
	SpinLockAcquire(&slot->mutex);
	pid = slot->worker_pid;
	SpinLockRelease(&slot->mutex);
	return pid;
}

void
m365_wake_worker(void)
{
	Latch	   *latch;

	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	latch = slot->worker_latch;
	SpinLockRelease(&slot->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

bool
m365_wake_prepared_recently(int within_ms)
{
	TimestampTz at;

	if (slot == NULL)
		return false;
	SpinLockAcquire(&slot->mutex);
	at = slot->prepared_wake_at;
	SpinLockRelease(&slot->mutex);
	return at != 0 && !TimestampDifferenceExceeds(at, GetCurrentTimestamp(), within_ms);
}

static bool callback_registered = false;
static bool wake_at_commit = false;

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				m365_wake_worker();
			wake_at_commit = false;
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * A Citus coordinator commits a transaction spanning nodes in two
			 * phases: this node's part is prepared now and committed by a
			 * COMMIT PREPARED moments later, which runs no callback of ours.
			 * Wake the worker now and let it look again soon (see
			 * m365_wake_prepared_recently), until the commit has landed.
			 */
			if (wake_at_commit && slot != NULL)
			{
				SpinLockAcquire(&slot->mutex);
				slot->prepared_wake_at = GetCurrentTimestamp();
				SpinLockRelease(&slot->mutex);
				m365_wake_worker();
			}
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

void
m365_wake_worker_at_commit(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
	wake_at_commit = true;
}
