/*
 * store_events.c — SPI for m365sync.events, with saved plans.
 *
 * The event rows of the API's writes and reads, and the push's answers on
 * them (store_push.c); the pull's statements are store_events_pull.c's.
 * Their outbox entries are store_outbox.c's. Every statement is schema-qualified (plans are saved and
 * run under the user functions' pinned search_path anyway) and touches one
 * account's rows. It never decides policy (what a caller may do): the SQL
 * functions do, then call here. It never logs content.
 *
 * Outbox collapse: an event has at most one pending outbox row. A later
 * change locks that row (FOR UPDATE) and folds into it. The push must hold
 * the same row lock from reading the event until it marks the row done, so
 * a change made while a request is in flight waits instead of being folded
 * into an entry that is about to be marked done. Lock order, for everyone:
 * the events row first (FOR UPDATE), then its outbox row.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/jsonb.h"

#include "identity.h"
#include "keyring.h"
#include "settings.h"
#include "spi_util.h"
#include "store_events.h"
#include "store_placement.h"
#include "store_outbox.h"

/*
 * Events longer than this are "long" (events.is_long, a generated column):
 * the window query finds short ones by start within [from - bound, to) on
 * (account_id, start_at), and long ones through small partial indexes on
 * their end (20_events.sql). So a one-week window reads one week plus the
 * bound of the start index, however many years of events the account holds;
 * only long events (rare) are read by end. The same bounds define is_long.
 */
#define SHORT_TIMED_BOUND	"interval '24 hours'"	/* DST-proof */
#define SHORT_DAYS_BOUND	"1"


/* ------------------------------------------------------------ plumbing */

/* An event's shape columns (8 arguments, as m365_event_row_bind_shape orders them). */
void
m365_store_events_arg_shape(M365SpiArgs *a, const M365EventColumns *c)
{
	static const Oid types[8] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID,
	DATEOID, DATEOID, TEXTOID, BOOLOID};
	Datum		values[8];
	char		nulls[8];

	m365_event_row_bind_shape(c, values, nulls);
	for (int i = 0; i < 8; i++)
		m365_spi_arg(a, types[i], values[i], nulls[i] == 'n');
}

/* An event's sync columns: change_key, remote_modified_at. */
void
m365_store_events_arg_sync(M365SpiArgs *a, const M365EventColumns *c)
{
	Datum		values[2];
	char		nulls[2];

	m365_event_row_bind_sync(c, values, nulls);
	m365_spi_arg(a, TEXTOID, values[0], nulls[0] == 'n');
	m365_spi_arg(a, TIMESTAMPTZOID, values[1], nulls[1] == 'n');
}

char *
m365_store_events_ical_uid_hash(int64 account_id, const char *ical_uid)
{
	return ical_uid ? m365_keyed_hash(account_id, "events.ical_uid", ical_uid, strlen(ical_uid)) : NULL;
}

void
m365_store_events_arg_ical_uid(M365SpiArgs *a, int64 account_id, const M365EventColumns *c)
{
	m365_spi_arg_text(a, m365_store_events_ical_uid_hash(account_id, c->ical_uid));
}

/* --------------------------------------------------------------- events */

bytea *
m365_store_events_seal(int64 account_id, int64 event_id, Jsonb *data)
{
	return m365_encrypt("events", "content", account_id, event_id,
						VARDATA(data), VARSIZE(data) - VARHDRSZ);
}

Jsonb *
m365_store_events_open(int64 account_id, int64 event_id, bytea *content)
{
	size_t		len;
	char	   *plain = m365_decrypt("events", "content", account_id, event_id, content, &len);
	Jsonb	   *jb = palloc(VARHDRSZ + len);

	SET_VARSIZE(jb, VARHDRSZ + len);
	memcpy(VARDATA(jb), plain, len);
	pfree(plain);
	return jb;
}

