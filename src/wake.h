/*
 * wake.h — the one way to wake the sync worker (wake.c).
 */
#ifndef M365SYNC_WAKE_H
#define M365SYNC_WAKE_H

#include "postgres.h"

#include "storage/latch.h"

/* The latch slot in shared memory; the launcher requests and creates it. */
extern Size m365_wake_shmem_size(void);
extern void m365_wake_shmem_init(void);	/* under AddinShmemInitLock */

/* The sync worker publishes its latch (NULL on exit: only its own is cleared). */
extern void m365_wake_publish_worker(Latch *latch);

/* The running sync worker's pid, 0 if none (the launcher stops a stale one). */
extern pid_t m365_wake_worker_pid(void);

/* Wake the worker now; a no-op without preload or without a worker. */
extern void m365_wake_worker(void);

/* Wake it when the current transaction commits (nothing on abort; PREPARE: see wake.c). */
extern void m365_wake_worker_at_commit(void);

/* Did a PREPARE TRANSACTION ask for a wake within the last within_ms? */
extern bool m365_wake_prepared_recently(int within_ms);

#endif							/* M365SYNC_WAKE_H */
