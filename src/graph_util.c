/*
 * graph_util.c — pure-C readers of Microsoft Graph JSON (GRAPH.md §4, §6):
 * error bodies, users, calendar pages.
 *
 * Bytes in, structs out, through cJSON only; no postgres.h, no network, no
 * logging. Unknown members are ignored; a missing required member makes the
 * whole response invalid rather than half-read. An error's message is never
 * kept: it is prose that may quote user data.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "graph_util.h"

static char *
dup_string(const cJSON *item)
{
	if (!cJSON_IsString(item) || item->valuestring == NULL)
		return NULL;
	return strdup(item->valuestring);
}

int
m365_graph_parse_error(const char *body, size_t len, char *code, size_t codelen)
{
	cJSON	   *root;
	const cJSON *err,
			   *c;
	int			rc = -1;

	if (codelen > 0)
		code[0] = '\0';
	if (body == NULL || codelen == 0)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	err = cJSON_GetObjectItemCaseSensitive(root, "error");
	c = cJSON_GetObjectItemCaseSensitive(err, "code");
	if (cJSON_IsString(c) && c->valuestring != NULL)
	{
		size_t		i;

		for (i = 0; i + 1 < codelen &&
			 (isalnum((unsigned char) c->valuestring[i]) || c->valuestring[i] == '_' ||
			  c->valuestring[i] == '.'); i++)
			code[i] = c->valuestring[i];
		code[i] = '\0';
		rc = 0;
	}
	cJSON_Delete(root);
	return rc;
}

void
m365_graph_user_free(M365GraphUser *u)
{
	free(u->id);
	free(u->upn);
	free(u->mail);
	memset(u, 0, sizeof(*u));
}

int
m365_graph_parse_user(const char *body, size_t len, M365GraphUser *out)
{
	cJSON	   *root;
	int			rc = -1;

	memset(out, 0, sizeof(*out));
	if (body == NULL)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	if (!cJSON_IsObject(root))
		goto done;
	out->id = dup_string(cJSON_GetObjectItemCaseSensitive(root, "id"));
	out->upn = dup_string(cJSON_GetObjectItemCaseSensitive(root, "userPrincipalName"));
	out->mail = dup_string(cJSON_GetObjectItemCaseSensitive(root, "mail"));
	if (out->id == NULL || out->id[0] == '\0' || strlen(out->id) > 200)
		goto done;
	rc = 0;
done:
	cJSON_Delete(root);
	if (rc != 0)
		m365_graph_user_free(out);
	return rc;
}

void
m365_graph_calendar_page_free(M365GraphCalendarPage *p)
{
	int			i;

	for (i = 0; i < p->count; i++)
	{
		free(p->items[i].id);
		free(p->items[i].name);
	}
	free(p->items);
	free(p->next_link);
	memset(p, 0, sizeof(*p));
}

int
m365_graph_parse_calendars(const char *body, size_t len, M365GraphCalendarPage *out)
{
	cJSON	   *root;
	const cJSON *value,
			   *item;
	int			rc = -1;
	int			n;

	memset(out, 0, sizeof(*out));
	if (body == NULL)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	value = cJSON_GetObjectItemCaseSensitive(root, "value");
	if (!cJSON_IsArray(value))
		goto done;
	n = cJSON_GetArraySize(value);
	out->items = calloc(n > 0 ? n : 1, sizeof(M365GraphCalendar));
	if (out->items == NULL)
		goto done;
	cJSON_ArrayForEach(item, value)
	{
		M365GraphCalendar *c = &out->items[out->count];
		const cJSON *b;

		if (!cJSON_IsObject(item))
			continue;
		c->id = dup_string(cJSON_GetObjectItemCaseSensitive(item, "id"));
		if (c->id == NULL || c->id[0] == '\0')
		{
			free(c->id);
			c->id = NULL;
			continue;			/* nothing to key it on: skip, don't fail the page */
		}
		c->name = dup_string(cJSON_GetObjectItemCaseSensitive(item, "name"));
		b = cJSON_GetObjectItemCaseSensitive(item, "isDefaultCalendar");
		c->is_default = cJSON_IsTrue(b);
		b = cJSON_GetObjectItemCaseSensitive(item, "canEdit");
		c->can_edit = b == NULL ? true : cJSON_IsTrue(b);
		out->count++;
	}
	out->next_link = dup_string(cJSON_GetObjectItemCaseSensitive(root, "@odata.nextLink"));
	rc = 0;
done:
	cJSON_Delete(root);
	if (rc != 0)
		m365_graph_calendar_page_free(out);
	return rc;
}
