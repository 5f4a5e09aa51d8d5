/*
 * wake.h — the one way to wake the sync workers (wake.c).
 */
#ifndef M365SYNC_WAKE_H
#define M365SYNC_WAKE_H

#include "postgres.h"

#include "storage/latch.h"

/* The latch slots in shared memory (one per worker); the launcher requests and creates them. */
extern Size m365_wake_shmem_size(void);
extern void m365_wake_shmem_init(void);	/* under AddinShmemInitLock */

/*
 * The worker (0 .. m365sync.max_workers - 1) that syncs an account:
 * account_id modulo the number of workers. store_accounts.c selects each
 * worker's accounts by the same rule.
 */
extern int	m365_wake_account_worker(int64 account_id);

/* Sync worker `index` publishes its latch (NULL on exit: only its own is cleared). */
extern void m365_wake_publish_worker(int index, Latch *latch);

/* The pid of sync worker `index`, 0 if none (the launcher stops a stale one). */
extern pid_t m365_wake_worker_pid(int index);

/* Wake every worker now; a no-op without preload or without a worker. */
extern void m365_wake_worker(void);

/* Wake every worker when the current transaction commits (nothing on abort; PREPARE: see wake.c). */
extern void m365_wake_worker_at_commit(void);

/* Wake, at commit, the worker that syncs this account. */
extern void m365_wake_account_at_commit(int64 account_id);

/*
 * The worker that also does the chores spanning accounts (subscriptions,
 * history pruning; scheduler.c), and its wake at commit.
 */
#define M365_CHORES_WORKER 0
extern void m365_wake_chores_at_commit(void);

/* Did a PREPARE TRANSACTION ask for a wake within the last within_ms? */
extern bool m365_wake_prepared_recently(int within_ms);

#endif							/* M365SYNC_WAKE_H */
