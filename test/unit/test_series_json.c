/*
 * test_series_json.c — occurrence stubs filled from their series master
 * (src/series_json.c), and the ids of an instances answer.
 */
#include <stdlib.h>
#include <string.h>

#include "series_json.h"
#include "tap.h"

static const char *MASTER =
"{\"@odata.context\":\"https://g/v1.0/$metadata#users('u')/events/$entity\","
"\"@odata.etag\":\"W/\\\"MCK\\\"\",\"id\":\"M=\",\"changeKey\":\"MCK\",\"type\":\"seriesMaster\","
"\"seriesMasterId\":null,\"subject\":\"Team sync\",\"isAllDay\":true,\"showAs\":\"tentative\","
"\"body\":{\"contentType\":\"html\",\"content\":\"<p>Agenda</p>\"},"
"\"attendees\":[{\"emailAddress\":{\"address\":\"bo@contoso.example\"}}],"
"\"start\":{\"dateTime\":\"2026-12-08T00:00:00.0000000\",\"timeZone\":\"UTC\"},"
"\"end\":{\"dateTime\":\"2026-12-09T00:00:00.0000000\",\"timeZone\":\"UTC\"},"
"\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":1},\"range\":{\"type\":\"noEnd\",\"startDate\":\"2026-12-08\"}},"
"\"@odata.type\":\"#microsoft.graph.event\"}";

static const char *STUB =
"{\"@odata.type\":\"#microsoft.graph.event\",\"@odata.etag\":\"W/\\\"OCK\\\"\",\"id\":\"M=AEx20261210=\","
"\"seriesMasterId\":\"M=\",\"type\":\"occurrence\","
"\"start\":{\"dateTime\":\"2026-12-10T00:00:00.0000000\",\"timeZone\":\"UTC\"},"
"\"end\":{\"dateTime\":\"2026-12-11T00:00:00.0000000\",\"timeZone\":\"UTC\"}}";

static const char *
str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int
count_key(const cJSON *o, const char *k)
{
	const cJSON *c;
	int			n = 0;

	cJSON_ArrayForEach(c, o)
		if (strcmp(c->string, k) == 0)
		n++;
	return n;
}

static void
test_fill(void)
{
	cJSON	   *master = cJSON_Parse(MASTER);
	cJSON	   *stub = cJSON_Parse(STUB);
	cJSON	   *full;
	cJSON	   *exc;

	ok(m365_series_is_stub(stub), "an occurrence with no subject and no changeKey is a stub");
	ok(!m365_series_is_stub(master), "a master is no stub");
	exc = cJSON_Parse("{\"id\":\"X\",\"type\":\"exception\",\"seriesMasterId\":\"M=\"}");
	ok(!m365_series_is_stub(exc), "an exception is no stub (exceptions come in full)");
	cJSON_Delete(exc);
	exc = cJSON_Parse("{\"id\":\"X\",\"type\":\"occurrence\",\"subject\":\"s\",\"changeKey\":\"c\"}");
	ok(!m365_series_is_stub(exc), "a full occurrence is no stub");
	cJSON_Delete(exc);

	full = m365_series_fill_stub(master, stub);
	ok(full != NULL, "filled");
	ok(str(full, "id") && strcmp(str(full, "id"), "M=AEx20261210=") == 0, "keeps its own id");
	ok(str(full, "type") && strcmp(str(full, "type"), "occurrence") == 0, "keeps its type");
	ok(str(full, "seriesMasterId") && strcmp(str(full, "seriesMasterId"), "M=") == 0, "keeps its seriesMasterId");
	ok(str(cJSON_GetObjectItem(full, "start"), "dateTime") &&
	   strcmp(str(cJSON_GetObjectItem(full, "start"), "dateTime"), "2026-12-10T00:00:00.0000000") == 0,
	   "keeps its own start");
	ok(str(full, "changeKey") && strcmp(str(full, "changeKey"), "OCK") == 0, "changeKey from its @odata.etag, not the master's");
	ok(str(full, "@odata.etag") && strcmp(str(full, "@odata.etag"), "W/\"OCK\"") == 0, "keeps its etag");
	ok(str(full, "subject") && strcmp(str(full, "subject"), "Team sync") == 0, "subject from the master");
	ok(cJSON_IsTrue(cJSON_GetObjectItem(full, "isAllDay")), "isAllDay from the master");
	ok(str(full, "showAs") && strcmp(str(full, "showAs"), "tentative") == 0, "showAs from the master");
	ok(cJSON_GetArraySize(cJSON_GetObjectItem(full, "attendees")) == 1, "attendees from the master");
	ok(cJSON_IsNull(cJSON_GetObjectItem(full, "recurrence")), "no recurrence on an occurrence");
	ok(cJSON_GetObjectItem(full, "@odata.context") == NULL, "nothing of the master's own answer");
	ok(count_key(full, "@odata.type") == 1 && count_key(full, "id") == 1, "no key twice");
	cJSON_Delete(full);
	cJSON_Delete(master);
	cJSON_Delete(stub);
}

