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

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "keyring.h"
#include "spi_util.h"
#include "store_calendars.h"
#include "wake.h"

bool
m365_store_calendars_find(int64 account_id, int64 calendar_id, int64 *found_id, bool *can_edit)
{
	static SPIPlanPtr p_one,
				p_default;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(calendar_id)};
	bool		isnull;

	if (calendar_id > 0)
		m365_spi_run_plan(m365_spi_saved_plan(&p_one, "SELECT c.calendar_id, c.can_edit FROM m365sync.calendars c"
				 " WHERE c.account_id = $1 AND c.calendar_id = $2", 2, types),
			values, NULL, SPI_OK_SELECT, 1);
	else
		m365_spi_run_plan(m365_spi_saved_plan(&p_default, "SELECT c.calendar_id, c.can_edit FROM m365sync.calendars c"
				 " WHERE c.account_id = $1 AND c.is_default ORDER BY c.calendar_id LIMIT 1",
				 1, types),
			values, NULL, SPI_OK_SELECT, 1);
	if (SPI_processed == 0)
		return false;
	*found_id = DatumGetInt64(m365_spi_get_datum(1, &isnull));
	*can_edit = DatumGetBool(m365_spi_get_datum(2, &isnull));
	return true;
}

uint64
m365_store_calendars_list(int64 account_id)
{
	static SPIPlanPtr p;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(account_id)};

	m365_spi_run_plan(m365_spi_saved_plan(&p, "SELECT c.calendar_id, c.name, c.is_default, c.can_edit, c.sync_enabled"
			 " FROM m365sync.calendars c WHERE c.account_id = $1 ORDER BY c.calendar_id",
			 1, types),
		values, NULL, SPI_OK_SELECT, 0);
	return SPI_processed;
}

bool
m365_store_calendars_set_sync(int64 account_id, int64 calendar_id, bool enabled)
{
	static SPIPlanPtr p;
	Oid			types[3] = {INT8OID, INT8OID, BOOLOID};
	Datum		values[3] = {Int64GetDatum(account_id), Int64GetDatum(calendar_id),
	BoolGetDatum(enabled)};

	m365_spi_run_plan(m365_spi_saved_plan(&p, "UPDATE m365sync.calendars SET sync_enabled = $3"
			 " WHERE account_id = $1 AND calendar_id = $2", 3, types),
		values, NULL, SPI_OK_UPDATE, 0);
	if (SPI_processed == 0)
		return false;
	/* enabling (or disabling) sync is work for the worker */
	m365_wake_worker_at_commit();
	return true;
}

int64
m365_store_calendars_upsert(int64 account_id, const M365GraphCalendar *c, bool enable)
{
	M365SpiArgs a = {0};
	int64		calendar_id;
	bool		found;
	bytea	   *name;
	M365SpiArgs		w = {0};

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
	if (found)
		m365_spi_exec("UPDATE m365sync.calendars SET name = $4, is_default = $5, can_edit = $6 "
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
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(account_id)};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		i;

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("SELECT calendar_id, graph_id, delta_link, delta_is_final,"
								" coalesce(full_round_id, 0), window_start, window_end"
								" FROM m365sync.calendars WHERE account_id = $1 AND sync_enabled"
								" ORDER BY calendar_id",
								1, types, values, NULL, true, 0), SPI_OK_SELECT, "reading calendars");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		link;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		M365PullCalendar *c = palloc0(sizeof(M365PullCalendar));

		c->calendar_id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		c->graph_id = SPI_getvalue(t, d, 2);
		link = SPI_getbinval(t, d, 3, &isnull);
		if (!isnull)
			c->link = m365_decrypt_text("calendars", "delta_link", account_id, c->calendar_id,
										DatumGetByteaPP(link));
		c->link_is_final = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));
		c->full_round_id = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
		c->window_start = DatumGetTimestampTz(SPI_getbinval(t, d, 6, &isnull));
		c->has_window = !isnull;
		c->window_end = DatumGetTimestampTz(SPI_getbinval(t, d, 7, &isnull));
		out = lappend(out, c);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

void
m365_store_calendars_save_cursor(int64 account_id, const M365PullCalendar *cal)
{
	static SPIPlanPtr plan;
	Oid			types[7] = {INT8OID, INT8OID, BYTEAOID, BOOLOID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[8] = "       ";
	bytea	   *link = NULL;

	if (cal->link)
		link = m365_encrypt_text("calendars", "delta_link", account_id, cal->calendar_id, cal->link);
	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(cal->calendar_id);
	values[2] = PointerGetDatum(link);
	nulls[2] = link ? ' ' : 'n';
	values[3] = BoolGetDatum(cal->link_is_final);
	values[4] = Int64GetDatum(cal->full_round_id);
	nulls[4] = cal->full_round_id ? ' ' : 'n';
	values[5] = TimestampTzGetDatum(cal->window_start);
	values[6] = TimestampTzGetDatum(cal->window_end);
	nulls[5] = nulls[6] = cal->has_window ? ' ' : 'n';

	SPI_connect();
	m365_spi_check(SPI_execute_plan(m365_spi_saved_plan(&plan, "UPDATE m365sync.calendars SET delta_link = $3, delta_is_final = $4,"
									  " full_round_id = $5, window_start = $6, window_end = $7"
									  " WHERE account_id = $1 AND calendar_id = $2", 7, types),
						   values, nulls, false, 0), SPI_OK_UPDATE, "saving a cursor");
	SPI_finish();
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
