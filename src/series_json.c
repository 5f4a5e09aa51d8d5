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

/* Every item of that name: a JSON text may repeat a name. */
static void
delete_all(cJSON *obj, const char *name)
{
	cJSON	   *it;

	while ((it = cJSON_DetachItemFromObjectCaseSensitive(obj, name)) != NULL)
		cJSON_Delete(it);
}

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
		delete_all(out, master_only[i]);
	cJSON_ArrayForEach(f, stub)
	{
		cJSON	   *copy;

		/* a name given twice: the first counts, as every cJSON lookup reads it */
		if (f->string == NULL || cJSON_GetObjectItemCaseSensitive(stub, f->string) != f)
			continue;
		copy = cJSON_Duplicate(f, 1);
		delete_all(out, f->string);
		if (copy == NULL || !cJSON_AddItemToObject(out, f->string, copy))
		{
			cJSON_Delete(copy);
			cJSON_Delete(out);
			return NULL;
		}
	}
	/* an occurrence has no recurrence of its own, whatever the item said */
	delete_all(out, "recurrence");
	if (cJSON_AddNullToObject(out, "recurrence") == NULL)
	{
		cJSON_Delete(out);
		return NULL;
	}
	etag = cJSON_GetObjectItemCaseSensitive(stub, "@odata.etag");
	if (cJSON_IsString(etag))
	{
		char	   *ck = etag_value(etag->valuestring);

		if (ck)
			delete_all(out, "changeKey");
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
