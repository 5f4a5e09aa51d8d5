/*
 * test_json_arena.c — cJSON's allocation hooks (src/json_arena.c): delta
 * pages in arenas of their own, every other tree from malloc, both mixed
 * as the pull mixes them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delta_page.h"
#include "json_arena.h"
#include "tap.h"

/* A page of n events with ids "ev<k>" and a subject of len bytes each. */
static char *
make_page(int n, int len)
{
	size_t		cap = (size_t) n * (len + 64) + 128;
	char	   *s = malloc(cap);
	size_t		o = 0;

	o += (size_t) snprintf(s + o, cap - o, "{\"value\":[");
	for (int k = 0; k < n; k++)
	{
		o += (size_t) snprintf(s + o, cap - o, "%s{\"id\":\"ev%d\",\"subject\":\"", k ? "," : "", k);
		memset(s + o, 'a' + k % 26, (size_t) len);
		o += (size_t) len;
		o += (size_t) snprintf(s + o, cap - o, "\",\"n\":%d}", k);
	}
	snprintf(s + o, cap - o, "],\"@odata.deltaLink\":\"https://g/d\"}");
	return s;
}

/* Every item of a page made by make_page is there, unchanged. */
static int
page_intact(const M365DeltaPage *p, int n, int len)
{
	if (p->n_items != n || p->delta_link == NULL || strcmp(p->delta_link, "https://g/d") != 0)
		return 0;
	for (int k = 0; k < n; k++)
	{
		char		id[32];
		const cJSON *subj = cJSON_GetObjectItemCaseSensitive(p->items[k].event, "subject");
		const cJSON *num = cJSON_GetObjectItemCaseSensitive(p->items[k].event, "n");

		snprintf(id, sizeof(id), "ev%d", k);
		if (strcmp(p->items[k].id, id) != 0 || !cJSON_IsString(subj) || !cJSON_IsNumber(num) ||
			num->valueint != k || strlen(subj->valuestring) != (size_t) len ||
			subj->valuestring[0] != 'a' + k % 26 || subj->valuestring[len - 1] != 'a' + k % 26)
			return 0;
	}
	return 1;
}

int
main(void)
{
	char	   *small = make_page(3, 10);
	char	   *big = make_page(5000, 300);
	M365DeltaPage a,
				b;
	cJSON	   *outside;
	char	   *printed;

	/* Not installed: no arena, malloc as ever. */
	ok(m365_json_arena_new(100) == NULL, "without the hooks there is no arena");
	ok(m365_delta_page_parse(small, strlen(small), &a, NULL, 0) == M365_DELTA_OK && a.arena == NULL &&
	   page_intact(&a, 3, 10), "without the hooks a page parses from malloc");
	m365_delta_page_free(&a);

	m365_json_arena_install();
	m365_json_arena_install();	/* twice does nothing more */

	/* A tree made outside any arena, before and across pages. */
	outside = cJSON_CreateObject();
	cJSON_AddStringToObject(outside, "kept", "across pages");

	ok(m365_delta_page_parse(small, strlen(small), &a, NULL, 0) == M365_DELTA_OK && a.arena != NULL &&
	   page_intact(&a, 3, 10), "a page parses into an arena of its own");
	ok(m365_json_arena_use(NULL) == NULL, "the arena is current only while the page is parsed");

	/* A page far larger than its first block, while the other is parked. */
	ok(m365_delta_page_parse(big, strlen(big), &b, NULL, 0) == M365_DELTA_OK && b.arena != NULL &&
	   b.arena != a.arena && page_intact(&b, 5000, 300), "a page of 5,000 events takes several blocks");

	/* malloc'd items added to and removed from an arena's tree, as the pull's helpers do */
	cJSON_AddNumberToObject((cJSON *) a.items[0].event, "added", 1);
	cJSON_DeleteItemFromObjectCaseSensitive((cJSON *) a.items[1].event, "subject");
	cJSON_DeleteItemFromObjectCaseSensitive((cJSON *) a.items[0].event, "added");
	cJSON_AddNumberToObject((cJSON *) a.items[2].event, "added", 2);
	ok(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(a.items[2].event, "added")) == 2 &&
	   cJSON_GetObjectItemCaseSensitive(a.items[1].event, "subject") == NULL,
	   "a page's tree takes malloc'd items and lets its own go");

	m365_delta_page_free(&b);
	ok(strcmp(a.items[0].id, "ev0") == 0 && strcmp(a.items[2].id, "ev2") == 0,
	   "the parked page is intact after the other page is freed");
	m365_delta_page_free(&a);

	/* The next page reuses the kept block: nothing of the old one shows. */
	ok(m365_delta_page_parse(big, strlen(big), &b, NULL, 0) == M365_DELTA_OK && page_intact(&b, 5000, 300),
	   "a page parsed into a reused block is intact");
	m365_delta_page_free(&b);

	/* A malformed page leaves no arena behind (the next parse would not see it). */
	{
		M365DeltaPage bad;
		char		err[100];

		ok(m365_delta_page_parse("{\"value\":[{\"id\":", 15, &bad, err, sizeof(err)) == M365_DELTA_MALFORMED &&
		   bad.arena == NULL && bad.root == NULL, "a malformed page is refused and holds no arena");
	}

	/* The tree from malloc outlives every page, prints and is freed as before. */
	printed = cJSON_PrintUnformatted(outside);
	ok(printed != NULL && strcmp(printed, "{\"kept\":\"across pages\"}") == 0,
	   "a tree made outside the arenas outlives them");
	cJSON_free(printed);
	cJSON_Delete(outside);

	/* A current arena set by a caller is restored after a page is parsed in it. */
	{
		M365JsonArena *mine = m365_json_arena_new(10);
		cJSON	   *t;

		m365_json_arena_use(mine);
		ok(m365_delta_page_parse(small, strlen(small), &a, NULL, 0) == M365_DELTA_OK &&
		   m365_json_arena_use(mine) == mine, "the caller's arena is current again after a parse");
		t = cJSON_CreateString("in mine");
		m365_delta_page_free(&a);
		ok(strcmp(t->valuestring, "in mine") == 0, "a caller's arena outlives a page parsed inside it");
		cJSON_Delete(t);
		m365_json_arena_use(NULL);
		m365_json_arena_free(mine);
	}

	free(small);
	free(big);
	return done_testing();
}
