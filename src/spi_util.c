/*
 * spi_util.c — SPI helpers shared by the store modules (see spi_util.h).
 * Knows no table: callers own their SQL.
 */
#include "postgres.h"

#include "spi_util.h"

void
m365_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "m365sync: %s failed: %s", what, SPI_result_code_string(rc));
}

SPIPlanPtr
m365_spi_saved_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "m365sync: could not plan a statement: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*slot = p;
	}
	return *slot;
}
