/*
 * sql_events.c — the FlowAgent event API (SPEC §4 "User"), thin.
 *
 * events(), event(), calendars(), set_calendar_sync(), upsert_event(),
 * delete_event(). Each unpacks its arguments, finds the acting user's
 * account (and locks the event an update or delete names), and leaves the
 * merge rules of a write to events.c, times to timezones.c, rows to
 * store_events.c and encryption to keyring.c. Everything runs in the
 * caller's transaction; every check happens before the first write, so an
 * ERROR leaves nothing behind. Messages name fields and ids, never content.
 * Another user's event is reported exactly like a missing one (P0002).
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "event_json.h"
#include "events.h"
#include "event_row.h"
#include "jsonb_cjson.h"
#include "keyring.h"
#include "spi_util.h"
#include "identity.h"
#include "settings.h"
#include "store_accounts.h"
#include "store_calendars.h"
#include "store_events.h"
#include "timezones.h"

static void
report_no_event(int64 event_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("event %lld does not exist", (long long) event_id)));
}

static int64
acting_account_or_error(void)
{
	int64		account_id = m365_store_accounts_of_acting_user();

	if (account_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no Microsoft 365 account is connected for this FlowAgent user"),
				 errhint("Connect the user first: m365sync.connect_url().")));
	return account_id;
}

/* --------------------------------------------------------------- reads */

/* The composite m365sync.event of row i of rows. */
static void
event_values(int64 account_id, const M365EventScanRows *rows, uint64 i, TupleDesc out, Datum *values, bool *nulls)
{
	const Datum *row = &rows->values[i * M365_EVENT_SCAN_COLS];
	const bool *rownulls = &rows->nulls[i * M365_EVENT_SCAN_COLS];
	int64		event_id;
	static const struct
	{
		M365EventScanCol from;
		M365EventAttr to;
	}			clear[] = {
		{ES_EVENT_ID, EA_EVENT_ID}, {ES_CALENDAR_ID, EA_CALENDAR_ID},
		{ES_GRAPH_ID, EA_GRAPH_ID},	/* ical_uid: a keyed hash; the clear one is in the content */
		{ES_SERIES_MASTER_ID, EA_SERIES_MASTER_ID}, {ES_EVENT_TYPE, EA_EVENT_TYPE},
		{ES_START_AT, EA_START_AT}, {ES_END_AT, EA_END_AT}, {ES_IS_ALL_DAY, EA_IS_ALL_DAY},
		{ES_START_DATE, EA_START_DATE}, {ES_END_DATE, EA_END_DATE}, {ES_SHOW_AS, EA_SHOW_AS},
		{ES_IS_CANCELLED, EA_IS_CANCELLED}, {ES_REMOTE_MODIFIED_AT, EA_REMOTE_MODIFIED_AT},
		{ES_SYNC_STATE, EA_SYNC_STATE},
	};

	memset(nulls, true, sizeof(bool) * EA_COUNT);
	for (size_t k = 0; k < lengthof(clear); k++)
	{
		values[clear[k].to] = row[clear[k].from - 1];
		nulls[clear[k].to] = rownulls[clear[k].from - 1];
	}
	event_id = DatumGetInt64(values[EA_EVENT_ID]);
	m365_event_content_values(m365_store_events_open(account_id, event_id,
													  DatumGetByteaPP(row[ES_CONTENT - 1])),
							  out, values, nulls);
}

PG_FUNCTION_INFO_V1(m365sync_events);

/* events(from_ts, to_ts, calendar_id default null) → setof m365sync.event */
Datum
m365sync_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz from_ts,
				to_ts;
	DateADT		from_date,
				to_date;
	bool		midnight;
	int64		account_id;
	M365EventScanRows rows = {0};
	MemoryContext rowcxt,
				oldcxt;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("from_ts and to_ts must not be null")));
	from_ts = PG_GETARG_TIMESTAMPTZ(0);
	to_ts = PG_GETARG_TIMESTAMPTZ(1);
	m365_acting_user();
	InitMaterializedSRF(fcinfo, 0);
	if (to_ts <= from_ts)
		PG_RETURN_NULL();

	/* the calendar dates the window covers, in the session's TimeZone */
	if (TIMESTAMP_IS_NOBEGIN(from_ts))
		from_date = DATEVAL_NOBEGIN;
	else if (TIMESTAMP_IS_NOEND(from_ts))
		from_date = DATEVAL_NOEND;
	else
		from_date = m365_session_date(from_ts, NULL);
	if (TIMESTAMP_IS_NOEND(to_ts))
		to_date = DATEVAL_NOEND;
	else
	{
		to_date = m365_session_date(to_ts, &midnight);
		if (!midnight)
			to_date++;			/* [from, to) touches to's own date */
	}

	SPI_connect();
	account_id = m365_store_accounts_of_acting_user();
	if (account_id != 0)
	{
		m365_store_events_in_range(account_id, from_ts, to_ts, from_date, to_date,
								   !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2), &rows);
		rowcxt = AllocSetContextCreate(CurrentMemoryContext, "m365sync events row",
									   ALLOCSET_DEFAULT_SIZES);
		for (uint64 i = 0; i < rows.n; i++)
		{
			Datum		values[EA_COUNT];
			bool		nulls[EA_COUNT];

			oldcxt = MemoryContextSwitchTo(rowcxt);
			event_values(account_id, &rows, i, rsinfo->setDesc, values, nulls);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(rowcxt);
		}
	}
	SPI_finish();
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(m365sync_events_window);

