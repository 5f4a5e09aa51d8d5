/*
 * wake.c — the one wake path of the sync workers: the shared-memory slots
 * where the workers publish their latches (one per worker,
 * m365sync.max_workers of them), and the single at-commit callback that
 * sets them. Which worker serves an account is decided here too
 * (m365_wake_account_worker), so a wake reaches the worker that will sync
 * the account; store_accounts.c picks each worker's accounts by the same
 * rule.
 *
 * Whoever queues work (an app write, a conflict resolved, a notification, a
 * connect, CREATE EXTENSION) asks for a wake at commit: what it queued is
 * visible to the worker only then. An abort wakes nobody. PREPARE
 * TRANSACTION (a Citus coordinator's two-phase commit across nodes) wakes
 * the workers and has them look again shortly, until the later COMMIT
 * PREPARED has landed. The slot lives in the launcher's shared
 * memory request (launcher.c); without preload there is no slot and every
 * wake is a no-op (m365sync.sync() drives syncing then). Knows no table.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "wake.h"

typedef struct WakeSlot
{
	slock_t		mutex;
	Latch	   *worker_latch;
	pid_t		worker_pid;
} WakeSlot;

/* m365_max_workers slots (a postmaster setting: fixed while the server runs) */
static WakeSlot *slots = NULL;

/* The last PREPARE TRANSACTION that asked for a wake (slots[0]'s mutex guards it). */
static TimestampTz *prepared_wake_at = NULL;

Size
m365_wake_shmem_size(void)
{
	return add_size(MAXALIGN(mul_size(sizeof(WakeSlot), m365_max_workers)), sizeof(TimestampTz));
}

void
m365_wake_shmem_init(void)
{
	bool		found;
	Size		slots_size = MAXALIGN(mul_size(sizeof(WakeSlot), m365_max_workers));

	slots = ShmemInitStruct("m365sync wake", add_size(slots_size, sizeof(TimestampTz)), &found);
	prepared_wake_at = (TimestampTz *) ((char *) slots + slots_size);
	if (!found)
	{
		memset(slots, 0, slots_size + sizeof(TimestampTz));
		for (int i = 0; i < m365_max_workers; i++)
			SpinLockInit(&slots[i].mutex);
	}
}

int
m365_wake_account_worker(int64 account_id)
{
	/* account ids are positive (bigserial): the same as SQL's mod(account_id, n) */
	return (int) (account_id % m365_max_workers);
}

void
m365_wake_publish_worker(int index, Latch *latch)
{
	WakeSlot   *slot;

	if (slots == NULL || index < 0 || index >= m365_max_workers)
		return;
	slot = &slots[index];
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
m365_wake_worker_pid(int index)
{
	pid_t		pid;

	if (slots == NULL || index < 0 || index >= m365_max_workers)
		return 0;
	SpinLockAcquire(&slots[index].mutex);
	pid = slots[index].worker_pid;
	SpinLockRelease(&slots[index].mutex);
	return pid;
}

static void
wake_one(int index)
{
	Latch	   *latch;

	SpinLockAcquire(&slots[index].mutex);
	latch = slots[index].worker_latch;
	SpinLockRelease(&slots[index].mutex);
	if (latch != NULL)
		SetLatch(latch);
}

void
m365_wake_worker(void)
{
	if (slots == NULL)
		return;
	for (int i = 0; i < m365_max_workers; i++)
		wake_one(i);
}

bool
m365_wake_prepared_recently(int within_ms)
{
	TimestampTz at;

	if (slots == NULL)
		return false;
	SpinLockAcquire(&slots[0].mutex);
	at = *prepared_wake_at;
	SpinLockRelease(&slots[0].mutex);
	return at != 0 && !TimestampDifferenceExceeds(at, GetCurrentTimestamp(), within_ms);
}

static bool callback_registered = false;
static bool wake_at_commit = false;		/* every worker */
static uint64 wake_mask = 0;	/* workers of the accounts named (bit = index, up to 64) */

static void
wake_pending(void)
{
	if (slots == NULL)
		return;
	for (int i = 0; i < m365_max_workers; i++)
		if (wake_at_commit || (i < 64 && (wake_mask & (UINT64CONST(1) << i))))
			wake_one(i);
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			wake_pending();
			wake_at_commit = false;
			wake_mask = 0;
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * A Citus coordinator commits a transaction spanning nodes in two
			 * phases: this node's part is prepared now and committed by a
			 * COMMIT PREPARED moments later, which runs no callback of ours.
			 * Wake the workers now and let them look again soon (see
			 * m365_wake_prepared_recently), until the commit has landed.
			 */
			if ((wake_at_commit || wake_mask != 0) && slots != NULL)
			{
				SpinLockAcquire(&slots[0].mutex);
				*prepared_wake_at = GetCurrentTimestamp();
				SpinLockRelease(&slots[0].mutex);
				wake_pending();
			}
			wake_at_commit = false;
			wake_mask = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			wake_mask = 0;
			break;
		default:
			break;
	}
}

static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
}

void
m365_wake_worker_at_commit(void)
{
	register_callback();
	wake_at_commit = true;
}

void
m365_wake_chores_at_commit(void)
{
	register_callback();
	wake_mask |= UINT64CONST(1) << M365_CHORES_WORKER;
}

void
m365_wake_account_at_commit(int64 account_id)
{
	int			i = m365_wake_account_worker(account_id);

	register_callback();
	if (i < 64)
		wake_mask |= UINT64CONST(1) << i;
	else
		wake_at_commit = true;
}
