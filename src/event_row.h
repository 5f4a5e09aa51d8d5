/*
 * event_row.h — a parsed Graph event as the clear columns of an events row,
 * and a stored event as the m365sync.event composite (event_row.c).
 * Backend side of event_json: field names come from event_json.h only.
 */
#ifndef M365SYNC_EVENT_ROW_H
#define M365SYNC_EVENT_ROW_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "utils/date.h"
#include "utils/jsonb.h"

#include "event_json.h"

/* The clear (indexable) columns of m365sync.events; what SPEC §5 leaves unencrypted. */
typedef struct M365EventColumns
{
	const char *graph_id;		/* NULL until pushed */
	const char *ical_uid;
	const char *series_master_graph_id;	/* resolved to a local id by the store */
	const char *event_type;		/* singleInstance|occurrence|exception|seriesMaster */
	TimestampTz start_at;
	TimestampTz end_at;
	bool		is_all_day;
	DateADT		start_date;		/* all-day only */
	DateADT		end_date;		/* all-day only, exclusive */
	const char *show_as;
	bool		is_cancelled;
	const char *change_key;
	bool		has_remote_modified;
	TimestampTz remote_modified_at;
} M365EventColumns;

/*
 * The clear columns bound as statement parameters, in one place for every
 * statement that writes an events row: the shape (event_type, start_at,
 * end_at, is_all_day, start_date, end_date, show_as, is_cancelled) and the
 * sync state (change_key, remote_modified_at), each as consecutive
 * parameters from values[0], nulls[0] (' ' or 'n').
 */
#define M365_EVENT_SHAPE_NARGS 8
#define M365_EVENT_SYNC_NARGS 2
extern void m365_event_row_bind_shape(const M365EventColumns *c, Datum *values, char *nulls);
extern void m365_event_row_bind_sync(const M365EventColumns *c, Datum *values, char *nulls);

/*
 * Clear columns of a parsed event. Checks what needs the tz database: known
 * zones (22023), timed end not before start (22023, field "end"). With
 * from_graph (times Graph rendered in UTC for us: a pulled or answered copy
 * as stored) a custom zone is read as UTC (GRAPH.md §10); a caller's own
 * times never are.
 */
extern void m365_event_columns(const M365Event *ev, bool from_graph, M365EventColumns *cols);

/*
 * The same without raising: M365_EV_OK, or a status with the field's path in
 * *err ("start.timeZone" for an unknown zone, "end.dateTime" out of range,
 * "end" before start), never a value. from_graph: the event is Graph's copy
 * rendered in UTC (the pull), where a custom zone is read as UTC (GRAPH.md §10).
 */
extern M365EventStatus m365_event_columns_check(const M365Event *ev, bool from_graph,
												M365EventColumns *cols, M365EventError *err);

/* ereport for a failed m365_event_parse: SQLSTATE by status, message names the field. */
extern void m365_event_report(const M365EventError *err) pg_attribute_noreturn();

extern const char *m365_event_type_name(M365EventType type);

/* Attributes of the composite type m365sync.event, in SPEC §4 order. */
typedef enum M365EventAttr
{
	EA_EVENT_ID = 0, EA_CALENDAR_ID, EA_GRAPH_ID, EA_ICAL_UID, EA_SERIES_MASTER_ID,
	EA_EVENT_TYPE, EA_SUBJECT, EA_BODY, EA_BODY_TYPE, EA_LOCATION, EA_START_AT,
	EA_END_AT, EA_IS_ALL_DAY, EA_START_DATE, EA_END_DATE, EA_TIME_ZONE, EA_SHOW_AS,
	EA_SENSITIVITY, EA_IMPORTANCE, EA_IS_CANCELLED, EA_ORGANIZER, EA_ATTENDEES,
	EA_CATEGORIES, EA_WEB_LINK, EA_REMOTE_MODIFIED_AT, EA_SYNC_STATE, EA_DATA,
	EA_RECURRENCE, EA_JOIN_URL, EA_MY_RESPONSE,
	EA_COUNT,
	EA_COUNT_0_1 = EA_RECURRENCE	/* the type as 0.1.0 created it */
} M365EventAttr;

/*
 * Content fields of m365sync.event from the stored Graph object: sets
 * values/nulls at the composite's attribute numbers for subject, body,
 * body_type, location, time_zone, sensitivity, importance, organizer,
 * attendees, categories, web_link (and data itself).
 */
extern void m365_event_content_values(Jsonb *data, TupleDesc desc, Datum *values, bool *nulls);

#endif							/* M365SYNC_EVENT_ROW_H */
