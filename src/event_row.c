/*
 * event_row.c — between a Graph event and the events table, inside a backend.
 *
 * event_json.c reads and checks JSON without a backend; this file does what
 * needs one: time zones (through timezones.c), SQLSTATEs for parse failures,
 * reading the decrypted jsonb of a stored event into m365sync.event's
 * content columns, and binding the clear columns as statement parameters
 * (the one place every store statement that writes an events row uses).
 * Field names come from event_json.h; no SPI, no crypto.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "event_row.h"
#include "timezones.h"

const char *
m365_event_type_name(M365EventType type)
{
	switch (type)
	{
		case M365_EVT_OCCURRENCE:
			return "occurrence";
		case M365_EVT_EXCEPTION:
			return "exception";
		case M365_EVT_SERIES_MASTER:
			return "seriesMaster";
		default:
			return "singleInstance";
	}
}

void
m365_event_report(const M365EventError *err)
{
	int			code;
	const char *what;

	switch (err->status)
	{
		case M365_EV_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("event must be a JSON object")));
			break;
		case M365_EV_NOT_MIDNIGHT:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			what = "must be at midnight for an all-day event";
			break;
		case M365_EV_TOO_LONG:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			what = "is too long";
			break;
		case M365_EV_BAD_DATETIME:
			code = ERRCODE_INVALID_DATETIME_FORMAT;
			what = "is not a valid date/time";
			break;
		case M365_EV_DATETIME_RANGE:
			code = ERRCODE_DATETIME_FIELD_OVERFLOW;
			what = "is out of range";
			break;
		case M365_EV_END_BEFORE_START:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			what = "is before start";
			break;
		default:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			what = "is missing or invalid";
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("event field %s %s", err->field, what),
			 err->status == M365_EV_TOO_LONG ?
			 errdetail("subject is limited to %d characters, body.content to %d bytes.",
					   M365_SUBJECT_MAX_CHARS, M365_BODY_MAX_BYTES) : 0,
			 err->status == M365_EV_BAD_DATETIME ?
			 errhint("Write date/times as Graph does: \"2026-03-29T10:00:00.0000000\" with a timeZone.") : 0));
	pg_unreachable();
}

/* The instant of start, end or lastModifiedDateTime, or a status naming the field. */
static M365EventStatus
column_instant(const M365EventTime *t, const char *field, bool from_graph,
			   TimestampTz *out, M365EventError *err)
{
	switch (m365_time_to_instant(t, from_graph, out))
	{
		case M365_TIME_OK:
			return M365_EV_OK;
		case M365_TIME_UNKNOWN_ZONE:
			err->status = M365_EV_BAD_VALUE;
			snprintf(err->field, sizeof(err->field), "%s." M365_F_TIME_ZONE, field);
			return err->status;
		case M365_TIME_OUT_OF_RANGE:
			break;
	}
	err->status = M365_EV_DATETIME_RANGE;
	snprintf(err->field, sizeof(err->field), "%s." M365_F_DATE_TIME, field);
	return err->status;
}

