/*
 * test_delta_page.c — the delta page reader (src/delta_page.c): pages as
 * Graph sends them, with the outcome beside each input.
 */
#include <string.h>

#include "delta_page.h"
#include "tap.h"

typedef struct Case
{
	const char *name;
	const char *body;
	int			ok;				/* 1 parses, 0 malformed */
	int			n_items;
	int			n_removed;
	int			has_next;		/* 1 nextLink, 0 deltaLink */
	const char *error;			/* substring of the error when malformed */
} Case;

static const Case cases[] = {
	{"page with events and a nextLink",
	 "{\"@odata.context\":\"x\",\"value\":[{\"id\":\"A\",\"subject\":\"s\"},{\"id\":\"B\"}],"
	 "\"@odata.nextLink\":\"https://g/v1.0/me/calendarView/delta?$skiptoken=1\"}", 1, 2, 0, 1, NULL},
	{"last page with a deltaLink",
	 "{\"value\":[],\"@odata.deltaLink\":\"https://g/v1.0/me/calendarView/delta?$deltatoken=2\"}", 1, 0, 0, 0, NULL},
	{"empty page that still has a nextLink",
	 "{\"value\":[],\"@odata.nextLink\":\"https://g/n\"}", 1, 0, 0, 1, NULL},
	{"@removed entries are marked removed",
	 "{\"value\":[{\"@odata.type\":\"#microsoft.graph.event\",\"id\":\"A\",\"@removed\":{\"reason\":\"deleted\"}},"
	 "{\"id\":\"B\",\"subject\":\"kept\"}],\"@odata.deltaLink\":\"https://g/d\"}", 1, 2, 1, 0, NULL},
	{"the same event twice in one page is kept twice (applying is idempotent)",
	 "{\"value\":[{\"id\":\"A\"},{\"id\":\"A\"}],\"@odata.deltaLink\":\"https://g/d\"}", 1, 2, 0, 0, NULL},
	{"unknown fields are ignored",
	 "{\"value\":[{\"id\":\"A\",\"newGraphField\":{\"x\":[1,2]}}],\"@odata.count\":5,\"@odata.deltaLink\":\"https://g/d\"}",
	 1, 1, 0, 0, NULL},
	{"not JSON", "{\"value\":[", 0, 0, 0, 0, "not valid JSON"},
	{"truncated body", "{\"value\":[{\"id\":\"A\"}],\"@odata.deltaLink\":\"https://g/", 0, 0, 0, 0, "not valid JSON"},
	{"JSON array instead of an object", "[1,2]", 0, 0, 0, 0, "not a JSON object"},
	{"no value array", "{\"@odata.deltaLink\":\"https://g/d\"}", 0, 0, 0, 0, "no \"value\" array"},
	{"value is an object", "{\"value\":{},\"@odata.deltaLink\":\"https://g/d\"}", 0, 0, 0, 0, "no \"value\" array"},
	{"neither link", "{\"value\":[]}", 0, 0, 0, 0, "exactly one of"},
	{"both links", "{\"value\":[],\"@odata.nextLink\":\"a\",\"@odata.deltaLink\":\"b\"}", 0, 0, 0, 0, "exactly one of"},
	{"link is a number", "{\"value\":[],\"@odata.deltaLink\":5}", 0, 0, 0, 0, "not a string"},
	{"item without id", "{\"value\":[{\"id\":\"A\"},{\"subject\":\"secret subject\"}],\"@odata.deltaLink\":\"d\"}",
	 0, 0, 0, 0, "item 1 has no id"},
	{"item id not a string", "{\"value\":[{\"id\":7}],\"@odata.deltaLink\":\"d\"}", 0, 0, 0, 0, "item 0 has no id"},
	{"item not an object", "{\"value\":[\"A\"],\"@odata.deltaLink\":\"d\"}", 0, 0, 0, 0, "item 0 is not an object"},
	{"@removed before the id, among other members",
	 "{\"value\":[{\"@odata.etag\":\"e\",\"@removed\":{\"reason\":\"deleted\"},\"isAllDay\":false,\"id\":\"A\"}],"
	 "\"@odata.deltaLink\":\"d\"}", 1, 1, 1, 0, NULL},
	{"of two ids the first counts, as cJSON finds it",
	 "{\"value\":[{\"id\":7,\"id\":\"A\"}],\"@odata.deltaLink\":\"d\"}", 0, 0, 0, 0, "item 0 has no id"},
	{"of two @removed the first counts",
	 "{\"value\":[{\"id\":\"A\",\"@removed\":null,\"@removed\":{}}],\"@odata.deltaLink\":\"d\"}", 1, 1, 0, 0, NULL},
	{"@removed of the wrong type", "{\"value\":[{\"id\":\"A\",\"@removed\":true}],\"@odata.deltaLink\":\"d\"}",
	 0, 0, 0, 0, "item 0 has an @removed"},
};

typedef struct LostCase
{
	long		status;
	const char *code;
	int			lost;
} LostCase;

static const LostCase lost_cases[] = {
	{410, "SyncStateNotFound", 1},
	{410, NULL, 1},
	{400, "syncStateNotFound", 1},
	{400, "SYNCSTATENOTFOUND", 1},
	{400, "resyncRequired", 1},
	{404, "syncStateInvalid", 1},
	{400, "ErrorInvalidParameter", 0},
	{429, "TooManyRequests", 0},
	{503, "syncStateNotFound", 0},
	{200, NULL, 0},
};

int
main(void)
{
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		const Case *c = &cases[i];
		M365DeltaPage page;
		char		err[200] = "";
		M365DeltaStatus st = m365_delta_page_parse(c->body, strlen(c->body), &page, err, sizeof(err));

		if (c->ok)
		{
			int			removed = 0;
			int			j;

			for (j = 0; j < page.n_items; j++)
				removed += page.items[j].removed;
			ok(st == M365_DELTA_OK && page.n_items == c->n_items && removed == c->n_removed &&
			   (c->has_next ? page.next_link != NULL : page.delta_link != NULL),
			   "%s", c->name);
		}
		else
			ok(st == M365_DELTA_MALFORMED && strstr(err, c->error) != NULL &&
			   strstr(err, "secret") == NULL && page.root == NULL,
			   "%s is refused: %s", c->name, err);
		m365_delta_page_free(&page);
	}

	/* A page given with an exact length, not NUL-terminated. */
	{
		const char	buf[] = "{\"value\":[],\"@odata.deltaLink\":\"d\"}GARBAGE";
		M365DeltaPage page;

		ok(m365_delta_page_parse(buf, strlen(buf) - 7, &page, NULL, 0) == M365_DELTA_OK,
		   "a body is read to its length, not to a NUL");
		m365_delta_page_free(&page);
	}

	for (i = 0; i < sizeof(lost_cases) / sizeof(lost_cases[0]); i++)
		ok(m365_delta_cursor_lost(lost_cases[i].status, lost_cases[i].code) == lost_cases[i].lost,
		   "status %ld code %s: cursor %s", lost_cases[i].status,
		   lost_cases[i].code ? lost_cases[i].code : "(none)",
		   lost_cases[i].lost ? "lost" : "kept");

	return done_testing();
}
