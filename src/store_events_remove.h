/*
 * store_events_remove.h — events the pull finds gone at Microsoft, removed
 * many at a time (store_events_remove.c): a synced row is deleted, one in a
 * listed conflict stays as a tombstone (deleted, no graph_id, no
 * change_key: the listing needs its row), as a removal in a delta page
 * does. Runs in the caller's transaction, between its SPI_connect and
 * SPI_finish.
 */
#ifndef M365SYNC_STORE_EVENTS_REMOVE_H
#define M365SYNC_STORE_EVENTS_REMOVE_H

#include "postgres.h"

#include "spi_util.h"

/*
 * `select` (with its arguments a) finds the events of one account and locks
 * them: SELECT <alias>.event_id, <alias>.sync_state = 'synced',
 * <alias>.graph_id ... FOR UPDATE, its rows only synced or in a conflict.
 * One scan of the table where it finds nothing (the usual case), where a
 * DELETE and an UPDATE with the same condition took two; the rows it found
 * go by their keys. Returns how many went. When deleted is not NULL,
 * *deleted_ids and *deleted_graph_ids (palloc'd, *n_deleted of them) are
 * the rows deleted.
 */
extern int	m365_store_events_remove_found(int64 account_id, const char *select, const M365SpiArgs *a,
										  int64 **deleted_ids, char ***deleted_graph_ids, int *n_deleted);

#endif							/* M365SYNC_STORE_EVENTS_REMOVE_H */
