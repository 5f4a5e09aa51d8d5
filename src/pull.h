/*
 * pull.h — one delta round of one account (pull.c): every sync-enabled
 * calendar's calendarView/delta followed to its deltaLink.
 */
#ifndef M365SYNC_PULL_H
#define M365SYNC_PULL_H

#include "postgres.h"

typedef struct M365RoundStats
{
	int			calendars;
	int			pages;
	int			fetched;
	int			applied;
	int			deleted;
	int			conflicts;
	int			pushed;			/* outbox entries done (push.c) */
	int			http_requests;
	bool		ok;
	bool		transient;		/* worth retrying soon (throttled, 5xx, network) */
	bool		has_retry_after;
	double		retry_after_s;
	char		error[64];		/* an error code, never content */
} M365RoundStats;

/*
 * Pull one account. Each page is applied together with its cursor; when
 * commit_each_page, the current transaction is committed after each page
 * and a new one started (the worker), otherwise everything stays in the
 * caller's transaction (m365sync.sync()). Returns stats->ok.
 */
extern bool m365_pull_account(int64 account_id, const char *ms_user_id,
							  bool commit_each_page, M365RoundStats *stats);

/* Page size asked of Graph (Prefer: odata.maxpagesize). */
#define M365_PULL_PAGE_SIZE 100

#endif							/* M365SYNC_PULL_H */