/*
 * _events_window(account_id, from_ts, to_ts, from_date, to_date,
 * calendar_id, flowagent_user) → bytea: the rows of the window query,
 * content still sealed, packed in one value (store_events.c): the part of
 * events() a Citus coordinator routes to the node of the account's shards.
 * SECURITY DEFINER, owned by m365sync_definer like the user functions, and
 * executable by that role only. It acts for flowagent_user while it reads
 * (the coordinator's statement may reach this node outside a remote
 * transaction, without the coordinator's SET LOCAL), so the shard's row
 * level security answers for that user, with the policies of every shard.
 */
Datum
m365sync_events_window(PG_FUNCTION_ARGS)
{
	MemoryContext callercxt = CurrentMemoryContext;
	bytea	   *packed;
	int			acting;

	for (int i = 0; i < 7; i++)
		if (i != 5 && PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("only calendar_id may be null")));
	acting = m365_act_for(text_to_cstring(PG_GETARG_TEXT_PP(6)));
	(void) m365_acting_user();	/* refuses an empty or overlong one */
	SPI_connect();
	packed = m365_store_events_in_range_here(PG_GETARG_INT64(0), PG_GETARG_TIMESTAMPTZ(1), PG_GETARG_TIMESTAMPTZ(2),
											 PG_GETARG_DATEADT(3), PG_GETARG_DATEADT(4),
											 !PG_ARGISNULL(5), PG_ARGISNULL(5) ? 0 : PG_GETARG_INT64(5),
											 callercxt);
	SPI_finish();
	m365_act_for_done(acting);
	PG_RETURN_BYTEA_P(packed);
}

PG_FUNCTION_INFO_V1(m365sync_event);

/* event(event_id) → m365sync.event; P0002 when not this user's live event */
Datum
m365sync_event(PG_FUNCTION_ARGS)
{
	int64		event_id = PG_GETARG_INT64(0);
	TupleDesc	desc;
	MemoryContext callercxt = CurrentMemoryContext;
	HeapTuple	tuple;
	int64		account_id;
	M365EventScanRows rows = {0};
	Datum		values[EA_COUNT];
	bool		nulls[EA_COUNT];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "m365sync.event() must return a composite type");
	desc = BlessTupleDesc(desc);
	SPI_connect();
	account_id = m365_store_accounts_of_acting_user();
	if (account_id != 0)
		m365_store_events_by_id(account_id, event_id, &rows);
	if (account_id == 0 || rows.n == 0)
		report_no_event(event_id);
	event_values(account_id, &rows, 0, desc, values, nulls);
	MemoryContextSwitchTo(callercxt);
	tuple = heap_form_tuple(desc, values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

PG_FUNCTION_INFO_V1(m365sync_calendars);

/* calendars() → table(calendar_id, name, is_default, can_edit, sync_enabled) */
Datum
m365sync_calendars(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		account_id;
	uint64		n;

	m365_acting_user();
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	account_id = m365_store_accounts_of_acting_user();
	n = account_id ? m365_store_calendars_list(account_id) : 0;
	for (uint64 i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5];
		Datum		name;
		bool		name_null;

		for (int k = 0; k < 5; k++)
			values[k] = m365_spi_row_datum(i, k + 1, &nulls[k]);
		name = values[1];
		name_null = nulls[1];
		if (!name_null)
		{
			char	   *plain = m365_decrypt_text("calendars", "name", account_id,
												  DatumGetInt64(values[0]),
												  DatumGetByteaPP(name));

			values[1] = CStringGetTextDatum(plain);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(m365sync_set_calendar_sync);

/* set_calendar_sync(calendar_id, enabled) → void */
Datum
m365sync_set_calendar_sync(PG_FUNCTION_ARGS)
{
	int64		calendar_id = PG_GETARG_INT64(0);
	bool		enabled = PG_GETARG_BOOL(1);
	int64		account_id;

	SPI_connect();
	account_id = m365_store_accounts_of_acting_user();
	if (account_id == 0 || !m365_store_calendars_set_sync(account_id, calendar_id, enabled))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("calendar %lld does not exist", (long long) calendar_id)));
	SPI_finish();
	PG_RETURN_VOID();
}

/* -------------------------------------------------------------- writes */

PG_FUNCTION_INFO_V1(m365sync_upsert_event);

/* upsert_event(event jsonb, event_id default null) → bigint */
Datum
m365sync_upsert_event(PG_FUNCTION_ARGS)
{
	Jsonb	   *input;
	bool		is_create = PG_ARGISNULL(1);
	int64		event_id = is_create ? 0 : PG_GETARG_INT64(1);
	int64		account_id;
	M365StoredEvent stored = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be null")));
	input = PG_GETARG_JSONB_P(0);
	m365_acting_user();

	SPI_connect();
	account_id = acting_account_or_error();
	if (!is_create && !m365_store_events_lock(account_id, event_id, &stored))
		report_no_event(event_id);
	event_id = m365_events_upsert(account_id, input, is_create ? NULL : &stored);
	SPI_finish();
	PG_RETURN_INT64(event_id);
}

PG_FUNCTION_INFO_V1(m365sync_delete_event);

/* delete_event(event_id) → void */
Datum
m365sync_delete_event(PG_FUNCTION_ARGS)
{
	int64		event_id = PG_GETARG_INT64(0);
	int64		account_id;
	M365StoredEvent ev;

	m365_acting_user();
	SPI_connect();
	account_id = m365_store_accounts_of_acting_user();
	if (account_id == 0 || !m365_store_events_lock(account_id, event_id, &ev))
		report_no_event(event_id);
	m365_events_delete(account_id, &ev);
	SPI_finish();
	PG_RETURN_VOID();
}
