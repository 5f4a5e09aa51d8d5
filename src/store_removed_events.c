/*
 * store_removed_events.c — SPI for m365sync.removed_events (see
 * store_removed_events.h).
 *
 * A removal in one calendar's delta and the event's appearance in another's
 * may come in either order, rounds apart (GRAPH.md §11). When the
 * appearance comes first the pull finds the row by Graph id and only moves
 * it; when the removal comes first the row is gone, and this table carries
 * its event_id over to the new row. Messages name the step, never a value.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

#include "extension_guard.h"
#include "spi_util.h"
#include "store_removed_events.h"

void
m365_store_removed_events_record(int64 account_id, const char *graph_id, int64 event_id)
{
	static SPIPlanPtr record_plan,
				forget_plan;
	M365SpiArgs a = {0};
	M365SpiArgs f = {0};

	if (graph_id == NULL || !m365_schema_is_0_2())
		return;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, graph_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_int8(&f, account_id);
	SPI_connect();
	m365_spi_run_saved(&record_plan,
					   "INSERT INTO m365sync.removed_events (account_id, graph_id, event_id) VALUES ($1, $2, $3)"
					   " ON CONFLICT (account_id, graph_id) DO UPDATE"
					   " SET event_id = EXCLUDED.event_id, removed_at = EXCLUDED.removed_at",
					   &a, SPI_OK_INSERT, 0, "remembering a removed event");
	m365_spi_run_saved(&forget_plan,
					   "DELETE FROM m365sync.removed_events WHERE account_id = $1"
					   " AND removed_at < pg_catalog.now() - interval '" CppAsString2(M365_REMOVED_EVENT_KEEP_DAYS) " days'",
					   &f, SPI_OK_DELETE, 0, "forgetting removed events");
	SPI_finish();
}

void
m365_store_removed_events_record_calendar(int64 account_id, int64 calendar_id)
{
	M365SpiArgs a = {0};

	if (!m365_schema_is_0_2())
		return;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, calendar_id);
	m365_spi_exec("INSERT INTO m365sync.removed_events (account_id, graph_id, event_id)"
				  " SELECT e.account_id, e.graph_id, e.event_id FROM m365sync.events e"
				  " WHERE e.account_id = $1 AND e.calendar_id = $2 AND e.graph_id IS NOT NULL"
				  " ON CONFLICT (account_id, graph_id) DO UPDATE"
				  " SET event_id = EXCLUDED.event_id, removed_at = EXCLUDED.removed_at",
				  &a, SPI_OK_INSERT, "remembering the events of a removed calendar");
}

int64
m365_store_removed_events_take(int64 account_id, const char *graph_id)
{
	static SPIPlanPtr plan;
	M365SpiArgs a = {0};
	int64		event_id = 0;

	if (graph_id == NULL || !m365_schema_is_0_2())
		return 0;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, graph_id);
	SPI_connect();
	if (m365_spi_run_saved(&plan,
						   "DELETE FROM m365sync.removed_events WHERE account_id = $1 AND graph_id = $2"
						   " AND removed_at >= pg_catalog.now() - interval '" CppAsString2(M365_REMOVED_EVENT_KEEP_DAYS) " days'"
						   " RETURNING event_id",
						   &a, SPI_OK_DELETE_RETURNING, 0, "finding a removed event") == 1)
		event_id = m365_spi_get_int8(1);
	SPI_finish();
	return event_id;
}

bool
m365_store_removed_events_any(int64 account_id)
{
	static SPIPlanPtr plan;
	M365SpiArgs a = {0};
	bool		any;

	if (!m365_schema_is_0_2())
		return false;
	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	any = m365_spi_run_saved(&plan, "SELECT 1 FROM m365sync.removed_events WHERE account_id = $1 LIMIT 1",
							 &a, SPI_OK_SELECT, 1, "looking for removed events") > 0;
	SPI_finish();
	return any;
}

char **
m365_store_removed_events_among(int64 account_id, const char *const *graph_ids, int n, int *nout)
{
	static SPIPlanPtr plan;
	M365SpiArgs a = {0};
	MemoryContext cxt = CurrentMemoryContext;
	uint64		rows;
	char	  **out;

	*nout = 0;
	if (n == 0 || !m365_schema_is_0_2())
		return NULL;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text_array(&a, graph_ids, n);
	SPI_connect();
	/* the rows take would find */
	rows = m365_spi_run_saved(&plan,
							  "SELECT graph_id FROM m365sync.removed_events WHERE account_id = $1 AND graph_id = ANY ($2)"
							  " AND removed_at >= pg_catalog.now() - interval '" CppAsString2(M365_REMOVED_EVENT_KEEP_DAYS) " days'",
							  &a, SPI_OK_SELECT, 0, "finding removed events");
	out = MemoryContextAlloc(cxt, sizeof(char *) * Max(rows, 1));
	for (uint64 i = 0; i < rows; i++)
		out[(*nout)++] = m365_spi_row_text(i, 1, cxt);
	SPI_finish();
	return out;
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_removed_events_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	if (!m365_schema_is_0_2())
		return;
	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.removed_events WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}
