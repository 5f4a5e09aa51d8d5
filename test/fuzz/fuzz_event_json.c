/*
 * fuzz_event_json.c — libFuzzer target of the event JSON mapping
 * (src/event_json.c, src/zone_names.c), called the way the extension calls
 * it: m365_event_parse from Graph (pull) and from a caller (upsert_event,
 * create and patch), then the caller's object stripped and merged into a
 * stored event and the result checked again as Graph's rules (sql_events.c).
 * The same bytes also go through the date/time and zone name readers.
 *
 * Promises checked besides "no crash, no leak, no UB": a failed check names
 * a terminated field path; merge never copies calendarId nor a read-only
 * field of the caller.
 */
#include <cjson/cJSON.h>

#include "event_json.h"
#include "zone_names.h"
#include "fuzz.h"

static const char stored_event[] =
"{\"id\":\"AAMkAGI2TG93AAA=\",\"@odata.etag\":\"W/\\\"DwAAABYAAAA\\\"\",\"changeKey\":\"DwAAABYAAAA\","
"\"iCalUId\":\"040000008200E00074C5B7101A82E008\",\"type\":\"singleInstance\",\"subject\":\"Stored\","
"\"body\":{\"contentType\":\"html\",\"content\":\"<p>x</p>\"},"
"\"start\":{\"dateTime\":\"2024-03-04T09:00:00.0000000\",\"timeZone\":\"Romance Standard Time\"},"
"\"end\":{\"dateTime\":\"2024-03-04T10:00:00.0000000\",\"timeZone\":\"Romance Standard Time\"},"
"\"isAllDay\":false,\"showAs\":\"busy\",\"sensitivity\":\"normal\",\"importance\":\"normal\","
"\"location\":{\"displayName\":\"Room 1\"},\"attendees\":[],\"categories\":[],\"recurrence\":null}";

static void
touch_event(const M365Event *ev)
{
	volatile size_t n = 0;

	if (ev->subject)
		n += m365_utf8_chars(ev->subject);
	if (ev->body_content)
		n += strlen(ev->body_content);
	if (ev->start.present && ev->start.time_zone)
		n += (m365_zone_iana_name(ev->start.time_zone) != NULL);
	if (ev->end.present && ev->end.time_zone)
		n += (m365_zone_iana_name(ev->end.time_zone) != NULL);
	(void) n;
}

static void
parse_mode(const cJSON *obj, M365EventMode mode)
{
	M365Event	ev;
	M365EventError err;

	memset(&err, 0x5a, sizeof(err));
	if (m365_event_parse(obj, mode, &ev, &err) == M365_EV_OK)
		touch_event(&ev);
	else
		FUZZ_CHECK(fuzz_terminated(err.field, sizeof(err.field)));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s = fuzz_cstr(data, size);
	cJSON	   *obj = cJSON_ParseWithLength((const char *) data, size);
	M365DateTime dt;

	/* the string readers on the raw bytes */
	(void) m365_parse_datetime(s, &dt);
	(void) m365_parse_date(s, &dt);
	(void) m365_utf8_chars(s);
	(void) m365_zone_iana_name(s);
	(void) m365_windows_zone_to_iana(s);
	free(s);

	if (obj == NULL)
		return 0;

	parse_mode(obj, M365_EV_FROM_GRAPH);
	parse_mode(obj, M365_EV_FROM_CALLER);
	parse_mode(obj, M365_EV_FROM_CALLER_PATCH);

	if (cJSON_IsObject(obj))
	{
		cJSON	   *patch = cJSON_Duplicate(obj, 1);
		cJSON	   *doc = cJSON_Parse(stored_event);
		const char *changed[64];
		int			n;

		FUZZ_CHECK(doc != NULL);
		if (patch != NULL)
		{
			m365_event_strip_readonly(patch);
			FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(patch, M365_F_ID) == NULL);
			FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(patch, M365_F_CHANGE_KEY) == NULL);
			n = m365_event_merge(doc, patch, changed, 64);
			FUZZ_CHECK(n >= -1 && n <= 64);
			/* what only Microsoft sets stays as stored */
			FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, M365_F_ID)) &&
					   strcmp(cJSON_GetObjectItemCaseSensitive(doc, M365_F_ID)->valuestring,
							  "AAMkAGI2TG93AAA=") == 0);
			FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(doc, M365_F_CALENDAR_ID) == NULL);
			parse_mode(doc, M365_EV_FROM_GRAPH);
			cJSON_Delete(patch);
		}
		cJSON_Delete(doc);
	}
	cJSON_Delete(obj);
	return 0;
}
