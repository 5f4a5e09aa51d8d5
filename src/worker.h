/*
 * worker.h — the sync worker's entry point, started by the launcher.
 */
#ifndef M365SYNC_WORKER_H
#define M365SYNC_WORKER_H

#include "postgres.h"

/* The sync worker's entry point, started by the launcher (launcher.c). */
extern PGDLLEXPORT void m365_worker_main(Datum arg);

#endif							/* M365SYNC_WORKER_H */
