/*
 * store_calendars.c — SPI for m365sync.calendars (see store_calendars.h):
 * an account's calendars as Graph lists them (names encrypted), which of
 * them the app writes to and syncs, and each one's delta cursor
 * (encrypted) and round state.
 *
 * The cursor is saved in the caller's transaction, together with the page
 * it follows (pull.c). Enabling or disabling sync wakes the worker at
 * commit. Messages name the step, never a name or a link.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "extension_guard.h"
#include "keyring.h"
#include "spi_util.h"
#include "store_calendars.h"
#include "store_placement.h"
#include "store_removed_events.h"
#include "store_subscriptions.h"

bool
m365_store_calendars_find(int64 account_id, int64 calendar_id, int64 *found_id, bool *can_edit)
{
	static SPIPlanPtr p_one,
				p_default;
	M365SpiArgs a = {0};
	uint64		n;

	m365_spi_arg_int8(&a, account_id);
	if (calendar_id > 0)
	{
		m365_spi_arg_int8(&a, calendar_id);
		n = m365_spi_run_saved(&p_one, "SELECT c.calendar_id, c.can_edit FROM m365sync.calendars c"
							   " WHERE c.account_id = $1 AND c.calendar_id = $2",
							   &a, SPI_OK_SELECT, 1, "finding a calendar");
	}
	else
		n = m365_spi_run_saved(&p_default, "SELECT c.calendar_id, c.can_edit FROM m365sync.calendars c"
							   " WHERE c.account_id = $1 AND c.is_default ORDER BY c.calendar_id LIMIT 1",
							   &a, SPI_OK_SELECT, 1, "finding the default calendar");
	if (n == 0)
		return false;
	*found_id = m365_spi_get_int8(1);
	*can_edit = m365_spi_get_bool(2);
	return true;
}

uint64
m365_store_calendars_list(int64 account_id)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	return m365_spi_run_saved(&p, "SELECT c.calendar_id, c.name, c.is_default, c.can_edit, c.sync_enabled"
							  " FROM m365sync.calendars c WHERE c.account_id = $1 ORDER BY c.calendar_id",
							  &a, SPI_OK_SELECT, 0, "listing calendars");
}

bool
m365_store_calendars_set_sync(int64 account_id, int64 calendar_id, bool enabled)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, calendar_id);
	m365_spi_arg(&a, BOOLOID, BoolGetDatum(enabled), false);
	if (m365_spi_run_saved(&p, "UPDATE m365sync.calendars SET sync_enabled = $3"
						   " WHERE account_id = $1 AND calendar_id = $2",
						   &a, SPI_OK_UPDATE, 0, "switching a calendar's sync") == 0)
		return false;
	/* enabling (or disabling) sync is work for the worker: a newly synced calendar is pulled at once */
	if (enabled)
		m365_store_wakeups_mark(&account_id, 1);
	m365_store_placement_wake_owner(account_id);
	return true;
}

int64
m365_store_calendars_upsert(int64 account_id, const M365GraphCalendar *c, bool enable)
{
	M365SpiArgs a = {0};
	int64		calendar_id;
	bool		found;
	bytea	   *name;
	M365SpiArgs w = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, c->id);
	SPI_connect();
	found = m365_spi_run("SELECT calendar_id FROM m365sync.calendars WHERE account_id = $1 AND graph_id = $2",
				&a, SPI_OK_SELECT, NULL) == 1;
	if (!found)
		m365_spi_run("SELECT pg_catalog.nextval('m365sync.calendars_calendar_id_seq')", NULL, SPI_OK_SELECT, NULL);
	calendar_id = m365_spi_get_int8(1);
	SPI_finish();

	name = c->name ? m365_encrypt_text("calendars", "name", account_id, calendar_id, c->name) : NULL;
	m365_spi_arg_int8(&w, account_id);
	m365_spi_arg_int8(&w, calendar_id);
	m365_spi_arg_text(&w, c->id);
	m365_spi_arg_bytea(&w, name);
	m365_spi_arg(&w, BOOLOID, BoolGetDatum(c->is_default), false);
	m365_spi_arg(&w, BOOLOID, BoolGetDatum(c->can_edit), false);
	m365_spi_arg(&w, BOOLOID, BoolGetDatum(enable), false);
	/*
	 * now() - 1 day as $8: Citus refuses non-immutable functions (now(),
	 * timestamptz - interval) inside CASE in an UPDATE
	 */
	m365_spi_arg(&w, TIMESTAMPTZOID,
				 TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(),
																 -(int64) 86400 * 1000)), false);
	if (found)
		m365_spi_exec(m365_schema_is_0_2()
					  /* still listed a day after its 404: tried again (a listed calendar that keeps answering 404 costs a request a day) */
					  ? "UPDATE m365sync.calendars SET name = $4, is_default = $5, can_edit = $6,"
					  " gone_at = CASE WHEN gone_at > $8 THEN gone_at END "
					  "WHERE account_id = $1 AND calendar_id = $2 AND graph_id = $3"
					  : "UPDATE m365sync.calendars SET name = $4, is_default = $5, can_edit = $6 "
					  "WHERE account_id = $1 AND calendar_id = $2 AND graph_id = $3",
					  &w, SPI_OK_UPDATE, NULL);
	else
		m365_spi_exec("INSERT INTO m365sync.calendars "
				   "(account_id, calendar_id, graph_id, name, is_default, can_edit, sync_enabled) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7)",
				   &w, SPI_OK_INSERT, NULL);
	return calendar_id;
}

