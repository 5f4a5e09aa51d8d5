/*
 * delta_page.c — reads one calendarView/delta page (see delta_page.h).
 *
 * Strict about the page's shape, lenient about everything else: a page that
 * is not an object with a "value" array and exactly one next/delta link is
 * malformed (the round fails and nothing of it is applied), while unknown
 * fields and odd event contents are left to event_json. Errors name the
 * item's position, never its id or content.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "delta_page.h"

#define NEXT_LINK	"@odata.nextLink"
#define DELTA_LINK	"@odata.deltaLink"
#define REMOVED		"@removed"

static M365DeltaStatus
fail(M365DeltaPage *page, M365DeltaStatus st, char *err, size_t errlen,
	 const char *msg, int item)
{
	if (err && errlen > 0)
	{
		if (item >= 0)
			snprintf(err, errlen, "item %d %s", item, msg);
		else
			snprintf(err, errlen, "%s", msg);
	}
	m365_delta_page_free(page);
	return st;
}

static const char *
link_value(const cJSON *root, const char *name, bool *bad)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);

	if (v == NULL || cJSON_IsNull(v))
		return NULL;
	if (!cJSON_IsString(v) || v->valuestring == NULL || v->valuestring[0] == '\0')
	{
		*bad = true;
		return NULL;
	}
	return v->valuestring;
}

/*
 * An item's id and @removed, in one walk of its members: as
 * cJSON_GetObjectItemCaseSensitive finds them (the first of equal keys),
 * without two full scans of an event's fifty members, one of them for a
 * key most items lack.
 */
static void
item_members(const cJSON *item, const cJSON **id, const cJSON **removed)
{
	*id = NULL;
	*removed = NULL;
	for (const cJSON *c = item->child; c != NULL && (*id == NULL || *removed == NULL); c = c->next)
	{
		if (c->string == NULL)
			continue;
		if (*id == NULL && c->string[0] == 'i' && strcmp(c->string, "id") == 0)
			*id = c;
		else if (*removed == NULL && c->string[0] == '@' && strcmp(c->string, REMOVED) == 0)
			*removed = c;
	}
}

M365DeltaStatus
m365_delta_page_parse(const char *body, size_t len, M365DeltaPage *page,
					  char *err, size_t errlen)
{
	const cJSON *value;
	const cJSON *item;
	M365JsonArena *prev;
	bool		bad_link = false;
	int			n;
	int			i;

	memset(page, 0, sizeof(*page));
	if (body == NULL)
		return fail(page, M365_DELTA_MALFORMED, err, errlen, "empty response body", -1);

	/* the tree in an arena of its own (json_arena.h): it goes with the page */
	page->arena = m365_json_arena_new(len);
	prev = m365_json_arena_use(page->arena);
	page->root = cJSON_ParseWithLength(body, len);
	(void) m365_json_arena_use(prev);
	if (page->root == NULL)
		return fail(page, M365_DELTA_MALFORMED, err, errlen, "response body is not valid JSON", -1);
	if (!cJSON_IsObject(page->root))
		return fail(page, M365_DELTA_MALFORMED, err, errlen, "response body is not a JSON object", -1);

	value = cJSON_GetObjectItemCaseSensitive(page->root, "value");
	if (!cJSON_IsArray(value))
		return fail(page, M365_DELTA_MALFORMED, err, errlen, "page has no \"value\" array", -1);

	page->next_link = link_value(page->root, NEXT_LINK, &bad_link);
	page->delta_link = link_value(page->root, DELTA_LINK, &bad_link);
	if (bad_link)
		return fail(page, M365_DELTA_MALFORMED, err, errlen, "page has a link that is not a string", -1);
	if ((page->next_link == NULL) == (page->delta_link == NULL))
		return fail(page, M365_DELTA_MALFORMED, err, errlen,
					"page must carry exactly one of @odata.nextLink and @odata.deltaLink", -1);

	n = cJSON_GetArraySize(value);
	if (n > 0)
	{
		page->items = calloc((size_t) n, sizeof(M365DeltaItem));
		if (page->items == NULL)
			return fail(page, M365_DELTA_NO_MEMORY, err, errlen, "out of memory", -1);
	}

	i = 0;
	cJSON_ArrayForEach(item, value)
	{
		const cJSON *id;
		const cJSON *removed;
		M365DeltaItem *out = &page->items[i];

		if (!cJSON_IsObject(item))
			return fail(page, M365_DELTA_MALFORMED, err, errlen, "is not an object", i);
		item_members(item, &id, &removed);
		if (!cJSON_IsString(id) || id->valuestring == NULL || id->valuestring[0] == '\0')
			return fail(page, M365_DELTA_MALFORMED, err, errlen, "has no id", i);
		if (removed != NULL && !cJSON_IsNull(removed) && !cJSON_IsObject(removed))
			return fail(page, M365_DELTA_MALFORMED, err, errlen, "has an @removed that is not an object", i);

		out->id = id->valuestring;
		out->removed = cJSON_IsObject(removed);
		out->event = item;
		i++;
	}
	page->n_items = i;
	return M365_DELTA_OK;
}

void
m365_delta_page_free(M365DeltaPage *page)
{
	if (page == NULL)
		return;
	free(page->items);
	/* a tree parsed into its arena goes with it, without a walk freeing nothing */
	if (page->arena == NULL)
		cJSON_Delete(page->root);
	m365_json_arena_free(page->arena);
	memset(page, 0, sizeof(*page));
}

bool
m365_delta_cursor_lost(long status, const char *error_code)
{
	static const char *const codes[] = {
		"syncStateNotFound", "syncStateInvalid", "resyncRequired", NULL
	};
	const char *const *c;

	if (status == 410)
		return true;
	if (error_code == NULL || status < 400 || status >= 500)
		return false;
	for (c = codes; *c; c++)
		if (strcasecmp(error_code, *c) == 0)
			return true;
	return false;
}
