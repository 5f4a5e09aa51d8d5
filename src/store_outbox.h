/*
 * store_outbox.h — the queue of local changes for the push
 * (store_outbox.c). Every function but mark_sending and retry_later (which
 * connect themselves) expects the caller to be connected to SPI, holding the event's row lock, in the caller's transaction; each
 * queued entry wakes the worker when that transaction commits.
 */
#ifndef M365SYNC_STORE_OUTBOX_H
#define M365SYNC_STORE_OUTBOX_H

#include "postgres.h"

#include <cjson/cJSON.h>

#include "nodes/pg_list.h"

/* A new entry: op create, update (changed: the fields, or NULL) or delete; base is the If-Match. */
extern void m365_store_outbox_insert(int64 account_id, int64 event_id, const char *op,
									 const char **changed, int nchanged, const char *base_change_key);

/*
 * Queue a local create or update for the push, collapsing into the event's
 * pending outbox entry: create+update stays a create, update+update merges
 * changed_fields. A change to an event Microsoft never got (never_pushed,
 * no pending entry: its create failed) is queued as a create.
 * base_change_key is the If-Match for an update.
 */
extern void m365_store_outbox_queue_upsert(int64 account_id, int64 event_id,
									bool new_event, bool never_pushed,
									const char **changed, int nchanged,
									const char *base_change_key);

/* Queue a local delete: a pending entry becomes the delete, else a new one (If-Match change_key). */
extern void m365_store_outbox_queue_delete(int64 account_id, int64 event_id, const char *change_key);

/*
 * The fields the event's pending (and superseded failed) updates change,
 * palloc'd into *fields; M365_ALL_FIELDS among them when one changes all.
 * Returns their number, 0 when only a delete (or nothing) waits.
 */
extern int	m365_store_outbox_pending_fields(int64 account_id, int64 event_id, char ***fields);

/*
 * The keyed hash of field's value in ev (a Graph event; absent = null) as
 * the outbox keeps it, "field=hmac:...": time fields hash start, end and
 * isAllDay together. NULL when out of memory.
 */
extern char *m365_store_outbox_base_hash(int64 account_id, const cJSON *ev, const char *field);

/*
 * An update of the event was queued over old (its content before the
 * change, the last-known remote version of the fields it changes): the
 * pending update keeps the hashes of those fields' old values, the first
 * one of each field only. Not for "*" (whole event) entries.
 */
extern void m365_store_outbox_note_bases(int64 account_id, int64 event_id, const cJSON *old,
										 const char *const *fields, int nfields);

/*
 * The base hashes of the event's pending (and superseded failed) updates,
 * earliest first, palloc'd into *hashes; returns their number.
 */
extern int	m365_store_outbox_pending_bases(int64 account_id, int64 event_id, char ***hashes);

/* Is a create of the event waiting? */
extern bool m365_store_outbox_has_pending_create(int64 account_id, int64 event_id);

/* Withdraw the event's pending (and superseded failed) entries; why goes into last_error. */
extern void m365_store_outbox_withdraw(int64 account_id, int64 event_id, const char *why);

/* A new entry sending the whole stored event (all_fields) or a create/delete. */
extern void m365_store_outbox_insert_whole(int64 account_id, int64 event_id, const char *op,
										   bool all_fields, const char *base);

/*
 * The local version, whole, is to be pushed over base: the pending entry
 * (update or delete) is widened to all fields, or a new one queued.
 */
extern void m365_store_outbox_push_whole(int64 account_id, int64 event_id, bool deleted, const char *base);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_outbox_delete_accounts(const int64 *account_ids, int n);

/* --- the push's marks (store_push.h has the reads and the answers) --- */

/*
 * Which of n accounts have a pending entry due to be sent: due[i] for
 * account_ids[i] (one statement for a wave of rounds; an entry added
 * after it waits for the next round, which its wake-up brings).
 */
extern void m365_store_outbox_due_among(const int64 *account_ids, int n, bool *due);

/*
 * Count a send of up to limit due pending entries of the account, in
 * outbox order (entries the app holds locked are left for later). Returns
 * their outbox ids (List of int64 pointers), NIL when none is due.
 */
extern List *m365_store_outbox_mark_sending(int64 account_id, int limit);

extern void m365_store_outbox_mark_done(int64 account_id, int64 outbox_id, int64 event_id);
extern void m365_store_outbox_requeue_update(int64 account_id, int64 outbox_id, const char *base_change_key);
extern void m365_store_outbox_set_failed(int64 account_id, int64 outbox_id, const char *code);

/* A transient failure: try again after delay_s. */
extern void m365_store_outbox_retry_later(int64 account_id, int64 outbox_id, double delay_s,
										  const char *code);

#endif							/* M365SYNC_STORE_OUTBOX_H */
