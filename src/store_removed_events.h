/*
 * store_removed_events.h — m365sync.removed_events (store_removed_events.c):
 * the event ids of events a pull removed, kept for a week, so that an event
 * moved to another calendar (its Graph id stays, GRAPH.md §11) gets its
 * event_id back when it shows up there. Ids only, no content. Every
 * function connects to SPI itself and runs in the caller's transaction;
 * under 0.1.0's schema (extension_guard.h) they do nothing.
 */
#ifndef M365SYNC_STORE_REMOVED_EVENTS_H
#define M365SYNC_STORE_REMOVED_EVENTS_H

#include "postgres.h"

/* How long a removed event's id waits for the event to come back. */
#define M365_REMOVED_EVENT_KEEP_DAYS 7

/* The pull removed this event: remember its id (and forget those past the week). */
extern void m365_store_removed_events_record(int64 account_id, const char *graph_id, int64 event_id);

/* A calendar about to be deleted: remember the ids of all its events. */
extern void m365_store_removed_events_record_calendar(int64 account_id, int64 calendar_id);

/* The event_id a removed event with this Graph id had (taken: forgotten), or 0. */
extern int64 m365_store_removed_events_take(int64 account_id, const char *graph_id);

/* Does the account have any removed event's id kept? */
extern bool m365_store_removed_events_any(int64 account_id);

/*
 * Which of these Graph ids have a removed event's id waiting, as copies in
 * the current memory context (*nout of them): the pull asks once per page,
 * then takes only those.
 */
extern char **m365_store_removed_events_among(int64 account_id, const char *const *graph_ids, int n,
											  int *nout);

/* purge.c: the rows of these accounts. */
extern void m365_store_removed_events_delete_accounts(const int64 *account_ids, int n);

#endif							/* M365SYNC_STORE_REMOVED_EVENTS_H */
