/*
 * store_events_series.c — the pull's statements on series in
 * m365sync.events (see store_events_series.h), apart from
 * store_events_pull.c (one page's events) for size. Every statement is
 * parameterised and keeps to one account; none touches a row with a local
 * change waiting in the outbox.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "store_events_remove.h"
#include "store_events_series.h"

#define NOT_PENDING(alias) \
	" AND NOT EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = " alias ".account_id" \
	"   AND o.event_id = " alias ".event_id AND o.state = 'pending')"

/* A master (from Graph, no local change waiting) of which no event is left. */
#define ORPHAN_MASTER \
	" m.account_id = $1 AND m.event_type = 'seriesMaster' AND NOT m.deleted" \
	" AND m.graph_id IS NOT NULL" NOT_PENDING("m") \
	" AND NOT EXISTS (SELECT 1 FROM m365sync.events x WHERE x.account_id = m.account_id" \
	"   AND x.series_master_id = m.event_id AND NOT x.deleted)"

/*
 * Masters matching `where` go: a synced one is deleted, one with a listed
 * conflict stays as a tombstone (the listing needs its row), as a removal
 * in a delta page does (store_events_remove.h: one scan). Returns how many.
 */
static int
remove_masters(int64 account_id, const char *where, const M365SpiArgs *a)
{
	return m365_store_events_remove_found(account_id,
										  psprintf("SELECT m.event_id, m.sync_state = 'synced', m.graph_id"
												   " FROM m365sync.events m WHERE %s"
												   " AND m.sync_state IN ('synced', 'conflict') FOR UPDATE", where),
										  a, NULL, NULL, NULL);
}

int
m365_store_events_series_drop_orphans(int64 account_id, const int64 *masters, int n,
									  const char *const *master_graph_ids, int ng)
{
	M365SpiArgs a = {0};

	if (n == 0 && ng == 0)
		return 0;
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8_array(&a, masters, n);
	m365_spi_arg_text_array(&a, master_graph_ids, ng);
	return remove_masters(account_id, "(m.event_id = ANY ($2) OR m.graph_id = ANY ($3)) AND" ORPHAN_MASTER, &a);
}

int
m365_store_events_series_drop_orphans_in(int64 account_id, int64 calendar_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, calendar_id);
	return remove_masters(account_id, "m.calendar_id = $2 AND" ORPHAN_MASTER, &a);
}

int
m365_store_events_series_reconcile(int64 account_id, const char *master_graph_id,
								   const char *const *keep, int n, TimestampTz ws, TimestampTz we)
{
	M365SpiArgs a = {0};

/* Events of the series in the window that Graph no longer lists. */
#define NOT_LISTED \
	" e.account_id = $1 AND e.series_master_id = (SELECT m.event_id FROM m365sync.events m" \
	"   WHERE m.account_id = $1 AND m.graph_id = $2 AND m.event_type = 'seriesMaster')" \
	" AND e.event_type IN ('occurrence', 'exception') AND e.graph_id IS NOT NULL" \
	" AND e.graph_id <> ALL ($3) AND e.start_at < $5 AND e.end_at > $4" NOT_PENDING("e")

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, master_graph_id);
	m365_spi_arg_text_array(&a, keep, n);
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(ws), false);
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(we), false);
	/* A listed conflict keeps its row as a tombstone, as a removal in a delta page does. */
	return m365_store_events_remove_found(account_id,
										  "SELECT e.event_id, e.sync_state = 'synced', e.graph_id"
										  " FROM m365sync.events e WHERE" NOT_LISTED
										  " AND e.sync_state IN ('synced', 'conflict') FOR UPDATE",
										  &a, NULL, NULL, NULL);
}

bool
m365_store_events_series_master_gone(int64 account_id, const char *graph_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, graph_id);
	return remove_masters(account_id, "m.account_id = $1 AND m.graph_id = $2 AND m.event_type = 'seriesMaster'"
						  " AND NOT m.deleted" NOT_PENDING("m"), &a) > 0;
}
