/*
 * zone_names.c — Graph timeZone strings to tz database names.
 *
 * Graph names zones the Windows way ("W. Europe Standard Time") or the IANA
 * way, plus a few Outlook-specific markers. This file maps names only, from
 * the CLDR table generated into windows_zones.h; it never computes an offset
 * (PostgreSQL's tz database does that, in timezones.c) and includes no
 * backend header, so it runs in unit tests and fuzz targets.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "zone_names.h"
#include "windows_zones.h"

static int
compare_windows_name(const void *key, const void *entry)
{
	return strcasecmp((const char *) key, ((const M365WindowsZone *) entry)->windows);
}

const char *
m365_windows_zone_to_iana(const char *windows_name)
{
	const M365WindowsZone *hit;

	if (windows_name == NULL)
		return NULL;
	hit = bsearch(windows_name, m365_windows_zones, M365_WINDOWS_ZONE_COUNT,
				  sizeof(M365WindowsZone), compare_windows_name);
	return hit ? hit->iana : NULL;
}

bool
m365_zone_is_custom(const char *graph_zone)
{
	if (graph_zone == NULL || strcasecmp(graph_zone, "tzone://Microsoft/Utc") == 0)
		return false;
	return strncasecmp(graph_zone, "tzone://", 8) == 0 ||
		strcasecmp(graph_zone, "Customized Time Zone") == 0;
}

const char *
m365_zone_iana_name(const char *graph_zone)
{
	const char *iana;

	if (graph_zone == NULL || graph_zone[0] == '\0')
		return NULL;
	if (strcasecmp(graph_zone, "tzone://Microsoft/Utc") == 0)
		return "UTC";
	/* Outlook's custom zones carry their rules elsewhere: unknown to us. */
	if (m365_zone_is_custom(graph_zone))
		return NULL;
	iana = m365_windows_zone_to_iana(graph_zone);
	return iana ? iana : graph_zone;
}

static int
compare_iana_name(const void *key, const void *entry)
{
	return strcasecmp((const char *) key, ((const M365WindowsZone *) entry)->iana);
}

const char *
m365_zone_windows_name(const char *zone)
{
	const M365WindowsZone *hit;

	if (zone == NULL || zone[0] == '\0')
		return NULL;
	/* already a Windows name: its table spelling */
	hit = bsearch(zone, m365_windows_zones, M365_WINDOWS_ZONE_COUNT,
				  sizeof(M365WindowsZone), compare_windows_name);
	if (hit)
		return hit->windows;
	if (strcasecmp(zone, "tzone://Microsoft/Utc") == 0)
		return "UTC";
	hit = bsearch(zone, m365_iana_zones, M365_IANA_ZONE_COUNT,
				  sizeof(M365WindowsZone), compare_iana_name);
	return hit ? hit->windows : NULL;
}
