/*
 * store_events_rows.h — rows of m365sync.events of one calendar inserted
 * many at a time (store_events_rows.c): new, add each row, insert. The pull
 * inserts a page's new events this way. Runs in the caller's transaction,
 * between its SPI_connect and SPI_finish.
 */
#ifndef M365SYNC_STORE_EVENTS_ROWS_H
#define M365SYNC_STORE_EVENTS_ROWS_H

#include "postgres.h"

#include "event_row.h"

typedef struct M365EventRows M365EventRows;

extern M365EventRows *m365_store_events_rows_new(int64 account_id, int64 calendar_id,
												 const char *sync_state, int64 seen_round, int cap);
extern void m365_store_events_rows_add(M365EventRows *rows, int64 event_id, const M365EventColumns *cols,
									   bool has_series_master, int64 series_master_id, bytea *content);
extern int64 m365_store_events_rows_calendar(const M365EventRows *rows);

/*
 * Insert the rows added since the last call, then start empty. Later
 * statements of the transaction see them. ERROR 23503 when the calendar is
 * gone (nothing written).
 */
extern void m365_store_events_rows_insert(M365EventRows *rows);

#endif							/* M365SYNC_STORE_EVENTS_ROWS_H */
