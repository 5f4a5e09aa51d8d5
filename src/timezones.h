/*
 * timezones.h — Graph {dateTime, timeZone} to PostgreSQL instants and dates
 * (timezones.c), through PostgreSQL's own tz database.
 */
#ifndef M365SYNC_TIMEZONES_H
#define M365SYNC_TIMEZONES_H

#include "postgres.h"

#include "pgtime.h"
#include "utils/timestamp.h"
#include "utils/date.h"

#include "event_json.h"

/* The tz database zone a Graph timeZone names, or NULL when unknown/custom. */
extern pg_tz *m365_find_zone(const char *graph_zone);

typedef enum M365TimeStatus
{
	M365_TIME_OK = 0,
	M365_TIME_UNKNOWN_ZONE,		/* not a Windows, IANA or UTC name we know */
	M365_TIME_OUT_OF_RANGE		/* outside PostgreSQL's timestamptz */
} M365TimeStatus;

/*
 * The instant of a Graph time into *out, without raising: an explicit
 * offset wins, else the wall-clock time is read in its timeZone. With
 * custom_as_utc, one of Outlook's custom zones (zone_names.h) is read as
 * UTC: only for a copy Graph rendered in UTC (Prefer: outlook.timezone).
 */
extern M365TimeStatus m365_time_to_instant(const M365EventTime *t, bool custom_as_utc,
										   TimestampTz *out);

/* The calendar date written in a Graph time (all-day events), as a date. */
extern DateADT m365_event_time_date(const M365EventTime *t);

/* The date of an instant in the session's TimeZone. */
extern DateADT m365_session_date(TimestampTz ts, bool *at_midnight);

#endif							/* M365SYNC_TIMEZONES_H */
