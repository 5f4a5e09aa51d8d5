/*
 * store_push.c — the push's entries and answers across two tables (see
 * store_push.h).
 *
 * What is left here is what spans the outbox and the events table at
 * once: reading due entries joined to their (locked) event rows, and each
 * answer, whose outbox done-mark (store_outbox.c) and event write
 * (store_events.c) are made together in one SPI connection, in the
 * caller's transaction. The statements on one table live in that table's
 * module; the two joins here read both. Every statement is parameterised
 * and keeps to one account. It never decides what to send or how a
 * conflict ends (push.c and conflicts.c do); it never logs content.
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
#include "store_outbox.h"
#include "store_push.h"
#include "spi_util.h"

List *
m365_store_outbox_lock_entries(int64 account_id, List *outbox_ids)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		n;

	if (outbox_ids == NIL)
		return NIL;
	m365_spi_arg_int8(&a, account_id);
	{
		int64	   *ids = palloc(sizeof(int64) * list_length(outbox_ids));
		int			n_ids = 0;
		ListCell   *lc;

		foreach(lc, outbox_ids)
			ids[n_ids++] = *(int64 *) lfirst(lc);
		m365_spi_arg_int8_array(&a, ids, n_ids);
	}
	SPI_connect();
	/*
	 * The entries' events locked first (skipping those another session
	 * holds), then the entries read with their events: Citus locks rows only
	 * in a single-table query of one shard. The read re-checks that each
	 * entry is still pending, as it runs after the locks.
	 */
	n = m365_spi_run("SELECT DISTINCT o.event_id FROM m365sync.outbox o"
					 " WHERE o.account_id = $1 AND o.outbox_id = ANY ($2) AND o.state = 'pending'",
					 &a, SPI_OK_SELECT, "finding outbox entries' events");
	{
		int64	   *events = palloc(sizeof(int64) * Max(n, 1));
		uint64		n_events = n;

		for (uint64 i = 0; i < n_events; i++)
			events[i] = m365_spi_row_int8(i, 1);
		m365_spi_arg_int8_array(&a, events, (int) n_events);
		n = m365_spi_run("SELECT e.event_id FROM m365sync.events e"
						 " WHERE e.account_id = $1 AND e.event_id = ANY ($3)"
						 " FOR UPDATE SKIP LOCKED",
						 &a, SPI_OK_SELECT, "locking outbox entries' events");
		for (uint64 i = 0; i < n; i++)
			events[i] = m365_spi_row_int8(i, 1);
		a.n--;					/* $3: now the events locked */
		m365_spi_arg_int8_array(&a, events, (int) n);
	}
	n = m365_spi_run("SELECT o.outbox_id, o.event_id, e.calendar_id, o.op, o.transaction_id::text,"
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
					 "   AND e.event_id = ANY ($3)"
					 " ORDER BY o.outbox_id",
					 &a, SPI_OK_SELECT, "taking outbox entries");
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		v;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		M365PushEntry *e = palloc0(sizeof(M365PushEntry));

		e->outbox_id = m365_spi_row_int8(i, 1);
		e->event_id = m365_spi_row_int8(i, 2);
		e->calendar_id = m365_spi_row_int8(i, 3);
		e->op = m365_spi_row_text(i, 4, caller);
		e->transaction_id = m365_spi_row_text(i, 5, caller);
		v = m365_spi_row_datum(i, 6, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *enulls;
			int			nelems;

			deconstruct_array(DatumGetArrayTypeP(v), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &enulls, &nelems);
			e->changed = palloc(sizeof(char *) * Max(nelems, 1));
			for (int k = 0; k < nelems; k++)
				if (!enulls[k])
					e->changed[e->nchanged++] = TextDatumGetCString(elems[k]);
		}
		e->attempts = m365_spi_row_int4(i, 7);
		v = m365_spi_row_datum(i, 8, &isnull);
		e->has_sent_at = !isnull;
		if (!isnull)
			e->sent_at = DatumGetTimestampTz(v);
		e->graph_id = m365_spi_row_text(i, 9, caller);
		e->change_key = m365_spi_row_text(i, 10, caller);
		e->calendar_graph_id = m365_spi_row_text(i, 11, caller);
		e->event_type = m365_spi_row_text(i, 12, caller);
		e->deleted = m365_spi_row_bool(i, 13);
		e->local_modified_at = DatumGetTimestampTz(m365_spi_row_datum(i, 14, &isnull));
		v = m365_spi_row_datum(i, 15, &isnull);
		e->data = m365_store_events_open(account_id, e->event_id, DatumGetByteaPP(v));
		out = lappend(out, e);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

