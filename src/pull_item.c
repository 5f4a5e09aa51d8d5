/*
 * pull_item.c — one item of a delta page, read and mapped for the store, or
 * skipped (see pull_item.h).
 *
 * No poison events: an item the pull cannot map (an unknown zone, an
 * impossible date, a type it does not know, text that is not UTF-8) is
 * skipped with a WARNING that names the field's path and the event's Graph
 * id, never a value (a zone name or a subject is content), and the caller
 * counts it. The rest of the page and the account go on; the page's cursor
 * is saved as usual, so the item comes again when it next changes. Custom
 * zones are not poison: the pull asks Graph for UTC, and GRAPH.md §10 says
 * to read such a copy as UTC (event_row.c, timezones.c). No SQL here.
 */
#include "postgres.h"

#include "event_row.h"
#include "jsonb_cjson.h"
#include "pull_item.h"

/* Graph ids are base64-ish; print one only if it is, and not too long. */
#define PRINTABLE_ID_MAX 256

static const char *
printable_id(const char *id)
{
	size_t		n;

	if (id == NULL || id[0] == '\0')
		return "(none)";
	n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.");
	if (id[n] != '\0' || n > PRINTABLE_ID_MAX)
		return "(unreadable)";
	return id;
}

static void
warn_skipped(int64 account_id, const char *graph_id, const char *field)
{
	ereport(WARNING,
			(errmsg("m365sync: skipped an event Graph sent for account %lld", (long long) account_id),
			 errdetail("Field %s of event %s could not be mapped; the event is read again when it next changes.",
					   field, printable_id(graph_id))));
}

const char *
m365_pull_item_id(const cJSON *item)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, M365_F_ID);

	return cJSON_IsString(id) ? id->valuestring : NULL;
}

bool
m365_pull_item_map(int64 account_id, const cJSON *item,
				   M365Event *ev, M365EventColumns *cols, Jsonb **data)
{
	M365EventError err;

	if (m365_event_parse(item, M365_EV_FROM_GRAPH, ev, &err) != M365_EV_OK ||
		m365_event_columns_check(ev, true, cols, &err) != M365_EV_OK)
	{
		warn_skipped(account_id, m365_pull_item_id(item), err.field);
		return false;
	}
	*data = m365_cjson_to_jsonb(item);
	if (*data == NULL)
	{
		/* which field is not said by the converter: the event as a whole */
		warn_skipped(account_id, m365_pull_item_id(item), "(a text value, not UTF-8)");
		return false;
	}
	return true;
}
