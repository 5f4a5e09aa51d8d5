/*
 * test_event_json.c — the Graph event parser and the Windows zone table,
 * outside any backend. Cases are a table: input, mode, expected status and
 * the field the error must name.
 */
#include <string.h>
#include <strings.h>

#include "event_json.h"
#include "windows_zones.h"
#include "zone_names.h"
#include "tap.h"

#define S(x) #x
#define T0 "\"start\":{\"dateTime\":\"2026-03-29T10:00:00.0000000\",\"timeZone\":\"Romance Standard Time\"}," \
		   "\"end\":{\"dateTime\":\"2026-03-29T11:00:00.0000000\",\"timeZone\":\"Romance Standard Time\"}"
#define AD "\"isAllDay\":true,\"start\":{\"dateTime\":\"2026-12-24T00:00:00\",\"timeZone\":\"UTC\"}," \
		   "\"end\":{\"dateTime\":\"2026-12-25T00:00:00\",\"timeZone\":\"UTC\"}"

typedef struct Case
{
	const char *name;
	const char *json;
	M365EventMode mode;
	M365EventStatus status;
	const char *field;
} Case;

#define C M365_EV_FROM_CALLER
#define G M365_EV_FROM_GRAPH

static const Case cases[] = {
	{"minimal timed event", "{" T0 "}", C, M365_EV_OK, ""},
	{"unknown fields are kept, not an error", "{\"zzz\":[1,{\"a\":2}]," T0 "}", C, M365_EV_OK, ""},
	{"array is not an event", "[1]", C, M365_EV_MALFORMED, "event"},
	{"missing start", "{\"end\":{\"dateTime\":\"2026-03-29T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_BAD_VALUE, "start"},
	{"missing end", "{\"start\":{\"dateTime\":\"2026-03-29T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_BAD_VALUE, "end"},
	{"missing timeZone", "{\"start\":{\"dateTime\":\"2026-03-29T11:00:00\"},\"end\":{\"dateTime\":\"2026-03-29T11:00:00Z\"}}", C, M365_EV_BAD_VALUE, "start.timeZone"},
	{"offset replaces timeZone", "{\"start\":{\"dateTime\":\"2026-03-29T11:00:00+02:00\"},\"end\":{\"dateTime\":\"2026-03-29T11:00:00Z\"}}", C, M365_EV_OK, ""},
	{"unreadable dateTime is 22007", "{\"start\":{\"dateTime\":\"29/03/2026 10:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-03-29T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_BAD_DATETIME, "start.dateTime"},
	{"8 fraction digits is 22007", "{\"start\":{\"dateTime\":\"2026-03-29T10:00:00.00000000\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-03-29T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_BAD_DATETIME, "start.dateTime"},
	{"month 13 is 22008", "{\"start\":{\"dateTime\":\"2026-13-01T10:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-03-29T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_DATETIME_RANGE, "start.dateTime"},
	{"February 30 is 22008", "{\"start\":{\"dateTime\":\"2026-03-29T10:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-02-30T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_DATETIME_RANGE, "end.dateTime"},
	{"25 o'clock is 22008", "{\"start\":{\"dateTime\":\"2026-03-29T25:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-03-29T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_DATETIME_RANGE, "start.dateTime"},
	{"dateTime not a string", "{\"start\":{\"dateTime\":5,\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-03-29T11:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_BAD_DATETIME, "start.dateTime"},
	{"subject not a string", "{\"subject\":1," T0 "}", C, M365_EV_BAD_VALUE, "subject"},
	{"body.contentType must be text or html", "{\"body\":{\"contentType\":\"rtf\",\"content\":\"x\"}," T0 "}", C, M365_EV_BAD_VALUE, "body.contentType"},
	{"body HTML any case", "{\"body\":{\"contentType\":\"HTML\",\"content\":\"<p>x</p>\"}," T0 "}", C, M365_EV_OK, ""},
	{"attendee without address", "{\"attendees\":[{\"emailAddress\":{\"address\":\"a@example.com\"}},{\"emailAddress\":{\"name\":\"Bob\"}}]," T0 "}", C, M365_EV_BAD_VALUE, "attendees[1].emailAddress.address"},
	{"attendee without emailAddress", "{\"attendees\":[{\"type\":\"required\"}]," T0 "}", C, M365_EV_BAD_VALUE, "attendees[0].emailAddress.address"},
	{"attendee address without @", "{\"attendees\":[{\"emailAddress\":{\"address\":\"bob\"}}]," T0 "}", C, M365_EV_BAD_VALUE, "attendees[0].emailAddress.address"},
	{"attendee of bad type", "{\"attendees\":[{\"type\":\"vip\",\"emailAddress\":{\"address\":\"a@b\"}}]," T0 "}", C, M365_EV_BAD_VALUE, "attendees[0].type"},
	{"attendees not an array", "{\"attendees\":{}," T0 "}", C, M365_EV_BAD_VALUE, "attendees"},
	{"categories must be strings", "{\"categories\":[\"a\",2]," T0 "}", C, M365_EV_BAD_VALUE, "categories[1]"},
	{"showAs unknown value", "{\"showAs\":\"sleeping\"," T0 "}", C, M365_EV_BAD_VALUE, "showAs"},
	{"showAs unknown value from Graph passes", "{\"showAs\":\"sleeping\"," T0 "}", G, M365_EV_OK, ""},
	{"sensitivity unknown", "{\"sensitivity\":\"secret\"," T0 "}", C, M365_EV_BAD_VALUE, "sensitivity"},
	{"importance unknown", "{\"importance\":\"urgent\"," T0 "}", C, M365_EV_BAD_VALUE, "importance"},
	{"isAllDay not a boolean", "{\"isAllDay\":\"yes\"," T0 "}", C, M365_EV_BAD_VALUE, "isAllDay"},
	{"reminder minutes negative", "{\"reminderMinutesBeforeStart\":-5," T0 "}", C, M365_EV_BAD_VALUE, "reminderMinutesBeforeStart"},
	{"all-day event", "{" AD "}", C, M365_EV_OK, ""},
	{"all-day start not at midnight", "{\"isAllDay\":true,\"start\":{\"dateTime\":\"2026-12-24T01:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-12-25T00:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_NOT_MIDNIGHT, "start.dateTime"},
	{"all-day end not at midnight", "{\"isAllDay\":true,\"start\":{\"dateTime\":\"2026-12-24T00:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-12-25T00:00:00.1\",\"timeZone\":\"UTC\"}}", C, M365_EV_NOT_MIDNIGHT, "end.dateTime"},
	{"all-day of zero days", "{\"isAllDay\":true,\"start\":{\"dateTime\":\"2026-12-24T00:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"2026-12-24T00:00:00\",\"timeZone\":\"UTC\"}}", C, M365_EV_END_BEFORE_START, "end"},
	{"weekly recurrence", "{\"recurrence\":{\"pattern\":{\"type\":\"weekly\",\"interval\":1,\"daysOfWeek\":[\"monday\",\"Friday\"],\"firstDayOfWeek\":\"sunday\"},\"range\":{\"type\":\"endDate\",\"startDate\":\"2026-03-02\",\"endDate\":\"2026-06-30\",\"recurrenceTimeZone\":\"W. Europe Standard Time\"}}," T0 "}", C, M365_EV_OK, ""},
	{"weekly recurrence without days", "{\"recurrence\":{\"pattern\":{\"type\":\"weekly\",\"interval\":1},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-03-02\"}}," T0 "}", C, M365_EV_BAD_VALUE, "recurrence.pattern.daysOfWeek"},
	{"recurrence interval 0", "{\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":0},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-03-02\"}}," T0 "}", C, M365_EV_BAD_VALUE, "recurrence.pattern.interval"},
	{"recurrence bad day name", "{\"recurrence\":{\"pattern\":{\"type\":\"weekly\",\"interval\":1,\"daysOfWeek\":[\"funday\"]},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-03-02\"}}," T0 "}", C, M365_EV_BAD_VALUE, "recurrence.pattern.daysOfWeek[0]"},
	{"absoluteYearly needs month", "{\"recurrence\":{\"pattern\":{\"type\":\"absoluteYearly\",\"interval\":1,\"dayOfMonth\":24},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-12-24\"}}," T0 "}", C, M365_EV_BAD_VALUE, "recurrence.pattern.month"},
	{"numbered range needs a count", "{\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":1},\"range\":{\"type\":\"numbered\",\"startDate\":\"2026-03-02\"}}," T0 "}", C, M365_EV_BAD_VALUE, "recurrence.range.numberOfOccurrences"},
	{"range end before start", "{\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":1},\"range\":{\"type\":\"endDate\",\"startDate\":\"2026-03-02\",\"endDate\":\"2026-03-01\"}}," T0 "}", C, M365_EV_END_BEFORE_START, "recurrence.range.endDate"},
	{"range startDate bad", "{\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":1},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-3-2\"}}," T0 "}", C, M365_EV_BAD_DATETIME, "recurrence.range.startDate"},
	{"Graph's no-end endDate 0001-01-01", "{\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":1},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-03-02\",\"endDate\":\"0001-01-01\",\"numberOfOccurrences\":0}}," T0 "}", G, M365_EV_OK, ""},
	{"recurrence on an occurrence", "{\"type\":\"occurrence\",\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":1},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-03-02\"}}," T0 "}", C, M365_EV_BAD_VALUE, "recurrence"},
	{"unknown type", "{\"type\":\"sometimes\"," T0 "}", G, M365_EV_BAD_VALUE, "type"},
	{"Graph exception with seriesMasterId and originalStart", "{\"id\":\"AAMk=\",\"type\":\"exception\",\"seriesMasterId\":\"AAMm=\",\"originalStart\":\"2026-03-29T08:00:00Z\",\"isCancelled\":true,\"lastModifiedDateTime\":\"2026-03-01T10:00:00.1234567Z\"," T0 "}", G, M365_EV_OK, ""},
	{"originalStart unreadable", "{\"type\":\"exception\",\"originalStart\":\"yesterday\"," T0 "}", G, M365_EV_BAD_DATETIME, "originalStart"},
	{"calendarId must be a positive integer", "{\"calendarId\":1.5," T0 "}", C, M365_EV_BAD_VALUE, "calendarId"},
	{"update may leave out start and end", "{\"subject\":\"x\"}", M365_EV_FROM_CALLER_PATCH, M365_EV_OK, ""},
	{"update is checked like a create", "{\"showAs\":\"asleep\"}", M365_EV_FROM_CALLER_PATCH, M365_EV_BAD_VALUE, "showAs"},
	{"calendarId string", "{\"calendarId\":\"7\"," T0 "}", C, M365_EV_BAD_VALUE, "calendarId"},
};

static void
test_cases(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		const Case *c = &cases[i];
		cJSON	   *obj = cJSON_Parse(c->json);
		M365Event	ev;
		M365EventError err;
		M365EventStatus st;

		if (obj == NULL)
		{
			ok(0, "%s (test JSON does not parse)", c->name);
			continue;
		}
		st = m365_event_parse(obj, c->mode, &ev, &err);
		ok(st == c->status && (st == M365_EV_OK || strcmp(err.field, c->field) == 0),
		   "%s: status %d field \"%s\"", c->name, (int) st, st ? err.field : "");
		cJSON_Delete(obj);
	}
}

static void
test_fields(void)
{
	cJSON	   *obj = cJSON_Parse("{\"id\":\"AAMk=\",\"type\":\"exception\",\"seriesMasterId\":\"AAMm=\","
								  "\"originalStart\":\"2026-03-29T08:00:00Z\",\"isCancelled\":true,"
								  "\"subject\":\"s\",\"body\":{\"contentType\":\"text\",\"content\":\"b\"},"
								  "\"location\":{\"displayName\":\"Room 1\"},\"calendarId\":7,"
								  "\"categories\":[\"x\"],\"organizer\":{\"emailAddress\":{\"address\":\"o@x\"}},"
								  T0 "}");
	M365Event	ev;
	M365EventError err;

	ok(m365_event_parse(obj, G, &ev, &err) == M365_EV_OK, "full exception parses");
	ok(ev.type == M365_EVT_EXCEPTION && strcmp(ev.series_master_id, "AAMm=") == 0 &&
	   ev.has_original_start && ev.original_start.hour == 8 && ev.original_start.has_offset,
	   "exception carries seriesMasterId and originalStart");
	ok(ev.is_cancelled && strcmp(ev.subject, "s") == 0 && strcmp(ev.body_content, "b") == 0 &&
	   strcmp(ev.location, "Room 1") == 0 && ev.has_calendar_id && ev.calendar_id == 7,
	   "isCancelled, subject, body, location, calendarId read");
	ok(strcmp(ev.start.time_zone, "Romance Standard Time") == 0 && ev.start.dt.hour == 10 &&
	   !ev.start.dt.has_offset, "start keeps its Windows zone and wall-clock time");
	cJSON_Delete(obj);
}

/* subject limits count characters, not bytes: built at run time */
static void
test_subject_length(void)
{
	char		json[4096];
	char	   *p;
	M365Event	ev;
	M365EventError err;

	for (int n = 255; n <= 256; n++)
	{
		for (int mode = 0; mode < 2; mode++)
		{
			cJSON	   *obj;
			M365EventStatus st;

			p = json + sprintf(json, "{\"subject\":\"");
			for (int i = 0; i < n; i++)
				p += sprintf(p, "\xc3\xa9");	/* é: 2 bytes, 1 character */
			sprintf(p, "\"," T0 "}");
			obj = cJSON_Parse(json);
			st = m365_event_parse(obj, mode ? G : C, &ev, &err);
			if (n == 256 && !mode)
				ok(st == M365_EV_TOO_LONG && strcmp(err.field, "subject") == 0,
				   "subject of 256 characters from a caller is too long");
			else
				ok(st == M365_EV_OK, "subject of %d characters (%s) accepted", n, mode ? "Graph" : "caller");
			cJSON_Delete(obj);
		}
	}
}

static void
test_datetimes(void)
{
	M365DateTime d;

	ok(m365_parse_datetime("2017-04-15T11:00:00.1234567", &d) == M365_EV_OK && d.usec == 123456,
	   "7 fraction digits: 7th truncated");
	ok(m365_parse_datetime("2017-04-15T11:00:00.5", &d) == M365_EV_OK && d.usec == 500000,
	   "1 fraction digit");
	ok(m365_parse_datetime("2017-04-15T11:00", &d) == M365_EV_OK && d.second == 0, "no seconds");
	ok(m365_parse_datetime("2017-04-15T11:00:00-07:30", &d) == M365_EV_OK && d.has_offset &&
	   d.offset_sec == -27000, "negative offset");
	ok(m365_parse_datetime("2017-04-15T11:00:00 ", &d) == M365_EV_BAD_DATETIME, "trailing space");
	ok(m365_parse_datetime("2024-02-29T00:00:00", &d) == M365_EV_OK, "leap day");
	ok(m365_parse_datetime("2100-02-29T00:00:00", &d) == M365_EV_DATETIME_RANGE, "no leap day in 2100");
	ok(m365_parse_datetime("0000-01-01T00:00:00", &d) == M365_EV_DATETIME_RANGE, "year 0");
	ok(m365_parse_date("2026-12-24", &d) == M365_EV_OK && d.day == 24, "date");
	ok(m365_days_from_civil(1970, 1, 1) == 0 && m365_days_from_civil(2026, 12, 25) -
	   m365_days_from_civil(2026, 12, 24) == 1, "day numbers");
}

static void
test_write_helpers(void)
{
	cJSON	   *stored = cJSON_Parse("{\"id\":\"AAMk=\",\"subject\":\"a\",\"showAs\":\"busy\"}");
	cJSON	   *patch = cJSON_Parse("{\"id\":\"forged\",\"changeKey\":\"x\",\"subject\":\"b\","
									"\"showAs\":\"busy\",\"calendarId\":3,\"importance\":\"high\"}");
	const char *changed[8];
	int			n;

	m365_event_strip_readonly(patch);
	ok(cJSON_GetObjectItem(patch, "id") == NULL && cJSON_GetObjectItem(patch, "changeKey") == NULL,
	   "caller cannot set id or changeKey");
	n = m365_event_merge(stored, patch, changed, 8);
	ok(n == 2 && strcmp(changed[0], "subject") == 0 && strcmp(changed[1], "importance") == 0,
	   "merge reports only fields whose value changed");
	ok(strcmp(cJSON_GetObjectItem(stored, "id")->valuestring, "AAMk=") == 0 &&
	   strcmp(cJSON_GetObjectItem(stored, "subject")->valuestring, "b") == 0 &&
	   cJSON_GetObjectItem(stored, "calendarId") == NULL,
	   "merge keeps the Graph id and never stores calendarId");
	cJSON_Delete(stored);
	cJSON_Delete(patch);

	/* JSON allows a name twice and cJSON keeps both copies. */
	stored = cJSON_Parse("{\"id\":\"AAMk=\",\"subject\":\"a\"}");
	patch = cJSON_Parse("{\"id\":\"x\",\"id\":\"forged\",\"changeKey\":\"1\",\"changeKey\":\"2\",\"subject\":\"b\"}");
	m365_event_strip_readonly(patch);
	ok(cJSON_GetObjectItemCaseSensitive(patch, "id") == NULL &&
	   cJSON_GetObjectItemCaseSensitive(patch, "changeKey") == NULL,
	   "a read-only field given twice: every copy stripped");
	n = m365_event_merge(stored, patch, changed, 8);
	ok(n == 1 && strcmp(cJSON_GetObjectItemCaseSensitive(stored, "id")->valuestring, "AAMk=") == 0,
	   "a read-only field given twice: merge keeps the stored Graph id");
	cJSON_Delete(patch);
	cJSON_Delete(stored);
}

static void
test_zones(void)
{
	int			sorted = 1;

	for (int i = 1; i < M365_WINDOWS_ZONE_COUNT; i++)
		if (strcasecmp(m365_windows_zones[i - 1].windows, m365_windows_zones[i].windows) >= 0)
			sorted = 0;
	ok(sorted, "generated Windows zone table is sorted for bsearch");
	ok(strcmp(m365_zone_iana_name("Romance Standard Time"), "Europe/Paris") == 0, "Romance Standard Time");
	ok(strcmp(m365_zone_iana_name("w. europe standard time"), "Europe/Berlin") == 0,
	   "Windows names match in any case");
	ok(strcmp(m365_zone_iana_name("Pacific Standard Time"), "America/Los_Angeles") == 0,
	   "Pacific Standard Time");
	ok(strcmp(m365_zone_iana_name("tzone://Microsoft/Utc"), "UTC") == 0, "tzone://Microsoft/Utc is UTC");
	ok(m365_zone_iana_name("tzone://Microsoft/Custom") == NULL &&
	   m365_zone_iana_name("Customized Time Zone") == NULL, "custom zones are unknown");
	ok(strcmp(m365_zone_iana_name("Europe/Copenhagen"), "Europe/Copenhagen") == 0,
	   "IANA names pass through");
	ok(m365_zone_iana_name("") == NULL, "empty zone is unknown");
}

int
main(void)
{
	test_cases();
	test_fields();
	test_subject_length();
	test_datetimes();
	test_write_helpers();
	test_zones();
	return done_testing();
}
