/*
 * store_push.c — SPI for the push (see store_push.h).
 *
 * The only SQL text of the push. Every statement is parameterised and
 * keeps to one account. It never decides what to send or how a conflict
 * ends (push.c and conflicts.c do); it never logs content. The
 * answer of a write and the done-mark of its entry are written together
 * here, in the caller's transaction.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "event_patch.h"
#include "keyring.h"
#include "store_events.h"
#include "store_push.h"
#include "spi_util.h"

static Datum
int8_array(List *ids)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(list_length(ids), 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, ids)
		d[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return PointerGetDatum(construct_array(d, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Same sync_state rule everywhere: a listed, unresolved conflict shows. */
#define STATE_AFTER_SYNC \
	"CASE WHEN EXISTS (SELECT 1 FROM m365sync.conflicts c WHERE c.account_id = $1" \
	" AND c.event_id = $2 AND c.resolved_at IS NULL) THEN 'conflict' ELSE 'synced' END"

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

static char *
text_or_null(HeapTuple t, TupleDesc d, int col)
{
	bool		isnull;
	Datum		v = SPI_getbinval(t, d, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(v);
}

List *
m365_store_outbox_lock_entries(int64 account_id, List *outbox_ids)
{
	Oid			types[2] = {INT8OID, INT8ARRAYOID};
	Datum		values[2];
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;

	if (outbox_ids == NIL)
		return NIL;
	values[0] = Int64GetDatum(account_id);
	values[1] = int8_array(outbox_ids);
	SPI_connect();
	m365_spi_check(SPI_execute_with_args("SELECT o.outbox_id, o.event_id, e.calendar_id, o.op, o.transaction_id::text,"
								" CASE WHEN o.op = 'update' THEN ARRAY(SELECT DISTINCT f FROM pg_catalog.unnest("
								"   o.changed_fields || coalesce((SELECT pg_catalog.array_agg(x) FROM m365sync.outbox p,"
								"     pg_catalog.unnest(p.changed_fields) x WHERE p.account_id = o.account_id"
								"     AND p.event_id = o.event_id AND p.state = 'failed' AND p.op = 'update'"
								"     AND p.outbox_id < o.outbox_id), '{}')) f ORDER BY f) END,"
								" o.attempts, o.sent_at, e.graph_id, e.change_key, c.graph_id, e.event_type,"
								" e.deleted, e.local_modified_at, e.content"
								" FROM m365sync.outbox o"
								" JOIN m365sync.events e ON e.account_id = o.account_id AND e.event_id = o.event_id"
								" JOIN m365sync.calendars c ON c.account_id = e.account_id AND c.calendar_id = e.calendar_id"
								" WHERE o.account_id = $1 AND o.outbox_id = ANY ($2) AND o.state = 'pending'"
								" ORDER BY o.outbox_id FOR UPDATE OF e SKIP LOCKED",
								2, types, values, NULL, false, 0), SPI_OK_SELECT, "taking outbox entries");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		v;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		M365PushEntry *e = palloc0(sizeof(M365PushEntry));

		e->outbox_id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		e->event_id = DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
		e->calendar_id = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
		e->op = text_or_null(t, d, 4);
		e->transaction_id = text_or_null(t, d, 5);
		v = SPI_getbinval(t, d, 6, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *enulls;
			int			n;

			deconstruct_array(DatumGetArrayTypeP(v), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &enulls, &n);
			e->changed = palloc(sizeof(char *) * Max(n, 1));
			for (int k = 0; k < n; k++)
				if (!enulls[k])
					e->changed[e->nchanged++] = TextDatumGetCString(elems[k]);
		}
		e->attempts = DatumGetInt32(SPI_getbinval(t, d, 7, &isnull));
		v = SPI_getbinval(t, d, 8, &isnull);
		e->has_sent_at = !isnull;
		if (!isnull)
			e->sent_at = DatumGetTimestampTz(v);
		e->graph_id = text_or_null(t, d, 9);
		e->change_key = text_or_null(t, d, 10);
		e->calendar_graph_id = text_or_null(t, d, 11);
		e->event_type = text_or_null(t, d, 12);
		e->deleted = DatumGetBool(SPI_getbinval(t, d, 13, &isnull));
		e->local_modified_at = DatumGetTimestampTz(SPI_getbinval(t, d, 14, &isnull));
		v = SPI_getbinval(t, d, 15, &isnull);
		e->data = m365_store_events_open(account_id, e->event_id, DatumGetByteaPP(v));
		out = lappend(out, e);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

/* The entry, and earlier failed ones of the event it supersedes, are done. */
static void
mark_done(int64 account_id, const M365PushEntry *e)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(account_id), Int64GetDatum(e->event_id),
	Int64GetDatum(e->outbox_id)};

	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET state = 'done', done_at = pg_catalog.now(),"
								" last_error = CASE WHEN outbox_id = $3 THEN NULL ELSE last_error END,"
								" next_attempt_at = NULL"
								" WHERE account_id = $1 AND event_id = $2"
								" AND (outbox_id = $3 OR (state = 'failed' AND outbox_id < $3))",
								3, types, values, NULL, false, 0), SPI_OK_UPDATE, "marking a push done");
}

