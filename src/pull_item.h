/*
 * pull_item.h — one delta item mapped for the store, or skipped
 * (pull_item.c): the pull's one place that decides an item is poison.
 */
#ifndef M365SYNC_PULL_ITEM_H
#define M365SYNC_PULL_ITEM_H

#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/jsonb.h"

#include "event_json.h"
#include "event_row.h"

/* The Graph id of an event object, or NULL when it has none (a string). */
extern const char *m365_pull_item_id(const cJSON *item);

/*
 * Read Graph's event object `item` into *ev, its clear
 * columns into *cols and the whole object as jsonb into *data (palloc'd in
 * the current context). false when it cannot be mapped: a WARNING naming
 * the field's path and the event's id (never a value) has been sent, and
 * the caller skips the item and counts it. Custom zones are read as UTC.
 */
extern bool m365_pull_item_map(int64 account_id, const cJSON *item,
							   M365Event *ev, M365EventColumns *cols, Jsonb **data);

#endif							/* M365SYNC_PULL_ITEM_H */
