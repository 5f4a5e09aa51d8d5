/*
 * calendars.c — an account's calendar list: read from Graph, stored by
 * store_calendars.c (names encrypted there). Called when an account is
 * connected or reconnected (sql_connect.c), and by the scheduler at least
 * daily and at once after a calendar answered 404: calendar ids change and
 * calendars get deleted (GRAPH.md §11, docs 11296 and 5580).
 *
 * A flow over oauth (the account's token), graph and the store; it decides
 * which new calendar is synced: at connect the default one (or the first
 * when Graph marks none); later, one that takes the place of a synced
 * calendar that vanished in the same read (the new default calendar for a
 * vanished default, or one of the same name: a calendar whose id changed).
 * Calendars Graph no longer lists leave, with their events.
 */
#include "postgres.h"

#include "nodes/pg_list.h"

#include "calendars.h"
#include "graph.h"
#include "oauth.h"
#include "store_accounts.h"
#include "store_calendars.h"

static M365StoredCalendar *
stored_by_graph_id(List *stored, const char *graph_id)
{
	ListCell   *lc;

	foreach(lc, stored)
	{
		M365StoredCalendar *s = lfirst(lc);

		if (strcmp(s->graph_id, graph_id) == 0)
			return s;
	}
	return NULL;
}

static bool
listed(List *cals, const char *graph_id)
{
	ListCell   *lc;

	foreach(lc, cals)
		if (strcmp(((M365GraphCalendar *) lfirst(lc))->id, graph_id) == 0)
			return true;
	return false;
}

/* Does new calendar c take the place of a synced one that is no longer listed? */
static bool
replaces_synced(List *stored, List *cals, const M365GraphCalendar *c)
{
	ListCell   *lc;

	foreach(lc, stored)
	{
		M365StoredCalendar *s = lfirst(lc);

		if (!s->sync_enabled || listed(cals, s->graph_id))
			continue;
		if ((s->is_default && c->is_default) ||
			(s->name != NULL && c->name != NULL && strcmp(s->name, c->name) == 0))
			return true;
	}
	return false;
}

bool
m365_calendars_refresh(int64 account_id, const char *ms_user_id, bool enable_default,
					   M365GraphResult *res)
{
	M365TokenSource ts;
	int64		id = account_id;
	List	   *cals;

	m365_account_token_source(&ts, &id);
	if (!m365_graph_list_calendars(&ts, ms_user_id, &cals, res))
		return false;
	m365_calendars_apply_list(account_id, cals, enable_default);
	return true;
}

void
m365_calendars_apply_list(int64 account_id, List *cals, bool enable_default)
{
	List	   *stored;
	ListCell   *lc;
	bool		any_default = false;

	stored = m365_store_calendars_all(account_id);
	foreach(lc, cals)
		any_default |= ((M365GraphCalendar *) lfirst(lc))->is_default;
	foreach(lc, cals)
	{
		M365GraphCalendar *c = lfirst(lc);
		bool		enable = false;

		if (stored_by_graph_id(stored, c->id) == NULL)
		{
			/* No calendar marked default: the first one stands in for it. */
			enable = (enable_default && (c->is_default || (!any_default && lc == list_head(cals)))) ||
				replaces_synced(stored, cals, c);
			if (stored != NIL)
				ereport(LOG,
						(errmsg("m365sync: account %lld has a new calendar%s",
								(long long) account_id, enable ? ", synced in place of one that went" : "")));
		}
		m365_store_calendars_upsert(account_id, c, enable);
	}
	/*
	 * Gone at Microsoft (deleted, or its id changed): it leaves, with its
	 * events. An empty list is no evidence (a mailbox always has its
	 * default calendar): nothing leaves on one.
	 */
	foreach(lc, stored)
	{
		M365StoredCalendar *s = lfirst(lc);

		if (cals == NIL || listed(cals, s->graph_id))
			continue;
		ereport(LOG,
				(errmsg("m365sync: calendar %lld of account %lld is no longer listed by Microsoft Graph; it is removed with its events",
						(long long) s->calendar_id, (long long) account_id)));
		m365_store_calendars_remove(account_id, s->calendar_id);
	}
	m365_store_accounts_calendars_listed(account_id);
}
