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
 * encrypted); new calendars are enabled when enable_default and they are
 * the default. Returns false with res filled when Graph or the token failed.
 */
extern bool m365_calendars_refresh(int64 account_id, const char *ms_user_id,
								   bool enable_default, M365GraphResult *res);

#endif							/* M365SYNC_CALENDARS_H */