/* Another row already holding graph_id (pulled before we knew it was ours) gives way. */
static void
drop_pulled_twin(int64 account_id, int64 event_id, const char *graph_id)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(account_id), Int64GetDatum(event_id),
	CStringGetTextDatum(graph_id)};

	m365_spi_check(SPI_execute_with_args("DELETE FROM m365sync.events e WHERE e.account_id = $1 AND e.graph_id = $3"
								" AND e.event_id <> $2 AND e.sync_state = 'synced' AND NOT EXISTS ("
								"  SELECT 1 FROM m365sync.outbox o WHERE o.account_id = e.account_id"
								"  AND o.event_id = e.event_id AND o.state = 'pending')",
								3, types, values, NULL, false, 0), SPI_OK_DELETE, "merging a pulled twin");
}

#define TEXT_ARG(i, s) do { values[i] = (s) ? CStringGetTextDatum(s) : (Datum) 0; nulls[i] = (s) ? ' ' : 'n'; } while (0)

/* The row becomes Graph's version (cols, data); sync_state by STATE_AFTER_SYNC. */
void
m365_store_events_replace_row(int64 account_id, int64 event_id, const M365EventColumns *c, Jsonb *data)
{
	Oid			types[17] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, BOOLOID, DATEOID, DATEOID, TEXTOID, BOOLOID, BYTEAOID, TEXTOID,
	TIMESTAMPTZOID, TEXTOID};
	Datum		values[17];
	char		nulls[18];

	memset(nulls, ' ', 17);
	nulls[17] = '\0';
	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(event_id);
	TEXT_ARG(2, c->graph_id);
	TEXT_ARG(3, c->ical_uid);
	TEXT_ARG(4, c->series_master_graph_id);
	m365_event_row_bind_shape(c, &values[5], &nulls[5]);
	values[13] = PointerGetDatum(m365_store_events_seal(account_id, event_id, data));
	m365_event_row_bind_sync(c, &values[14], &nulls[14]);
	TEXT_ARG(16, c->graph_id);
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET graph_id = $3, ical_uid = $4,"
								" series_master_id = coalesce((SELECT m.event_id FROM m365sync.events m"
								"   WHERE m.account_id = $1 AND m.graph_id = $5), series_master_id),"
								" event_type = $6, start_at = $7, end_at = $8, is_all_day = $9,"
								" start_date = $10, end_date = $11, show_as = $12, is_cancelled = $13,"
								" content = $14, change_key = $15, remote_modified_at = $16, deleted = false,"
								" sync_state = " STATE_AFTER_SYNC
								" WHERE account_id = $1 AND event_id = $2",
								17, types, values, nulls, false, 0), SPI_OK_UPDATE, "storing a push answer");
}

/* A create's answer when the row changed after the first send: keep local content, send it all. */
static void
link_then_update_all(int64 account_id, const M365PushEntry *e, const M365EventColumns *c)
{
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[6] = "     ";

	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(e->event_id);
	values[2] = Int64GetDatum(e->outbox_id);
	TEXT_ARG(3, c->graph_id);
	TEXT_ARG(4, c->change_key);
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET graph_id = $4, change_key = $5"
								" WHERE account_id = $1 AND event_id = $2",
								5, types, values, nulls, false, 0), SPI_OK_UPDATE, "linking a create");
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET op = 'update', changed_fields = '{" M365_ALL_FIELDS "}',"
								" base_change_key = $5, next_attempt_at = NULL"
								" WHERE account_id = $1 AND outbox_id = $3",
								5, types, values, nulls, false, 0), SPI_OK_UPDATE, "re-queueing a create");
}

static bool
done_write(int64 account_id, const M365PushEntry *e, const M365EventColumns *c, Jsonb *data)
{
	if (c->graph_id != NULL && (e->graph_id == NULL || strcmp(e->graph_id, c->graph_id) != 0))
		drop_pulled_twin(account_id, e->event_id, c->graph_id);
	if (strcmp(e->op, "create") == 0 && e->attempts > 1 && e->has_sent_at &&
		e->local_modified_at > e->sent_at)
	{
		/* An earlier send may have made the event with older content. */
		link_then_update_all(account_id, e, c);
		return false;
	}
	mark_done(account_id, e);
	m365_store_events_replace_row(account_id, e->event_id, c, data);
	return true;
}

