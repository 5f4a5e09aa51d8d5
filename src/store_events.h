/*
 * store_events.h — SPI reads and writes of events (store_events.c), for
 * the SQL API, the push's answers (store_push.c) and conflicts
 * (store_conflicts.c); the pull's are in store_events_pull.h.
 *
 * Every function but those marked "connects itself" expects the caller
 * to be connected to SPI (between SPI_connect and SPI_finish) and runs in the caller's transaction. Rows are
 * only ever those the row level security policies show the current role:
 * under the user functions, the acting FlowAgent user's.
 */
#ifndef M365SYNC_STORE_EVENTS_H
#define M365SYNC_STORE_EVENTS_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "event_row.h"
#include "spi_util.h"

/*
 * Append an event's shape columns (event_type, start_at, end_at, is_all_day,
 * start_date, end_date, show_as, is_cancelled) or its sync columns
 * (change_key, remote_modified_at) to a statement's arguments.
 */
extern void m365_store_events_arg_shape(M365SpiArgs *a, const M365EventColumns *c);
extern void m365_store_events_arg_sync(M365SpiArgs *a, const M365EventColumns *c);

/*
 * The ical_uid column: never the iCalUId itself (it would show who meets
 * whom by a join of two users' copies of a meeting) but its keyed hash
 * under the account's data key (keyring.h), which serves matching within
 * the account; the clear value stays in the encrypted content. NULL → NULL.
 */
extern void m365_store_events_arg_ical_uid(M365SpiArgs *a, int64 account_id, const M365EventColumns *c);
extern char *m365_store_events_ical_uid_hash(int64 account_id, const char *ical_uid);

/* An event as the writers need it, locked FOR UPDATE. */
typedef struct M365StoredEvent
{
	int64		event_id;
	int64		calendar_id;
	char	   *graph_id;		/* NULL until pushed */
	char	   *change_key;		/* Graph's changeKey at the last sync */
	char	   *event_type;
	Jsonb	   *data;			/* decrypted Graph object */
} M365StoredEvent;

/*
 * Lock a live (not deleted) event of the account and read it. False when
 * there is no such event: unknown id, deleted, or another user's.
 */
extern bool m365_store_events_lock(int64 account_id, int64 event_id, M365StoredEvent *ev);

/* A fresh event_id (rows are encrypted bound to it, so it comes first). */
extern int64 m365_store_events_next_id(void);

/* Encrypt a Graph object for events.content of one row. */
extern bytea *m365_store_events_seal(int64 account_id, int64 event_id, Jsonb *data);

/* Decrypt events.content into a jsonb datum. */
extern Jsonb *m365_store_events_open(int64 account_id, int64 event_id, bytea *content);

extern void m365_store_events_insert(int64 account_id, int64 event_id, int64 calendar_id,
									const M365EventColumns *cols, bool has_series_master,
									int64 series_master_id, bytea *content,
									const char *sync_state, int64 seen_round);

/* n fresh event_ids in one statement, into ids. */
extern void m365_store_events_next_ids(int64 *ids, int n);
/* A local change: scheduling columns and content; graph_id and change_key stay. */
extern void m365_store_events_update_local(int64 account_id, int64 event_id,
										  const M365EventColumns *cols, bytea *content);

/* What queueing a delete did. */
typedef enum M365DeleteOutcome
{
	M365_DELETE_QUEUED,			/* marked deleted, remote delete queued */
	M365_DELETE_REMOVED			/* never pushed: row and its queue entries gone */
} M365DeleteOutcome;

/* Delete a locked event locally and queue the remote delete (see outcomes). */
extern M365DeleteOutcome m365_store_events_delete(int64 account_id, const M365StoredEvent *ev);

/*
 * Columns of the event rows read here, numbered from 1 as SPI_getbinval
 * wants them.
 */
typedef enum M365EventScanCol
{
	ES_EVENT_ID = 1, ES_CALENDAR_ID, ES_GRAPH_ID, ES_ICAL_UID, ES_SERIES_MASTER_ID,
	ES_EVENT_TYPE, ES_START_AT, ES_END_AT, ES_IS_ALL_DAY, ES_START_DATE, ES_END_DATE,
	ES_SHOW_AS, ES_IS_CANCELLED, ES_REMOTE_MODIFIED_AT, ES_SYNC_STATE, ES_CONTENT
} M365EventScanCol;

