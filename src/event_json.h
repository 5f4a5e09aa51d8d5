/*
 * event_json.h — Microsoft Graph event JSON, read and checked (event_json.c).
 *
 * The one place that knows Graph's event field names: the API (upsert_event),
 * the pull (delta pages) and the push (PATCH bodies) all go through here, and
 * event_row.c reads stored events with the names defined below. Pure C over
 * cJSON: no backend headers, no palloc, no ereport. A failed check returns a
 * status and the offending field's path ("attendees[2].emailAddress.address")
 * — never its value, which may be content — and the caller maps the status
 * to an SQLSTATE.
 *
 * Strings in M365Event point into the cJSON tree they were parsed from: the
 * tree must outlive the struct.
 */
#ifndef M365SYNC_EVENT_JSON_H
#define M365SYNC_EVENT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Graph event field names (SPEC §4 and GRAPH.md §2). */
#define M365_F_ID				"id"
#define M365_F_ETAG				"@odata.etag"
#define M365_F_CHANGE_KEY		"changeKey"
#define M365_F_ICAL_UID			"iCalUId"
#define M365_F_TYPE				"type"
#define M365_F_SERIES_MASTER_ID	"seriesMasterId"
#define M365_F_ORIGINAL_START	"originalStart"
#define M365_F_SUBJECT			"subject"
#define M365_F_BODY				"body"
#define M365_F_CONTENT_TYPE		"contentType"
#define M365_F_CONTENT			"content"
#define M365_F_START			"start"
#define M365_F_END				"end"
#define M365_F_DATE_TIME		"dateTime"
#define M365_F_TIME_ZONE		"timeZone"
#define M365_F_IS_ALL_DAY		"isAllDay"
#define M365_F_LOCATION			"location"
#define M365_F_DISPLAY_NAME		"displayName"
#define M365_F_ATTENDEES		"attendees"
#define M365_F_EMAIL_ADDRESS	"emailAddress"
#define M365_F_ADDRESS			"address"
#define M365_F_ORGANIZER		"organizer"
#define M365_F_CATEGORIES		"categories"
#define M365_F_SHOW_AS			"showAs"
#define M365_F_SENSITIVITY		"sensitivity"
#define M365_F_IMPORTANCE		"importance"
#define M365_F_IS_REMINDER_ON	"isReminderOn"
#define M365_F_REMINDER_MINUTES	"reminderMinutesBeforeStart"
#define M365_F_RECURRENCE		"recurrence"
#define M365_F_IS_CANCELLED		"isCancelled"
#define M365_F_WEB_LINK			"webLink"
#define M365_F_LAST_MODIFIED	"lastModifiedDateTime"
#define M365_F_CREATED			"createdDateTime"
#define M365_F_TRANSACTION_ID	"transactionId"
#define M365_F_REMOVED			"@removed"
/* Not Graph: the local calendar an API caller writes to. Never stored in data. */
#define M365_F_CALENDAR_ID		"calendarId"

#define M365_SUBJECT_MAX_CHARS	255
#define M365_BODY_MAX_BYTES		(4 * 1024 * 1024)
#define M365_FIELD_PATH_MAX		96

typedef enum M365EventStatus
{
	M365_EV_OK = 0,
	M365_EV_MALFORMED,			/* not a JSON object: 22P02 */
	M365_EV_BAD_VALUE,			/* wrong type, unknown value, missing field: 22023 */
	M365_EV_TOO_LONG,			/* subject or body over the limit: 22023 */
	M365_EV_BAD_DATETIME,		/* unreadable date/time: 22007 */
	M365_EV_DATETIME_RANGE,		/* e.g. month 13, 25:00, February 30: 22008 */
	M365_EV_END_BEFORE_START,	/* 22023 */
	M365_EV_NOT_MIDNIGHT		/* all-day event time not at midnight: 22023 */
} M365EventStatus;

typedef enum M365EventType
{
	M365_EVT_SINGLE = 0,
	M365_EVT_OCCURRENCE,
	M365_EVT_EXCEPTION,
	M365_EVT_SERIES_MASTER
} M365EventType;

