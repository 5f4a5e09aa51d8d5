/*
 * spi_util.h — the one SPI style of the store modules (spi_util.c): a
 * result check that names the step, a statement planned once per backend,
 * an argument builder and typed getters of result rows. Messages
 * name the step, never a value.
 */
#ifndef M365SYNC_SPI_UTIL_H
#define M365SYNC_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"

/* ERROR unless an SPI call returned what was expected; what names the step. */
extern void m365_spi_check(int rc, int expected, const char *what);

/* the widest statement: store_events.c's insert (19) */
#define M365_SPI_MAX_ARGS 20

/* The arguments of one statement, built in order ($1, $2, ...). */
typedef struct M365SpiArgs
{
	int			n;
	Oid			types[M365_SPI_MAX_ARGS];
	Datum		values[M365_SPI_MAX_ARGS];
	char		nulls[M365_SPI_MAX_ARGS];
} M365SpiArgs;

extern void m365_spi_arg(M365SpiArgs *a, Oid type, Datum v, bool isnull);
extern void m365_spi_arg_text(M365SpiArgs *a, const char *s);	/* NULL: SQL null */
extern void m365_spi_arg_int8(M365SpiArgs *a, int64 v);
extern void m365_spi_arg_bytea(M365SpiArgs *a, bytea *b);	/* NULL: SQL null */
extern void m365_spi_arg_int8_array(M365SpiArgs *a, const int64 *v, int n);
extern void m365_spi_arg_text_array(M365SpiArgs *a, const char *const *items, int n);
/* A one-dimensional array of n values of elem_type; nulls may be NULL (none). */
extern void m365_spi_arg_array(M365SpiArgs *a, Oid elem_type, const Datum *values, const bool *nulls, int n);

/*
 * Run one statement in the current SPI connection (a may be NULL); returns
 * SPI_processed. what names the step for the error (NULL: "an internal
 * statement").
 */
extern uint64 m365_spi_run(const char *sql, const M365SpiArgs *a, int expected, const char *what);

/*
 * m365_spi_run keeps each statement prepared for the backend's life (the
 * plan cache picks custom or generic plans); this one parses and plans it
 * afresh with the arguments' values, for a statement that wants a plan for
 * its values every time.
 */
extern uint64 m365_spi_run_once(const char *sql, const M365SpiArgs *a, int expected, const char *what);

/*
 * A read in the caller's snapshot (SPI read_only: no command counter step,
 * so rows written earlier in the same command stay invisible).
 */
extern uint64 m365_spi_run_read_only(const char *sql, const M365SpiArgs *a, int expected, const char *what);

/* The same in its own SPI connection, for writes with no result rows of interest. */
extern uint64 m365_spi_exec(const char *sql, const M365SpiArgs *a, int expected, const char *what);

/*
 * Run a statement planned once per backend (kept in *slot) with arguments
 * from the builder, in the current SPI connection; returns SPI_processed.
 * Every call of one slot must build the same argument types.
 */
extern uint64 m365_spi_run_saved(SPIPlanPtr *slot, const char *sql, const M365SpiArgs *a,
								 int expected, long limit, const char *what);
/* The same, in the caller's snapshot (as m365_spi_run_read_only). */
extern uint64 m365_spi_run_saved_read_only(SPIPlanPtr *slot, const char *sql, const M365SpiArgs *a,
										   int expected, long limit, const char *what);
/* Free a plan one of those two kept in *slot (if any) and clear the slot. */
extern void m365_spi_forget_saved(SPIPlanPtr *slot);

/*
 * Columns of result row `row` (from 0) of the last statement; text and bytea
 * copied into cxt, NULL (0, false) when null.
 */
extern Datum m365_spi_row_datum(uint64 row, int col, bool *isnull);
extern char *m365_spi_row_text(uint64 row, int col, MemoryContext cxt);
extern bytea *m365_spi_row_bytea(uint64 row, int col, MemoryContext cxt);
extern int64 m365_spi_row_int8(uint64 row, int col);
extern int32 m365_spi_row_int4(uint64 row, int col);
extern bool m365_spi_row_bool(uint64 row, int col);

/* The same for the first result row. */
#define m365_spi_get_datum(col, isnull)	m365_spi_row_datum(0, (col), (isnull))
#define m365_spi_get_text(col, cxt)		m365_spi_row_text(0, (col), (cxt))
#define m365_spi_get_bytea(col, cxt)	m365_spi_row_bytea(0, (col), (cxt))
#define m365_spi_get_int8(col)			m365_spi_row_int8(0, (col))
#define m365_spi_get_bool(col)			m365_spi_row_bool(0, (col))

#endif							/* M365SYNC_SPI_UTIL_H */
