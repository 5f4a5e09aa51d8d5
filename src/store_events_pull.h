/*
 * store_events_pull.h — SPI for the pull (store_events_pull.c): applying remote events to m365sync.events. Runs in the caller's
 * transaction; the pull commits a page and its cursor together.
 */
#ifndef M365SYNC_STORE_EVENTS_PULL_H
#define M365SYNC_STORE_EVENTS_PULL_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "event_row.h"
#include "store_calendars.h"

typedef enum M365ApplyOutcome
{
	M365_APPLY_INSERTED,
	M365_APPLY_UPDATED,
	M365_APPLY_UNCHANGED,		/* same changeKey: a replay or our own echo */
	M365_APPLY_CONFLICT			/* a local change is pending: both kept */
} M365ApplyOutcome;

/*
 * A page's events as stored: one lookup (and row lock) for every Graph id
 * of the page, so applying costs no per-event search. Call between
 * SPI_connect and SPI_finish; begin, apply/remove each item, end. The
 * batch lives in the memory context current at begin, so apply and remove
 * may run in a shorter one that the caller resets after each event.
 */
typedef struct M365PullBatch M365PullBatch;

/*
 * The Graph ids a round stored, kept when the round found the account
 * holding none (an initial sync): a page with none of them holds only new
 * events, and begin need not look them up. NULL when the account holds
 * Graph ids (or removed events' ids) already. Connects to SPI itself; the
 * set lives in the caller's memory context, across the round's
 * transactions. A round that has one passes it to every batch it begins.
 */
typedef struct M365PullWritten M365PullWritten;

extern M365PullWritten *m365_store_events_pull_written_new(int64 account_id, int64 calendar_id,
															int64 round_id);

/*
 * True when the set was made on this calendar's full round (round_id): the
 * account held no Graph id when it began, so every row of the calendar with
 * one was stored by this round and marked seen by it, and its end has
 * nothing to sweep.
 */
extern bool m365_store_events_pull_written_covers(const M365PullWritten *w, int64 calendar_id,
												  int64 round_id);

/* False when the set holds no series master (none can be orphaned); true without a set. */
extern bool m365_store_events_pull_written_masters(const M365PullWritten *w);
extern void m365_store_events_pull_written_free(M365PullWritten *w);

/* written: the round's set (it learns every Graph id the batch stores), or NULL */
extern M365PullBatch *m365_store_events_pull_begin(int64 account_id, int64 round_id,
											const char *const *graph_ids, int n,
											M365PullWritten *written);

/*
 * True when the stored version of the event has this changeKey and is in
 * this calendar: it is marked seen by the round, as apply would, and needs
 * no parsing.
 */
extern bool m365_store_events_pull_unchanged(M365PullBatch *b, int64 calendar_id, const char *graph_id,
											 const char *change_key);

/*
 * Insert or update one remote event; data is the whole Graph object. On
 * M365_APPLY_CONFLICT nothing is written: *conflict_event_id names the
 * event whose pending local change the caller settles (conflicts.c) before
 * the next apply.
 */
extern M365ApplyOutcome m365_store_events_pull_apply(M365PullBatch *b, int64 calendar_id,
											  const M365EventColumns *cols, Jsonb *data,
											  int64 *conflict_event_id);

/*
 * An @removed entry in calendar_id's delta: delete locally unless a local
 * change is pending, or the row already moved to another calendar (an
 * event moved between calendars keeps its Graph id; its id is kept a while
 * for its appearance there, store_removed_events.h).
 */
extern bool m365_store_events_pull_remove(M365PullBatch *b, int64 calendar_id, const char *graph_id);

/*
 * An item the pull skipped (pull_item.c): its stored copy, if any, stays as
 * it is and counts as seen, so a full round's sweep keeps it.
 */
extern void m365_store_events_pull_keep(M365PullBatch *b, const char *graph_id);

/*
 * The series masters (local ids) of the page's events as begin found them,
 * each once: those left without events go after the page.
 */
extern const int64 *m365_store_events_pull_masters(M365PullBatch *b, int *n);

/* Mark what the page saw unchanged (full rounds), in one statement. */
extern void m365_store_events_pull_end(M365PullBatch *b);

/*
 * Does the store already hold what a change notification announces? For a
 * change: an event with that Graph id and changeKey; for a deletion: no
 * event with that id. A replayed (or resent) notification of a change
 * already pulled then marks nothing (sql_notify.c). Connects to SPI itself.
 */
extern bool m365_store_events_pull_is_current(int64 account_id, const char *graph_id,
											  const char *change_key, bool deleted);

/*
 * End of a full round: delete what the round did not see (and has no local
 * change pending). Returns how many.
 */
extern int	m365_store_events_sweep(int64 account_id, int64 calendar_id, int64 round_id);

#endif							/* M365SYNC_STORE_EVENTS_PULL_H */