bool
m365_store_events_lock(int64 account_id, int64 event_id, M365StoredEvent *ev)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};
	bool		isnull;
	Datum		content;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	/* READ COMMITTED: a concurrent writer's row version is what we get after the wait */
	if (m365_spi_run_saved(&p, "SELECT e.calendar_id, e.graph_id, e.change_key, e.event_type, e.content"
						   " FROM m365sync.events e"
						   " WHERE e.account_id = $1 AND e.event_id = $2 AND NOT e.deleted FOR UPDATE",
						   &a, SPI_OK_SELECT, 1, NULL) == 0)
		return false;
	ev->event_id = event_id;
	ev->calendar_id = m365_spi_get_int8(1);
	ev->graph_id = m365_spi_get_text(2, CurrentMemoryContext);
	ev->change_key = m365_spi_get_text(3, CurrentMemoryContext);
	ev->event_type = m365_spi_get_text(4, CurrentMemoryContext);
	content = m365_spi_get_datum(5, &isnull);
	ev->data = m365_store_events_open(account_id, event_id, DatumGetByteaPP(content));
	return true;
}

int64
m365_store_events_next_id(void)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_run_saved(&p, "SELECT pg_catalog.nextval('m365sync.events_event_id_seq'::pg_catalog.regclass)",
					   &a, SPI_OK_SELECT, 1, NULL);
	return m365_spi_get_int8(1);
}

void
m365_store_events_next_ids(int64 *ids, int n)
{
	/*
	 * nextval() itself, without a statement around it: that was half the
	 * cost of numbering a page (the same privilege check, lock and WAL).
	 */
	Oid			seq = get_relname_relid("events_event_id_seq", get_namespace_oid("m365sync", false));

	if (!OidIsValid(seq))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("m365sync: the event id sequence m365sync.events_event_id_seq is missing"),
				 errdetail("It belongs to the extension; no event was written.")));
	for (int i = 0; i < n; i++)
		ids[i] = nextval_internal(seq, true);
}

void
m365_store_events_insert(int64 account_id, int64 event_id, int64 calendar_id,
						const M365EventColumns *c, bool has_series_master,
						int64 series_master_id, bytea *content, const char *sync_state,
						int64 seen_round)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_int8(&a, calendar_id);
	m365_spi_arg_text(&a, c->graph_id);
	m365_store_events_arg_ical_uid(&a, account_id, c);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(series_master_id), !has_series_master);
	m365_store_events_arg_shape(&a, c);
	m365_spi_arg(&a, BYTEAOID, PointerGetDatum(content), false);
	m365_store_events_arg_sync(&a, c);
	m365_spi_arg_text(&a, sync_state);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(seen_round), seen_round == 0);
	m365_spi_run_saved(&p, "INSERT INTO m365sync.events (account_id, event_id, calendar_id, graph_id,"
					   " ical_uid, series_master_id, event_type, start_at, end_at, is_all_day, start_date,"
					   " end_date, show_as, is_cancelled, content, change_key, remote_modified_at,"
					   " local_modified_at, sync_state, seen_round)"
					   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
					   " pg_catalog.now(), $18, $19)",
					   &a, SPI_OK_INSERT, 0, NULL);
}

void
m365_store_events_update_local(int64 account_id, int64 event_id,
							  const M365EventColumns *c, bytea *content)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_store_events_arg_shape(&a, c);
	m365_spi_arg(&a, BYTEAOID, PointerGetDatum(content), false);
	m365_spi_run_saved(&p, "UPDATE m365sync.events SET event_type = $3, start_at = $4, end_at = $5,"
					   " is_all_day = $6, start_date = $7, end_date = $8, show_as = $9, is_cancelled = $10,"
					   " content = $11, local_modified_at = pg_catalog.now(), sync_state = 'pending'"
					   " WHERE account_id = $1 AND event_id = $2",
					   &a, SPI_OK_UPDATE, 0, NULL);
}