/* A create's answer when the row changed after the first send: keep local content, send it all. */
static void
link_then_update_all(int64 account_id, const M365PushEntry *e, const M365EventColumns *c)
{
	m365_store_events_link_graph_id(account_id, e->event_id, c->graph_id, c->change_key);
	m365_store_outbox_requeue_update(account_id, e->outbox_id, c->change_key);
}

static bool
done_write(int64 account_id, const M365PushEntry *e, const M365EventColumns *c, Jsonb *data)
{
	if (c->graph_id != NULL && (e->graph_id == NULL || strcmp(e->graph_id, c->graph_id) != 0))
		m365_store_events_drop_pulled_twin(account_id, e->event_id, c->graph_id);
	if (strcmp(e->op, "create") == 0 && e->attempts > 1 && e->has_sent_at &&
		e->local_modified_at > e->sent_at)
	{
		/* An earlier send may have made the event with older content. */
		link_then_update_all(account_id, e, c);
		return false;
	}
	m365_store_outbox_mark_done(account_id, e->outbox_id, e->event_id);
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
	SPI_connect();
	m365_store_outbox_mark_done(account_id, e->outbox_id, e->event_id);
	m365_store_events_remove_pushed(account_id, e->event_id);
	SPI_finish();
}

void
m365_store_outbox_done_nothing(int64 account_id, const M365PushEntry *e)
{
	SPI_connect();
	m365_store_outbox_mark_done(account_id, e->outbox_id, e->event_id);
	m365_store_events_mark_synced(account_id, e->event_id);
	SPI_finish();
}

void
m365_store_outbox_failed(int64 account_id, const M365PushEntry *e, const char *code)
{
	SPI_connect();
	m365_store_outbox_set_failed(account_id, e->outbox_id, code);
	m365_store_events_mark_failed(account_id, e->event_id);
	SPI_finish();
}

int64
m365_store_events_link_pulled(int64 account_id, const M365EventColumns *c, Jsonb *data)
{
	JsonbValue *txid = getKeyJsonValueFromContainer(&data->root, "transactionId",
													strlen("transactionId"), NULL);
	M365SpiArgs a = {0};
	M365PushEntry e = {0};
	bool		isnull;
	Datum		v;

	if (txid == NULL || txid->type != jbvString || txid->val.string.len == 0)
		return 0;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg(&a, TEXTOID,
				 PointerGetDatum(cstring_to_text_with_len(txid->val.string.val, txid->val.string.len)), false);
	SPI_connect();
	if (m365_spi_run("SELECT o.outbox_id, o.event_id, o.attempts, o.sent_at, e.local_modified_at"
					 " FROM m365sync.outbox o JOIN m365sync.events e"
					 "  ON e.account_id = o.account_id AND e.event_id = o.event_id"
					 " WHERE o.account_id = $1 AND o.state = 'pending' AND o.op = 'create'"
					 " AND o.transaction_id::text = $2 AND e.graph_id IS NULL LIMIT 1 FOR UPDATE OF e",
					 &a, SPI_OK_SELECT, "finding a create") == 0)
	{
		SPI_finish();
		return 0;
	}
	e.outbox_id = m365_spi_get_int8(1);
	e.event_id = m365_spi_get_int8(2);
	/* it reached Microsoft before: treat as a resent create */
	e.attempts = Max(m365_spi_row_int4(0, 3), 2);
	v = m365_spi_get_datum(4, &isnull);
	e.has_sent_at = !isnull;
	if (!isnull)
		e.sent_at = DatumGetTimestampTz(v);
	e.local_modified_at = DatumGetTimestampTz(m365_spi_get_datum(5, &isnull));
	e.op = "create";
	(void) done_write(account_id, &e, c, data);
	SPI_finish();
	return e.event_id;
}
