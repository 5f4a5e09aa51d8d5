/*
 * fuzz_series_json.c — libFuzzer target of the series helpers
 * (src/series_json.c) as the pull calls them on what Graph sends: the input
 * is a master and an item (split at the first newline), and an instances
 * answer (the whole input).
 *
 * Promises checked: a filled stub keeps the item's id and type and carries
 * no recurrence; instance ids are strings; nothing leaks.
 */
#include "series_json.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t		n1 = nl ? (size_t) (nl - data) : size / 2;
	cJSON	   *master = cJSON_ParseWithLength((const char *) data, n1);
	cJSON	   *item = cJSON_ParseWithLength((const char *) data + n1 + (nl ? 1 : 0), size - n1 - (nl ? 1 : 0));
	cJSON	   *whole = cJSON_ParseWithLength((const char *) data, size);
	const char **ids;
	int			n;
	bool		complete;

	if (master && item && cJSON_IsObject(master) && cJSON_IsObject(item) && m365_series_is_stub(item))
	{
		cJSON	   *full = m365_series_fill_stub(master, item);
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");

		if (full)
		{
			FUZZ_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(full, "recurrence")));
			FUZZ_CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(full, "type")->valuestring, "occurrence") == 0);
			if (cJSON_IsString(id))
				FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(full, "id")) &&
						   strcmp(cJSON_GetObjectItemCaseSensitive(full, "id")->valuestring, id->valuestring) == 0);
			cJSON_Delete(full);
		}
	}
	if (whole && m365_series_instance_ids(whole, &ids, &n, &complete) == 0)
	{
		for (int i = 0; i < n; i++)
			FUZZ_CHECK(ids[i] != NULL);
		free(ids);
	}
	cJSON_Delete(master);
	cJSON_Delete(item);
	cJSON_Delete(whole);
	return 0;
}
