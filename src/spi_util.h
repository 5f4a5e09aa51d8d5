/*
 * spi_util.h — the two SPI helpers every store module needs (spi_util.c):
 * a result check that names the step, and a statement planned once per
 * backend. Messages name the step, never a value.
 */
#ifndef M365SYNC_SPI_UTIL_H
#define M365SYNC_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"

/* ERROR unless an SPI call returned what was expected; what names the step. */
extern void m365_spi_check(int rc, int expected, const char *what);

/* A statement planned once per backend and kept in *slot. */
extern SPIPlanPtr m365_spi_saved_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types);

#endif							/* M365SYNC_SPI_UTIL_H */
