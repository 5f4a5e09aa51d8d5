/*
 * test_event_patch.c — write bodies and the "only the changeKey moved"
 * comparison (issue 22, behaviour 5), outside any backend.
 */
#include <string.h>

#include "event_patch.h"
#include "tap.h"

#define EV(subject, hour) "{\"id\":\"A\",\"changeKey\":\"ck1\",\"subject\":\"" subject "\"," \
	"\"start\":{\"dateTime\":\"2026-03-29T" hour ":00:00.0000000\",\"timeZone\":\"UTC\"}," \
	"\"end\":{\"dateTime\":\"2026-03-29T" hour ":30:00.0000000\",\"timeZone\":\"UTC\"}," \
	"\"isAllDay\":false,\"showAs\":\"busy\",\"location\":{\"displayName\":\"Room\"},\"categories\":[]}"

static void
test_same_writable(void)
{
	cJSON	   *a = cJSON_Parse(EV("Plan", "10"));
	cJSON	   *bumped = cJSON_Parse(EV("Plan", "10"));
	cJSON	   *other = cJSON_Parse(EV("Other", "10"));
	cJSON	   *moved = cJSON_Parse(EV("Plan", "11"));
	cJSON	   *nulls = cJSON_Parse(EV("Plan", "10"));
	const char *subj[] = {"subject"};
	const char *end[] = {"end"};
	const char *all[] = {"*"};

	cJSON_ReplaceItemInObject(bumped, "changeKey", cJSON_CreateString("ck2"));
	cJSON_AddItemToObject(bumped, "lastModifiedDateTime", cJSON_CreateString("2026-03-29T08:00:01Z"));
	cJSON_AddItemToObject(nulls, "recurrence", cJSON_CreateNull());

	ok(m365_event_same_writable(a, bumped, NULL, 0), "a changeKey and read-only fields that moved: same");
	ok(!m365_event_same_writable(a, other, NULL, 0), "another subject: not the same");
	ok(m365_event_same_writable(a, other, subj, 1), "another subject, subject changed locally: same");
	ok(!m365_event_same_writable(a, moved, subj, 1), "another time, subject changed locally: not the same");
	ok(m365_event_same_writable(a, moved, end, 1), "a time field changed locally leaves out all three");
	ok(!m365_event_same_writable(a, other, all, 1), "\"*\" compares every field");
	ok(m365_event_same_writable(a, nulls, NULL, 0) && m365_event_same_writable(nulls, a, NULL, 0),
	   "an absent field equals null");
	cJSON_Delete(a);
	cJSON_Delete(bumped);
	cJSON_Delete(other);
	cJSON_Delete(moved);
	cJSON_Delete(nulls);
}

int
main(void)
{
	test_same_writable();
	return done_testing();
}