List *
m365_store_calendars_to_pull(int64 account_id)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		n;

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	n = m365_spi_run(m365_schema_is_0_2()
					 ? "SELECT calendar_id, graph_id, delta_link, delta_is_final,"
					 " coalesce(full_round_id, 0), window_start, window_end"
					 " FROM m365sync.calendars WHERE account_id = $1 AND sync_enabled AND gone_at IS NULL"
					 " ORDER BY calendar_id"
					 : "SELECT calendar_id, graph_id, delta_link, delta_is_final,"
					 " coalesce(full_round_id, 0), window_start, window_end"
					 " FROM m365sync.calendars WHERE account_id = $1 AND sync_enabled"
					 " ORDER BY calendar_id", &a, SPI_OK_SELECT, "reading calendars");
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		M365PullCalendar *c = palloc0(sizeof(M365PullCalendar));
		bytea	   *link;

		c->calendar_id = m365_spi_row_int8(i, 1);
		c->graph_id = m365_spi_row_text(i, 2, caller);
		link = m365_spi_row_bytea(i, 3, CurrentMemoryContext);
		if (link)
			c->link = m365_decrypt_text("calendars", "delta_link", account_id, c->calendar_id, link);
		c->link_is_final = m365_spi_row_bool(i, 4);
		c->full_round_id = m365_spi_row_int8(i, 5);
		c->window_start = DatumGetTimestampTz(m365_spi_row_datum(i, 6, &isnull));
		c->has_window = !isnull;
		c->window_end = DatumGetTimestampTz(m365_spi_row_datum(i, 7, &isnull));
		out = lappend(out, c);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

bool
m365_store_calendars_lock_key(int64 account_id, int64 calendar_id)
{
	static SPIPlanPtr plan;
	M365SpiArgs a = {0};
	bool		found;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, calendar_id);
	SPI_connect();
	/* the statement of PostgreSQL's own foreign key check (ri_triggers.c) */
	found = m365_spi_run_saved(&plan, "SELECT 1 FROM ONLY m365sync.calendars x"
							   " WHERE x.account_id = $1 AND x.calendar_id = $2 FOR KEY SHARE OF x",
							   &a, SPI_OK_SELECT, 1, "locking a calendar") == 1;
	SPI_finish();
	return found;
}

void
m365_store_calendars_save_cursor(int64 account_id, const M365PullCalendar *cal)
{
	static SPIPlanPtr plan;
	M365SpiArgs a = {0};
	bytea	   *link = NULL;

	if (cal->link)
		link = m365_encrypt_text("calendars", "delta_link", account_id, cal->calendar_id, cal->link);
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, cal->calendar_id);
	m365_spi_arg_bytea(&a, link);
	m365_spi_arg(&a, BOOLOID, BoolGetDatum(cal->link_is_final), false);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(cal->full_round_id), cal->full_round_id == 0);
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(cal->window_start), !cal->has_window);
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(cal->window_end), !cal->has_window);

	SPI_connect();
	m365_spi_run_saved(&plan, "UPDATE m365sync.calendars SET delta_link = $3, delta_is_final = $4,"
					   " full_round_id = $5, window_start = $6, window_end = $7"
					   " WHERE account_id = $1 AND calendar_id = $2",
					   &a, SPI_OK_UPDATE, 0, "saving a cursor");
	SPI_finish();
}

