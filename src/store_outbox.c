/*
 * store_outbox.c — SPI for m365sync.outbox, the queue of local changes for
 * the push (see store_outbox.h): queueing, collapsing, widening and
 * withdrawing entries; the push's marks (counting a send, done, failed,
 * retry later). The push's joined read of entries and events, and its
 * answers spanning both tables, are store_push.c's.
 *
 * Outbox collapse: an event has at most one pending outbox row. A later
 * change locks that row (FOR UPDATE) and folds into it; the caller holds
 * the event's row lock first (store_events.c), so the order is always the
 * events row, then its outbox row. Every queued entry wakes the worker at
 * commit (wake.c). Never logs content.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "event_patch.h"
#include "spi_util.h"
#include "store_outbox.h"
#include "wake.h"

#define TEXT_OR_NULL(s, i) \
	do { values[i] = (s) ? CStringGetTextDatum(s) : (Datum) 0; nulls[i] = (s) ? ' ' : 'n'; } while (0)

/* The event's pending outbox row, locked: its id and op; false when none. */
static bool
lock_pending(int64 account_id, int64 event_id, int64 *outbox_id, char **op)
{
	static SPIPlanPtr p;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(event_id)};
	bool		isnull;

	m365_spi_run_plan(m365_spi_saved_plan(&p, "SELECT o.outbox_id, o.op FROM m365sync.outbox o"
			 " WHERE o.account_id = $1 AND o.event_id = $2 AND o.state = 'pending'"
			 " ORDER BY o.outbox_id LIMIT 1 FOR UPDATE", 2, types),
		values, NULL, SPI_OK_SELECT, 0);
	if (SPI_processed == 0)
		return false;
	*outbox_id = DatumGetInt64(m365_spi_get_datum(1, &isnull));
	*op = m365_spi_get_text(2, CurrentMemoryContext);
	return true;
}

static Datum
text_array(const char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

void
m365_store_outbox_insert(int64 account_id, int64 event_id, const char *op,
			  const char **changed, int nchanged, const char *base_change_key)
{
	static SPIPlanPtr p;
	Oid			types[5] = {INT8OID, INT8OID, TEXTOID, TEXTARRAYOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(event_id);
	values[2] = CStringGetTextDatum(op);
	if (changed != NULL)
		values[3] = text_array(changed, nchanged);
	else
		nulls[3] = 'n';
	TEXT_OR_NULL(base_change_key, 4);
	m365_spi_run_plan(m365_spi_saved_plan(&p, "INSERT INTO m365sync.outbox (account_id, event_id, op, changed_fields,"
			 " base_change_key) VALUES ($1, $2, $3, $4, $5)", 5, types),
		values, nulls, SPI_OK_INSERT, 0);
	m365_wake_worker_at_commit();
}

void
m365_store_outbox_queue_upsert(int64 account_id, int64 event_id, bool new_event, bool never_pushed,
						const char **changed, int nchanged, const char *base_change_key)
{
	static SPIPlanPtr p_merge;
	int64		outbox_id;
	char	   *op;

	if (new_event)
	{
		m365_store_outbox_insert(account_id, event_id, "create", NULL, 0, NULL);
		return;
	}
	if (lock_pending(account_id, event_id, &outbox_id, &op))
	{
		Oid			types[3] = {INT8OID, INT8OID, TEXTARRAYOID};
		Datum		values[3];

		/* a pending create sends the whole event anyway */
		if (strcmp(op, "update") != 0)
			return;
		values[0] = Int64GetDatum(account_id);
		values[1] = Int64GetDatum(outbox_id);
		values[2] = text_array(changed, nchanged);
		m365_spi_run_plan(m365_spi_saved_plan(&p_merge, "UPDATE m365sync.outbox SET changed_fields = ARRAY("
				 "SELECT DISTINCT f FROM pg_catalog.unnest(pg_catalog.array_cat(changed_fields, $3)) f"
				 " ORDER BY f) WHERE account_id = $1 AND outbox_id = $2", 3, types),
			values, NULL, SPI_OK_UPDATE, 0);
		m365_wake_worker_at_commit();
		return;
	}
	if (never_pushed)
		m365_store_outbox_insert(account_id, event_id, "create", NULL, 0, NULL);
	else
		m365_store_outbox_insert(account_id, event_id, "update", changed, nchanged, base_change_key);
}

void
m365_store_outbox_queue_delete(int64 account_id, int64 event_id, const char *change_key)
{
	static SPIPlanPtr p_to_delete;
	int64		outbox_id;
	char	   *op;

	if (lock_pending(account_id, event_id, &outbox_id, &op))
	{
		Oid			types[2] = {INT8OID, INT8OID};
		Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(outbox_id)};

		/* a pending update becomes the delete; its If-Match stays the synced changeKey */
		m365_spi_run_plan(m365_spi_saved_plan(&p_to_delete, "UPDATE m365sync.outbox SET op = 'delete', changed_fields = NULL"
				 " WHERE account_id = $1 AND outbox_id = $2", 2, types),
			values, NULL, SPI_OK_UPDATE, 0);
		m365_wake_worker_at_commit();
	}
	else
		m365_store_outbox_insert(account_id, event_id, "delete", NULL, 0, change_key);
}

bool
m365_store_outbox_has_pending_create(int64 account_id, int64 event_id)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(event_id)};

	m365_spi_check(SPI_execute_with_args("SELECT 1 FROM m365sync.outbox WHERE account_id = $1 AND event_id = $2"
								" AND state = 'pending' AND op = 'create'",
								2, types, values, NULL, false, 1), SPI_OK_SELECT, "finding a create");
	return SPI_processed > 0;
}

