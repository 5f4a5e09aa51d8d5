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

#endif							/* M365SYNC_CALENDARS_H */
