/*
 * store_events_rows.c — many rows of m365sync.events of one calendar
 * inserted at once (see store_events_rows.h): the pull's page of new events.
 *
 * Two ways, one result. Where the table is a plain heap table whose only
 * insert trigger is the foreign key check on calendars, no rule and no row
 * security for the current user (the sync worker), the rows go in as COPY
 * puts them in: defaults, generated columns and constraints (NOT NULL,
 * CHECK) computed by the executor for each row, one table_multi_insert for
 * the page, then each index (unique ones checked as always). The foreign key
 * is checked once for the page instead of once per row: the calendar's key
 * is locked FOR KEY SHARE first, the statement PostgreSQL's own check runs
 * (so it cannot be deleted before commit, and a deletion that committed
 * first leaves nothing to lock: ERROR, nothing written). Anywhere else —
 * other triggers (an audit trigger someone added), rules, row security,
 * Citus (whose planner routes the statement to the account's shard) — the
 * rows go in as one INSERT ... SELECT over unnest of one array per column,
 * which fires everything as usual.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "rewrite/rewriteHandler.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "store_calendars.h"
#include "store_events.h"
#include "store_events_rows.h"

/* Values are copied into the batch's memory, so callers may free theirs after each add. */
#define ROWS_NCOLS 15			/* per-row columns, in the statement's order */

static const Oid rows_types[ROWS_NCOLS] = {
	INT8OID,					/* event_id */
	TEXTOID, TEXTOID,			/* graph_id, ical_uid */
	INT8OID,					/* series_master_id */
	TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID, DATEOID, DATEOID, TEXTOID, BOOLOID,	/* shape */
	BYTEAOID,					/* content */
	TEXTOID, TIMESTAMPTZOID		/* sync */
};

struct M365EventRows
{
	int64		account_id;
	int64		calendar_id;
	const char *sync_state;
	Datum		sync_state_datum;	/* as text */
	int64		seen_round;
	int			n;
	int			cap;
	Datum	   *values[ROWS_NCOLS];
	bool	   *nulls[ROWS_NCOLS];
	MemoryContext cxt;			/* the arrays */
	MemoryContext values_cxt;	/* copies of the values, emptied by each insert */
};

M365EventRows *
m365_store_events_rows_new(int64 account_id, int64 calendar_id, const char *sync_state,
						   int64 seen_round, int cap)
{
	M365EventRows *r = palloc0(sizeof(M365EventRows));

	r->cxt = AllocSetContextCreate(CurrentMemoryContext, "m365sync event rows", ALLOCSET_DEFAULT_SIZES);
	r->values_cxt = AllocSetContextCreate(r->cxt, "m365sync event row values", ALLOCSET_DEFAULT_SIZES);
	r->account_id = account_id;
	r->calendar_id = calendar_id;
	r->sync_state = MemoryContextStrdup(r->cxt, sync_state);
	r->sync_state_datum = PointerGetDatum(MemoryContextAllocZero(r->cxt, VARHDRSZ + strlen(sync_state)));
	SET_VARSIZE(DatumGetPointer(r->sync_state_datum), VARHDRSZ + strlen(sync_state));
	memcpy(VARDATA(DatumGetPointer(r->sync_state_datum)), sync_state, strlen(sync_state));
	r->seen_round = seen_round;
	r->cap = Max(cap, 1);
	for (int i = 0; i < ROWS_NCOLS; i++)
	{
		r->values[i] = MemoryContextAlloc(r->cxt, sizeof(Datum) * r->cap);
		r->nulls[i] = MemoryContextAlloc(r->cxt, sizeof(bool) * r->cap);
	}
	return r;
}

int64
m365_store_events_rows_calendar(const M365EventRows *r)
{
	return r->calendar_id;
}

static void
rows_set(M365EventRows *r, int col, Datum v, bool isnull)
{
	bool		byval = (rows_types[col] != TEXTOID && rows_types[col] != BYTEAOID);

	r->nulls[col][r->n] = isnull;
	r->values[col][r->n] = isnull ? (Datum) 0 : byval ? v : datumCopy(v, false, -1);
}

