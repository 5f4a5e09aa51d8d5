/*
 * spi_util.c — the one SPI style shared by the store modules (see
 * spi_util.h): checks, saved plans, an argument builder, typed getters.
 * Knows no table: callers own their SQL.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "spi_util.h"

void
m365_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "m365sync: %s failed: %s", what, SPI_result_code_string(rc));
}

static SPIPlanPtr
saved_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
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

void
m365_spi_arg(M365SpiArgs *a, Oid type, Datum v, bool isnull)
{
	if (a->n >= M365_SPI_MAX_ARGS)
		elog(ERROR, "m365sync: too many statement arguments");
	a->types[a->n] = type;
	a->values[a->n] = v;
	a->nulls[a->n] = isnull ? 'n' : ' ';
	a->n++;
}

void
m365_spi_arg_text(M365SpiArgs *a, const char *s)
{
	m365_spi_arg(a, TEXTOID, s ? PointerGetDatum(cstring_to_text(s)) : (Datum) 0, s == NULL);
}

void
m365_spi_arg_int8(M365SpiArgs *a, int64 v)
{
	m365_spi_arg(a, INT8OID, Int64GetDatum(v), false);
}

void
m365_spi_arg_bytea(M365SpiArgs *a, bytea *b)
{
	m365_spi_arg(a, BYTEAOID, PointerGetDatum(b), b == NULL);
}

/*
 * The statements of m365_spi_run, prepared once per backend and kept, as
 * PL/pgSQL keeps the statements of a function: a worker round runs the same
 * few statements for every account, and parsing and planning each again
 * cost more than running it. Found by their text and argument types; the
 * plan cache (plancache.c) replans after DDL or a change of role, and
 * chooses custom or generic plans as for any prepared statement. The table
 * is bounded: past STMT_CACHE_MAX distinct statements the rest run one-shot.
 */
#define STMT_CACHE_SLOTS 1024	/* a power of two */
#define STMT_CACHE_MAX 768

typedef struct CachedStmt
{
	uint32		hash;
	char	   *sql;			/* NULL: free slot */
	int			nargs;
	Oid			types[M365_SPI_MAX_ARGS];
	SPIPlanPtr	plan;
} CachedStmt;

static CachedStmt *stmt_cache = NULL;
static int	stmt_cache_n = 0;

static uint32
stmt_hash(const char *sql, int nargs, const Oid *types)
{
	uint32		h = hash_bytes((const unsigned char *) sql, (int) strlen(sql));

	if (nargs > 0)
		h = hash_combine(h, hash_bytes((const unsigned char *) types, (int) (sizeof(Oid) * nargs)));
	return h;
}

