/*
 * store_events_pull.c — the pull's statements on m365sync.events (see
 * store_events_pull.h): the events module's remote side, apart from
 * store_events.c (rows of app writes, sealing) for size.
 *
 * Idempotent by construction: an event is found by its Graph id (immutable
 * ids), an unchanged changeKey writes nothing but the round mark, and a
 * removal of something already gone is a no-op. A remote change meeting a
 * local change waiting in the outbox is handed back to pull.c, which has
 * it settled by the conflict policy (conflicts.c): one version kept, the
 * other listed, never lost. A
 * new remote event carrying the transactionId of one of our pending creates
 * is linked to it, not copied. A full round marks every event it meets,
 * whether inserted, updated, linked or settled by a conflict, so that its
 * sweep removes only what Microsoft no longer has (a listed conflict's row
 * stays as a tombstone). Every statement is parameterised and keeps to one
 * account.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "common/hashfn.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "store_events.h"
#include "store_events_pull.h"
#include "store_events_remove.h"
#include "store_events_rows.h"
#include "store_removed_events.h"
#include "store_push.h"
#include "spi_util.h"

/* Local id of an event by Graph id (0 when unknown); series masters only. */
static int64
local_id(int64 account_id, const char *graph_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, graph_id);

	/* a fresh snapshot: a master applied just before this page's events is seen */
	if (m365_spi_run("SELECT event_id FROM m365sync.events WHERE account_id = $1 AND graph_id = $2 LIMIT 1",
							   &a, SPI_OK_SELECT, "finding an event") == 0)
		return 0;
	return m365_spi_get_int8(1);
}

typedef struct BatchEntry
{
	char	   *graph_id;
	int64		event_id;
	char	   *change_key;
	int64		calendar_id;	/* where the row says the event is */
	bool		pending;		/* a local change waits in the outbox */
	bool		in_conflict;	/* sync_state 'conflict': a listed conflict */
	bool		gone;			/* removed in this page */
	ItemPointerData tid;		/* current row version, locked by us */
} BatchEntry;

struct M365PullBatch
{
	int64		account_id;
	int64		round_id;
	BatchEntry *entries;
	int			n;
	int			cap;
	int		   *index;			/* by graph_id: entry number + 1, 0 = free */
	int			index_size;		/* a power of two, twice cap */
	int64	   *seen;			/* unchanged events to mark with round_id */
	int			nseen;
	int			seen_cap;
	M365EventRows *rows;		/* new events not yet inserted (NULL until the first) */
	int64	   *ids;			/* fresh event_ids, taken from the sequence at once */
	int			ids_used;
	int			ids_n;
	int			unknown;		/* the page's ids not yet stored: at most that many new events */
	char	  **waiting;		/* Graph ids with a removed event's id waiting (store_removed_events.h) */
	int			nwaiting;
	int			waiting_cap;
	int64	   *masters;		/* series masters of the page's stored events, as they were */
	int			nmasters;
	M365PullWritten *written;	/* the round's stored Graph ids, or NULL */
	MemoryContext cxt;			/* the batch's memory; callers reset theirs per event */
};

/*
 * Insert the page's new events gathered so far, in one statement. Every
 * other write of the page runs after it, so it sees them, as it saw them
 * when each row was inserted on its own.
 */
static void
flush_inserts(M365PullBatch *b)
{
	if (b->rows)
		m365_store_events_rows_insert(b->rows);
}

/* A fresh event_id: the page's new events take theirs from one statement. */
static int64
take_id(M365PullBatch *b)
{
	if (b->ids_used == b->ids_n)
	{
		MemoryContext old = MemoryContextSwitchTo(b->cxt);

		b->ids_n = Max(b->unknown - b->ids_used, 1);
		b->ids = palloc(sizeof(int64) * b->ids_n);
		b->ids_used = 0;
		MemoryContextSwitchTo(old);
		m365_store_events_next_ids(b->ids, b->ids_n);
		b->unknown = 0;
	}
	return b->ids[b->ids_used++];
}

/*
 * The entries are found by graph_id through an open-addressing index of
 * entry numbers (+1; 0 is a free slot), at most half full: a page of 100
 * events no longer compares every id with every other.
 */