void
m365_store_events_rows_add(M365EventRows *r, int64 event_id, const M365EventColumns *c,
						   bool has_series_master, int64 series_master_id, bytea *content)
{
	MemoryContext old;
	Datum		shape[M365_EVENT_SHAPE_NARGS];
	char		shape_nulls[M365_EVENT_SHAPE_NARGS];
	Datum		sync[M365_EVENT_SYNC_NARGS];
	char		sync_nulls[M365_EVENT_SYNC_NARGS];
	int			col = 0;
	char	   *ical;

	if (r->n == r->cap)
	{
		r->cap *= 2;	/* repalloc keeps each array in r->cxt */
		for (int i = 0; i < ROWS_NCOLS; i++)
		{
			r->values[i] = repalloc(r->values[i], sizeof(Datum) * r->cap);
			r->nulls[i] = repalloc(r->nulls[i], sizeof(bool) * r->cap);
		}
	}
	m365_event_row_bind_shape(c, shape, shape_nulls);
	m365_event_row_bind_sync(c, sync, sync_nulls);
	old = MemoryContextSwitchTo(r->values_cxt);
	rows_set(r, col++, Int64GetDatum(event_id), false);
	rows_set(r, col++, c->graph_id ? CStringGetTextDatum(c->graph_id) : (Datum) 0, c->graph_id == NULL);
	ical = m365_store_events_ical_uid_hash(r->account_id, c->ical_uid);	/* as every writer stores it */
	rows_set(r, col++, ical ? CStringGetTextDatum(ical) : (Datum) 0, ical == NULL);
	rows_set(r, col++, Int64GetDatum(series_master_id), !has_series_master);
	for (int i = 0; i < M365_EVENT_SHAPE_NARGS; i++)
		rows_set(r, col++, shape[i], shape_nulls[i] == 'n');
	rows_set(r, col++, PointerGetDatum(content), false);
	for (int i = 0; i < M365_EVENT_SYNC_NARGS; i++)
		rows_set(r, col++, sync[i], sync_nulls[i] == 'n');
	Assert(col == ROWS_NCOLS);
	MemoryContextSwitchTo(old);
	r->n++;
}

/* The rows as one INSERT ... SELECT over unnest of one array per column. */
static void
insert_spi(M365EventRows *r)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, r->account_id);
	m365_spi_arg_int8(&a, r->calendar_id);
	m365_spi_arg_text(&a, r->sync_state);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(r->seen_round), r->seen_round == 0);
	for (int i = 0; i < ROWS_NCOLS; i++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {r->n};
		int			lbs[1] = {1};

		get_typlenbyvalalign(rows_types[i], &typlen, &typbyval, &typalign);
		m365_spi_arg(&a, get_array_type(rows_types[i]),
					 PointerGetDatum(construct_md_array(r->values[i], r->nulls[i], 1, dims, lbs,
														rows_types[i], typlen, typbyval, typalign)),
					 false);
	}
	if (m365_spi_run_saved(&p, "INSERT INTO m365sync.events (account_id, event_id, calendar_id, graph_id,"
						   " ical_uid, series_master_id, event_type, start_at, end_at, is_all_day, start_date,"
						   " end_date, show_as, is_cancelled, content, change_key, remote_modified_at,"
						   " local_modified_at, sync_state, seen_round)"
						   " SELECT $1, u.event_id, $2, u.graph_id, u.ical_uid, u.series_master_id, u.event_type,"
						   " u.start_at, u.end_at, u.is_all_day, u.start_date, u.end_date, u.show_as,"
						   " u.is_cancelled, u.content, u.change_key, u.remote_modified_at, pg_catalog.now(), $3, $4"
						   " FROM unnest($5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
						   " AS u(event_id, graph_id, ical_uid, series_master_id, event_type, start_at, end_at,"
						   " is_all_day, start_date, end_date, show_as, is_cancelled, content, change_key,"
						   " remote_modified_at)",
						   &a, SPI_OK_INSERT, 0, "inserting a page's events") != (uint64) r->n)
		elog(ERROR, "m365sync: a batch insert wrote fewer rows than it was given");
}


/* The columns the batch sets: the per-row ones in rows_types' order, then those of the batch. */
static const char *const row_columns[ROWS_NCOLS] = {
	"event_id", "graph_id", "ical_uid", "series_master_id", "event_type", "start_at", "end_at",
	"is_all_day", "start_date", "end_date", "show_as", "is_cancelled", "content", "change_key",
	"remote_modified_at"
};

