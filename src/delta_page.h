/*
 * delta_page.h — one page of Graph's calendarView/delta, read and checked
 * (delta_page.c). Pure C over cJSON: no backend headers, no palloc, no
 * ereport, so the fuzz target and unit tests call it as the pull does.
 *
 * A page is {"value":[...], "@odata.nextLink": ...} or, on the last page,
 * {"value":[...], "@odata.deltaLink": ...}. Items are whole events or
 * {"id":..., "@removed":{"reason":...}}. Unknown fields are ignored here
 * (event_json keeps them). Nothing of an event's content reaches an error.
 */
#ifndef M365SYNC_DELTA_PAGE_H
#define M365SYNC_DELTA_PAGE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "json_arena.h"

typedef enum M365DeltaStatus
{
	M365_DELTA_OK = 0,
	M365_DELTA_MALFORMED,		/* not JSON, or not the shape of a delta page */
	M365_DELTA_NO_MEMORY
} M365DeltaStatus;

typedef struct M365DeltaItem
{
	const char *id;				/* Graph id, never NULL */
	bool		removed;		/* an @removed entry: deleted or left the window */
	const cJSON *event;			/* the whole event object (also for removed) */
} M365DeltaItem;

typedef struct M365DeltaPage
{
	cJSON	   *root;			/* owns everything below */
	M365JsonArena *arena;		/* root's memory, when the hooks are installed */
	M365DeltaItem *items;		/* malloc'd */
	int			n_items;
	const char *next_link;		/* exactly one of next_link / delta_link */
	const char *delta_link;
} M365DeltaPage;

/*
 * Parse a page of len bytes (need not be NUL-terminated). On failure *page
 * holds nothing to free and err (if given) says what was wrong, in words
 * that carry no content ("item 3 has no id").
 */
extern M365DeltaStatus m365_delta_page_parse(const char *body, size_t len,
											 M365DeltaPage *page,
											 char *err, size_t errlen);

extern void m365_delta_page_free(M365DeltaPage *page);

/*
 * Does a Graph error (HTTP status and error.code) mean the delta cursor is
 * gone and a full round must start again? 410 Gone always; otherwise the
 * codes syncStateNotFound / syncStateInvalid / resyncRequired in any case.
 */
extern bool m365_delta_cursor_lost(long status, const char *error_code);

#endif							/* M365SYNC_DELTA_PAGE_H */
