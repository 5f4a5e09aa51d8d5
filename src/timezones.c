/*
 * timezones.c — Graph times to PostgreSQL instants and dates.
 *
 * Graph writes times as a wall-clock dateTime plus a zone name, Windows
 * ("Romance Standard Time") or IANA. Names are resolved by zone_names.c
 * (CLDR table); offsets, DST and history come only from PostgreSQL's tz
 * database (pg_tzset, DetermineTimeZoneOffset), so the server and its users
 * agree on every instant. Nothing here guesses an offset: an unknown zone
 * is an error for the caller to report, and so is a custom zone, except in
 * a copy Graph rendered in UTC for us (the pull), which is read as UTC.
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "miscadmin.h"
#include "utils/datetime.h"

#include "timezones.h"
#include "zone_names.h"

pg_tz *
m365_find_zone(const char *graph_zone)
{
	/*
	 * The last zone found: a page's events are nearly all in one (the pull
	 * asks for UTC), and pg_tzset's zones live as long as the process.
	 */
	static char last_zone[TZ_STRLEN_MAX + 1];
	static pg_tz *last_tz = NULL;
	const char *name;
	pg_tz	   *tz;

	if (graph_zone != NULL && last_tz != NULL && strcmp(graph_zone, last_zone) == 0)
		return last_tz;
	name = m365_zone_iana_name(graph_zone);
	if (name == NULL || strlen(name) > TZ_STRLEN_MAX)
		return NULL;
	tz = pg_tzset(name);
	/* as the TimeZone setting does: no zones with leap seconds */
	if (tz != NULL && !pg_tz_acceptable(tz))
		return NULL;
	if (tz != NULL && graph_zone != NULL && strlen(graph_zone) <= TZ_STRLEN_MAX)
	{
		strcpy(last_zone, graph_zone);
		last_tz = tz;
	}
	return tz;
}

static void
fill_tm(const M365DateTime *d, struct pg_tm *tm)
{
	memset(tm, 0, sizeof(*tm));
	tm->tm_year = d->year;
	tm->tm_mon = d->month;
	tm->tm_mday = d->day;
	tm->tm_hour = d->hour;
	tm->tm_min = d->minute;
	tm->tm_sec = d->second;
	tm->tm_isdst = -1;
}

M365TimeStatus
m365_time_to_instant(const M365EventTime *t, bool custom_as_utc, TimestampTz *out)
{
	struct pg_tm tm;
	int			tz;
	Timestamp	result;

	fill_tm(&t->dt, &tm);
	if (t->dt.has_offset)
		tz = -t->dt.offset_sec;		/* PostgreSQL counts seconds west of UTC */
	else if (custom_as_utc && m365_zone_is_custom(t->time_zone))
		tz = 0;					/* GRAPH.md §10: a UTC-rendered copy, read as UTC */
	else
	{
		pg_tz	   *zone = m365_find_zone(t->time_zone);

		if (zone == NULL)
			return M365_TIME_UNKNOWN_ZONE;
		tz = DetermineTimeZoneOffset(&tm, zone);
	}
	if (tm2timestamp(&tm, t->dt.usec, &tz, &result) != 0 || !IS_VALID_TIMESTAMP(result))
		return M365_TIME_OUT_OF_RANGE;
	*out = (TimestampTz) result;
	return M365_TIME_OK;
}

DateADT
m365_event_time_date(const M365EventTime *t)
{
	return date2j(t->dt.year, t->dt.month, t->dt.day) - POSTGRES_EPOCH_JDATE;
}

DateADT
m365_session_date(TimestampTz ts, bool *at_midnight)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (timestamp2tm(ts, &tz, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	if (at_midnight)
		*at_midnight = tm.tm_hour == 0 && tm.tm_min == 0 && tm.tm_sec == 0 && fsec == 0;
	return date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) - POSTGRES_EPOCH_JDATE;
}
