/*
 * launcher.h — the launcher, the shared state it keeps with the sync worker
 * and with backends, and the database hold a DBA's command takes
 * (launcher.c).
 */
#ifndef M365SYNC_LAUNCHER_H
#define M365SYNC_LAUNCHER_H

#include "postgres.h"

#include "storage/latch.h"

/* Register the launcher and the shared memory (from _PG_init, preload only). */
extern void m365_register_launcher(void);

/* True when the shared state exists (library preloaded). */
extern bool m365_shared_ready(void);

/* Set the launcher's latch (a database may have appeared or been freed), now or at commit. */
extern void m365_wake_launcher(void);
extern void m365_wake_launcher_at_commit(void);

/* The database the launcher runs the worker in (InvalidOid: none). */
extern Oid	m365_shared_active_database(void);

/*
 * Hold a database for the current transaction: the launcher stops the sync
 * worker serving it (waiting at most a bounded time for it to be gone) and
 * starts none there until this transaction ends. Used before DROP DATABASE,
 * ALTER DATABASE RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE,
 * which PostgreSQL refuses while another session is connected.
 */
extern void m365_hold_database(Oid dboid, const char *dbname);

extern PGDLLEXPORT void m365_launcher_main(Datum arg);

#endif							/* M365SYNC_LAUNCHER_H */
