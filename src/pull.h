/*
 * pull.h — delta rounds of accounts (pull.c): every sync-enabled calendar's
 * calendarView/delta followed to its deltaLink.
 *
 * Rounds of many accounts advance together in waves: each wave sends the
 * next request of every unfinished account at once (libcurl multi, at most
 * m365sync.max_connections in flight, one per mailbox), then applies the
 * answers one account at a time. A delta chain is sequential by nature, so
 * one request per mailbox per wave is all the parallelism an account has;
 * the waves give the parallelism across accounts.
 */
#ifndef M365SYNC_PULL_H
#define M365SYNC_PULL_H

#include "postgres.h"

#include "nodes/pg_list.h"

typedef struct M365RoundStats
{
	int			calendars;
	int			pages;
	int			fetched;
	int			applied;
	int			deleted;
	int			conflicts;
	int			http_requests;
	bool		ok;
	bool		transient;		/* worth retrying soon (throttled, 5xx, network) */
	bool		has_retry_after;
	double		retry_after_s;
	char		error[64];		/* an error code, never content */
} M365RoundStats;

/* One account's round; the caller fills account_id, ms_user_id and stats. */
typedef struct M365PullJob
{
	int64		account_id;
	char	   *ms_user_id;
	M365RoundStats *stats;

	/* pull.c's state */
	List	   *calendars;		/* of M365PullCalendar */
	int			next_calendar;
	void	   *calendar;		/* the current M365PullCalendar */
	char	   *url;			/* the next request */
	char	   *token;
	bool		token_retried;	/* asked for a fresh token after a 401 */
	bool		restarted;		/* a lost cursor restarted this calendar */
	bool		done;
} M365PullJob;

/*
 * Run the rounds of jobs to the end. When commit_each_page, the current
 * transaction is committed after each page (the worker; a page and its
 * cursor commit together), otherwise everything stays in the caller's
 * transaction (m365sync.sync()). Each job's stats->ok says how it went.
 */
extern void m365_pull_run(List *jobs, bool commit_each_page, int max_parallel);

/* Page size asked of Graph (Prefer: odata.maxpagesize). */
#define M365_PULL_PAGE_SIZE 100

#endif							/* M365SYNC_PULL_H */
