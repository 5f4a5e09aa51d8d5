/*
 * event_patch.h — the body of a Graph event write (POST or PATCH) from a
 * stored event object (event_patch.c).
 *
 * The push sends only what Graph lets a client write: the fields named in
 * event_json.h that are writable, never ids, change keys, web links or
 * read-only properties a pull brought in. Pure C over cJSON (no backend
 * headers, no palloc): unit tests call it directly. Never logs.
 */
#ifndef M365SYNC_EVENT_PATCH_H
#define M365SYNC_EVENT_PATCH_H

#include <stdbool.h>

#include <cjson/cJSON.h>

/* In outbox.changed_fields: every writable field (a full update). */
#define M365_ALL_FIELDS "*"

/* Is name a field a client may write on an event? */
extern bool m365_event_field_writable(const char *name);

/*
 * A new cJSON object holding the writable fields of data: all of them when
 * fields is NULL or names M365_ALL_FIELDS, else only those named (a change
 * to start, end or isAllDay sends all three, so Graph never sees half a
 * time). series_member (an occurrence or exception) never sends recurrence.
 * transaction_id, when not NULL, is added (creates). Returns NULL when out
 * of memory; *nfields gets the number of fields copied (0: nothing to send).
 */
extern cJSON *m365_event_write_body(const cJSON *data, const char *const *fields, int nfields,
									bool series_member, const char *transaction_id,
									int *ncopied);

#endif							/* M365SYNC_EVENT_PATCH_H */
