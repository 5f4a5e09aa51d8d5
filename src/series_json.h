/*
 * series_json.h — an occurrence stub filled from its series master
 * (series_json.c). Pure C over cJSON: no backend headers, so the unit tests
 * call it as the pull does.
 *
 * In calendarView/delta the live service sends a plain occurrence as a stub
 * (GRAPH.md §11): @odata.type, @odata.etag, id, seriesMasterId, type, start,
 * end. Its content is its master's.
 */
#ifndef M365SYNC_SERIES_JSON_H
#define M365SYNC_SERIES_JSON_H

#include <stdbool.h>

#include <cjson/cJSON.h>

/* An occurrence that carries none of its content (no subject): a stub. */
extern bool m365_series_is_stub(const cJSON *item);

/*
 * The whole occurrence: the master's content (subject, body, location,
 * attendees, categories, showAs, sensitivity, isAllDay and the rest) with
 * the stub's own fields over it (id, type, seriesMasterId, start, end,
 * @odata.etag), no recurrence, and changeKey taken from @odata.etag
 * (W/"x" → x). malloc'd (cJSON_Delete it); NULL when out of memory.
 */
extern cJSON *m365_series_fill_stub(const cJSON *master, const cJSON *stub);

/*
 * The ids of an instances answer ({"value":[{"id":..},..]}): malloc'd array
 * of pointers into root (valid while root lives); *complete is false when
 * the answer has a nextLink (more pages). -1 when not that shape.
 */
extern int	m365_series_instance_ids(const cJSON *root, const char ***ids, int *n, bool *complete);

#endif							/* M365SYNC_SERIES_JSON_H */
