/*
 * pull.h — delta rounds of accounts: every sync-enabled calendar's
 * calendarView/delta followed to its deltaLink (pull.c, one account's
 * round; pull_stream.c, the stream of many).
 *
 * Rounds of many accounts advance together as a stream: up to
 * m365sync.max_connections requests are in flight (libcurl multi), each
 * answer is applied as soon as it arrives and that account's next request
 * goes out at once. A delta chain is sequential by nature, so one request
 * per mailbox at a time is all the parallelism an account has; the stream
 * gives the parallelism across accounts, and keeps the connections busy
 * while pages are being applied.
 *
 * Accounts start and end in waves as the stream runs: when no started job
 * has a request to send, the next wave of max_parallel jobs is started
 * (the caller's prepare hook, each job's calendars and token, one
 * transaction), and finished jobs are handed to the caller's finish hook a
 * wave at a time. So the database work of starting and ending rounds runs
 * while the requests of other accounts are in flight.
 */
#ifndef M365SYNC_PULL_H
#define M365SYNC_PULL_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "http.h"
#include "store_sync_log.h"

/* One account's round; the caller fills account_id, ms_user_id and stats. */
typedef struct M365PullJob
{
	int64		account_id;
	char	   *ms_user_id;
	M365RoundStats *stats;
	void	   *owner;			/* the caller's, for its hooks */
	bool		list_calendars; /* in: read the calendar list first, in the stream */
	bool		skip;			/* set by the prepare hook: no round (e.g. "busy") */
	bool		calendar_gone;	/* out: a calendar answered 404 (marked gone, list stale) */

	/* pull.c's and pull_stream.c's state */
	List	   *calendars;		/* of M365PullCalendar */
	int			next_calendar;
	void	   *calendar;		/* the current M365PullCalendar */
	char	   *url;			/* the next request */
	char	   *token;
	bool		token_retried;	/* asked for a fresh token after a 401 */
	bool		restarted;		/* a lost cursor restarted this calendar */
	bool		started;		/* its wave was prepared */
	bool		done;
	bool		finished;		/* handed to the finish hook */
	bool		listing;		/* reading the calendar list */
	List	   *listed;			/* of M365GraphCalendar, the list read so far */
	int			list_pages;		/* pages of the list read */
	bool		in_flight;		/* its request is out; one per mailbox */
	void	   *series;			/* a page parked while its series masters are fetched (series.h) */
	void	   *written;		/* the Graph ids this round stored, when it began on none (store_events_pull.h) */
	bool		written_checked;	/* the account was looked at for that */
	M365HttpRequest request;
} M365PullJob;

/*
 * The caller's part of a wave of jobs: prepare (before any request; may
 * set skip) and finish (after the last answer). Either may be NULL.
 */
typedef void (*M365PullWaveHook) (M365PullJob **jobs, int n, void *arg);

typedef struct M365PullHooks
{
	M365PullWaveHook prepare;
	M365PullWaveHook finish;
	void	   *arg;
} M365PullHooks;

/*
 * Run the rounds of jobs to the end. When commit_each_page, the current
 * transaction is committed after each page (the worker; a page and its
 * cursor commit together), otherwise everything stays in the caller's
 * transaction (m365sync.sync()). Each job's stats->ok says how it went.
 */
extern void m365_pull_run(List *jobs, bool commit_each_page, int max_parallel,
						  const M365PullHooks *hooks);

/* Page size asked of Graph (Prefer: odata.maxpagesize). */
#define M365_PULL_PAGE_SIZE 100

#endif							/* M365SYNC_PULL_H */