M365EventStatus
m365_event_columns_check(const M365Event *ev, bool from_graph, M365EventColumns *cols,
						 M365EventError *err)
{
	M365EventStatus st;

	memset(cols, 0, sizeof(*cols));
	err->status = M365_EV_OK;
	err->field[0] = '\0';
	cols->graph_id = ev->id;
	cols->ical_uid = ev->ical_uid;
	cols->series_master_graph_id = ev->series_master_id;
	cols->event_type = m365_event_type_name(ev->type);
	cols->is_all_day = ev->is_all_day;
	cols->show_as = ev->show_as;
	cols->is_cancelled = ev->is_cancelled;
	cols->change_key = ev->change_key;

	/* resolving the zones also rejects unknown ones, all-day events included */
	if ((st = column_instant(&ev->start, M365_F_START, from_graph, &cols->start_at, err)) != M365_EV_OK ||
		(st = column_instant(&ev->end, M365_F_END, from_graph, &cols->end_at, err)) != M365_EV_OK)
		return st;
	if (ev->is_all_day)
	{
		/* the written date is the event's date, whatever the zone (event_json checked order) */
		cols->start_date = m365_event_time_date(&ev->start);
		cols->end_date = m365_event_time_date(&ev->end);
		/* keep the instants consistent with the dates for sorting and the NOT NULLs */
		if (cols->end_at <= cols->start_at)
			cols->end_at = cols->start_at + (TimestampTz) (cols->end_date - cols->start_date) * USECS_PER_DAY;
	}
	else if (cols->end_at < cols->start_at)
	{
		err->status = M365_EV_END_BEFORE_START;
		strlcpy(err->field, M365_F_END, sizeof(err->field));
		return err->status;
	}
	if (ev->has_last_modified)
	{
		M365EventTime t = {.present = true, .dt = ev->last_modified, .time_zone = "UTC"};

		cols->has_remote_modified = true;
		if ((st = column_instant(&t, M365_F_LAST_MODIFIED, from_graph, &cols->remote_modified_at,
								 err)) != M365_EV_OK)
			return st;
	}
	return M365_EV_OK;
}

void
m365_event_columns(const M365Event *ev, bool from_graph, M365EventColumns *cols)
{
	M365EventError err;
	const M365EventTime *t;

	if (m365_event_columns_check(ev, from_graph, cols, &err) == M365_EV_OK)
		return;
	switch (err.status)
	{
		case M365_EV_BAD_VALUE:
			/* a caller's own zone name, in the caller's own error */
			t = strncmp(err.field, M365_F_START ".", strlen(M365_F_START ".")) == 0 ? &ev->start : &ev->end;
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown time zone \"%s\" in %s",
							t->time_zone ? t->time_zone : "", err.field),
					 errhint("Use an IANA name such as \"Europe/Copenhagen\" or a Windows name such as \"Romance Standard Time\".")));
			break;
		case M365_EV_DATETIME_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
					 errmsg("%s is out of range", err.field)));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event field %s is before start", err.field)));
			break;
	}
}

/* ---------------------------------------------------------- jsonb reads */

static bool
get_key(JsonbContainer *c, const char *key, JsonbValue *v)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), v) != NULL;
}

static void
set_text(JsonbContainer *c, const char *key, int attno, Datum *values, bool *nulls)
{
	JsonbValue	v;

	if (c != NULL && get_key(c, key, &v) && v.type == jbvString)
	{
		values[attno] = PointerGetDatum(cstring_to_text_with_len(v.val.string.val, v.val.string.len));
		nulls[attno] = false;
	}
}