void
m365_store_calendars_save_cursors(const int64 *account_ids, M365PullCalendar *const *cals, int n)
{
	M365SpiArgs a = {0};
	Datum	   *d;
	bool	   *nulls;

	if (n == 0)
		return;
	d = palloc(sizeof(Datum) * n);
	nulls = palloc(sizeof(bool) * n);
	m365_spi_arg_int8_array(&a, account_ids, n);
	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(cals[i]->calendar_id);
	m365_spi_arg_array(&a, INT8OID, d, NULL, n);
	for (int i = 0; i < n; i++)
	{
		nulls[i] = cals[i]->link == NULL;
		d[i] = nulls[i] ? (Datum) 0 :
			PointerGetDatum(m365_encrypt_text("calendars", "delta_link", account_ids[i],
											  cals[i]->calendar_id, cals[i]->link));
	}
	m365_spi_arg_array(&a, BYTEAOID, d, nulls, n);
	for (int i = 0; i < n; i++)
		d[i] = BoolGetDatum(cals[i]->link_is_final);
	m365_spi_arg_array(&a, BOOLOID, d, NULL, n);
	for (int i = 0; i < n; i++)
	{
		nulls[i] = cals[i]->full_round_id == 0;
		d[i] = Int64GetDatum(cals[i]->full_round_id);
	}
	m365_spi_arg_array(&a, INT8OID, d, nulls, n);
	for (int i = 0; i < n; i++)
	{
		nulls[i] = !cals[i]->has_window;
		d[i] = TimestampTzGetDatum(cals[i]->window_start);
	}
	m365_spi_arg_array(&a, TIMESTAMPTZOID, d, nulls, n);
	for (int i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(cals[i]->window_end);
	m365_spi_arg_array(&a, TIMESTAMPTZOID, d, nulls, n);
	/* joined on the distribution column: Citus runs it on each shard (unnest is immutable) */
	m365_spi_exec("UPDATE m365sync.calendars c SET delta_link = u.link, delta_is_final = u.final,"
				  " full_round_id = u.full_round_id, window_start = u.window_start, window_end = u.window_end"
				  " FROM unnest($1, $2, $3, $4, $5, $6, $7)"
				  "   AS u(account_id, calendar_id, link, final, full_round_id, window_start, window_end)"
				  " WHERE c.account_id = u.account_id AND c.calendar_id = u.calendar_id",
				  &a, SPI_OK_UPDATE, "saving cursors");
}

List *
m365_store_calendars_all(int64 account_id)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	bytea	  **names;
	uint64		n;

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	n = m365_spi_run("SELECT calendar_id, graph_id, name, is_default, sync_enabled"
					 " FROM m365sync.calendars WHERE account_id = $1 ORDER BY calendar_id",
					 &a, SPI_OK_SELECT, "reading calendars");
	names = palloc(sizeof(bytea *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		M365StoredCalendar *c = MemoryContextAllocZero(caller, sizeof(M365StoredCalendar));

		c->calendar_id = m365_spi_row_int8(i, 1);
		c->graph_id = m365_spi_row_text(i, 2, caller);
		names[i] = m365_spi_row_bytea(i, 3, CurrentMemoryContext);
		c->is_default = m365_spi_row_bool(i, 4);
		c->sync_enabled = m365_spi_row_bool(i, 5);
		out = lappend(out, c);
	}
	/* every row read first: decryption may run SPI of its own */
	for (uint64 i = 0; i < n; i++)
	{
		M365StoredCalendar *c = list_nth(out, (int) i);
		MemoryContext spi = MemoryContextSwitchTo(caller);

		c->name = names[i] ? m365_decrypt_text("calendars", "name", account_id, c->calendar_id, names[i]) : NULL;
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

void
m365_store_calendars_remove(int64 account_id, int64 calendar_id)
{
	M365SpiArgs a = {0};

	m365_store_removed_events_record_calendar(account_id, calendar_id);
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, calendar_id);
	/* its events, their outbox entries and conflicts go with it (foreign keys) */
	m365_spi_exec("DELETE FROM m365sync.calendars WHERE account_id = $1 AND calendar_id = $2",
				  &a, SPI_OK_DELETE, "removing a calendar");
}

void
m365_store_calendars_mark_gone(int64 account_id, int64 calendar_id)
{
	M365SpiArgs a = {0};

	if (!m365_schema_is_0_2())
		return;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, calendar_id);
	m365_spi_exec("UPDATE m365sync.calendars SET gone_at = pg_catalog.now()"
				  " WHERE account_id = $1 AND calendar_id = $2 AND gone_at IS NULL",
				  &a, SPI_OK_UPDATE, "marking a calendar gone");
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_calendars_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.calendars WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}