bool
m365_store_outbox_done_write(int64 account_id, const M365PushEntry *e, const M365EventColumns *c, Jsonb *data)
{
	bool		done;

	SPI_connect();
	done = done_write(account_id, e, c, data);
	SPI_finish();
	return done;
}

void
m365_store_outbox_done_delete(int64 account_id, const M365PushEntry *e)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(e->event_id)};

	SPI_connect();
	mark_done(account_id, e);
	/* A row whose conflict is still listed stays as a tombstone (the listing needs it). */
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET graph_id = NULL, change_key = NULL,"
								" sync_state = 'conflict' WHERE account_id = $1 AND event_id = $2"
								" AND EXISTS (SELECT 1 FROM m365sync.conflicts c WHERE c.account_id = $1"
								"  AND c.event_id = $2 AND c.resolved_at IS NULL)",
								2, types, values, NULL, false, 0), SPI_OK_UPDATE, "keeping a tombstone");
	if (SPI_processed == 0)
		m365_spi_check(SPI_execute_with_args("DELETE FROM m365sync.events WHERE account_id = $1 AND event_id = $2",
									2, types, values, NULL, false, 0), SPI_OK_DELETE, "removing a deleted event");
	SPI_finish();
}

void
m365_store_outbox_done_nothing(int64 account_id, const M365PushEntry *e)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(e->event_id)};

	SPI_connect();
	mark_done(account_id, e);
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET sync_state = " STATE_AFTER_SYNC
								" WHERE account_id = $1 AND event_id = $2",
								2, types, values, NULL, false, 0), SPI_OK_UPDATE, "marking an event synced");
	SPI_finish();
}

void
m365_store_outbox_failed(int64 account_id, const M365PushEntry *e, const char *code)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(account_id), Int64GetDatum(e->outbox_id),
	CStringGetTextDatum(code)};

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET state = 'failed', last_error = $3,"
								" next_attempt_at = NULL WHERE account_id = $1 AND outbox_id = $2",
								3, types, values, NULL, false, 0), SPI_OK_UPDATE, "failing a push");
	values[1] = Int64GetDatum(e->event_id);
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET sync_state = 'failed'"
								" WHERE account_id = $1 AND event_id = $2",
								2, types, values, NULL, false, 0), SPI_OK_UPDATE, "failing an event");
	SPI_finish();
}

void
m365_store_outbox_retry_later(int64 account_id, const M365PushEntry *e, double delay_s, const char *code)
{
	Oid			types[4] = {INT8OID, INT8OID, TEXTOID, FLOAT8OID};
	Datum		values[4] = {Int64GetDatum(account_id), Int64GetDatum(e->outbox_id),
	CStringGetTextDatum(code), Float8GetDatum(delay_s)};

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.outbox SET last_error = $3,"
								" next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $4)"
								" WHERE account_id = $1 AND outbox_id = $2",
								4, types, values, NULL, false, 0), SPI_OK_UPDATE, "delaying a push");
	SPI_finish();
}

int64
m365_store_events_link_pulled(int64 account_id, const M365EventColumns *c, Jsonb *data)
{
	JsonbValue *txid = getKeyJsonValueFromContainer(&data->root, "transactionId",
													strlen("transactionId"), NULL);
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	M365PushEntry e = {0};
	bool		isnull;
	HeapTuple	t;
	TupleDesc	d;
	Datum		v;

	if (txid == NULL || txid->type != jbvString || txid->val.string.len == 0)
		return 0;
	values[0] = Int64GetDatum(account_id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(txid->val.string.val, txid->val.string.len));
	SPI_connect();
	m365_spi_check(SPI_execute_with_args("SELECT o.outbox_id, o.event_id, o.attempts, o.sent_at, e.local_modified_at"
								" FROM m365sync.outbox o JOIN m365sync.events e"
								"  ON e.account_id = o.account_id AND e.event_id = o.event_id"
								" WHERE o.account_id = $1 AND o.state = 'pending' AND o.op = 'create'"
								" AND o.transaction_id::text = $2 AND e.graph_id IS NULL FOR UPDATE OF e",
								2, types, values, NULL, false, 1), SPI_OK_SELECT, "finding a create");
	if (SPI_processed == 0)
	{
		SPI_finish();
		return 0;
	}
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	e.outbox_id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
	e.event_id = DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
	/* it reached Microsoft before: treat as a resent create */
	e.attempts = Max(DatumGetInt32(SPI_getbinval(t, d, 3, &isnull)), 2);
	v = SPI_getbinval(t, d, 4, &isnull);
	e.has_sent_at = !isnull;
	if (!isnull)
		e.sent_at = DatumGetTimestampTz(v);
	e.local_modified_at = DatumGetTimestampTz(SPI_getbinval(t, d, 5, &isnull));
	e.op = "create";
	(void) done_write(account_id, &e, c, data);
	SPI_finish();
	return e.event_id;
}
