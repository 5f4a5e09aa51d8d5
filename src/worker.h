/*
 * worker.h — the sync worker's entry points other modules may call.
 */
#ifndef M365SYNC_WORKER_H
#define M365SYNC_WORKER_H

#include "postgres.h"

/* The sync worker's entry point, started by the launcher (launcher.c). */
extern PGDLLEXPORT void m365_worker_main(Datum arg);

/* Wake the worker after a commit that queued work; no-op without preload. */
extern void m365_wake_worker(void);

/* Wake it when the current transaction commits (no-op on abort). */
extern void m365_wake_worker_at_commit(void);

#endif							/* M365SYNC_WORKER_H */
