/*
 * zone_names.h — which tz database name a Graph timeZone string means
 * (zone_names.c). Pure C, no backend: the event parser's unit tests and
 * fuzz target use it. It only names zones; converting times through
 * PostgreSQL's tz database is timezones.c's job.
 */
#ifndef M365SYNC_ZONE_NAMES_H
#define M365SYNC_ZONE_NAMES_H

#include <stdbool.h>

/*
 * The IANA (tz database) name for a Graph timeZone value:
 *  - a Windows name ("Romance Standard Time") → its CLDR default zone;
 *  - "tzone://Microsoft/Utc" → "UTC";
 *  - custom zones ("tzone://Microsoft/Custom", "Customized Time Zone", any
 *    other tzone:// name) → NULL: we cannot know their rules;
 *  - anything else is returned unchanged (presumably IANA; the caller checks
 *    it against the tz database).
 * Windows names match case-insensitively. The result is static or the input.
 */
extern const char *m365_zone_iana_name(const char *graph_zone);

/*
 * Is this one of Outlook's custom zones ("tzone://Microsoft/Custom",
 * "Customized Time Zone", any tzone:// name but "tzone://Microsoft/Utc")?
 * GRAPH.md §10: their rules are not ours to know; a UTC-rendered copy of
 * the event is read as UTC instead.
 */
extern bool m365_zone_is_custom(const char *graph_zone);

/* The Windows name table's own lookup (NULL when not a Windows name). */
extern const char *m365_windows_zone_to_iana(const char *windows_name);

/*
 * The Windows name to write for a zone (GRAPH.md §10: Graph refuses most
 * IANA names on create and update): a Windows name as the table spells it,
 * an IANA name (or alias) through CLDR's mapping of every territory
 * ("Europe/Copenhagen" → "Romance Standard Time"), NULL when CLDR has none.
 */
extern const char *m365_zone_windows_name(const char *zone);

#endif							/* M365SYNC_ZONE_NAMES_H */
