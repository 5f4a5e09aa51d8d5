/*
 * store_calendars.h — an account's calendars (store_calendars.c). The
 * API's reads and writes expect the caller connected to SPI; the
 * worker's (upsert, to_pull, save_cursor) connect themselves. All run in
 * the caller's transaction.
 */
#ifndef M365SYNC_STORE_CALENDARS_H
#define M365SYNC_STORE_CALENDARS_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "graph_util.h"

typedef struct M365PullCalendar
{
	int64		calendar_id;
	char	   *graph_id;
	char	   *link;			/* decrypted next/delta link, NULL: start a round */
	bool		link_is_final;	/* a deltaLink (round finished) */
	int64		full_round_id;	/* 0 unless a full round is under way */
	TimestampTz window_start;
	TimestampTz window_end;
	bool		has_window;
	bool		cursor_unsaved; /* pull.c: a new deltaLink to save when the round ends */
} M365PullCalendar;

/*
 * A calendar of the account: calendar_id > 0 names one, 0 asks for the
 * default. False when there is none.
 */
extern bool m365_store_calendars_find(int64 account_id, int64 calendar_id,
									 int64 *found_id, bool *can_edit);

/* Calendars of the account into SPI_tuptable: calendar_id, name (encrypted), is_default, can_edit, sync_enabled. */
extern uint64 m365_store_calendars_list(int64 account_id);

/* False when the account has no such calendar. */
extern bool m365_store_calendars_set_sync(int64 account_id, int64 calendar_id, bool enabled);

/* calendars: insert or refresh by Graph id; new default calendar enabled. */
extern int64 m365_store_calendars_upsert(int64 account_id, const M365GraphCalendar *c, bool enable);

/* Sync-enabled calendars of an account (not those gone). */
extern List *m365_store_calendars_to_pull(int64 account_id);

/* A calendar as stored, for the refresh of the list (calendars.c). */
typedef struct M365StoredCalendar
{
	int64		calendar_id;
	char	   *graph_id;
	char	   *name;			/* decrypted; NULL when none */
	bool		is_default;
	bool		sync_enabled;
} M365StoredCalendar;

/* Every calendar of the account (palloc'd M365StoredCalendar). */
extern List *m365_store_calendars_all(int64 account_id);

/*
 * A calendar Graph no longer lists: deleted with its events (their ids
 * kept a while for events that turn up in another calendar,
 * store_removed_events.h).
 */
extern void m365_store_calendars_remove(int64 account_id, int64 calendar_id);

/* The calendar answered 404: left out of pulls until the list is read again. */
extern void m365_store_calendars_mark_gone(int64 account_id, int64 calendar_id);

/*
 * Lock the calendar's key (FOR KEY SHARE, as a foreign key check does) for
 * the rest of the transaction: rows referencing it may then be written
 * without a check each, and nobody can delete it before commit. False when
 * there is no such calendar (any more). Connects to SPI itself.
 */
extern bool m365_store_calendars_lock_key(int64 account_id, int64 calendar_id);

/* Save a calendar's cursor (encrypted) and round state. */
extern void m365_store_calendars_save_cursor(int64 account_id, const M365PullCalendar *cal);

/* The cursors of n calendars (cals[i] of account account_ids[i]), in one statement. */
extern void m365_store_calendars_save_cursors(const int64 *account_ids, M365PullCalendar *const *cals, int n);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_calendars_delete_accounts(const int64 *account_ids, int n);

#endif							/* M365SYNC_STORE_CALENDARS_H */