static void
test_repeated_names(void)
{
	cJSON	   *master = cJSON_Parse("{\"id\":\"M=\",\"id\":\"M2=\",\"subject\":\"s\",\"recurrence\":{}}");
	cJSON	   *stub = cJSON_Parse("{\"type\":\"occurrence\",\"id\":\"O=\",\"type\":\"seriesMaster\","
								   "\"recurrence\":{\"x\":1},\"@odata.etag\":\"W/\\\"E\\\"\"}");
	cJSON	   *full = m365_series_fill_stub(master, stub);

	ok(full && strcmp(str(full, "id"), "O=") == 0 && count_key(full, "id") == 1,
	   "a name the master repeats is gone from the occurrence (found by fuzzing)");
	ok(full && strcmp(str(full, "type"), "occurrence") == 0 && count_key(full, "type") == 1,
	   "a name the item repeats: the first counts, as every lookup reads it (found by fuzzing)");
	ok(full && cJSON_IsNull(cJSON_GetObjectItem(full, "recurrence")) && count_key(full, "recurrence") == 1,
	   "an item's own recurrence does not survive (found by fuzzing)");
	cJSON_Delete(full);
	cJSON_Delete(master);
	cJSON_Delete(stub);
}

static void
test_instances(void)
{
	cJSON	   *r = cJSON_Parse("{\"value\":[{\"id\":\"A\"},{\"id\":\"B\",\"subject\":\"x\"}]}");
	const char **ids;
	int			n;
	bool		complete;

	ok(m365_series_instance_ids(r, &ids, &n, &complete) == 0 && n == 2 && complete &&
	   strcmp(ids[0], "A") == 0 && strcmp(ids[1], "B") == 0, "instance ids read");
	free(ids);
	cJSON_Delete(r);
	r = cJSON_Parse("{\"value\":[{\"id\":\"A\"}],\"@odata.nextLink\":\"https://g/n\"}");
	ok(m365_series_instance_ids(r, &ids, &n, &complete) == 0 && n == 1 && !complete,
	   "a nextLink: not the complete list (nothing is reconciled on it)");
	free(ids);
	cJSON_Delete(r);
	r = cJSON_Parse("{\"value\":[{\"subject\":\"no id\"}]}");
	ok(m365_series_instance_ids(r, &ids, &n, &complete) == -1 && ids == NULL, "an instance without id: refused");
	cJSON_Delete(r);
	r = cJSON_Parse("{\"error\":{\"code\":\"ErrorItemNotFound\"}}");
	ok(m365_series_instance_ids(r, &ids, &n, &complete) == -1, "an error body: refused");
	cJSON_Delete(r);
}

int
main(void)
{
	test_fill();
	test_repeated_names();
	test_instances();
	return done_testing();
}