static uint32
id_hash(const char *graph_id)
{
	return hash_bytes((const unsigned char *) graph_id, (int) strlen(graph_id));
}

static void
index_entry(M365PullBatch *b, int n)
{
	uint32		mask = b->index_size - 1;
	uint32		i;

	for (i = id_hash(b->entries[n].graph_id) & mask; b->index[i] != 0; i = (i + 1) & mask)
		;
	b->index[i] = n + 1;
}

static BatchEntry *
find_entry(M365PullBatch *b, const char *graph_id)
{
	uint32		mask = b->index_size - 1;
	uint32		i;

	if (b->index_size == 0)
		return NULL;
	for (i = id_hash(graph_id) & mask; b->index[i] != 0; i = (i + 1) & mask)
	{
		BatchEntry *e = &b->entries[b->index[i] - 1];

		if (!e->gone && strcmp(e->graph_id, graph_id) == 0)
			return e;
	}
	return NULL;
}

/* A new entry for graph_id (a copy in the batch's memory). */
static BatchEntry *
add_entry(M365PullBatch *b, char *graph_id)
{
	BatchEntry *e;

	if (b->n == b->cap)
	{
		b->cap = Max(16, b->cap * 2);
		b->entries = b->entries ? repalloc(b->entries, sizeof(BatchEntry) * b->cap)
			: MemoryContextAlloc(b->cxt, sizeof(BatchEntry) * b->cap);
		/* grow the index with the entries, and index them all again */
		b->index_size = 2 * b->cap;
		b->index = b->index ? repalloc(b->index, sizeof(int) * b->index_size)
			: MemoryContextAlloc(b->cxt, sizeof(int) * b->index_size);
		memset(b->index, 0, sizeof(int) * b->index_size);
		for (int k = 0; k < b->n; k++)
			index_entry(b, k);
	}
	e = &b->entries[b->n];
	memset(e, 0, sizeof(BatchEntry));
	e->graph_id = graph_id;
	index_entry(b, b->n++);
	return e;
}

/* A series master of the page's stored events, once. */
static void
add_master(M365PullBatch *b, int64 master)
{
	for (int k = 0; k < b->nmasters; k++)
		if (b->masters[k] == master)
			return;
	b->masters[b->nmasters++] = master;
}

/* Does a removed event's id wait for this Graph id? */
static bool
removed_waits(M365PullBatch *b, const char *graph_id)
{
	for (int k = 0; k < b->nwaiting; k++)
		if (strcmp(b->waiting[k], graph_id) == 0)
			return true;
	return false;
}

/* This page removed the event: its id now waits too. */
static void
removed_add(M365PullBatch *b, const char *graph_id)
{
	if (b->nwaiting == b->waiting_cap)
	{
		b->waiting_cap = Max(8, b->waiting_cap * 2);
		b->waiting = b->waiting ? repalloc(b->waiting, sizeof(char *) * b->waiting_cap)
			: MemoryContextAlloc(b->cxt, sizeof(char *) * b->waiting_cap);
	}
	b->waiting[b->nwaiting++] = MemoryContextStrdup(b->cxt, graph_id);
}

/*
 * The round's stored Graph ids, as 64-bit hashes in an open-addressing
 * table at most half full (0 is a free slot). A hash shared with another id
 * only sends a page through the lookup, never skips one. Nothing else
 * stores an account's Graph ids during its round: other rounds wait for
 * its round lock, and the app never writes them (its events get theirs
 * from the push, after the pull); and were one stored anyway, the unique
 * index on (account_id, graph_id) would refuse the page, which fails the
 * round, and the next round looks every id up.
 */
struct M365PullWritten
{
	uint64	   *slots;
	uint32		size;			/* a power of two */
	uint32		n;
	int64		calendar_id;	/* the round that found the account empty */
	int64		round_id;
	bool		masters;		/* a series master was stored */
};

static uint64
written_hash(const char *graph_id)
{
	uint64		h = hash_bytes_extended((const unsigned char *) graph_id, (int) strlen(graph_id), 0);

	return h == 0 ? 1 : h;
}

