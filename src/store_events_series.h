/*
 * store_events_series.h — the pull's statements on series (store_events_series.c):
 * a series master's occurrences reconciled with what Graph lists, masters
 * without occurrences, masters Graph no longer has. Runs between the
 * caller's SPI_connect and SPI_finish, in the page's transaction.
 */
#ifndef M365SYNC_STORE_EVENTS_SERIES_H
#define M365SYNC_STORE_EVENTS_SERIES_H

#include "postgres.h"

#include "datatype/timestamp.h"

/*
 * Remove these masters where no event of their series is left (one with a
 * pending local change stays for the push; one with a listed conflict stays
 * as a tombstone, as a removed event does).
 * Returns how many went.
 */
extern int	m365_store_events_series_drop_orphans(int64 account_id, const int64 *masters, int n,
												  const char *const *master_graph_ids, int ng);

/* The same for every master of a calendar (after a full round's sweep). */
extern int	m365_store_events_series_drop_orphans_in(int64 account_id, int64 calendar_id);

/*
 * The series of master_graph_id has exactly the instances `keep` in
 * [ws, we): its other synced occurrences and exceptions there are gone at
 * Microsoft (a cancelled occurrence gets no @removed, GRAPH.md §11). A
 * listed conflict's row stays as a tombstone; a pending one stays for the
 * push. Returns how many went.
 */
extern int	m365_store_events_series_reconcile(int64 account_id, const char *master_graph_id,
											   const char *const *keep, int n,
											   TimestampTz ws, TimestampTz we);

/* Graph answered 404 for this master: remove it locally (tombstone if in a listed conflict). */
extern bool m365_store_events_series_master_gone(int64 account_id, const char *graph_id);

#endif							/* M365SYNC_STORE_EVENTS_SERIES_H */