M365DeleteOutcome
m365_store_events_delete(int64 account_id, const M365StoredEvent *ev)
{
	static SPIPlanPtr p_remove,
				p_mark;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, ev->event_id);
	if (ev->graph_id == NULL)
	{
		/* Microsoft never saw it: nothing to delete there (outbox rows cascade) */
		m365_spi_run_saved(&p_remove, "DELETE FROM m365sync.events WHERE account_id = $1 AND event_id = $2",
						   &a, SPI_OK_DELETE, 0, NULL);
		return M365_DELETE_REMOVED;
	}
	m365_spi_run_saved(&p_mark, "UPDATE m365sync.events SET deleted = true, sync_state = 'pending',"
					   " local_modified_at = pg_catalog.now() WHERE account_id = $1 AND event_id = $2",
					   &a, SPI_OK_UPDATE, 0, NULL);
	m365_store_outbox_queue_delete(account_id, ev->event_id, ev->change_key);
	return M365_DELETE_QUEUED;
}

/* ---------------------------------------------------------------- reads */

#define EVENT_COLUMNS \
	"e.event_id, e.calendar_id, e.graph_id, e.ical_uid, e.series_master_id, e.event_type," \
	" e.start_at, e.end_at, e.is_all_day, e.start_date, e.end_date, e.show_as," \
	" e.is_cancelled, e.remote_modified_at, e.sync_state, e.content"
/*
 * The window query, on a table of events named by %1$s: m365sync.events,
 * or on a Citus node the account's shard of it (see
 * m365_store_events_in_range_here).
 *
 * A series shows as its occurrences once they are known; until then (made
 * here, not yet synced back) as its master, so it never shows twice.
 * The subquery names the account as $1, not as e.account_id: on Citus a
 * correlated account_id inside the OR keeps the planner from pruning to
 * the account's shard, and every leg then ran on all shards (test/bench/citus).
 */
#define LIVE_IN_CAL \
	" e.account_id = $1 AND NOT e.deleted AND ($6::pg_catalog.int8 IS NULL OR e.calendar_id = $6)" \
	" AND (e.event_type <> 'seriesMaster' OR NOT EXISTS (SELECT 1 FROM %1$s o" \
	"      WHERE o.account_id = $1 AND o.series_master_id = e.event_id AND NOT o.deleted))"

/*
 * Timed events overlap [from, to) by instant (an event of no duration when
 * its instant is inside); all-day ones overlap [from_date, to_date) by date.
 * Each splits into short (found by start, within the bound) and long (found
 * by end, partial index), disjoint.
 */
#define WINDOW_QUERY \
	"SELECT " EVENT_COLUMNS " FROM %1$s e WHERE" LIVE_IN_CAL \
	" AND NOT e.is_all_day AND e.start_at >= $2 - " SHORT_TIMED_BOUND \
	" AND e.start_at < $3 AND (e.end_at > $2 OR e.start_at >= $2)" \
	" UNION ALL " \
	"SELECT " EVENT_COLUMNS " FROM %1$s e WHERE" LIVE_IN_CAL \
	" AND e.is_long AND NOT e.is_all_day" \
	" AND e.end_at > $2 AND e.start_at < $2 - " SHORT_TIMED_BOUND \
	" UNION ALL " \
	"SELECT " EVENT_COLUMNS " FROM %1$s e WHERE" LIVE_IN_CAL \
	" AND e.is_all_day AND e.start_date >= $4 - " SHORT_DAYS_BOUND \
	" AND e.start_date < $5 AND e.end_date > $4" \
	" UNION ALL " \
	"SELECT " EVENT_COLUMNS " FROM %1$s e WHERE" LIVE_IN_CAL \
	" AND e.is_long AND e.is_all_day" \
	" AND e.end_date > $4 AND e.start_date < $4 - " SHORT_DAYS_BOUND \
	" ORDER BY 7, 1"