static void
written_put(M365PullWritten *w, uint64 h)
{
	uint32		mask = w->size - 1;
	uint32		i;

	for (i = (uint32) h & mask; w->slots[i] != 0; i = (i + 1) & mask)
		if (w->slots[i] == h)
			return;
	w->slots[i] = h;
	w->n++;
}

static void
written_add(M365PullWritten *w, const char *graph_id)
{
	if (w == NULL || graph_id == NULL)
		return;
	if (2 * (w->n + 1) > w->size)
	{
		uint64	   *old = w->slots;
		uint32		old_size = w->size;

		/* in the set's own memory: the round's, not the page's */
		w->size *= 2;
		w->slots = MemoryContextAllocZero(GetMemoryChunkContext(w), sizeof(uint64) * w->size);
		w->n = 0;
		for (uint32 k = 0; k < old_size; k++)
			if (old[k] != 0)
				written_put(w, old[k]);
		pfree(old);
	}
	written_put(w, written_hash(graph_id));
}

static bool
written_has(const M365PullWritten *w, const char *graph_id)
{
	uint64		h = written_hash(graph_id);
	uint32		mask = w->size - 1;

	for (uint32 i = (uint32) h & mask; w->slots[i] != 0; i = (i + 1) & mask)
		if (w->slots[i] == h)
			return true;
	return false;
}

M365PullWritten *
m365_store_events_pull_written_new(int64 account_id, int64 calendar_id, int64 round_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	M365PullWritten *w = NULL;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	/* one probe of the (account_id, graph_id) index */
	m365_spi_run("SELECT EXISTS (SELECT 1 FROM m365sync.events WHERE account_id = $1 AND graph_id IS NOT NULL)",
				 &a, SPI_OK_SELECT, "looking for stored events");
	if (!m365_spi_get_bool(1) && !m365_store_removed_events_any(account_id))
	{
		w = MemoryContextAlloc(cxt, sizeof(M365PullWritten));
		w->size = 1024;
		w->n = 0;
		w->calendar_id = calendar_id;
		w->round_id = round_id;
		w->masters = false;
		w->slots = MemoryContextAllocZero(cxt, sizeof(uint64) * w->size);
	}
	SPI_finish();
	return w;
}

bool
m365_store_events_pull_written_covers(const M365PullWritten *w, int64 calendar_id, int64 round_id)
{
	return w != NULL && w->calendar_id == calendar_id && w->round_id == round_id && round_id != 0;
}

bool
m365_store_events_pull_written_masters(const M365PullWritten *w)
{
	return w == NULL || w->masters;
}

void
m365_store_events_pull_written_free(M365PullWritten *w)
{
	if (w == NULL)
		return;
	pfree(w->slots);
	pfree(w);
}

/*
 * The lookup is planned for each page (custom plan over the unique index on
 * (account_id, graph_id)); the per-event writes then address rows by ctid,
 * which no generic plan can get wrong as the table grows from empty.
 */