/* The kept plan of a statement, prepared now if it is new; NULL when the table is full. */
static SPIPlanPtr
cached_plan(const char *sql, int nargs, const Oid *types)
{
	uint32		h = stmt_hash(sql, nargs, types);
	uint32		i;

	if (stmt_cache == NULL)
		stmt_cache = MemoryContextAllocZero(TopMemoryContext, sizeof(CachedStmt) * STMT_CACHE_SLOTS);
	for (i = h & (STMT_CACHE_SLOTS - 1);; i = (i + 1) & (STMT_CACHE_SLOTS - 1))
	{
		CachedStmt *c = &stmt_cache[i];

		if (c->sql == NULL)
		{
			SPIPlanPtr	p;

			if (stmt_cache_n >= STMT_CACHE_MAX)
				return NULL;
			p = SPI_prepare(sql, nargs, (Oid *) types);
			if (p == NULL)
				elog(ERROR, "m365sync: could not plan a statement: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(p);
			c->hash = h;
			c->nargs = nargs;
			memcpy(c->types, types, sizeof(Oid) * nargs);
			c->plan = p;
			c->sql = MemoryContextStrdup(TopMemoryContext, sql);
			stmt_cache_n++;
			return p;
		}
		if (c->hash == h && c->nargs == nargs && strcmp(c->sql, sql) == 0 &&
			memcmp(c->types, types, sizeof(Oid) * nargs) == 0)
			return c->plan;
	}
}

uint64
m365_spi_run(const char *sql, const M365SpiArgs *a, int expected, const char *what)
{
	static const M365SpiArgs none = {0};
	SPIPlanPtr	p;

	if (a == NULL)
		a = &none;
	p = cached_plan(sql, a->n, a->types);
	if (p == NULL)
		return m365_spi_run_once(sql, a, expected, what);
	m365_spi_check(SPI_execute_plan(p, (Datum *) a->values, a->nulls, false, 0),
				   expected, what ? what : "an internal statement");
	return SPI_processed;
}

uint64
m365_spi_run_once(const char *sql, const M365SpiArgs *a, int expected, const char *what)
{
	m365_spi_check(SPI_execute_with_args(sql, a ? a->n : 0, a ? (Oid *) a->types : NULL,
										 a ? (Datum *) a->values : NULL, a ? a->nulls : NULL,
										 false, 0),
				   expected, what ? what : "an internal statement");
	return SPI_processed;
}

uint64
m365_spi_run_read_only(const char *sql, const M365SpiArgs *a, int expected, const char *what)
{
	m365_spi_check(SPI_execute_with_args(sql, a ? a->n : 0, a ? (Oid *) a->types : NULL,
										 a ? (Datum *) a->values : NULL, a ? a->nulls : NULL,
										 true, 0),
				   expected, what ? what : "an internal statement");
	return SPI_processed;
}

uint64
m365_spi_exec(const char *sql, const M365SpiArgs *a, int expected, const char *what)
{
	uint64		n;

	SPI_connect();
	n = m365_spi_run(sql, a, expected, what);
	SPI_finish();
	return n;
}

uint64
m365_spi_run_saved(SPIPlanPtr *slot, const char *sql, const M365SpiArgs *a,
				   int expected, long limit, const char *what)
{
	SPIPlanPtr	p = saved_plan(slot, sql, a->n, (Oid *) a->types);

	m365_spi_check(SPI_execute_plan(p, (Datum *) a->values, a->nulls, false, limit),
				   expected, what ? what : "an internal statement");
	return SPI_processed;
}

uint64
m365_spi_run_saved_read_only(SPIPlanPtr *slot, const char *sql, const M365SpiArgs *a,
							 int expected, long limit, const char *what)
{
	SPIPlanPtr	p = saved_plan(slot, sql, a->n, (Oid *) a->types);

	m365_spi_check(SPI_execute_plan(p, (Datum *) a->values, a->nulls, true, limit),
				   expected, what ? what : "an internal statement");
	return SPI_processed;
}

void
m365_spi_forget_saved(SPIPlanPtr *slot)
{
	if (*slot != NULL)
		SPI_freeplan(*slot);
	*slot = NULL;
}

Datum
m365_spi_row_datum(uint64 row, int col, bool *isnull)
{
	Assert(row < SPI_processed);
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

char *
m365_spi_row_text(uint64 row, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = m365_spi_row_datum(row, col, &isnull);
	MemoryContext old;
	char	   *s;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	s = TextDatumGetCString(d);
	MemoryContextSwitchTo(old);
	return s;
}

bytea *
m365_spi_row_bytea(uint64 row, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = m365_spi_row_datum(row, col, &isnull);
	MemoryContext old;
	bytea	   *b;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	b = DatumGetByteaPCopy(d);
	MemoryContextSwitchTo(old);
	return b;
}

int64
m365_spi_row_int8(uint64 row, int col)
{
	bool		isnull;
	Datum		d = m365_spi_row_datum(row, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

int32
m365_spi_row_int4(uint64 row, int col)
{
	bool		isnull;
	Datum		d = m365_spi_row_datum(row, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

bool
m365_spi_row_bool(uint64 row, int col)
{
	bool		isnull;
	Datum		d = m365_spi_row_datum(row, col, &isnull);

	return isnull ? false : DatumGetBool(d);
}

void
m365_spi_arg_int8_array(M365SpiArgs *a, const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	m365_spi_arg(a, INT8ARRAYOID,
				 PointerGetDatum(construct_array(d, n, INT8OID, sizeof(int64),
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
				 false);
}

void
m365_spi_arg_array(M365SpiArgs *a, Oid elem_type, const Datum *values, const bool *nulls, int n)
{
	int16		len;
	bool		byval;
	char		align;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elem_type, &len, &byval, &align);
	m365_spi_arg(a, get_array_type(elem_type),
				 PointerGetDatum(construct_md_array((Datum *) values, (bool *) nulls, 1, dims, lbs,
													elem_type, len, byval, align)),
				 false);
}

void
m365_spi_arg_text_array(M365SpiArgs *a, const char *const *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	m365_spi_arg(a, TEXTARRAYOID,
				 PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT)),
				 false);
}
