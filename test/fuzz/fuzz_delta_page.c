/*
 * fuzz_delta_page.c — libFuzzer target of a calendarView/delta page
 * (src/delta_page.c) as the pull reads it (pull.c): the page, then every
 * item that is not @removed through m365_event_parse from Graph. The same
 * bytes are also read as a Graph error body and fed to
 * m365_delta_cursor_lost with the statuses the pull sees.
 *
 * Promises checked: a good page has exactly one link and an id per item;
 * a failed page leaves nothing to free and a terminated message.
 */
#include <cjson/cJSON.h>

#include "delta_page.h"
#include "event_json.h"
#include "graph_util.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	M365DeltaPage page;
	char		err[128];
	char		code[64];
	static const long statuses[] = {200, 400, 404, 409, 410, 429, 500, 503};
	size_t		i;

	memset(err, 0x5a, sizeof(err));
	if (m365_delta_page_parse((const char *) data, size, &page, err, sizeof(err)) == M365_DELTA_OK)
	{
		int			k;

		FUZZ_CHECK((page.next_link == NULL) != (page.delta_link == NULL));
		FUZZ_CHECK(page.n_items >= 0);
		for (k = 0; k < page.n_items; k++)
		{
			const M365DeltaItem *it = &page.items[k];

			FUZZ_CHECK(it->id != NULL && it->id[0] != '\0' && it->event != NULL);
			if (!it->removed)
			{
				M365Event	ev;
				M365EventError eerr;

				if (m365_event_parse(it->event, M365_EV_FROM_GRAPH, &ev, &eerr) != M365_EV_OK)
					FUZZ_CHECK(fuzz_terminated(eerr.field, sizeof(eerr.field)));
			}
		}
		m365_delta_page_free(&page);
	}
	else
	{
		FUZZ_CHECK(page.root == NULL && page.items == NULL && page.n_items == 0);
		FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
	}

	/* the same bytes as an error answer */
	memset(code, 0x5a, sizeof(code));
	if (m365_graph_parse_error((const char *) data, size, code, sizeof(code)) == 0)
		FUZZ_CHECK(fuzz_terminated(code, sizeof(code)));
	else
		code[0] = '\0';
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
	{
		int			lost = m365_delta_cursor_lost(statuses[i], code);

		FUZZ_CHECK(statuses[i] != 410 || lost);
		FUZZ_CHECK(statuses[i] < 400 || statuses[i] >= 500 || statuses[i] == 410 || code[0] || !lost);
	}
	(void) m365_delta_cursor_lost(400, NULL);
	return 0;
}
