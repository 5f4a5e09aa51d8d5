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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

const char *
m365_graph_account_state(long status, const char *code)
{
	if (code == NULL)
		return NULL;
	if ((status == 404 || status == 401) && strcmp(code, "MailboxNotEnabledForRESTAPI") == 0)
		return "mailbox_disabled";
	if (status == 403 && strcmp(code, "ErrorAccessDenied") == 0)
		return "access_denied";
	return NULL;
}

bool
m365_graph_item_gone(long status, const char *code)
{
	return status == 404 && code != NULL && strcmp(code, "ErrorItemNotFound") == 0;
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

/* ------------------------------------------------------------ $batch */

char *
m365_graph_batch_body(const M365BatchRequest *reqs, int n)
{
	cJSON	   *root = cJSON_CreateObject();
	cJSON	   *arr = root ? cJSON_AddArrayToObject(root, "requests") : NULL;
	char	   *out = NULL;
	int			i;

	if (arr == NULL || n < 1 || n > M365_BATCH_MAX)
		goto done;
	for (i = 0; i < n; i++)
	{
		cJSON	   *r = cJSON_CreateObject();
		cJSON	   *h;
		char		id[16];

		if (r == NULL || !cJSON_AddItemToArray(arr, r))
		{
			cJSON_Delete(r);
			goto done;
		}
		snprintf(id, sizeof(id), "%d", i);
		h = cJSON_CreateObject();
		if (cJSON_AddStringToObject(r, "id", id) == NULL ||
			cJSON_AddStringToObject(r, "method", reqs[i].method) == NULL ||
			cJSON_AddStringToObject(r, "url", reqs[i].url) == NULL ||
			h == NULL || !cJSON_AddItemToObject(r, "headers", h))
		{
			cJSON_Delete(h);
			goto done;
		}
		if (cJSON_AddStringToObject(h, "Prefer",
									"IdType=\"ImmutableId\", outlook.timezone=\"UTC\"") == NULL)
			goto done;
		if (reqs[i].if_match && cJSON_AddStringToObject(h, "If-Match", reqs[i].if_match) == NULL)
			goto done;
		if (reqs[i].body)
		{
			cJSON	   *b = cJSON_Parse(reqs[i].body);

			if (b == NULL || !cJSON_AddItemToObject(r, "body", b))
			{
				cJSON_Delete(b);
				goto done;
			}
			if (cJSON_AddStringToObject(h, "Content-Type", "application/json") == NULL)
				goto done;
		}
	}
	out = cJSON_PrintUnformatted(root);
done:
	cJSON_Delete(root);
	return out;
}

/* A header value by case-insensitive name, or NULL. */
static const cJSON *
header(const cJSON *headers, const char *name)
{
	const cJSON *h;

	cJSON_ArrayForEach(h, headers)
	{
		if (h->string && strcasecmp(h->string, name) == 0 && cJSON_IsString(h))
			return h;
	}
	return NULL;
}

int
m365_graph_parse_batch(const char *body, size_t len, M365BatchAnswer *out, int n)
{
	cJSON	   *root;
	const cJSON *arr,
			   *r;
	int			rc = -1;

	memset(out, 0, sizeof(M365BatchAnswer) * n);
	if (body == NULL)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	arr = cJSON_GetObjectItemCaseSensitive(root, "responses");
	if (!cJSON_IsArray(arr))
		goto done;
	cJSON_ArrayForEach(r, arr)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "status");
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "body");
		const cJSON *ra = header(cJSON_GetObjectItemCaseSensitive(r, "headers"), "Retry-After");
		char	   *end;
		long		k;

		if (!cJSON_IsString(id) || !cJSON_IsNumber(st))
			continue;
		k = strtol(id->valuestring, &end, 10);
		if (*end != '\0' || end == id->valuestring || k < 0 || k >= n || out[k].present)
			continue;
		out[k].present = true;
		out[k].status = (int) st->valuedouble;
		if (ra)
			out[k].retry_after = strdup(ra->valuestring);
		if (cJSON_IsString(b))
			out[k].body = strdup(b->valuestring);
		else if (b != NULL && !cJSON_IsNull(b))
			out[k].body = cJSON_PrintUnformatted(b);
	}
	rc = 0;
done:
	cJSON_Delete(root);
	return rc;
}

void
m365_graph_batch_answers_free(M365BatchAnswer *out, int n)
{
	for (int i = 0; i < n; i++)
	{
		free(out[i].retry_after);
		if (out[i].body)
			cJSON_free(out[i].body);
		out[i].retry_after = out[i].body = NULL;
	}
}

int
m365_graph_parse_event_ids(const char *body, size_t len, char **id, char **change_key)
{
	cJSON	   *root = body ? cJSON_ParseWithLength(body, len) : NULL;
	int			rc = -1;

	*id = *change_key = NULL;
	*id = dup_string(cJSON_GetObjectItemCaseSensitive(root, "id"));
	*change_key = dup_string(cJSON_GetObjectItemCaseSensitive(root, "changeKey"));
	if (*id != NULL)
		rc = 0;
	cJSON_Delete(root);
	return rc;
}

int
m365_graph_find_transaction(const char *body, size_t len, const char *txid,
							char **found, char **next_link)
{
	cJSON	   *root = body ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "value");
	const cJSON *e;
	int			rc = -1;

	*found = *next_link = NULL;
	if (!cJSON_IsArray(arr))
		goto done;
	cJSON_ArrayForEach(e, arr)
	{
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "transactionId");

		if (cJSON_IsString(t) && strcmp(t->valuestring, txid) == 0)
		{
			*found = dup_string(cJSON_GetObjectItemCaseSensitive(e, "id"));
			if (*found)
				break;
		}
	}
	*next_link = dup_string(cJSON_GetObjectItemCaseSensitive(root, "@odata.nextLink"));
	rc = 0;
done:
	cJSON_Delete(root);
	return rc;
}
