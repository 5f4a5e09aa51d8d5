/*
 * calendars.c — an account's calendar list: read from Graph, stored by
 * store_accounts.c (names encrypted there). Called when an account is
 * connected or reconnected (sql_connect.c).
 *
 * A flow over oauth (the account's token), graph and the store; it decides
 * only which new calendar is enabled (the default one, or the first when
 * Graph marks none).
 */
#include "postgres.h"

#include "nodes/pg_list.h"

#include "calendars.h"
#include "graph.h"
#include "oauth.h"
#include "store_accounts.h"
#include "store_calendars.h"

bool
m365_calendars_refresh(int64 account_id, const char *ms_user_id, bool enable_default,
					   M365GraphResult *res)
{
	M365TokenSource ts;
	int64		id = account_id;
	List	   *cals;
	ListCell   *lc;
	bool		any_default = false;

	m365_account_token_source(&ts, &id);
	if (!m365_graph_list_calendars(&ts, ms_user_id, &cals, res))
		return false;
	foreach(lc, cals)
		any_default |= ((M365GraphCalendar *) lfirst(lc))->is_default;
	foreach(lc, cals)
	{
		M365GraphCalendar *c = lfirst(lc);

		/* No calendar marked default: the first one stands in for it. */
		m365_store_calendars_upsert(account_id, c,
							  enable_default && (c->is_default ||
												 (!any_default && lc == list_head(cals))));
	}
	return true;
}