/* The window's six arguments, $1 to $6 of WINDOW_QUERY and of the routed call. */
static void
window_args(M365SpiArgs *a, int64 account_id, TimestampTz from_ts, TimestampTz to_ts,
			DateADT from_date, DateADT to_date, bool has_calendar, int64 calendar_id)
{
	m365_spi_arg_int8(a, account_id);
	m365_spi_arg(a, TIMESTAMPTZOID, TimestampTzGetDatum(from_ts), false);
	m365_spi_arg(a, TIMESTAMPTZOID, TimestampTzGetDatum(to_ts), false);
	m365_spi_arg(a, DATEOID, DateADTGetDatum(from_date), false);
	m365_spi_arg(a, DATEOID, DateADTGetDatum(to_date), false);
	m365_spi_arg(a, INT8OID, Int64GetDatum(calendar_id), !has_calendar);
}

/* The text and bytea columns of EVENT_COLUMNS; the others are passed by value. */
static const bool scan_col_varlena[M365_EVENT_SCAN_COLS] = {
	[ES_GRAPH_ID - 1] = true, [ES_ICAL_UID - 1] = true, [ES_EVENT_TYPE - 1] = true,
	[ES_SHOW_AS - 1] = true, [ES_SYNC_STATE - 1] = true, [ES_CONTENT - 1] = true,
};

/* The rows of EVENT_COLUMNS in SPI_tuptable as they are. */
static void
rows_of_spi(uint64 n, M365EventScanRows *out)
{
	out->n = n;
	out->values = palloc(sizeof(Datum) * M365_EVENT_SCAN_COLS * Max(n, 1));
	out->nulls = palloc(sizeof(bool) * M365_EVENT_SCAN_COLS * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
		for (int c = 0; c < M365_EVENT_SCAN_COLS; c++)
			out->values[i * M365_EVENT_SCAN_COLS + c] =
				m365_spi_row_datum(i, c + 1, &out->nulls[i * M365_EVENT_SCAN_COLS + c]);
}

/*
 * The window's rows packed into one value, for the routed call: Citus then
 * moves one row instead of one per event, and the coordinator's statement
 * stays a fast-path router query (one table, no set-returning function),
 * which Citus plans without its full router planner. Both ends are the same
 * m365sync library (one version on every node). Per row and column: a null
 * flag byte; then, unless null, the Datum's 8 bytes (by-value columns) or
 * a 4-byte length and the bytes of the text or bytea.
 */
static bytea *
pack_spi_rows(uint64 n, MemoryContext cxt)
{
	struct varlena **var = palloc(sizeof(struct varlena *) * M365_EVENT_SCAN_COLS * Max(n, 1));
	Size		size = 0;
	bytea	   *out;
	char	   *p;

	if (SPI_tuptable->tupdesc->natts != M365_EVENT_SCAN_COLS)
		elog(ERROR, "m365sync: the window query must return the event scan columns");
	for (int c = 0; c < M365_EVENT_SCAN_COLS; c++)
	{
		Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, c);

		if (scan_col_varlena[c] ? att->attlen != -1 : (!att->attbyval || att->attlen > (int) sizeof(Datum)))
			elog(ERROR, "m365sync: column %d of the window query has an unexpected type", c + 1);
	}
	/* the size first, so the value is written once, in place (no growing buffer to copy) */
	for (uint64 i = 0; i < n; i++)
		for (int c = 0; c < M365_EVENT_SCAN_COLS; c++)
		{
			bool		isnull;
			Datum		d = m365_spi_row_datum(i, c + 1, &isnull);
			struct varlena **v = &var[i * M365_EVENT_SCAN_COLS + c];

			*v = NULL;
			size += 1;
			if (isnull)
				continue;
			if (scan_col_varlena[c])
			{
				*v = PG_DETOAST_DATUM_PACKED(d);
				size += sizeof(uint32) + VARSIZE_ANY_EXHDR(*v);
			}
			else
				size += sizeof(Datum);
		}
	if (size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("m365sync: the window's events are too large to return at once"),
				 errhint("Ask for a shorter window.")));
	out = MemoryContextAlloc(cxt, VARHDRSZ + size);
	SET_VARSIZE(out, VARHDRSZ + size);
	p = VARDATA(out);
	for (uint64 i = 0; i < n; i++)
		for (int c = 0; c < M365_EVENT_SCAN_COLS; c++)
		{
			bool		isnull;
			Datum		d = m365_spi_row_datum(i, c + 1, &isnull);
			struct varlena *v = var[i * M365_EVENT_SCAN_COLS + c];

			*p++ = isnull ? 1 : 0;
			if (isnull)
				continue;
			if (scan_col_varlena[c])
			{
				uint32		len = VARSIZE_ANY_EXHDR(v);

				memcpy(p, &len, sizeof(len));
				memcpy(p + sizeof(len), VARDATA_ANY(v), len);
				p += sizeof(len) + len;
			}
			else
			{
				memcpy(p, &d, sizeof(d));
				p += sizeof(d);
			}
		}
	Assert(p == VARDATA(out) + size);
	pfree(var);
	return out;
}