M365PullBatch *
m365_store_events_pull_begin(int64 account_id, int64 round_id, const char *const *graph_ids, int n,
							 M365PullWritten *written)
{
	M365PullBatch *b = palloc0(sizeof(M365PullBatch));
	M365SpiArgs a = {0};
	uint64		nrows;
	uint64		i;

	b->cxt = CurrentMemoryContext;
	b->account_id = account_id;
	b->round_id = round_id;
	b->seen = palloc(sizeof(int64) * Max(n, 1));
	b->seen_cap = n;
	b->written = written;
	if (written != NULL)
	{
		int			k;

		for (k = 0; k < n && !written_has(written, graph_ids[k]); k++)
			;
		if (k == n)
		{
			/* none of them stored, nor removed (the account held none when the round began) */
			b->masters = palloc(sizeof(int64));
			b->unknown = n;
			return b;
		}
	}
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text_array(&a, graph_ids, n);
	/*
	 * The rows, locked; then which of them wait to be pushed. Two statements:
	 * Citus locks rows only in a single-table query of one shard.
	 */
	nrows = n == 0 ? 0 : m365_spi_run_once("SELECT e.graph_id, e.event_id, e.change_key, e.ctid,"
						 " e.sync_state IN ('pending', 'failed'), e.sync_state = 'conflict', e.calendar_id,"
						 " e.series_master_id"
						 " FROM m365sync.events e WHERE e.account_id = $1 AND e.graph_id = ANY ($2)"
						 " FOR UPDATE",
						 &a, SPI_OK_SELECT, "locking a page's events");
	b->masters = palloc(sizeof(int64) * Max(nrows, 1));
	for (i = 0; i < nrows; i++)
	{
		BatchEntry *e = add_entry(b, m365_spi_row_text(i, 1, b->cxt));
		bool		isnull;
		bool		no_master;
		Datum		master = m365_spi_row_datum(i, 8, &no_master);

		e->event_id = m365_spi_row_int8(i, 2);
		e->change_key = m365_spi_row_text(i, 3, b->cxt);
		ItemPointerCopy((ItemPointer) DatumGetPointer(m365_spi_row_datum(i, 4, &isnull)), &e->tid);
		e->pending = m365_spi_row_bool(i, 5);
		e->in_conflict = m365_spi_row_bool(i, 6);
		e->calendar_id = m365_spi_row_int8(i, 7);
		/* its own flag: the ctid's (never null) once made every event a master's, id 0 */
		if (!no_master)
			add_master(b, DatumGetInt64(master));
	}
	b->unknown = n - (int) nrows;
	if (b->unknown > 0)
	{
		/* the page's new ids: which of them were removed from another calendar (moves) */
		const char **unknown = palloc(sizeof(char *) * b->unknown);
		int			nu = 0;

		for (int k = 0; k < n; k++)
			if (nu < b->unknown && find_entry(b, graph_ids[k]) == NULL)
				unknown[nu++] = graph_ids[k];
		b->waiting = m365_store_removed_events_among(account_id, unknown, nu, &b->nwaiting);
		b->waiting_cap = b->nwaiting;
		pfree(unknown);
	}
	if (b->n > 0)
	{
		int64	   *ids = palloc(sizeof(int64) * b->n);
		M365SpiArgs q = {0};
		uint64		npending;

		for (i = 0; i < (uint64) b->n; i++)
			ids[i] = b->entries[i].event_id;
		m365_spi_arg_int8(&q, account_id);
		m365_spi_arg_int8_array(&q, ids, b->n);
		npending = m365_spi_run("SELECT DISTINCT o.event_id FROM m365sync.outbox o"
								" WHERE o.account_id = $1 AND o.event_id = ANY ($2) AND o.state = 'pending'",
								&q, SPI_OK_SELECT, "finding a page's pending pushes");
		for (i = 0; i < npending; i++)
		{
			int64		id = m365_spi_row_int8(i, 1);

			for (int k = 0; k < b->n; k++)
				if (b->entries[k].event_id == id)
					b->entries[k].pending = true;
		}
		pfree(ids);
	}
	return b;
}

/* A remote change to a synced event: the new version replaces the row. */
static void
update_row(M365PullBatch *b, BatchEntry *e, const M365EventColumns *c, int64 master, Jsonb *data)
{
	static SPIPlanPtr plan;
	M365SpiArgs a = {0};
	bool		isnull;

	m365_spi_arg_int8(&a, b->account_id);
	m365_spi_arg(&a, TIDOID, PointerGetDatum(&e->tid), false);
	m365_store_events_arg_ical_uid(&a, b->account_id, c);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(master), master == 0);
	m365_store_events_arg_shape(&a, c);
	m365_spi_arg(&a, BYTEAOID, PointerGetDatum(m365_store_events_seal(b->account_id, e->event_id, data)), false);
	m365_store_events_arg_sync(&a, c);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(b->round_id), b->round_id == 0);
	if (m365_spi_run_saved(&plan,
									  "UPDATE m365sync.events SET ical_uid = $3, series_master_id = $4,"
									  " event_type = $5, start_at = $6, end_at = $7, is_all_day = $8,"
									  " start_date = $9, end_date = $10, show_as = $11, is_cancelled = $12,"
									  " content = $13, change_key = $14, remote_modified_at = $15,"
									  " seen_round = coalesce($16, seen_round),"
									  " sync_state = CASE WHEN sync_state = 'conflict' THEN 'conflict' ELSE 'synced' END"
									  " WHERE ctid = $2 AND account_id = $1 RETURNING ctid",
						   &a, SPI_OK_UPDATE_RETURNING, 0, "updating an event") != 1)
		elog(ERROR, "m365sync: a locked event changed under the pull");
	ItemPointerCopy((ItemPointer) DatumGetPointer(m365_spi_get_datum(1, &isnull)), &e->tid);
	e->change_key = c->change_key ? MemoryContextStrdup(b->cxt, c->change_key) : NULL;
}