/* Withdraw the event's pending (and superseded failed) entries. */
void
m365_store_outbox_withdraw(int64 account_id, int64 event_id, const char *why)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(account_id), Int64GetDatum(event_id), CStringGetTextDatum(why)};

	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET state = 'done', done_at = pg_catalog.now(),"
								" last_error = $3, next_attempt_at = NULL"
								" WHERE account_id = $1 AND event_id = $2 AND state IN ('pending', 'failed')",
								3, types, values, NULL, false, 0), SPI_OK_UPDATE, "withdrawing a push");
}

void
m365_store_outbox_insert_whole(int64 account_id, int64 event_id, const char *op, bool all_fields, const char *base)
{
	Oid			types[5] = {INT8OID, INT8OID, TEXTOID, BOOLOID, TEXTOID};
	Datum		values[5];
	char		nulls[6] = "     ";

	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(event_id);
	values[2] = CStringGetTextDatum(op);
	values[3] = BoolGetDatum(all_fields);
	values[4] = base ? CStringGetTextDatum(base) : (Datum) 0;
	nulls[4] = base ? ' ' : 'n';
	m365_spi_check(SPI_execute_with_args("INSERT INTO m365sync.outbox (account_id, event_id, op, changed_fields,"
								" base_change_key) VALUES ($1, $2, $3,"
								" CASE WHEN $4 THEN '{" M365_ALL_FIELDS "}'::text[] END, $5)",
								5, types, values, nulls, false, 0), SPI_OK_INSERT, "queueing a push");
	m365_wake_worker_at_commit();
}

/*
 * The local version, whole, is to be pushed over base: the pending entry
 * (update or delete) is widened to all fields, or a new update queued.
 */
void
m365_store_outbox_push_whole(int64 account_id, int64 event_id, bool deleted, const char *base)
{
	Oid			types[4] = {INT8OID, INT8OID, TEXTOID, BOOLOID};
	Datum		values[4] = {Int64GetDatum(account_id), Int64GetDatum(event_id),
	base ? CStringGetTextDatum(base) : (Datum) 0, BoolGetDatum(deleted)};
	char		nulls[5] = "    ";

	nulls[2] = base ? ' ' : 'n';
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET base_change_key = $3, next_attempt_at = NULL,"
								" op = CASE WHEN op = 'create' THEN op WHEN $4 THEN 'delete' ELSE 'update' END,"
								" changed_fields = CASE WHEN op = 'create' OR $4 THEN NULL"
								"   ELSE '{" M365_ALL_FIELDS "}'::text[] END"
								" WHERE account_id = $1 AND event_id = $2 AND state = 'pending'",
								4, types, values, nulls, false, 0), SPI_OK_UPDATE, "widening a push");
	if (SPI_processed == 0)
		m365_store_outbox_insert_whole(account_id, event_id, deleted ? "delete" : "update", !deleted, base);
	else
		m365_wake_worker_at_commit();
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_outbox_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.outbox WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}

