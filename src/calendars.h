/*
 * calendars.h — an account's calendar list from Graph into the store
 * (calendars.c).
 */
#ifndef M365SYNC_CALENDARS_H
#define M365SYNC_CALENDARS_H

#include "postgres.h"

#include "graph.h"

/*
 * Re-read an account's calendars from Graph and store them (names
 * encrypted); a new calendar is synced when enable_default and it is the
 * default, or when it takes the place of a synced calendar no longer
 * listed (the new default, or the same name). Calendars no longer listed
 * are removed with their events. Stamps accounts.calendars_listed_at.
 * Returns false with res filled when Graph or the token failed.
 */
extern bool m365_calendars_refresh(int64 account_id, const char *ms_user_id,
								   bool enable_default, M365GraphResult *res);

/*
 * The second half of m365_calendars_refresh: store a list already read
 * (cals, of M365GraphCalendar; pull.c reads it in its request stream).
 */
extern void m365_calendars_apply_list(int64 account_id, List *cals, bool enable_default);

#endif							/* M365SYNC_CALENDARS_H */