static void
report_bad_pack(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("m365sync: the rows of the window from the account's node are malformed"),
			 errhint("Every node must run the same m365sync version.")));
}

/* pack_spi_rows's rows back into out (text and bytea copied into palloc'd values). */
static void
unpack_rows(bytea *packed, M365EventScanRows *out)
{
	const char *p = VARDATA_ANY(packed);
	const char *end = p + VARSIZE_ANY_EXHDR(packed);
	uint64		cap = 64;

	out->n = 0;
	out->values = palloc(sizeof(Datum) * M365_EVENT_SCAN_COLS * cap);
	out->nulls = palloc(sizeof(bool) * M365_EVENT_SCAN_COLS * cap);
	while (p < end)
	{
		Datum	   *values;
		bool	   *nulls;

		if (out->n == cap)
		{
			cap *= 2;
			out->values = repalloc(out->values, sizeof(Datum) * M365_EVENT_SCAN_COLS * cap);
			out->nulls = repalloc(out->nulls, sizeof(bool) * M365_EVENT_SCAN_COLS * cap);
		}
		values = &out->values[out->n * M365_EVENT_SCAN_COLS];
		nulls = &out->nulls[out->n * M365_EVENT_SCAN_COLS];
		for (int c = 0; c < M365_EVENT_SCAN_COLS; c++)
		{
			if (p >= end)
				report_bad_pack();
			nulls[c] = *p++ != 0;
			values[c] = (Datum) 0;
			if (nulls[c])
				continue;
			if (scan_col_varlena[c])
			{
				uint32		len;
				struct varlena *v;

				if (end - p < (ptrdiff_t) sizeof(len))
					report_bad_pack();
				memcpy(&len, p, sizeof(len));
				p += sizeof(len);
				if ((uint64) (end - p) < len || len > MaxAllocSize - VARHDRSZ)
					report_bad_pack();
				v = palloc(VARHDRSZ + len);
				SET_VARSIZE(v, VARHDRSZ + len);
				memcpy(VARDATA(v), p, len);
				p += len;
				values[c] = PointerGetDatum(v);
			}
			else
			{
				if (end - p < (ptrdiff_t) sizeof(Datum))
					report_bad_pack();
				memcpy(&values[c], p, sizeof(Datum));
				p += sizeof(Datum);
			}
		}
		out->n++;
	}
}