static JsonbContainer *
get_object(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (get_key(c, key, &v) && v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
		return v.val.binary.data;
	return NULL;
}

static void
set_jsonb(JsonbContainer *c, const char *key, int attno, Datum *values, bool *nulls)
{
	JsonbValue	v;

	if (get_key(c, key, &v) && v.type == jbvBinary)
	{
		values[attno] = JsonbPGetDatum(JsonbValueToJsonb(&v));
		nulls[attno] = false;
	}
}

static void
set_categories(JsonbContainer *c, int attno, Datum *values, bool *nulls)
{
	JsonbValue	v;
	JsonbContainer *arr;
	ArrayBuildState *astate;
	uint32		n;

	if (!get_key(c, M365_F_CATEGORIES, &v) || v.type != jbvBinary ||
		!JsonContainerIsArray(v.val.binary.data))
		return;
	arr = v.val.binary.data;
	n = JsonContainerSize(arr);
	astate = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	for (uint32 i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

		if (e && e->type == jbvString)
			accumArrayResult(astate,
							 PointerGetDatum(cstring_to_text_with_len(e->val.string.val, e->val.string.len)),
							 false, TEXTOID, CurrentMemoryContext);
	}
	values[attno] = makeArrayResult(astate, CurrentMemoryContext);
	nulls[attno] = false;
}

void
m365_event_content_values(Jsonb *data, TupleDesc desc, Datum *values, bool *nulls)
{
	JsonbContainer *root = &data->root;
	JsonbContainer *body,
			   *loc,
			   *start;

	/* a 0.1.0 catalog (before ALTER EXTENSION UPDATE) has the type without the 0.2.0 fields */
	if (desc->natts != EA_COUNT && desc->natts != EA_COUNT_0_1)
		elog(ERROR, "m365sync.event has %d attributes, expected %d", desc->natts, EA_COUNT);
	values[EA_DATA] = JsonbPGetDatum(data);
	nulls[EA_DATA] = false;
	if (!JsonContainerIsObject(root))
		return;
	set_text(root, M365_F_ICAL_UID, EA_ICAL_UID, values, nulls);
	set_text(root, M365_F_SUBJECT, EA_SUBJECT, values, nulls);
	body = get_object(root, M365_F_BODY);
	set_text(body, M365_F_CONTENT, EA_BODY, values, nulls);
	set_text(body, M365_F_CONTENT_TYPE, EA_BODY_TYPE, values, nulls);
	loc = get_object(root, M365_F_LOCATION);
	set_text(loc, M365_F_DISPLAY_NAME, EA_LOCATION, values, nulls);
	start = get_object(root, M365_F_START);
	set_text(start, M365_F_TIME_ZONE, EA_TIME_ZONE, values, nulls);
	set_text(root, M365_F_SENSITIVITY, EA_SENSITIVITY, values, nulls);
	set_text(root, M365_F_IMPORTANCE, EA_IMPORTANCE, values, nulls);
	set_jsonb(root, M365_F_ORGANIZER, EA_ORGANIZER, values, nulls);
	set_jsonb(root, M365_F_ATTENDEES, EA_ATTENDEES, values, nulls);
	set_categories(root, EA_CATEGORIES, values, nulls);
	set_text(root, M365_F_WEB_LINK, EA_WEB_LINK, values, nulls);
	if (desc->natts < EA_COUNT)
		return;
	/* a master's pattern and range (JSON null on everything else: SQL null) */
	set_jsonb(root, M365_F_RECURRENCE, EA_RECURRENCE, values, nulls);
	set_text(get_object(root, "onlineMeeting"), "joinUrl", EA_JOIN_URL, values, nulls);
	set_text(get_object(root, "responseStatus"), "response", EA_MY_RESPONSE, values, nulls);
}

void
m365_event_row_bind_shape(const M365EventColumns *c, Datum *values, char *nulls)
{
	values[0] = CStringGetTextDatum(c->event_type);
	nulls[0] = ' ';
	values[1] = TimestampTzGetDatum(c->start_at);
	nulls[1] = ' ';
	values[2] = TimestampTzGetDatum(c->end_at);
	nulls[2] = ' ';
	values[3] = BoolGetDatum(c->is_all_day);
	nulls[3] = ' ';
	values[4] = DateADTGetDatum(c->start_date);
	values[5] = DateADTGetDatum(c->end_date);
	nulls[4] = nulls[5] = c->is_all_day ? ' ' : 'n';
	values[6] = c->show_as ? CStringGetTextDatum(c->show_as) : (Datum) 0;
	nulls[6] = c->show_as ? ' ' : 'n';
	values[7] = BoolGetDatum(c->is_cancelled);
	nulls[7] = ' ';
}

void
m365_event_row_bind_sync(const M365EventColumns *c, Datum *values, char *nulls)
{
	values[0] = c->change_key ? CStringGetTextDatum(c->change_key) : (Datum) 0;
	nulls[0] = c->change_key ? ' ' : 'n';
	values[1] = TimestampTzGetDatum(c->remote_modified_at);
	nulls[1] = c->has_remote_modified ? ' ' : 'n';
}