/* A Graph date/time as written; has_offset when it carried Z or ±hh:mm. */
typedef struct M365DateTime
{
	int			year,
				month,
				day,
				hour,
				minute,
				second,
				usec;			/* a 7th fraction digit is truncated */
	bool		has_offset;
	int			offset_sec;		/* east of UTC */
} M365DateTime;

/* start / end: {dateTime, timeZone} */
typedef struct M365EventTime
{
	bool		present;
	M365DateTime dt;
	const char *time_zone;		/* as Graph wrote it; timezones.c resolves it */
} M365EventTime;

typedef struct M365Event
{
	const char *id;				/* Graph id; NULL for a local event */
	const char *change_key;
	const char *ical_uid;
	const char *series_master_id;	/* Graph id of the series master */
	M365EventType type;
	bool		has_original_start;
	M365DateTime original_start;

	const char *subject;
	const char *body_type;		/* "text" or "html" (any case), or NULL */
	const char *body_content;
	const char *location;		/* location.displayName */
	M365EventTime start;
	M365EventTime end;
	bool		is_all_day;
	bool		is_cancelled;
	const char *show_as;
	const char *sensitivity;
	const char *importance;
	const char *web_link;
	bool		has_last_modified;
	M365DateTime last_modified;

	const cJSON *organizer;		/* object or NULL */
	const cJSON *attendees;		/* array or NULL */
	const cJSON *categories;	/* array of strings or NULL */
	const cJSON *recurrence;	/* object or NULL (JSON null → NULL) */

	bool		has_calendar_id;
	int64_t		calendar_id;
} M365Event;

typedef struct M365EventError
{
	M365EventStatus status;
	char		field[M365_FIELD_PATH_MAX];
} M365EventError;

/* How much to check: Graph's own output is trusted more than a caller's. */
typedef enum M365EventMode
{
	M365_EV_FROM_GRAPH,			/* types and datetimes; unknown enum values pass */
	M365_EV_FROM_CALLER,		/* also limits, enums, required fields, attendees */
	M365_EV_FROM_CALLER_PATCH	/* as FROM_CALLER, for the fields present only
								 * (an update): start and end may be absent */
} M365EventMode;

/*
 * Read and check one event object. On success fills *ev (pointing into obj).
 * Checks everything a single event carries by itself: types, datetimes,
 * all-day midnight rule and date order, recurrence pattern and range. Order
 * of timed start/end needs the zones' rules and is checked by the caller.
 */
extern M365EventStatus m365_event_parse(const cJSON *obj, M365EventMode mode,
										M365Event *ev, M365EventError *err);

/*
 * Parse "YYYY-MM-DDTHH:MM[:SS[.fffffff]][Z|±HH:MM]" (Graph sends 7 fraction
 * digits and no offset). M365_EV_BAD_DATETIME or M365_EV_DATETIME_RANGE.
 */
extern M365EventStatus m365_parse_datetime(const char *s, M365DateTime *out);

/* "YYYY-MM-DD" (recurrence range dates). */
extern M365EventStatus m365_parse_date(const char *s, M365DateTime *out);

/* Days since 1970-01-01 of a proleptic Gregorian date (for date order). */
extern int64_t m365_days_from_civil(int year, int month, int day);

/*
 * Remove what only Microsoft sets (id, changeKey, @odata.etag, iCalUId,
 * type, seriesMasterId, originalStart, created/lastModified, webLink,
 * transactionId, @removed) from a caller's object, so a caller can neither
 * forge an id nor point an event at someone else's item.
 */
extern void m365_event_strip_readonly(cJSON *obj);

/*
 * Apply a caller's partial object to a stored event, Graph PATCH style
 * (top-level fields replace, JSON null clears). Writes the names of the
 * fields whose value changed into changed[] (at most max; pointers into
 * patch) and returns their count, or -1 when out of memory. The local
 * calendarId is never copied.
 */
extern int	m365_event_merge(cJSON *target, const cJSON *patch,
							 const char **changed, int max);

/* Number of UTF-8 characters in s (invalid bytes count as one each). */
extern size_t m365_utf8_chars(const char *s);

#endif							/* M365SYNC_EVENT_JSON_H */