void
m365_store_events_in_range(int64 account_id, TimestampTz from_ts, TimestampTz to_ts,
						   DateADT from_date, DateADT to_date,
						   bool has_calendar, int64 calendar_id, M365EventScanRows *out)
{
	static SPIPlanPtr p,
				routed,
				by_account;
	M365SpiArgs a = {0};

	window_args(&a, account_id, from_ts, to_ts, from_date, to_date, has_calendar, calendar_id);
	if (m365_store_placement_distributed())
	{
		bool		isnull;
		Datum		packed;

		/*
		 * On Citus, one statement routed to the node of the account's shards
		 * (by its account_routes row): the window query runs on that node
		 * with a plan kept for its shard and its rows come back packed in one
		 * value. One table and no set-returning function make it a fast-path
		 * router query, so Citus skips its full planner; the rows are in
		 * order already. Planning the window query through Citus, and moving
		 * one row per event through it, took most of the time of each call
		 * (test/bench/citus). It opens no remote transaction unless this
		 * transaction has one (one round trip instead of three), so the
		 * acting user goes as an argument: _events_window acts for it and
		 * reads under the shard's policies. The route row has no policy;
		 * the window is empty for an account that is not the user's. An
		 * account without a route (a row written by hand) is routed by its
		 * accounts row instead, under that row's policy, in the remote
		 * transaction that carries the SET LOCAL of the acting user.
		 */
		m365_spi_arg_text(&a, m365_acting_user());
		if (m365_store_placement_run_routed_read(&routed,
												 "SELECT m365sync._events_window($1, $2, $3, $4, $5, $6, $7)"
												 " FROM m365sync.account_routes r WHERE r.account_id = $1",
												 &a, 0) == 0 &&
			m365_spi_run_saved(&by_account,
							   "SELECT m365sync._events_window($1, $2, $3, $4, $5, $6, $7)"
							   " FROM m365sync.accounts a WHERE a.account_id = $1",
							   &a, SPI_OK_SELECT, 0, NULL) == 0)
		{
			out->n = 0;
			out->values = NULL;
			out->nulls = NULL;
			return;
		}
		packed = m365_spi_row_datum(0, 1, &isnull);
		if (isnull)
			report_bad_pack();
		unpack_rows(DatumGetByteaPP(packed), out);
		return;
	}
	rows_of_spi(m365_spi_run_saved(&p, p ? NULL : psprintf(WINDOW_QUERY, "m365sync.events"),
								   &a, SPI_OK_SELECT, 0, NULL), out);
}

bytea *
m365_store_events_in_range_here(int64 account_id, TimestampTz from_ts, TimestampTz to_ts,
								DateADT from_date, DateADT to_date,
								bool has_calendar, int64 calendar_id, MemoryContext cxt)
{
	static const char *window_query = WINDOW_QUERY;
	M365SpiArgs a = {0};
	window_args(&a, account_id, from_ts, to_ts, from_date, to_date, has_calendar, calendar_id);
	if (!m365_store_placement_run_on_shard("m365sync.events", account_id, window_query, &a, 0, false))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the events of account " INT64_FORMAT " are not on this node", account_id),
				 errhint("Call m365sync.events() instead; it finds the node of the account.")));
	return pack_spi_rows(SPI_processed, cxt);
}

void
m365_store_events_by_id(int64 account_id, int64 event_id, M365EventScanRows *out)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	rows_of_spi(m365_spi_run_saved(&p, "SELECT " EVENT_COLUMNS " FROM m365sync.events e"
								   " WHERE e.account_id = $1 AND e.event_id = $2 AND NOT e.deleted",
								   &a, SPI_OK_SELECT, 1, NULL), out);
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_events_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.events WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}

/* --- the push's answers (store_push.c; the caller is connected to SPI) --- */

/* Same sync_state rule everywhere: a listed, unresolved conflict shows. */
#define STATE_AFTER_SYNC \
	"CASE WHEN EXISTS (SELECT 1 FROM m365sync.conflicts c WHERE c.account_id = $1" \
	" AND c.event_id = $2 AND c.resolved_at IS NULL) THEN 'conflict' ELSE 'synced' END"

/* The two arguments of a statement on one event row: $1 account, $2 event. */
static void
arg_row(M365SpiArgs *a, int64 account_id, int64 event_id)
{
	m365_spi_arg_int8(a, account_id);
	m365_spi_arg_int8(a, event_id);
}

