/*
 * event_patch.c — Graph write bodies from stored events (see event_patch.h).
 *
 * Field names come from event_json.h only. Must not invent values: a field
 * absent from the stored object is absent from the body (a JSON null that
 * the caller stored to clear a field is sent as null).
 */
#include <string.h>

#include "event_json.h"
#include "event_patch.h"
#include "zone_names.h"

/* What Graph accepts on POST and PATCH of an event (GRAPH.md §2, §3). */
static const char *const writable[] = {
	M365_F_SUBJECT, M365_F_BODY, M365_F_START, M365_F_END, M365_F_IS_ALL_DAY,
	M365_F_LOCATION, M365_F_ATTENDEES, M365_F_CATEGORIES, M365_F_SHOW_AS,
	M365_F_SENSITIVITY, M365_F_IMPORTANCE, M365_F_IS_REMINDER_ON,
	M365_F_REMINDER_MINUTES, M365_F_RECURRENCE,
	"isOnlineMeeting", "onlineMeetingProvider", "responseRequested",
	"allowNewTimeProposals", "hideAttendees",
	NULL
};

/* Fields that travel together: a time is start, end and isAllDay at once. */
static bool
is_time_field(const char *name)
{
	return strcmp(name, M365_F_START) == 0 || strcmp(name, M365_F_END) == 0 ||
		strcmp(name, M365_F_IS_ALL_DAY) == 0;
}

/*
 * Graph takes Windows zone names on write and refuses most IANA ones
 * (GRAPH.md §10): obj.key becomes the Windows name CLDR gives (the stored
 * event keeps the caller's). A name CLDR does not know is left for Graph to
 * judge. false when out of memory.
 */
static bool
windows_zone(cJSON *obj, const char *key)
{
	cJSON	   *tz = cJSON_GetObjectItemCaseSensitive(obj, key);
	const char *win;

	if (!cJSON_IsString(tz) || (win = m365_zone_windows_name(tz->valuestring)) == NULL ||
		strcmp(win, tz->valuestring) == 0)
		return true;
	return cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_CreateString(win));
}

static bool
windows_zones(const char *field, cJSON *v)
{
	if (strcmp(field, M365_F_START) == 0 || strcmp(field, M365_F_END) == 0)
		return windows_zone(v, M365_F_TIME_ZONE);
	if (strcmp(field, M365_F_RECURRENCE) == 0)
		return windows_zone(cJSON_GetObjectItemCaseSensitive(v, "range"), "recurrenceTimeZone");
	return true;
}

/* An online meeting's body goes with its meeting fields, or Graph may drop the join link (GRAPH.md §11). */
static bool
online_meeting_body(const cJSON *data, const char *name)
{
	return (strcmp(name, "isOnlineMeeting") == 0 || strcmp(name, "onlineMeetingProvider") == 0) &&
		cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data, "isOnlineMeeting"));
}

bool
m365_event_field_writable(const char *name)
{
	for (const char *const *f = writable; *f; f++)
		if (strcmp(*f, name) == 0)
			return true;
	return false;
}

static bool
wanted(const char *name, const char *const *fields, int nfields, bool all, bool times)
{
	if (all)
		return true;
	if (times && is_time_field(name))
		return true;
	for (int i = 0; i < nfields; i++)
		if (fields[i] != NULL && strcmp(fields[i], name) == 0)
			return true;
	return false;
}

cJSON *
m365_event_write_body(const cJSON *data, const char *const *fields, int nfields,
					  bool series_member, const char *transaction_id, int *ncopied)
{
	cJSON	   *out = cJSON_CreateObject();
	bool		all = (fields == NULL);
	bool		times = false;
	bool		body = false;

	*ncopied = 0;
	if (out == NULL)
		return NULL;
	for (int i = 0; !all && i < nfields; i++)
	{
		if (fields[i] == NULL)
			continue;
		if (strcmp(fields[i], M365_ALL_FIELDS) == 0)
			all = true;
		else if (is_time_field(fields[i]))
			times = true;
		else if (strcmp(fields[i], M365_F_BODY) == 0)
			body = true;
	}
	for (const char *const *f = writable; *f; f++)
	{
		const cJSON *v;
		cJSON	   *copy;

		if (series_member && strcmp(*f, M365_F_RECURRENCE) == 0)
			continue;
		if (!wanted(*f, fields, nfields, all, times) && !(body && online_meeting_body(data, *f)))
			continue;
		v = cJSON_GetObjectItemCaseSensitive(data, *f);
		if (v == NULL)
			continue;
		/* a create with no recurrence says nothing about it */
		if (transaction_id != NULL && cJSON_IsNull(v))
			continue;
		copy = cJSON_Duplicate(v, true);
		if (copy == NULL || !windows_zones(*f, copy) || !cJSON_AddItemToObject(out, *f, copy))
		{
			cJSON_Delete(copy);
			cJSON_Delete(out);
			return NULL;
		}
		(*ncopied)++;
	}
	if (transaction_id != NULL &&
		cJSON_AddStringToObject(out, M365_F_TRANSACTION_ID, transaction_id) == NULL)
	{
		cJSON_Delete(out);
		return NULL;
	}
	return out;
}
