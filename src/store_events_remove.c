/*
 * store_events_remove.c — events found gone, removed (see
 * store_events_remove.h): the full round's sweep and the series masters
 * left without occurrences.
 *
 * The caller's SELECT ... FOR UPDATE finds and locks the rows; each one's
 * state is then fixed (no other transaction can change a locked row), so
 * the synced ones are deleted by key and the conflicts made tombstones by
 * key. The SELECT's conditions are rechecked on a row changed while it
 * waited for the lock, as a DELETE's would be.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "store_events_remove.h"

int
m365_store_events_remove_found(int64 account_id, const char *select, const M365SpiArgs *a,
							   int64 **deleted_ids, char ***deleted_graph_ids, int *n_deleted)
{
	uint64		n = m365_spi_run(select, a, SPI_OK_SELECT, "finding events gone");
	int64	   *synced;
	char	  **graph_ids;
	int64	   *conflicts;
	int			ns = 0,
				nc = 0;

	if (deleted_ids)
	{
		*deleted_ids = NULL;
		*deleted_graph_ids = NULL;
		*n_deleted = 0;
	}
	if (n == 0)
		return 0;
	synced = palloc(sizeof(int64) * n);
	graph_ids = palloc(sizeof(char *) * n);
	conflicts = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < n; i++)
	{
		int64		id = m365_spi_row_int8(i, 1);

		if (m365_spi_row_bool(i, 2))
		{
			graph_ids[ns] = m365_spi_row_text(i, 3, CurrentMemoryContext);
			synced[ns++] = id;
		}
		else
			conflicts[nc++] = id;
	}
	if (ns > 0)
	{
		M365SpiArgs d = {0};

		m365_spi_arg_int8(&d, account_id);
		m365_spi_arg_int8_array(&d, synced, ns);
		if (m365_spi_run("DELETE FROM m365sync.events WHERE account_id = $1 AND event_id = ANY ($2)",
						 &d, SPI_OK_DELETE, "removing events gone") != (uint64) ns)
			elog(ERROR, "m365sync: a locked event changed under the pull");
	}
	if (nc > 0)
	{
		M365SpiArgs u = {0};

		m365_spi_arg_int8(&u, account_id);
		m365_spi_arg_int8_array(&u, conflicts, nc);
		if (m365_spi_run("UPDATE m365sync.events SET deleted = true, graph_id = NULL, change_key = NULL"
						 " WHERE account_id = $1 AND event_id = ANY ($2)",
						 &u, SPI_OK_UPDATE, "removing events gone") != (uint64) nc)
			elog(ERROR, "m365sync: a locked event changed under the pull");
	}
	if (deleted_ids)
	{
		*deleted_ids = synced;
		*deleted_graph_ids = graph_ids;
		*n_deleted = ns;
	}
	return ns + nc;
}