/* The row becomes Graph's version (cols, data); sync_state by STATE_AFTER_SYNC. */
void
m365_store_events_replace_row(int64 account_id, int64 event_id, const M365EventColumns *c, Jsonb *data)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_arg_text(&a, c->graph_id);
	m365_store_events_arg_ical_uid(&a, account_id, c);
	m365_spi_arg_text(&a, c->series_master_graph_id);
	m365_store_events_arg_shape(&a, c);
	m365_spi_arg(&a, BYTEAOID, PointerGetDatum(m365_store_events_seal(account_id, event_id, data)), false);
	m365_store_events_arg_sync(&a, c);
	m365_spi_arg_text(&a, c->graph_id);
	m365_spi_run("UPDATE m365sync.events SET graph_id = $3, ical_uid = $4,"
				 " series_master_id = coalesce((SELECT m.event_id FROM m365sync.events m"
				 "   WHERE m.account_id = $1 AND m.graph_id = $5), series_master_id),"
				 " event_type = $6, start_at = $7, end_at = $8, is_all_day = $9,"
				 " start_date = $10, end_date = $11, show_as = $12, is_cancelled = $13,"
				 " content = $14, change_key = $15, remote_modified_at = $16, deleted = false,"
				 " sync_state = " STATE_AFTER_SYNC
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "storing a push answer");
}

/* Another row already holding graph_id (pulled before we knew it was ours) gives way. */
void
m365_store_events_drop_pulled_twin(int64 account_id, int64 event_id, const char *graph_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_arg_text(&a, graph_id);
	m365_spi_run("DELETE FROM m365sync.events e WHERE e.account_id = $1 AND e.graph_id = $3"
				 " AND e.event_id <> $2 AND e.sync_state = 'synced' AND NOT EXISTS ("
				 "  SELECT 1 FROM m365sync.outbox o WHERE o.account_id = e.account_id"
				 "  AND o.event_id = e.event_id AND o.state = 'pending')",
				 &a, SPI_OK_DELETE, "merging a pulled twin");
}

/* A create's answer linked to the row without taking its content. */
void
m365_store_events_link_graph_id(int64 account_id, int64 event_id, const char *graph_id, const char *change_key)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_arg_text(&a, graph_id);
	m365_spi_arg_text(&a, change_key);
	m365_spi_run("UPDATE m365sync.events SET graph_id = $3, change_key = $4"
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "linking a create");
}

/* A pushed delete: the row goes, or stays as a tombstone while its conflict is listed. */
void
m365_store_events_remove_pushed(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	/* A row whose conflict is still listed stays as a tombstone (the listing needs it). */
	if (m365_spi_run("UPDATE m365sync.events SET graph_id = NULL, change_key = NULL,"
					 " sync_state = 'conflict' WHERE account_id = $1 AND event_id = $2"
					 " AND EXISTS (SELECT 1 FROM m365sync.conflicts c WHERE c.account_id = $1"
					 "  AND c.event_id = $2 AND c.resolved_at IS NULL)",
					 &a, SPI_OK_UPDATE, "keeping a tombstone") == 0)
		m365_spi_run("DELETE FROM m365sync.events WHERE account_id = $1 AND event_id = $2",
					 &a, SPI_OK_DELETE, "removing a deleted event");
}

void
m365_store_events_mark_synced(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_run("UPDATE m365sync.events SET sync_state = " STATE_AFTER_SYNC
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "marking an event synced");
}

void
m365_store_events_mark_failed(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_run("UPDATE m365sync.events SET sync_state = 'failed'"
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "failing an event");
}

/* --- a conflict's settling and resolving (store_conflicts.c; the caller is connected to SPI) --- */

bool
m365_store_events_lock_any(int64 account_id, int64 event_id, M365EventAnyRow *r)
{
	M365SpiArgs a = {0};
	bool		isnull;
	Datum		v;

	arg_row(&a, account_id, event_id);
	/* (account_id, event_id) is unique: at most one row */
	if (m365_spi_run("SELECT content, deleted, graph_id, change_key, event_type, calendar_id,"
					 " local_modified_at FROM m365sync.events"
					 " WHERE account_id = $1 AND event_id = $2 FOR UPDATE",
					 &a, SPI_OK_SELECT, "locking an event") == 0)
		return false;
	/* opening may load a key in a nested SPI connection, which restores SPI_tuptable */
	r->content = m365_store_events_open(account_id, event_id,
										 DatumGetByteaPP(m365_spi_get_datum(1, &isnull)));
	r->deleted = m365_spi_get_bool(2);
	r->graph_id = m365_spi_get_text(3, CurrentMemoryContext);
	r->change_key = m365_spi_get_text(4, CurrentMemoryContext);
	r->event_type = m365_spi_get_text(5, CurrentMemoryContext);
	r->calendar_id = m365_spi_get_int8(6);
	v = m365_spi_get_datum(7, &isnull);
	r->has_local_modified = !isnull;
	r->local_modified_at = isnull ? 0 : DatumGetTimestampTz(v);
	return true;
}