/* The stored version has this changeKey: nothing to write but the round's mark. */
static bool
entry_unchanged(M365PullBatch *b, BatchEntry *e, const char *change_key)
{
	if (e->change_key == NULL || strcmp(e->change_key, change_key) != 0)
		return false;
	if (b->round_id != 0 && ItemPointerIsValid(&e->tid) && b->nseen < b->seen_cap)
		b->seen[b->nseen++] = e->event_id;
	return true;
}

bool
m365_store_events_pull_unchanged(M365PullBatch *b, int64 calendar_id, const char *graph_id,
								 const char *change_key)
{
	BatchEntry *e = find_entry(b, graph_id);

	return e != NULL && e->calendar_id == calendar_id && change_key != NULL &&
		entry_unchanged(b, e, change_key);
}

/*
 * The event shows up in another calendar than its row's: it was moved
 * there, and keeps its id (GRAPH.md §11). The row follows, whatever else
 * changed; the old calendar's @removed, before or after, is then stale.
 */
static void
move_row(M365PullBatch *b, BatchEntry *e, int64 calendar_id)
{
	M365SpiArgs a = {0};
	bool		isnull;

	m365_spi_arg_int8(&a, b->account_id);
	m365_spi_arg_int8(&a, e->event_id);
	m365_spi_arg_int8(&a, calendar_id);
	if (m365_spi_run("UPDATE m365sync.events SET calendar_id = $3"
					 " WHERE account_id = $1 AND event_id = $2 RETURNING ctid",
					 &a, SPI_OK_UPDATE_RETURNING, "moving an event to another calendar") != 1)
		elog(ERROR, "m365sync: a locked event changed under the pull");
	if (ItemPointerIsValid(&e->tid))
		ItemPointerCopy((ItemPointer) DatumGetPointer(m365_spi_get_datum(1, &isnull)), &e->tid);
	e->calendar_id = calendar_id;
}