enum
{
	BATCH_ACCOUNT_ID, BATCH_CALENDAR_ID, BATCH_SYNC_STATE, BATCH_SEEN_ROUND, BATCH_LOCAL_MODIFIED_AT,
	BATCH_NCOLS
};
static const char *const batch_columns[BATCH_NCOLS] = {
	"account_id", "calendar_id", "sync_state", "seen_round", "local_modified_at"
};

/*
 * May the rows skip the executor's statement? Only where that changes
 * nothing but the speed: see the head comment. calendars is the relation
 * the one foreign key may reference.
 */
static bool
direct_ok(Relation rel, Oid calendars)
{
	TriggerDesc *td = rel->trigdesc;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rules != NULL)
		return false;
	if (OidIsValid(get_extension_oid("citus", true)))
		return false;
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		return false;
	for (int i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];

		if (!TRIGGER_FOR_INSERT(t->tgtype))
			continue;
		if (!t->tgisinternal || t->tgfoid != F_RI_FKEY_CHECK_INS || t->tgconstrrelid != calendars)
			return false;
	}
	return true;
}

/* A row's value of each column it sets (attribute numbers in attnums). */
static void
fill_slot(M365EventRows *r, int row, TupleTableSlot *slot, const AttrNumber *attnums,
		  ExprState **defaults, EState *estate)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	ExprContext *econtext = GetPerTupleExprContext(estate);
	Datum	   *values = slot->tts_values;
	bool	   *isnull = slot->tts_isnull;

	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		/* a column the batch does not set: its default, or null */
		if (defaults[i] != NULL)
			values[i] = ExecEvalExprSwitchContext(defaults[i], econtext, &isnull[i]);
		else
		{
			values[i] = (Datum) 0;
			isnull[i] = true;
		}
	}
	for (int c = 0; c < ROWS_NCOLS; c++)
	{
		values[attnums[c] - 1] = r->values[c][row];
		isnull[attnums[c] - 1] = r->nulls[c][row];
	}
	values[attnums[ROWS_NCOLS + BATCH_ACCOUNT_ID] - 1] = Int64GetDatum(r->account_id);
	isnull[attnums[ROWS_NCOLS + BATCH_ACCOUNT_ID] - 1] = false;
	values[attnums[ROWS_NCOLS + BATCH_CALENDAR_ID] - 1] = Int64GetDatum(r->calendar_id);
	isnull[attnums[ROWS_NCOLS + BATCH_CALENDAR_ID] - 1] = false;
	values[attnums[ROWS_NCOLS + BATCH_SYNC_STATE] - 1] = r->sync_state_datum;
	isnull[attnums[ROWS_NCOLS + BATCH_SYNC_STATE] - 1] = false;
	values[attnums[ROWS_NCOLS + BATCH_SEEN_ROUND] - 1] = Int64GetDatum(r->seen_round);
	isnull[attnums[ROWS_NCOLS + BATCH_SEEN_ROUND] - 1] = r->seen_round == 0;
	/* pg_catalog.now(), as the statement would have it */
	values[attnums[ROWS_NCOLS + BATCH_LOCAL_MODIFIED_AT] - 1] =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	isnull[attnums[ROWS_NCOLS + BATCH_LOCAL_MODIFIED_AT] - 1] = false;
	ExecStoreVirtualTuple(slot);
}

/*
 * The stored generated columns (is_long), each by its own expression, into
 * the virtual slot: what ExecComputeStoredGenerated does, without its copy
 * of every value and second forming of the tuple (the content is most of
 * the row). The slot is materialized before the per-tuple memory goes.
 */
static void
compute_generated(ResultRelInfo *rri, EState *estate, TupleTableSlot *slot)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	ExprContext *econtext = GetPerTupleExprContext(estate);

	if (rri->ri_GeneratedExprs == NULL)
		ExecInitStoredGenerated(rri, estate, CMD_INSERT);
	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < desc->natts; i++)
	{
		if (rri->ri_GeneratedExprs[i] == NULL)
			continue;
		/* on a virtual slot: a generated column reads only non-generated ones */
		slot->tts_values[i] = ExecEvalExprSwitchContext(rri->ri_GeneratedExprs[i], econtext,
														&slot->tts_isnull[i]);
	}
}

/*
 * The rows straight into the heap and the indexes, as COPY puts them; false
 * (nothing done) where that would skip something (direct_ok) or the table
 * is not as this file knows it.
 */