/* Lock the row and read local_modified_at; connects to SPI itself. */
bool
m365_store_events_lock_modified(int64 account_id, int64 event_id, bool *has_local_modified,
								TimestampTz *local_modified_at)
{
	M365SpiArgs a = {0};
	bool		isnull;
	Datum		v;
	bool		found;

	arg_row(&a, account_id, event_id);
	SPI_connect();
	found = m365_spi_run("SELECT local_modified_at FROM m365sync.events"
						 " WHERE account_id = $1 AND event_id = $2 FOR UPDATE",
						 &a, SPI_OK_SELECT, "locking an event") > 0;
	if (found)
	{
		v = m365_spi_get_datum(1, &isnull);
		*has_local_modified = !isnull;
		*local_modified_at = isnull ? 0 : DatumGetTimestampTz(v);
	}
	SPI_finish();
	return found;
}

/* The row takes the remote changeKey; conflict: and shows the conflict. */
static void
take_remote_etag(int64 account_id, int64 event_id, const M365EventColumns *c, bool conflict)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_store_events_arg_sync(&a, c);
	m365_spi_arg(&a, BOOLOID, BoolGetDatum(conflict), false);
	m365_spi_run("UPDATE m365sync.events SET change_key = $3, remote_modified_at = $4,"
				 " sync_state = CASE WHEN $5 THEN 'conflict' ELSE sync_state END"
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, conflict ? "keeping a local change" : "refreshing a changeKey");
}

/* The local change wins: the row takes the remote changeKey and shows the conflict. */
void
m365_store_events_keep_local(int64 account_id, int64 event_id, const M365EventColumns *c)
{
	take_remote_etag(account_id, event_id, c, true);
}

void
m365_store_events_refresh_etag(int64 account_id, int64 event_id, const M365EventColumns *c)
{
	take_remote_etag(account_id, event_id, c, false);
}

/* A remote delete won: the row stays as a tombstone while the local version is listed. */
void
m365_store_events_tombstone(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_run("UPDATE m365sync.events SET deleted = true, graph_id = NULL,"
				 " change_key = NULL, sync_state = 'conflict'"
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "accepting a remote delete");
}

/* The local version won over a remote delete: the row is made again at Microsoft. */
void
m365_store_events_unlink(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_run("UPDATE m365sync.events SET graph_id = NULL, change_key = NULL,"
				 " sync_state = 'conflict' WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "re-creating an event");
}

/* A restored version of a deleted row is live again. */
void
m365_store_events_revive(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_run("UPDATE m365sync.events SET deleted = false"
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "reviving an event");
}

/* The deletion stands: the tombstone goes, unless something is still queued for it. */
void
m365_store_events_drop_tombstone(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_run("DELETE FROM m365sync.events e WHERE e.account_id = $1 AND e.event_id = $2"
				 " AND NOT EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = $1"
				 "  AND o.event_id = $2 AND o.state = 'pending')",
				 &a, SPI_OK_DELETE, "removing a tombstone");
}

/* A resolved conflict: the row shows pending or synced again. */
void
m365_store_events_settle_state(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	arg_row(&a, account_id, event_id);
	m365_spi_run("UPDATE m365sync.events SET sync_state = CASE"
				 " WHEN EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = $1"
				 "  AND o.event_id = $2 AND o.state = 'pending') THEN 'pending'"
				 " WHEN sync_state = 'conflict' THEN 'synced' ELSE sync_state END"
				 " WHERE account_id = $1 AND event_id = $2",
				 &a, SPI_OK_UPDATE, "settling an event");
}