M365ApplyOutcome
m365_store_events_pull_apply(M365PullBatch *b, int64 calendar_id, const M365EventColumns *c, Jsonb *data,
					  int64 *conflict_event_id)
{
	BatchEntry *e = find_entry(b, c->graph_id);
	int64		master = 0;

	if (c->series_master_graph_id)
		master = local_id(b->account_id, c->series_master_graph_id);

	if (e == NULL)
	{
		/* Our own create whose answer was lost comes back here: link, don't copy. */
		int64		event_id = m365_store_events_link_pulled(b->account_id, c, data);

		if (event_id == 0)
		{
			/* Removed from another calendar first, then seen here: moved, same event_id. */
			if (removed_waits(b, c->graph_id))
				event_id = m365_store_removed_events_take(b->account_id, c->graph_id);
			/* inserted with the round's mark, with the page's other new events */
			if (event_id == 0)
				event_id = take_id(b);
			if (b->rows == NULL)
			{
				/* in the batch's memory: the caller's is reset per event */
				MemoryContext old = MemoryContextSwitchTo(b->cxt);

				b->rows = m365_store_events_rows_new(b->account_id, calendar_id, "synced", b->round_id,
													 Max(b->seen_cap, 1));
				MemoryContextSwitchTo(old);
			}
			else if (m365_store_events_rows_calendar(b->rows) != calendar_id)
				elog(ERROR, "m365sync: one page's events belong to one calendar");
			m365_store_events_rows_add(b->rows, event_id, c, master != 0, master,
									   m365_store_events_seal(b->account_id, event_id, data));
		}
		else if (b->round_id != 0 && b->nseen < b->seen_cap)
		{
			/* A linked create was not inserted with the round's mark: mark it seen. */
			b->seen[b->nseen++] = event_id;
		}
		/* Seen twice in one page: the second sight finds this row; in a later page, the lookup. */
		e = add_entry(b, MemoryContextStrdup(b->cxt, c->graph_id));
		written_add(b->written, c->graph_id);
		if (b->written != NULL && strcmp(c->event_type, "seriesMaster") == 0)
			b->written->masters = true;
		e->event_id = event_id;
		e->calendar_id = calendar_id;
		e->change_key = c->change_key ? MemoryContextStrdup(b->cxt, c->change_key) : NULL;
		ItemPointerSetInvalid(&e->tid);
		return M365_APPLY_INSERTED;
	}
	if (e->calendar_id != calendar_id)
	{
		flush_inserts(b);
		move_row(b, e, calendar_id);
	}
	if (c->change_key && entry_unchanged(b, e, c->change_key))
		return M365_APPLY_UNCHANGED;
	flush_inserts(b);
	if (e->pending)
	{
		/* Both changed: the caller settles it by the policy (conflicts.c). */
		*conflict_event_id = e->event_id;
		/* seen in a full round, whichever version the policy kept */
		if (b->round_id != 0 && b->nseen < b->seen_cap)
			b->seen[b->nseen++] = e->event_id;
		e->pending = false;
		ItemPointerSetInvalid(&e->tid);	/* the policy may have rewritten the row */
		e->change_key = NULL;
		return M365_APPLY_CONFLICT;
	}
	if (!ItemPointerIsValid(&e->tid))
	{
		/* Inserted earlier in this page and changed again: find the new row. */
		M365SpiArgs a = {0};
		bool		isnull;

		m365_spi_arg_int8(&a, b->account_id);
		m365_spi_arg_int8(&a, e->event_id);
		/* (account_id, event_id) is unique: one row */
		m365_spi_run("SELECT ctid FROM m365sync.events WHERE account_id = $1 AND event_id = $2",
					 &a, SPI_OK_SELECT, "finding an event");
		ItemPointerCopy((ItemPointer) DatumGetPointer(m365_spi_get_datum(1, &isnull)), &e->tid);
	}
	update_row(b, e, c, master, data);
	return M365_APPLY_UPDATED;
}

bool
m365_store_events_pull_remove(M365PullBatch *b, int64 calendar_id, const char *graph_id)
{
	static SPIPlanPtr plan;
	BatchEntry *e = find_entry(b, graph_id);
	M365SpiArgs a = {0};
	uint64		n;

	if (e == NULL || e->pending)
		return false;			/* already gone, or kept for the push to settle */
	if (e->calendar_id != calendar_id)
		return false;			/* moved to the calendar the row names: stale */
	flush_inserts(b);
	m365_spi_arg_int8(&a, b->account_id);
	if (e->in_conflict)
	{
		/* A listed conflict keeps its row as a tombstone, so the listing keeps its loser. */
		m365_spi_arg_int8(&a, e->event_id);
		n = m365_spi_run("UPDATE m365sync.events SET deleted = true, graph_id = NULL, change_key = NULL"
						 " WHERE account_id = $1 AND event_id = $2",
						 &a, SPI_OK_UPDATE, "removing an event");
		e->gone = true;
		return n > 0;
	}
	if (ItemPointerIsValid(&e->tid))
	{
		m365_spi_arg(&a, TIDOID, PointerGetDatum(&e->tid), false);
		n = m365_spi_run_saved(&plan, "DELETE FROM m365sync.events WHERE ctid = $2 AND account_id = $1",
							   &a, SPI_OK_DELETE, 0, "removing an event");
	}
	else
	{
		m365_spi_arg_int8(&a, e->event_id);
		n = m365_spi_run("DELETE FROM m365sync.events WHERE account_id = $1 AND event_id = $2",
						 &a, SPI_OK_DELETE, "removing an event");
	}
	e->gone = true;
	/* It may be a move whose other half comes later (GRAPH.md §11). */
	if (n > 0)
	{
		m365_store_removed_events_record(b->account_id, graph_id, e->event_id);
		removed_add(b, graph_id);
	}
	return n > 0;
}

