/*
 * fuzz_graph_util.c — libFuzzer target of the Graph response readers
 * (src/graph_util.c) as graph.c and sql_connect.c call them: an error body,
 * a user (/me) and a page of calendars, each on the same bytes.
 *
 * Promises checked: an error code holds only [A-Za-z0-9_.] and fits its
 * buffer, also a buffer of one byte; a user has a non-empty id of at most
 * 200 bytes; every calendar has a non-empty id.
 */
#include <ctype.h>

#include "graph_util.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		code[64];
	char		one[1];
	M365GraphUser user;
	M365GraphCalendarPage page;
	size_t		i;

	memset(code, 0x5a, sizeof(code));
	if (m365_graph_parse_error((const char *) data, size, code, sizeof(code)) == 0)
	{
		FUZZ_CHECK(fuzz_terminated(code, sizeof(code)));
		for (i = 0; code[i]; i++)
			FUZZ_CHECK(isalnum((unsigned char) code[i]) || code[i] == '_' || code[i] == '.');
	}
	one[0] = 'x';
	(void) m365_graph_parse_error((const char *) data, size, one, sizeof(one));
	FUZZ_CHECK(one[0] == '\0');

	if (m365_graph_parse_user((const char *) data, size, &user) == 0)
	{
		FUZZ_CHECK(user.id != NULL && user.id[0] != '\0' && strlen(user.id) <= 200);
		m365_graph_user_free(&user);
	}
	else
		FUZZ_CHECK(user.id == NULL && user.upn == NULL && user.mail == NULL);

	if (m365_graph_parse_calendars((const char *) data, size, &page) == 0)
	{
		int			k;

		FUZZ_CHECK(page.count >= 0);
		for (k = 0; k < page.count; k++)
			FUZZ_CHECK(page.items[k].id != NULL && page.items[k].id[0] != '\0');
		m365_graph_calendar_page_free(&page);
	}
	else
		FUZZ_CHECK(page.items == NULL && page.next_link == NULL && page.count == 0);
	return 0;
}