#define M365_EVENT_SCAN_COLS ES_CONTENT

/*
 * Event rows as read: column c (M365EventScanCol) of row i at
 * [i * M365_EVENT_SCAN_COLS + c - 1]; content still sealed. Valid until
 * the caller's SPI_finish.
 */
typedef struct M365EventScanRows
{
	uint64		n;
	Datum	   *values;
	bool	   *nulls;
} M365EventScanRows;

/*
 * Events overlapping a window, in order of start_at, event_id; see the
 * query for the index strategy. On a Citus coordinator one fast-path
 * statement routed to the node of the account's shards, which answers with
 * all rows packed in one value (m365_store_events_in_range_here).
 */
extern void m365_store_events_in_range(int64 account_id, TimestampTz from_ts, TimestampTz to_ts,
									   DateADT from_date, DateADT to_date,
									   bool has_calendar, int64 calendar_id, M365EventScanRows *out);

/*
 * The same on a Citus node, for the call routed here (_events_window): the
 * window query on this node's shard of the account's events, with a plan
 * kept per shard, its rows packed into one bytea (allocated in cxt) that
 * m365_store_events_in_range unpacks. ERROR when that shard is not on this
 * node.
 */
extern bytea *m365_store_events_in_range_here(int64 account_id, TimestampTz from_ts, TimestampTz to_ts,
											  DateADT from_date, DateADT to_date,
											  bool has_calendar, int64 calendar_id, MemoryContext cxt);

/* One live event, as m365_store_events_in_range (0 or 1 row). */
extern void m365_store_events_by_id(int64 account_id, int64 event_id, M365EventScanRows *out);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_events_delete_accounts(const int64 *account_ids, int n);

/*
 * The row becomes Graph's version (cols, data), live, with its sync_state
 * 'conflict' while an unresolved conflict is listed, else 'synced'. For
 * store_push.c and store_conflicts.c; the caller is connected to SPI.
 */
extern void m365_store_events_replace_row(int64 account_id, int64 event_id,
										  const M365EventColumns *cols, Jsonb *data);

/* The rest of the push's answers (store_push.c); the caller is connected to SPI. */
extern void m365_store_events_drop_pulled_twin(int64 account_id, int64 event_id, const char *graph_id);
extern void m365_store_events_link_graph_id(int64 account_id, int64 event_id, const char *graph_id,
											const char *change_key);
extern void m365_store_events_remove_pushed(int64 account_id, int64 event_id);
extern void m365_store_events_mark_synced(int64 account_id, int64 event_id);
extern void m365_store_events_mark_failed(int64 account_id, int64 event_id);

/* A conflict's row as store_conflicts.c reads it, deleted or not, locked FOR UPDATE. */
typedef struct M365EventAnyRow
{
	Jsonb	   *content;
	bool		deleted;
	char	   *graph_id;
	char	   *change_key;
	char	   *event_type;
	int64		calendar_id;
	TimestampTz local_modified_at;
	bool		has_local_modified;
} M365EventAnyRow;

/* For store_conflicts.c; the caller is connected to SPI unless said. */
extern bool m365_store_events_lock_any(int64 account_id, int64 event_id, M365EventAnyRow *r);
extern bool m365_store_events_lock_modified(int64 account_id, int64 event_id, bool *has_local_modified,
											TimestampTz *local_modified_at);	/* connects itself */
extern void m365_store_events_keep_local(int64 account_id, int64 event_id, const M365EventColumns *c);
/* Only the changeKey moved remotely: the row takes it, its state stays. */
extern void m365_store_events_refresh_etag(int64 account_id, int64 event_id, const M365EventColumns *c);
extern void m365_store_events_tombstone(int64 account_id, int64 event_id);
extern void m365_store_events_unlink(int64 account_id, int64 event_id);
extern void m365_store_events_revive(int64 account_id, int64 event_id);
extern void m365_store_events_drop_tombstone(int64 account_id, int64 event_id);
extern void m365_store_events_settle_state(int64 account_id, int64 event_id);

#endif							/* M365SYNC_STORE_EVENTS_H */
