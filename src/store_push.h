/*
 * store_push.h — SPI for the push (store_push.c): taking due outbox
 * entries with their events, and recording what Microsoft answered.
 *
 * Every function runs in the caller's transaction. An entry is taken in
 * two steps: m365_store_outbox_mark_sending (store_outbox.h) counts the send (attempts, first
 * sent_at) so that, in the worker, a crash after the request still leaves
 * a trace; m365_store_outbox_lock_entries then locks the events rows (FOR UPDATE,
 * SKIP LOCKED: an event the app is writing waits for the next wave) and
 * reads them. The locks are held until the answer and its done-mark commit,
 * so a change the app makes meanwhile waits instead of being folded into an
 * entry about to be marked done (store_events.c's protocol).
 */
#ifndef M365SYNC_STORE_PUSH_H
#define M365SYNC_STORE_PUSH_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "event_row.h"
#include "store_outbox.h"

typedef struct M365PushEntry
{
	int64		outbox_id;
	int64		event_id;
	int64		calendar_id;
	char	   *op;				/* create | update | delete */
	char	   *transaction_id;
	char	  **changed;		/* update: field names ("*" = all), with those of
								 * earlier failed updates of the event */
	int			nchanged;
	int			attempts;		/* sends, this one included */
	bool		has_sent_at;
	TimestampTz sent_at;		/* first send */
	char	   *graph_id;		/* NULL until created */
	char	   *change_key;		/* If-Match */
	char	   *calendar_graph_id;
	char	   *event_type;
	bool		deleted;
	TimestampTz local_modified_at;
	Jsonb	   *data;			/* decrypted Graph object */
} M365PushEntry;

/* Lock and read those entries still pending (M365PushEntry *, outbox order). */
extern List *m365_store_outbox_lock_entries(int64 account_id, List *outbox_ids);

/*
 * A create or update Microsoft accepted: the answer (cols and data: the
 * event as Graph now holds it) replaces the row, the entry and earlier
 * failed entries of the event are done. A create answered by an event made
 * before the row last changed (a retry after a crash, when the app edited
 * the event in between) keeps the local content and becomes a full update.
 * Returns true when the entry is done.
 */
extern bool m365_store_outbox_done_write(int64 account_id, const M365PushEntry *e,
								 const M365EventColumns *cols, Jsonb *data);

/* A delete Microsoft accepted (or the event was already gone). */
extern void m365_store_outbox_done_delete(int64 account_id, const M365PushEntry *e);

/* A write with nothing Graph accepts to send: done without a request. */
extern void m365_store_outbox_done_nothing(int64 account_id, const M365PushEntry *e);

/* A permanent failure: entry failed with Graph's code, event 'failed', row kept. */
extern void m365_store_outbox_failed(int64 account_id, const M365PushEntry *e, const char *code);

/*
 * The pull met a new remote event: when it carries the transactionId of a
 * pending create of ours (the create reached Microsoft but its answer was
 * lost), link it to the local row as that create's answer and return the
 * row's event_id; the pull then inserts nothing. 0 otherwise.
 */
extern int64 m365_store_events_link_pulled(int64 account_id, const M365EventColumns *cols, Jsonb *data);

#endif							/* M365SYNC_STORE_PUSH_H */