/* --- the push's marks (push.c and store_push.c) --- */

/* Connects to SPI itself. */
List *
m365_store_outbox_mark_sending(int64 account_id, int limit)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int32GetDatum(limit)};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("WITH due AS (SELECT o.outbox_id FROM m365sync.outbox o"
								"  WHERE o.account_id = $1 AND o.state = 'pending'"
								"  AND coalesce(o.next_attempt_at, '-infinity') <= pg_catalog.now()"
								"  ORDER BY o.outbox_id LIMIT $2 FOR UPDATE SKIP LOCKED)"
								" UPDATE m365sync.outbox o SET attempts = o.attempts + 1,"
								"  sent_at = coalesce(o.sent_at, pg_catalog.now())"
								" FROM due WHERE o.account_id = $1 AND o.outbox_id = due.outbox_id"
								" RETURNING o.outbox_id",
								2, types, values, NULL, false, 0),
		  SPI_OK_UPDATE_RETURNING, "counting a push");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		out = lappend(out, id);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

/* The entry, and earlier failed ones of the event it supersedes, are done. */
void
m365_store_outbox_mark_done(int64 account_id, int64 outbox_id, int64 event_id)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(account_id), Int64GetDatum(event_id),
	Int64GetDatum(outbox_id)};

	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET state = 'done', done_at = pg_catalog.now(),"
								" last_error = CASE WHEN outbox_id = $3 THEN NULL ELSE last_error END,"
								" next_attempt_at = NULL"
								" WHERE account_id = $1 AND event_id = $2"
								" AND (outbox_id = $3 OR (state = 'failed' AND outbox_id < $3))",
								3, types, values, NULL, false, 0), SPI_OK_UPDATE, "marking a push done");
}

/* A create already made at Microsoft is sent again as a full update. */
void
m365_store_outbox_requeue_update(int64 account_id, int64 outbox_id, const char *base_change_key)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3];
	char		nulls[4] = "   ";

	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(outbox_id);
	TEXT_OR_NULL(base_change_key, 2);
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET op = 'update', changed_fields = '{" M365_ALL_FIELDS "}',"
								" base_change_key = $3, next_attempt_at = NULL"
								" WHERE account_id = $1 AND outbox_id = $2",
								3, types, values, nulls, false, 0), SPI_OK_UPDATE, "re-queueing a create");
}

void
m365_store_outbox_set_failed(int64 account_id, int64 outbox_id, const char *code)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(account_id), Int64GetDatum(outbox_id),
	CStringGetTextDatum(code)};

	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET state = 'failed', last_error = $3,"
								" next_attempt_at = NULL WHERE account_id = $1 AND outbox_id = $2",
								3, types, values, NULL, false, 0), SPI_OK_UPDATE, "failing a push");
}

/* A transient failure: try again after delay_s. Connects to SPI itself. */
void
m365_store_outbox_retry_later(int64 account_id, int64 outbox_id, double delay_s, const char *code)
{
	Oid			types[4] = {INT8OID, INT8OID, TEXTOID, FLOAT8OID};
	Datum		values[4] = {Int64GetDatum(account_id), Int64GetDatum(outbox_id),
	CStringGetTextDatum(code), Float8GetDatum(delay_s)};

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET last_error = $3,"
								" next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $4)"
								" WHERE account_id = $1 AND outbox_id = $2",
								4, types, values, NULL, false, 0), SPI_OK_UPDATE, "delaying a push");
	SPI_finish();
}
