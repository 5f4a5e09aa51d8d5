/*
 * series_json.c — occurrence stubs filled from their series master (see
 * series_json.h). Bytes and cJSON only: no palloc, no ereport.
 */
#include <stdlib.h>
#include <string.h>

#include "series_json.h"

bool
m365_series_is_stub(const cJSON *item)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");

	return cJSON_IsString(type) && strcmp(type->valuestring, "occurrence") == 0 &&
		cJSON_GetObjectItemCaseSensitive(item, "subject") == NULL &&
		cJSON_GetObjectItemCaseSensitive(item, "changeKey") == NULL;
}

/* The master's fields that are the series', not an occurrence's. */
static const char *const master_only[] = {
	"@odata.context", "@odata.etag", "id", "changeKey", "type", "seriesMasterId",
	"start", "end", "recurrence", "originalStart", "cancelledOccurrences",
	"occurrenceId", NULL
};

/* W/"abc" → abc (malloc'd), or NULL when not an etag. */
static char *
etag_value(const char *etag)
{
	size_t		len;
	char	   *out;

	if (strncmp(etag, "W/", 2) == 0)
		etag += 2;
	len = strlen(etag);
	if (len >= 2 && etag[0] == '"' && etag[len - 1] == '"')
	{
		etag++;
		len -= 2;
	}
	if (len == 0)
		return NULL;
	out = malloc(len + 1);
	if (out)
	{
		memcpy(out, etag, len);
		out[len] = '\0';
	}
	return out;
}

cJSON *
m365_series_fill_stub(const cJSON *master, const cJSON *stub)
{
	cJSON	   *out = cJSON_Duplicate(master, 1);
	const cJSON *f;
	const cJSON *etag;
	int			i;

	if (out == NULL)
		return NULL;
	for (i = 0; master_only[i]; i++)
		cJSON_DeleteItemFromObjectCaseSensitive(out, master_only[i]);
	cJSON_ArrayForEach(f, stub)
	{
		cJSON	   *copy = cJSON_Duplicate(f, 1);

		cJSON_DeleteItemFromObjectCaseSensitive(out, f->string);
		if (copy == NULL || !cJSON_AddItemToObject(out, f->string, copy))
		{
			cJSON_Delete(copy);
			cJSON_Delete(out);
			return NULL;
		}
	}
	if (cJSON_AddNullToObject(out, "recurrence") == NULL)
	{
		cJSON_Delete(out);
		return NULL;
	}
	etag = cJSON_GetObjectItemCaseSensitive(stub, "@odata.etag");
	if (cJSON_IsString(etag))
	{
		char	   *ck = etag_value(etag->valuestring);

		if (ck && cJSON_AddStringToObject(out, "changeKey", ck) == NULL)
		{
			free(ck);
			cJSON_Delete(out);
			return NULL;
		}
		free(ck);
	}
	return out;
}

int
m365_series_instance_ids(const cJSON *root, const char ***ids, int *n, bool *complete)
{
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(root, "value");
	const cJSON *it;
	int			cnt = 0;

	*ids = NULL;
	*n = 0;
	if (!cJSON_IsArray(value))
		return -1;
	*complete = cJSON_GetObjectItemCaseSensitive(root, "@odata.nextLink") == NULL;
	*ids = malloc(sizeof(char *) * (cJSON_GetArraySize(value) + 1));
	if (*ids == NULL)
		return -1;
	cJSON_ArrayForEach(it, value)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");

		if (!cJSON_IsString(id))
		{
			free(*ids);
			*ids = NULL;
			return -1;
		}
		(*ids)[cnt++] = id->valuestring;
	}
	*n = cnt;
	return 0;
}
