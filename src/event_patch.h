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

/*
 * Do a and b hold the same writable fields, those named in skip left out
 * (a time field in skip leaves out all three; M365_ALL_FIELDS in skip
 * leaves out nothing: every field is compared)? An absent field equals
 * null. For a 412 or a delta item whose only news is its changeKey
 * (GRAPH.md §11): skip names the fields changed locally, whose last remote
 * values are not kept.
 */
extern bool m365_event_same_writable(const cJSON *a, const cJSON *b, const char *const *skip, int nskip);

#endif							/* M365SYNC_EVENT_PATCH_H */
