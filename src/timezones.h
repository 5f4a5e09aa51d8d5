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

/*
 * The instant of a Graph time. An explicit offset in dateTime wins; else the
 * wall-clock time is read in its timeZone (Windows or IANA name). ERROR
 * 22023 naming the field and the zone when the zone is unknown, 22008 when
 * the instant is out of range. `field` is "start" or "end".
 */
extern TimestampTz m365_event_time_instant(const M365EventTime *t, const char *field);

/* The calendar date written in a Graph time (all-day events), as a date. */
extern DateADT m365_event_time_date(const M365EventTime *t);

/* The date of an instant in the session's TimeZone. */
extern DateADT m365_session_date(TimestampTz ts, bool *at_midnight);

#endif							/* M365SYNC_TIMEZONES_H */
