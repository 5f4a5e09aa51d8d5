/*
 * events.h — the merge rules of a FlowAgent write (events.c), called by
 * the SQL functions in sql_events.c inside the caller's transaction (SPI
 * connected, the acting user's account found).
 */
#ifndef M365SYNC_EVENTS_H
#define M365SYNC_EVENTS_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "store_events.h"

/*
 * upsert_event: create (stored NULL) or update the locked stored event
 * with the caller's JSON; every check before the first write. Returns the
 * event's id.
 */
extern int64 m365_events_upsert(int64 account_id, Jsonb *input, const M365StoredEvent *stored);

/* delete_event of the locked stored event, once its calendar is writable. */
extern void m365_events_delete(int64 account_id, const M365StoredEvent *ev);

#endif							/* M365SYNC_EVENTS_H */