static bool
insert_direct(M365EventRows *r)
{
	Oid			nsp = get_namespace_oid("m365sync", false);
	Oid			relid = get_relname_relid("events", nsp);
	Oid			calendars = get_relname_relid("calendars", nsp);
	AttrNumber	attnums[ROWS_NCOLS + BATCH_NCOLS];
	Relation	rel;
	TupleDesc	desc;
	RangeTblEntry *rte;
	ResultRelInfo *rri;
	EState	   *estate;
	ExprState **defaults;
	TupleTableSlot **slots;
	CommandId	cid;
	MemoryContext old;

	if (!OidIsValid(relid) || !OidIsValid(calendars))
		return false;
	rel = table_open(relid, RowExclusiveLock);
	if (!direct_ok(rel, calendars))
	{
		table_close(rel, NoLock);	/* the lock stays to the end of the transaction, as the statement's would */
		return false;
	}
	for (int c = 0; c < ROWS_NCOLS + BATCH_NCOLS; c++)
	{
		const char *name = c < ROWS_NCOLS ? row_columns[c] : batch_columns[c - ROWS_NCOLS];

		attnums[c] = get_attnum(relid, name);
		if (attnums[c] == InvalidAttrNumber)
		{
			table_close(rel, NoLock);
			return false;
		}
	}

	/* one lock for the page instead of a foreign key check per row */
	if (!m365_store_calendars_lock_key(r->account_id, r->calendar_id))
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("m365sync: calendar %lld of account %lld is gone", (long long) r->calendar_id,
						(long long) r->account_id),
				 errdetail("The page's events were not written.")));

	estate = CreateExecutorState();
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	desc = RelationGetDescr(rel);
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	for (int c = 0; c < ROWS_NCOLS + BATCH_NCOLS; c++)
		rte->insertedCols = bms_add_member(rte->insertedCols, attnums[c] - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(list_make1(rte), true);
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(estate, rri, 1);
	ExecOpenIndices(rri, false);
	cid = GetCurrentCommandId(true);
	estate->es_output_cid = cid;

	/* the defaults of the columns the batch does not set (deleted, and any added later) */
	defaults = palloc0(sizeof(ExprState *) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		set = false;
		Node	   *expr;

		for (int c = 0; c < ROWS_NCOLS + BATCH_NCOLS; c++)
			set |= attnums[c] == att->attnum;
		if (set || att->attisdropped || att->attgenerated)
			continue;
		expr = build_column_default(rel, att->attnum);
		if (expr != NULL)
			defaults[i] = ExecPrepareExpr((Expr *) expr, estate);
	}

	slots = palloc(sizeof(TupleTableSlot *) * r->n);
	for (int row = 0; row < r->n; row++)
	{
		slots[row] = table_slot_create(rel, &estate->es_tupleTable);
		fill_slot(r, row, slots[row], attnums, defaults, estate);
		if (desc->constr && desc->constr->has_generated_stored)
			compute_generated(rri, estate, slots[row]);
		if (desc->constr)
			ExecConstraints(rri, slots[row], estate);
		ExecMaterializeSlot(slots[row]);
		ResetPerTupleExprContext(estate);
	}
	table_multi_insert(rel, slots, r->n, cid, 0, NULL);
	for (int row = 0; row < r->n; row++)
	{
		List	   *recheck = NIL;

		if (rri->ri_NumIndices > 0)
			recheck = ExecInsertIndexTuples(rri, slots[row], estate, false, false, NULL, NIL);
		/* no deferred unique or exclusion constraint on events: nothing to recheck */
		if (recheck != NIL)
			elog(ERROR, "m365sync: an index of events wants a deferred check");
		ResetPerTupleExprContext(estate);
	}
	MemoryContextSwitchTo(old);
	ExecResetTupleTable(estate->es_tupleTable, false);
	ExecCloseResultRelations(estate);
	ExecCloseRangeTableRelations(estate);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	/* the page's later statements see the rows */
	CommandCounterIncrement();
	return true;
}

void
m365_store_events_rows_insert(M365EventRows *r)
{
	if (r->n == 0)
		return;
	if (!insert_direct(r))
		insert_spi(r);
	MemoryContextReset(r->values_cxt);
	r->n = 0;
}