void
m365_store_events_pull_keep(M365PullBatch *b, const char *graph_id)
{
	BatchEntry *e = graph_id ? find_entry(b, graph_id) : NULL;

	/* seen in a full round: the sweep leaves the stored copy alone */
	if (e != NULL && b->round_id != 0 && b->nseen < b->seen_cap)
		b->seen[b->nseen++] = e->event_id;
}

const int64 *
m365_store_events_pull_masters(M365PullBatch *b, int *n)
{
	*n = b->nmasters;
	return b->masters;
}

void
m365_store_events_pull_end(M365PullBatch *b)
{
	M365SpiArgs a = {0};

	flush_inserts(b);
	if (b->round_id == 0 || b->nseen == 0)
		return;
	m365_spi_arg_int8(&a, b->account_id);
	m365_spi_arg_int8(&a, b->round_id);
	m365_spi_arg_int8_array(&a, b->seen, b->nseen);
	m365_spi_run("UPDATE m365sync.events SET seen_round = $2"
				 " WHERE account_id = $1 AND event_id = ANY ($3)",
				 &a, SPI_OK_UPDATE, "marking events seen");
}

bool
m365_store_events_pull_is_current(int64 account_id, const char *graph_id, const char *change_key,
								   bool deleted)
{
	static SPIPlanPtr plan;
	M365SpiArgs a = {0};
	uint64		n;
	bool		current;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, graph_id);
	SPI_connect();
	n = m365_spi_run_saved(&plan, "SELECT change_key, event_type = 'seriesMaster'"
						   " FROM m365sync.events WHERE account_id = $1 AND graph_id = $2",
						   &a, SPI_OK_SELECT, 1, "finding a notified event");
	if (n > 0 && m365_spi_row_bool(0, 2))
		/*
		 * A series master's row comes from a push answer or a GET, never
		 * from delta: a notification for it announces occurrences that only
		 * the next delta round brings, whatever the master's changeKey.
		 */
		current = false;
	else if (deleted)
		current = n == 0;
	else
	{
		char	   *ck = n > 0 ? m365_spi_row_text(0, 1, CurrentMemoryContext) : NULL;

		current = ck != NULL && change_key != NULL && strcmp(ck, change_key) == 0;
	}
	SPI_finish();
	return current;
}

int
m365_store_events_sweep(int64 account_id, int64 calendar_id, int64 round_id)
{
	M365SpiArgs a = {0};
	int64	   *event_ids;
	char	  **graph_ids;
	int			nd;
	int			n;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, calendar_id);
	m365_spi_arg_int8(&a, round_id);
	SPI_connect();
	/*
	 * Not seen by this full round: gone at Microsoft (calendarView never
	 * shows masters). One scan of the calendar's rows; a listed conflict's
	 * row stays as a tombstone, as a removal in a delta page does.
	 */
	n = m365_store_events_remove_found(account_id,
									   "SELECT e.event_id, e.sync_state = 'synced', e.graph_id"
									   " FROM m365sync.events e WHERE e.account_id = $1 AND e.calendar_id = $2"
									   " AND e.graph_id IS NOT NULL AND e.seen_round IS DISTINCT FROM $3"
									   " AND e.event_type <> 'seriesMaster' AND e.sync_state IN ('synced', 'conflict')"
									   " AND NOT EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = e.account_id"
									   "   AND o.event_id = e.event_id AND o.state = 'pending')"
									   " FOR UPDATE",
									   &a, &event_ids, &graph_ids, &nd);
	/* maybe moved to a calendar not pulled yet: keep their ids for it */
	for (int i = 0; i < nd; i++)
		m365_store_removed_events_record(account_id, graph_ids[i], event_ids[i]);
	SPI_finish();
	return n;
}
